-- Ctrl-C as a script meets it: the main chunk gets one catchable error of
-- kind `interrupted` (Python's KeyboardInterrupt), can wait again to clean
-- up and end normally; uncaught, or at a second Ctrl-C, the program ends
-- with status 130 and leaves no child behind.
local skein = require "skein"
local cli = require "spec.support.cli"

local SLOW = (os.getenv("SKEIN_BIN") or ""):match("asan") ~= nil
local clean = { LUA_INIT = false, LUA_INIT_5_4 = false }

local function running(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

-- Runs `script` in a process group of its own, waits for "ready" on its
-- output, then sends SIGINT to the whole group (as a terminal's Ctrl-C
-- does) `count` times, `gap` seconds apart; a watchdog kills it after 40 s.
-- Returns {out=, err=, code=}.
local function ctrl_c(script, count, gap)
  local d = cli.tmpdir()
  local path = cli.write(d .. "/s.lua", script)
  local sh = string.format([[
out=%s/out; err=%s/err
env -u LUA_INIT -u LUA_INIT_5_4 setsid %s %s </dev/null >"$out" 2>"$err" &
pid=$!
( sleep 40; kill -KILL $pid ) >/dev/null 2>&1 &
dog=$!
i=0
until grep -q ready "$out" 2>/dev/null; do
  i=$((i + 1)); if [ $i -gt 600 ]; then kill -KILL $pid; echo no-ready; exit; fi
  sleep 0.05
done
sleep %s
for n in $(seq %d); do
  kill -INT -- -$pid 2>/dev/null
  sleep %s
done
wait $pid; rc=$?
kill $dog 2>/dev/null
echo "$rc"
]], cli.q(d), cli.q(d), cli.q(cli.bin), cli.q(path), SLOW and "1" or "0.3", count or 1, gap or "0.3")
  local p = io.popen("bash -c " .. cli.q(sh))
  local res = p:read("a")
  p:close()
  return { out = cli.read(d .. "/out"), err = cli.read(d .. "/err"),
           code = tonumber(res:match("(%d+)%s*$")) or res }
end

describe("Ctrl-C", function()
  teardown(cli.cleanup)

  it("reaches pcall at the top level as kind interrupted, once; later waits work", function()
    local r = ctrl_c([[
      local ok, e = pcall(function()
        print("ready") io.stdout:flush()
        skein.sleep(30)
      end)
      print(ok, skein.is_error(e, "interrupted"), e.message)
      skein.sleep(0.05)            -- waiting again is fine: the error came once
      print("cleaned up")
    ]])
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("ready\nfalse\ttrue\tinterrupted\ncleaned up\n", r.out)
    assert.are.equal("", r.err)
  end)

  it("stops a busy task: the task is cancelled and the joining main chunk gets interrupted", function()
    local r = ctrl_c([[
      local t = skein.spawn(function() print("ready") io.stdout:flush() while true do end end)
      local ok, e = pcall(t.join, t)
      print(ok, e.kind, t:status())
    ]])
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("ready\nfalse\tinterrupted\tcancelled\n", r.out)
    assert.are.equal("", r.err)
  end)

  it("stops a busy main chunk with a catchable error", function()
    local r = ctrl_c([[
      local n = 0
      local ok, e = pcall(function()
        print("ready") io.stdout:flush()
        while true do n = n + 1 end
      end)
      print(ok, e.kind, n > 0)
    ]])
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("ready\nfalse\tinterrupted\ttrue\n", r.out)
  end)

  it("lets the main chunk cancel a process pool's work and finish; workers outlive the signal", function()
    local r = ctrl_c([[
      local pool <close> = skein.pool{kind = "process", size = 2}
      local pids = pool:stats().pids
      local futures = {}
      for i = 1, 8 do futures[i] = pool:submit(function() skein.sleep(30) return 1 end) end
      local ok, e = pcall(function()
        print("ready") io.stdout:flush()
        for i = 1, #futures do futures[i]:get() end
      end)
      -- The workers ignored the group's SIGINT: the same two still run.
      local now = pool:stats().pids
      print(e.kind, #now, now[1] == pids[1] and now[2] == pids[2])
      for i = 1, #futures do futures[i]:cancel() end
      pool:terminate()
      local ended = 0
      for i = 1, #futures do
        if not pcall(futures[i].get, futures[i], 10) then ended = ended + 1 end
      end
      print(ended)
      io.write(table.concat(pids, " "), "\n")
    ]])
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("ready\ninterrupted\t2\ttrue\n8\n", r.out:match("^.-\n.-\n.-\n"))
    local deadline = skein.now() + 5
    for pid in r.out:match("\n([%d ]+)\n$"):gmatch("%d+") do
      while running(pid) and skein.now() < deadline do skein.sleep(0.05) end
      assert.is_false(running(pid), "worker " .. pid .. " outlived the program")
    end
  end)

  it("uncaught, ends the program with 130 and one message", function()
    local r = ctrl_c([[
      print("ready") io.stdout:flush()
      skein.sleep(30)
    ]])
    assert.are.equal(130, r.code)
    assert.are.equal(cli.prefix .. "interrupted\n", r.err)
  end)

  it("a second Ctrl-C ends a program that caught the first, with no child left", function()
    local r = ctrl_c([[
      local p = skein.process(function() skein.sleep(30) end)
      local ok, e = pcall(function()
        print("ready") io.stdout:flush()
        p:join()
      end)
      print(e.kind, p.pid) io.stdout:flush()
      skein.sleep(30)                -- a cleanup that hangs
    ]], 2, 0.5)
    assert.are.equal(130, r.code, r.err)
    local pid = r.out:match("interrupted\t(%d+)")
    assert.is_string(pid, r.out)
    local deadline = skein.now() + 5
    while running(pid) and skein.now() < deadline do skein.sleep(0.05) end
    assert.is_false(running(pid))
  end)
end)
