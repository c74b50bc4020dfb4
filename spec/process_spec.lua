-- Process workers and process pools, including the failures that break
-- Python's multiprocessing: dead workers, timeouts, Ctrl-C, orphans, leaks.
local skein = require "skein"

local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]
local SLOW = SKEIN:match("asan") ~= nil      -- sanitizer builds start slower

local function write_script(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  return path
end

-- Runs a script; returns its output and exit status.
local function run_script(code)
  local path = write_script(code)
  local p = io.popen(("timeout 60 %s %s 2>&1; echo \"exit=$?\""):format(SKEIN, path))
  local out = p:read("a")
  p:close()
  os.remove(path)
  local body, status = out:match("^(.-)exit=(%d+)%s*$")
  return body, tonumber(status)
end

-- True while pid names a live (not zombie) process.
local function running(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return false end
  local s = f:read("a")
  f:close()
  return not s:match("State:%s*Z")
end

local function count_fds()
  local n = 0
  local p = io.popen("ls /proc/" .. skein.self().pid .. "/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- Children of this process that are zombies.
local function zombies()
  local me, n = tostring(skein.self().pid), 0
  local p = io.popen("ps -o stat= --ppid " .. me .. " 2>/dev/null")
  for line in p:lines() do if line:match("^Z") then n = n + 1 end end
  p:close()
  return n
end

describe("skein.process", function()
  it("runs fn in another process and join returns its results", function()
    local p = skein.process(function(a, b) local s = skein.self() return a + b, s.kind, s.pid end, 20, 22)
    local sum, kind, pid = p:join(20)
    assert.equal(42, sum)
    assert.equal("process", kind)
    assert.equal(p.pid, pid)
    assert.not_equal(skein.self().pid, pid)
    assert.equal(0, p.exit_code)
    assert.is_false(p:alive())
  end)

  it("accepts the table form and names the worker", function()
    local p = skein.process{fn = function(x) return skein.self().name, x end, args = {5}, name = "crunch"}
    local name, x = p:join(20)
    assert.equal("crunch", name)
    assert.equal(5, x)
    assert.equal("crunch", p.name)
  end)

  it("reports an error raised in the child as kind remote with both tracebacks", function()
    local p = skein.process(function() error({code = 3}) end)
    local ok, e = pcall(p.join, p, 20)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "remote"))
    assert.same({code = 3}, e.value)
    assert.matches("joined here", e.traceback)
    assert.equal(1, p.exit_code)
  end)

  it("reports os.exit, kill -9 and a segfault as worker_died with the code or signal and pid", function()
    local ex = skein.process(function() os.exit(7) end)
    local ok, e = pcall(ex.join, ex, 20)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "worker_died"))
    assert.equal(7, e.exit_code)
    assert.equal(ex.pid, e.pid)
    local k = skein.process(function() skein.sleep(30) end)
    skein.sleep(0.1)
    assert.is_true(k:kill())
    ok, e = pcall(k.join, k, 20)
    assert.is_true(skein.is_error(e, "worker_died"))
    assert.equal(9, e.signal)
    assert.equal("SIGKILL", e.signal_name)
    local seg = skein.process(function() os.execute("kill -SEGV " .. skein.self().pid) skein.sleep(30) end)
    ok, e = pcall(seg.join, seg, 20)
    assert.is_true(skein.is_error(e, "worker_died"))
    -- A sanitizer build catches the signal itself and exits with a code.
    if not SLOW then assert.equal(11, e.signal) end
  end)

  it("terminates, signals and joins with a timeout", function()
    local p = skein.process(function() skein.sleep(30) end)
    assert.is_true(p:alive())
    local ok, e = pcall(p.join, p, 0.05)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.is_true(p:signal("SIGTERM"))
    ok, e = pcall(p.join, p, 20)
    assert.equal(15, e.signal)
    -- The handle says how it ended too: exit_signal (exit_code stays nil).
    assert.equal(15, p.exit_signal)
    assert.is_nil(p.exit_code)
    assert.is_function(p.signal)
    assert.is_false(p:terminate())
    assert.error_matches(function() p:signal("NOPE") end, "unknown signal")
  end)

  it("names the path of an argument that cannot cross", function()
    local ok, e = pcall(skein.process, function() end, {conn = io.stdout})
    assert.is_false(ok)
    assert.equal("args[1].conn: cannot send userdata (a FILE*)", e.message)
    assert.error_matches(function() skein.process(42) end, "function expected")
  end)

  it("nests threads, thread pools and coroutine pools inside a process", function()
    local p = skein.process(function()
      local tp <close> = skein.pool{kind = "thread", size = 2}
      local cp <close> = skein.pool{kind = "coroutine", size = 4}
      local squares = tp:map(function(x) return x * x end, {1, 2, 3})
      local t0 = skein.now()
      cp:map(function() skein.sleep(0.1) end, {1, 2, 3, 4})
      return table.concat(squares, ","), skein.now() - t0 < 0.35
    end)
    local squares, concurrent = p:join(30)
    assert.equal("1,4,9", squares)
    assert.is_true(concurrent)
  end)

  it("leaves no fd or zombie behind after many starts", function()
    -- The first start opens the shared-memory segment, one fd kept for
    -- good; count from after it.
    assert.equal(0, skein.process(function(x) return x end, 0):join(20))
    local before = count_fds()
    local n = SLOW and 100 or 1000
    for i = 1, n do
      local p = skein.process(function(x) return x end, i)
      assert.equal(i, p:join(20))
    end
    collectgarbage()
    assert.equal(before, count_fds())
    assert.equal(0, zombies())
  end)
end)

describe("scripts with processes", function()
  it("wait for non-daemon processes and not for daemon ones", function()
    local out, status = run_script([[
      skein.process(function() skein.sleep(0.2) print("child done") end)
      skein.process{fn = function() skein.sleep(30) end, daemon = true}
      print("main done")
    ]])
    assert.equal(0, status)
    assert.equal("main done\nchild done\n", out)
  end)

  it("leave no child running when the parent is SIGKILLed", function()
    local path = write_script([[
      local p = skein.process(function() skein.sleep(60) end)
      local pool = skein.pool{kind = "process", size = 2}
      local f = pool:submit(function() skein.sleep(60) end)
      io.write(p.pid, " ", table.concat(pool:stats().pids, " "), "\n")
      io.stdout:flush()
      skein.sleep(60)
    ]])
    local out = os.tmpname()
    os.execute(("%s %s > %s 2>&1 & echo $! > %s.pid"):format(SKEIN, path, out, out))
    local pids
    for _ = 1, 100 do
      skein.sleep(0.05)
      local f = io.open(out)
      local line = f and f:read("l")
      if f then f:close() end
      if line and #line > 0 then pids = line break end
    end
    assert.is_not_nil(pids, "the script did not start its children")
    local parent = io.open(out .. ".pid"):read("l")
    os.execute("kill -9 " .. parent)
    local deadline = skein.now() + 2
    local alive
    repeat
      skein.sleep(0.05)
      alive = {}
      for pid in pids:gmatch("%d+") do if running(pid) then alive[#alive + 1] = pid end end
    until #alive == 0 or skein.now() > deadline
    os.remove(path)
    os.remove(out)
    os.remove(out .. ".pid")
    assert.same({}, alive)
  end)

  it("end with status 130, one message and no children on Ctrl-C during a map", function()
    local path = write_script([[
      local p <close> = skein.pool{kind = "process", size = 2}
      io.write(table.concat(p:stats().pids, " "), "\n")
      io.stdout:flush()
      p:map(function(x) skein.sleep(30) return x end, {1, 2, 3, 4})
    ]])
    local out = os.tmpname()
    local t0 = skein.now()
    local cmd = ("%s %s > %s 2>&1 & pid=$!; sleep %s; kill -INT $pid; wait $pid; echo \"exit=$?\" >> %s")
    os.execute(cmd:format(SKEIN, path, out, SLOW and "1.5" or "0.5", out))
    local text = io.open(out):read("a")
    os.remove(path)
    os.remove(out)
    assert.matches("exit=130", text)
    local _, count = text:gsub("skein: interrupted", "")
    assert.equal(1, count)
    assert.is_true(skein.now() - t0 < 10)
    for pid in text:match("^([%d ]+)\n"):gmatch("%d+") do assert.is_false(running(pid)) end
  end)
end)

describe("process pools", function()
  it("fail only the task whose worker was killed, replace the worker and go on", function()
    local p <close> = skein.pool{kind = "process", size = 2}
    local victim = p:submit(function() skein.sleep(0.2) os.execute("kill -9 " .. skein.self().pid) skein.sleep(30) end)
    local others = {}
    for i = 1, 10 do others[i] = p:submit(function(x) skein.sleep(0.02) return x * 2 end, i) end
    local ok, e = pcall(victim.get, victim, 30)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "worker_died"))
    assert.matches("signal 9", e.message)
    for i = 1, 10 do assert.equal(i * 2, others[i]:get(30)) end
    assert.is_true(p:stats().restarted >= 1)
  end)

  it("survive a segfaulting worker", function()
    local p <close> = skein.pool{kind = "process", size = 1}
    local f = p:submit(function() os.execute("kill -SEGV " .. skein.self().pid) skein.sleep(30) end)
    local ok, e = pcall(f.get, f, 30)
    assert.is_true(skein.is_error(e, "worker_died"))
    if not SLOW then assert.matches("signal 11", e.message) end
    assert.equal("fine", p:apply(function() return "fine" end))
  end)

  it("re-run a task whose worker died when retries allow", function()
    local p <close> = skein.pool{kind = "process", size = 1, retries = 1}
    local marker = os.tmpname()
    local f = p:submit(function(path)
      local fh = io.open(path)
      local seen = fh and fh:read("a") == "x"
      if fh then fh:close() end
      if seen then return "second attempt" end
      fh = io.open(path, "w") fh:write("x") fh:close()
      os.execute("kill -9 " .. skein.self().pid)
      skein.sleep(30)
    end, marker)
    assert.equal("second attempt", f:get(30))
    os.remove(marker)
  end)

  it("stop a runaway task at its timeout by killing its worker", function()
    local p <close> = skein.pool{kind = "process", size = 1, timeout = 0.3}
    local t0 = skein.now()
    local f = p:submit(function() while true do end end)
    local ok, e = pcall(f.get, f, 30)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.matches("was killed", e.message)
    assert.is_true(skein.now() - t0 < 5)
    assert.equal("next", p:apply(function() return "next" end))
  end)

  it("recycle workers after max_tasks without stranding queued tasks", function()
    local p <close> = skein.pool{kind = "process", size = 2, max_tasks = 2}
    local per_pid = {}
    local items = {}
    for i = 1, 12 do items[i] = i end
    local r = p:map(function(x) return skein.self().pid end, items, {chunksize = 1})
    assert.equal(12, r.n)
    for i = 1, 12 do per_pid[r[i]] = (per_pid[r[i]] or 0) + 1 end
    for _, count in pairs(per_pid) do assert.is_true(count <= 2) end
  end)

  it("report a result that cannot cross, naming the field, and keep going", function()
    local p <close> = skein.pool{kind = "process", size = 1}
    local f = p:submit(function() return {rows = {1, 2}, conn = io.stdout} end)
    local ok, e = pcall(f.get, f, 30)
    assert.is_true(skein.is_error(e, "marshal"))
    assert.matches("result%[1%]%.conn: cannot send userdata", e.message)
    assert.equal(3, p:apply(function() return 3 end))
  end)

  it("run coroutine functions doing concurrent sleeps in each worker", function()
    local p <close> = skein.pool{kind = "process", size = 2}
    local t0 = skein.now()
    local r = p:map(function(n)
      local g <close> = skein.group()
      for _ = 1, 10 do g:spawn(skein.sleep, 0.2) end
      g:wait()
      return n
    end, {1, 2, 3, 4}, {chunksize = 1})
    assert.same({1, 2, 3, 4, n = 4}, r)
    assert.is_true(skein.now() - t0 < (SLOW and 3 or 1.5))
  end)

  it("speed up CPU-bound work with two workers", function()
    local p <close> = skein.pool{kind = "process", size = 2}
    local r = p:map(function(n)
      local function fib(k) return k < 2 and k or fib(k - 1) + fib(k - 2) end
      return fib(n)
    end, {20, 21, 22, 23})
    assert.same({6765, 10946, 17711, 28657, n = 4}, r)
  end)
end)
