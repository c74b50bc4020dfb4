-- skein.signal: handlers run as tasks, one per delivery; handle:close();
-- skein.signal.wait with a timeout and under cancellation; the signal's
-- disposition comes back when the last watch goes (Ctrl-C interrupts
-- again, an ignored SIGPIPE stays ignored, a default SIGUSR1 kills again);
-- watches in thread workers and worker processes; refused signals.
-- Signals are sent from a child (`kill -X $PPID`), and every case that
-- lets a signal reach its default action runs in a skein subprocess.
local skein = require "skein"
local cli = require "spec.support.cli"

local caught = require("spec.support.errors").errof

local function script(text, opts)
  local d = cli.tmpdir()
  return cli.run({ cli.write(d .. "/s.lua", text) }, opts or { timeout = 20 })
end

-- Sends `sig` to the skein process running the script.
local SEND = [[
local function send(sig) skein.exec.run("sh", {"-c", "kill -" .. sig .. " $PPID"}) end
]]

describe("skein.signal", function()
  teardown(function() cli.cleanup() end)

  it("runs fn(name) as a task on each delivery until closed; the default comes back", function()
    local r = script(SEND .. [[
      local got = {}
      local h = skein.signal("SIGUSR1", function(name)
        got[#got + 1] = name .. (skein.current() and " in a task" or "")
      end)
      print(tostring(h))
      send("USR1")
      skein.sleep(0.1)
      send("USR1")
      skein.sleep(0.1)
      print(#got, got[1], got[2])
      h:close()
      h:close()                       -- idempotent
      print(tostring(h))
      io.stdout:flush()
      send("USR1")                    -- SIGUSR1's default action: the end
      skein.sleep(2)
      print("survived")
    ]])
    assert.equal("skein.signal SIGUSR1 (open)\n2\tSIGUSR1 in a task\tSIGUSR1 in a task\n" ..
                 "skein.signal SIGUSR1 (closed)\n", r.out)
    assert.equal(128 + 10, r.code)
  end)

  it("an open handle does not keep the script running; its tasks do", function()
    local r = script(SEND .. [[
      skein.signal("SIGUSR2", function()
        skein.sleep(0.2)
        print("handler done")
      end)
      send("USR2")
      skein.sleep(0.05)
      print("main done")
    ]])
    assert.equal(0, r.code)
    assert.equal("main done\nhandler done\n", r.out)
    local t0 = skein.now()
    r = script([[skein.signal("SIGUSR2", print) print("bye")]])
    assert.equal(0, r.code)
    assert.equal("bye\n", r.out)
    assert.is_true(skein.now() - t0 < 5)
  end)

  it("takes Ctrl-C over while open and gives it back to skein when closed", function()
    local r = script(SEND .. [[
      local n = 0
      local h = skein.signal("SIGINT", function() n = n + 1 end)
      send("INT")
      skein.sleep(0.1)
      send("INT")
      skein.sleep(0.1)
      print("handled", n)
      h:close()
      io.stdout:flush()
      send("INT")
      skein.sleep(5)
      print("not interrupted")
    ]])
    assert.equal("handled\t2\n", r.out)
    assert.equal(130, r.code)
    assert.matches("interrupted", r.err)
    -- The same after skein.signal.wait("SIGINT").
    r = script(SEND .. [[
      local t = skein.spawn(function() return skein.signal.wait("SIGINT", 5) end)
      skein.sleep(0.05)
      send("INT")
      print(t:join(5))
      io.stdout:flush()
      send("INT")
      skein.sleep(5)
      print("not interrupted")
    ]])
    assert.equal("SIGINT\n", r.out)
    assert.equal(130, r.code)
    assert.matches("interrupted", r.err)
  end)

  it("gives an ignored SIGPIPE back as ignored", function()
    local r = script(SEND .. [[
      local h = skein.signal("SIGPIPE", function() print("pipe") end)
      send("PIPE")
      skein.sleep(0.1)
      h:close()
      send("PIPE")                    -- skein ignores SIGPIPE: still alive
      skein.sleep(0.1)
      print("alive")
    ]])
    assert.equal(0, r.code)
    assert.equal("pipe\nalive\n", r.out)
  end)

  it("watches in thread workers and worker processes; every watch sees a delivery", function()
    local r = script(SEND .. [[
      local seen = 0
      local h = skein.signal("SIGUSR1", function() seen = seen + 1 end)
      local t = skein.thread(function()
        local skein = require "skein"
        return skein.signal.wait("SIGUSR1", 10)
      end)
      local n = 0
      local th = skein.thread(function()
        local skein = require "skein"
        local got = 0
        local h = skein.signal("SIGUSR1", function() got = got + 1 end)
        while got == 0 do skein.sleep(0.01) end
        h:close()
        return got
      end)
      skein.sleep(0.3)
      send("USR1")
      print(t:join(10), th:join(10))
      -- A worker process watches its own signals.
      local p = skein.process(function()
        local skein = require "skein"
        local t = skein.spawn(function() return skein.signal.wait("SIGUSR2", 10) end)
        skein.sleep(0.05)
        skein.exec.run("sh", {"-c", "kill -USR2 $PPID"})
        return t:join(10)
      end)
      print(p:join(20), seen)
      h:close()
    ]])
    assert.equal("SIGUSR1\t1\nSIGUSR2\t1\n", r.out)
    assert.equal(0, r.code)
  end)

  it("refuses what cannot be watched, and bad arguments", function()
    local function bad(pattern, fn, ...)
      local e = caught(fn, ...)
      assert.is_string(e)
      assert.matches(pattern, e)
    end
    bad("SIGKILL cannot be watched: it cannot be caught", skein.signal, "SIGKILL", print)
    bad("SIGSTOP cannot be watched: it cannot be caught", skein.signal.wait, "STOP")
    bad("SIGCHLD cannot be watched: it is how children are reaped", skein.signal, "SIGCHLD", print)
    bad("SIGSEGV cannot be watched: it signals a fault", skein.signal, "SIGSEGV", print)
    bad("unknown signal 'SIGFOO'", skein.signal, "SIGFOO", print)
    bad("string %(a signal name%) expected, got number", skein.signal, 15, print)
    bad("bad argument #2", skein.signal, "SIGUSR1", 42)
    bad("timeout must not be negative", skein.signal.wait, "SIGUSR1", -1)
  end)
end)

describe("skein.signal.wait", function()
  teardown(function() cli.cleanup() end)

  it("returns the name of the signal once it comes", function()
    local r = script(SEND .. [[
      local t = skein.spawn(function() return skein.signal.wait("SIGHUP", 10) end)
      skein.sleep(0.05)
      send("HUP")
      print(t:join(10))
      -- At the root too (the loop runs while it waits).
      skein.spawn(function() skein.sleep(0.05) send("TERM") end)
      print(skein.signal.wait("TERM", 10))
    ]])
    assert.equal("SIGHUP\nSIGTERM\n", r.out)
    assert.equal(0, r.code)
  end)

  it("raises kind timeout, and stops watching", function()
    local t0 = skein.now()
    local e = caught(skein.signal.wait, "SIGUSR2", 0.1)
    assert.equal("timeout", e.kind)
    assert.matches("SIGUSR2", e.message)
    assert.is_true(skein.now() - t0 < 1)
    e = caught(skein.timeout, 0.1, skein.signal.wait, "SIGUSR2")
    assert.equal("timeout", e.kind)
  end)

  it("a task cancelled inside it stops at once, and the watch goes", function()
    local r = script(SEND .. [[
      local t = skein.spawn(function() return skein.signal.wait("SIGUSR2") end)
      skein.sleep(0.05)
      local t0 = skein.now()
      t:cancel()
      local ok, e = pcall(t.join, t, 2)
      print(e.kind, skein.now() - t0 < 0.5)
      io.stdout:flush()
      send("USR2")                    -- not watched any more: the default
      skein.sleep(2)
      print("survived")
    ]])
    assert.equal("cancelled\ttrue\n", r.out)
    assert.equal(128 + 12, r.code)
  end)
end)
