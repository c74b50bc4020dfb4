-- skein.exec: subprocesses on the loop. Options (args, cwd, env, stdin as
-- a pipe, inherited, /dev/null or a string fed, stdout/stderr), exit codes
-- and signals, kill, wait with a timeout, opts.timeout (SIGTERM, then
-- SIGKILL), errors (ENOENT, bad arguments), several MB through pipes,
-- cancellation, exec in thread, process and pool workers, and the rule
-- that no child outlives its script and none is left a zombie.
local skein = require "skein"
local cli = require "spec.support.cli"
local exec = skein.exec

local caught = require("spec.support.errors").errof

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local text = f:read("a")   -- nil when the process went between open and read
  f:close()
  local st = text and text:match("^%d+ %b() (%a)")
  return st ~= nil and st ~= "Z" and st ~= "X"
end

-- Polls until `pid` is gone (or `secs` passed); returns whether it is.
local function gone_within(pid, secs)
  local t0 = skein.now()
  while skein.now() - t0 < secs do
    if not alive(pid) then return true end
    skein.sleep(0.02)
  end
  return not alive(pid)
end

local function self_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = tonumber(f:read("a"):match("^(%d+)"))
  f:close()
  return pid
end

-- The zombie children of process `pid` that ran `true` or `sleep` (popen's
-- own children, which other helpers may leave unclosed, are not counted).
local function zombies(pid)
  local p = io.popen("ps -o stat=,comm= --ppid " .. pid)
  local n = 0
  for l in p:lines() do
    local st, comm = l:match("^(%S+)%s+(%S+)")
    if st and st:match("^Z") and (comm == "true" or comm == "sleep") then n = n + 1 end
  end
  p:close()
  return n
end

local function script(text, opts)
  local d = cli.tmpdir()
  return cli.run({ cli.write(d .. "/s.lua", text) }, opts)
end

describe("skein.exec.run", function()
  teardown(function() cli.cleanup() end)

  it("collects stdout and stderr and the exit code", function()
    local r = exec.run("sh", { "-c", "echo out; echo err >&2; exit 3" })
    assert.same({ code = 3, stdout = "out\n", stderr = "err\n" }, r)
    r = exec.run("true")
    assert.same({ code = 0, stdout = "", stderr = "" }, r)
  end)

  it("passes the arguments as they are, numbers as strings", function()
    local r = exec.run("printf", { "[%s]", "a b", "", "*", 42, 1.5 })
    assert.equal("[a b][][*][42][1.5]", r.stdout)
  end)

  it("reports the signal that ended the child, with no code", function()
    local r = exec.run("sh", { "-c", "kill -KILL $$" })
    assert.is_nil(r.code)
    assert.equal("SIGKILL", r.signal)
    r = exec.run("sh", { "-c", "kill -USR1 $$" })
    assert.equal("SIGUSR1", r.signal)
  end)

  it("feeds a string to stdin, then closes it", function()
    assert.equal("hello\nworld", exec.run("cat", {}, { stdin = "hello\nworld" }).stdout)
    assert.equal("", exec.run("cat", {}, { stdin = "" }).stdout)
    assert.equal("0\n", exec.run("wc", { "-c" }, { stdin = "null" }).stdout)
    -- run's stdin is /dev/null by default: cat ends at once.
    assert.equal("", exec.run("cat").stdout)
  end)

  it("carries several MB through its pipes both ways, reading both outputs at once", function()
    local big = ("0123456789abcdef"):rep(4 * 65536)                    -- 4 MiB
    local r = exec.run("cat", {}, { stdin = big })
    assert.equal(#big, #r.stdout)
    assert.is_true(r.stdout == big)
    -- 4 MB to stderr before anything to stdout: a reader of stdout alone
    -- would leave the child blocked on a full stderr pipe.
    r = exec.run("sh", { "-c", "head -c 4000000 /dev/zero >&2; head -c 3000000 /dev/zero" })
    assert.equal(0, r.code)
    assert.equal(4000000, #r.stderr)
    assert.equal(3000000, #r.stdout)
  end)

  it("leaves an output alone with \"null\" or \"inherit\"", function()
    local r = exec.run("sh", { "-c", "echo out; echo err >&2" }, { stdout = "null", stderr = "pipe" })
    assert.is_nil(r.stdout)
    assert.equal("err\n", r.stderr)
    local res = script([[
      local r = skein.exec.run("sh", {"-c", "echo to-out; echo to-err >&2"},
                               {stdout = "inherit", stderr = "inherit"})
      print(r.stdout, r.stderr, r.code)
    ]])
    assert.equal(0, res.code)
    assert.equal("to-out\nnil\tnil\t0\n", res.out)
    assert.equal("to-err\n", res.err)
  end)

  it("runs in cwd with env replacing the environment", function()
    local d = cli.tmpdir()
    local r = exec.run("pwd", {}, { cwd = d })
    assert.equal(d .. "\n", r.stdout)
    r = exec.run("/usr/bin/env", {}, { env = { FOO = "bar baz", N = 7 } })
    local lines = cli.lines(r.stdout)
    table.sort(lines)
    assert.same({ "FOO=bar baz", "N=7" }, lines)
    r = exec.run("/usr/bin/env", {}, { env = {} })
    assert.equal("", r.stdout)
  end)

  it("kills a child that outlives opts.timeout: SIGTERM, then SIGKILL", function()
    local t0 = skein.now()
    local r = exec.run("sleep", { "10" }, { timeout = 0.2 })
    assert.is_nil(r.code)
    assert.equal("SIGTERM", r.signal)
    assert.is_true(r.timed_out)
    assert.is_true(skein.now() - t0 < 2)
    -- One that ignores SIGTERM gets SIGKILL after the 2 s grace.
    t0 = skein.now()
    r = exec.run("sh", { "-c", "trap '' TERM; echo ready; sleep 10; echo never" }, { timeout = 0.2 })
    local secs = skein.now() - t0
    assert.equal("SIGKILL", r.signal)
    assert.equal("ready\n", r.stdout)
    assert.is_true(secs >= 2 and secs < 5, "took " .. secs)
    -- A child that finishes in time is not touched.
    r = exec.run("true", {}, { timeout = 5 })
    assert.same({ code = 0, stdout = "", stderr = "" }, r)
  end)

  it("raises kind io ENOENT naming a command that does not exist", function()
    local e = caught(exec.run, "no-such-command-skein")
    assert.equal("io", e.kind)
    assert.equal("ENOENT", e.code)
    assert.equal("no-such-command-skein", e.path)
    assert.matches("no%-such%-command%-skein", e.message)
    e = caught(exec, "/nonexistent/prog")
    assert.equal("ENOENT", e.code)
    e = caught(exec.run, "true", {}, { cwd = "/nonexistent-dir" })
    assert.equal("io", e.kind)
    assert.equal("ENOENT", e.code)
    assert.matches("/nonexistent%-dir", e.message)
    e = caught(exec.run, "/etc/passwd")
    assert.equal("EACCES", e.code)
  end)

  it("refuses bad arguments with clear errors", function()
    local function bad(pattern, fn, ...)
      local e = caught(fn, ...)
      assert.is_string(e)
      assert.matches(pattern, e)
    end
    bad("bad argument #1 to '[^']*' %(string %(the command%) expected, got number", exec.run, 42)
    bad("bad argument #1 to '[^']*' %(string", exec, nil)
    bad("the command is empty", exec, "")
    bad("bad argument #2 to '[^']*' %(table %(the arguments%) or nil expected, got string", exec, "ls", "-l")
    bad("args%[2%] is boolean, a string expected", exec.run, "echo", { "a", true })
    bad("bad argument #3 to '[^']*' %(table %(the options%)", exec.run, "true", {}, "x")
    bad("unknown option 'stdot'", exec.run, "true", {}, { stdot = "null" })
    bad("option 'stdout': \"pipe\", \"inherit\" or \"null\" expected, got \"file\"", exec.run,
        "true", {}, { stdout = "file" })
    bad("option 'stdin': a string expected, got number", exec, "true", {}, { stdin = 5 })
    bad("option 'cwd': a string expected", exec, "true", {}, { cwd = true })
    bad("option 'env': a table", exec, "true", {}, { env = "A=1" })
    bad("option 'env': invalid variable name 'A=B'", exec, "true", {}, { env = { ["A=B"] = "1" } })
    bad("option 'env': env.A must be a string, got table", exec, "true", {}, { env = { A = {} } })
    bad("option 'timeout': a positive number", exec, "true", {}, { timeout = 0 })
    bad("option 'timeout': a positive number", exec, "true", {}, { timeout = "1" })
  end)

  it("kills its child when the call is abandoned (skein.timeout)", function()
    local d = cli.tmpdir()
    local e = caught(skein.timeout, 0.2, exec.run, "sh", { "-c", "echo $$ > " .. d .. "/pid; exec sleep 30" })
    assert.equal("timeout", e.kind)
    local pid = tonumber(cli.read(d .. "/pid"))
    assert.is_true(gone_within(pid, 3), "the child of an abandoned run still runs")
  end)

  it("works in a thread worker, a process worker and a pool worker", function()
    local function job(n)
      local skein = require "skein"
      local r = skein.exec.run("sh", { "-c", "printf %s \"$1\"; printf e >&2; exit 4", "sh", n })
      local ts = {}
      for i = 1, 3 do
        ts[i] = skein.spawn(function() return skein.exec.run("echo", { i }).stdout end)
      end
      local outs = {}
      for i = 1, 3 do outs[i] = ts[i]:join() end
      return r.stdout .. r.stderr .. r.code .. ":" .. table.concat(outs)
    end
    assert.equal("te4:1\n2\n3\n", skein.thread(job, "t"):join(20))
    assert.equal("pe4:1\n2\n3\n", skein.process(job, "p"):join(20))
    local tp <close> = skein.pool{ kind = "thread", size = 2 }
    assert.equal("qe4:1\n2\n3\n", tp:submit(job, "q"):get(20))
    local pp <close> = skein.pool{ kind = "process", size = 2 }
    assert.equal("re4:1\n2\n3\n", pp:submit(job, "r"):get(20))
  end)
end)

describe("skein.exec", function()
  teardown(function() cli.cleanup() end)

  it("starts a child: pid, wait -> code, and no streams unless asked", function()
    local p = exec("sh", { "-c", "exit 5" }, { stdout = "null" })
    assert.is_number(p.pid)
    assert.is_nil(p.stdin)
    assert.is_nil(p.stdout)
    assert.is_nil(p.stderr)
    assert.matches("skein.exec process %d+", tostring(p))
    local code, sig = p:wait(10)
    assert.equal(5, code)
    assert.is_nil(sig)
    -- Waiting again gives the same.
    assert.equal(5, (p:wait()))
  end)

  it("gives pipes as skein.Stream objects: write stdin, read stdout and stderr", function()
    local p = exec("sh", { "-c", "read x; echo got:$x; echo e1 >&2; cat" },
                   { stdin = "pipe", stdout = "pipe", stderr = "pipe" })
    assert.equal("skein.Stream", getmetatable(p.stdout).__name)
    p.stdin:write("hello\n")
    assert.equal("got:hello", p.stdout:read("l", 5))
    assert.equal("e1", p.stderr:read("l", 5))
    p.stdin:write("more\n", 42, "\n")
    p.stdin:shutdown()
    assert.equal("more\n42\n", p.stdout:read("a", 5))
    assert.is_nil(p.stderr:read("l", 5))            -- end of stream
    assert.equal(0, (p:wait(5)))
    p.stdin:close(); p.stdout:close(); p.stderr:close()
    -- Lines, and a pipe that carries several MB while the child writes
    -- stderr too (read by another task at the same time).
    local q = exec("sh", { "-c", "printf 'a\\nb\\n'; head -c 5000000 /dev/zero; head -c 2000000 /dev/zero >&2" },
                   { stdout = "pipe", stderr = "pipe" })
    assert.equal("a", q.stdout:read("l", 5))
    assert.equal("b", q.stdout:read("l", 5))
    local t = skein.spawn(function() return #q.stderr:read("a", 10) end)
    assert.equal(5000000, #q.stdout:read("a", 10))
    assert.equal(2000000, t:join(10))
    assert.equal(0, (q:wait(5)))
    local n = 0
    for l in exec("printf", { "1\\n2\\n3\\n" }, { stdout = "pipe" }).stdout:lines() do n = n + tonumber(l) end
    assert.equal(6, n)
  end)

  it("kills with SIGTERM by default, or the signal named or numbered", function()
    local p = exec("sleep", { "30" })
    assert.is_true(p:kill())
    assert.same({ nil, "SIGTERM" }, { p:wait(5) })
    assert.is_false(p:kill())             -- it has exited
    p = exec("sleep", { "30" })
    assert.is_true(p:kill("SIGKILL"))
    assert.same({ nil, "SIGKILL" }, { p:wait(5) })
    p = exec("sleep", { "30" })
    assert.is_true(p:kill("INT"))
    assert.same({ nil, "SIGINT" }, { p:wait(5) })
    p = exec("sleep", { "30" })
    assert.is_true(p:kill(10))
    assert.same({ nil, "SIGUSR1" }, { p:wait(5) })
    local e = caught(p.kill, p, "SIGNOPE")
    assert.matches("unknown signal 'SIGNOPE'", e)
    e = caught(p.kill, p, 0)
    assert.matches("not a signal number", e)
  end)

  it("wait with a timeout raises kind timeout and leaves the child running", function()
    local p = exec("sleep", { "30" })
    local t0 = skein.now()
    local e = caught(p.wait, p, 0.1)
    assert.equal("timeout", e.kind)
    assert.is_true(skein.now() - t0 < 1)
    assert.is_true(alive(p.pid))
    p:kill("SIGKILL")
    assert.same({ nil, "SIGKILL" }, { p:wait(5) })
    -- skein.timeout scopes bound the wait too.
    p = exec("sleep", { "30" })
    e = caught(skein.timeout, 0.1, p.wait, p)
    assert.equal("timeout", e.kind)
    assert.is_true(alive(p.pid))
    p:kill()
    p:wait(5)
  end)

  it("a task cancelled inside wait stops at once; the child goes on", function()
    local p = exec("sleep", { "30" })
    local t = skein.spawn(function() return p:wait() end)
    skein.sleep(0.05)
    local t0 = skein.now()
    t:cancel()
    local e = caught(t.join, t, 2)
    assert.equal("cancelled", e.kind)
    assert.is_true(skein.now() - t0 < 0.5)
    assert.is_true(alive(p.pid))
    -- Several tasks may wait for the same child.
    local ws = {}
    for i = 1, 3 do ws[i] = skein.spawn(function() return p:wait(5) end) end
    skein.sleep(0.02)
    p:kill("SIGKILL")
    for i = 1, 3 do assert.same({ nil, "SIGKILL" }, { ws[i]:join(5) }) end
  end)

  it("a <close> variable kills its child; a closed handle refuses calls", function()
    local pid, p2
    do
      local p <close> = exec("sleep", { "30" })
      pid, p2 = p.pid, p
    end
    assert.is_true(gone_within(pid, 3))
    local e = caught(p2.wait, p2)
    assert.equal("closed", e.kind)
    assert.is_nil(p2.pid)
    assert.matches("closed", tostring(p2))
    -- A task waiting when another closes the handle gets kind closed.
    local p = exec("sleep", { "30" })
    local t = skein.spawn(function() return p:wait() end)
    skein.sleep(0.02)
    getmetatable(p).__close(p)
    e = caught(t.join, t, 2)
    assert.equal("closed", e.kind)
  end)

  it("belongs to its worker: a handle cannot be sent", function()
    local p = exec("true")
    local e = caught(skein.thread, function() end, p)
    assert.equal("marshal", e.kind)
    assert.equal(0, (p:wait(5)))
  end)

  it("leaves no zombie behind", function()
    local me = self_pid()
    for i = 1, 5 do
      exec.run("true")
      local p = exec("sleep", { "30" })
      p:kill("SIGKILL")
      p:wait(5)
      exec.run("sleep", { "5" }, { timeout = 0.01 })
    end
    -- A child nobody waits for is reaped as well.
    exec("true")
    skein.sleep(0.3)
    assert.equal(0, zombies(me))
  end)

  it("no child outlives its script: a child never waited is killed at the end", function()
    local r = script([[
      local p = skein.exec("sleep", {"100"})
      local q = skein.exec("sh", {"-c", "trap '' TERM INT HUP; exec sleep 100"})
      -- A handle collected while its child runs: the child runs on until
      -- the script ends.
      local r = skein.exec("sleep", {"100"})
      local rpid = r.pid
      r = nil
      collectgarbage(); collectgarbage()
      skein.sleep(0.05)
      local f = io.open("/proc/" .. rpid .. "/stat")
      print(p.pid, q.pid, rpid, f ~= nil)
    ]], { timeout = 20 })
    assert.equal(0, r.code)
    local a, b, c, still = r.out:match("^(%d+)\t(%d+)\t(%d+)\t(%a+)\n$")
    assert.equal("true", still)
    for _, pid in ipairs({ a, b, c }) do
      assert.is_false(alive(pid), "pid " .. pid .. " outlived the script")
    end
  end)

  it("a thread worker kills its children when it ends", function()
    local pid = skein.thread(function()
      local skein = require "skein"
      return skein.exec("sleep", { "100" }).pid
    end):join(10)
    assert.is_true(gone_within(pid, 5))
    local pp <close> = skein.pool{ kind = "process", size = 1 }
    local pid2 = pp:submit(function()
      local skein = require "skein"
      return skein.exec("sleep", { "100" }).pid
    end):get(20)
    pp:close()
    assert.is_true(gone_within(pid2, 5))
  end)
end)
