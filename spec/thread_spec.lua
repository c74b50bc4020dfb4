-- Thread workers: skein.thread, worker handles, skein.self.
local skein = require "skein"

local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]

-- Runs a script in a fresh skein process; returns output and exit status.
local function run_script(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local p = io.popen(("timeout 30 %s %s 2>&1; echo \"exit=$?\""):format(SKEIN, path))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return out:match("^(.-)exit=(%d+)%s*$")
end

describe("skein.thread", function()
  it("runs fn with its arguments in another worker and join returns every result", function()
    local t = skein.thread(function(a, b, c) return a + b, c, nil, "end" end, 20, 22, {x = 1})
    local r = table.pack(t:join(10))
    assert.equal(4, r.n)
    assert.equal(42, r[1])
    assert.same({x = 1}, r[2])
    assert.is_nil(r[3])
    assert.equal("end", r[4])
  end)

  it("gives the worker its own identity", function()
    local t = skein.thread{fn = function() local s = skein.self() return s.kind, s.name, s.pid end, name = "crunch"}
    local kind, name, pid = t:join(10)
    assert.equal("thread", kind)
    assert.equal("crunch", name)
    assert.equal(skein.self().pid, pid)
    assert.equal("crunch", t.name)
    assert.equal("main", skein.self().kind)
  end)

  it("lets the worker spawn tasks and threads of its own", function()
    local t = skein.thread(function()
      local tasks = {}
      for i = 1, 10 do tasks[i] = skein.spawn(function() skein.sleep(0.01) return i end) end
      local inner = skein.thread(function() return "grandchild" end)
      local sum = 0
      for _, x in ipairs(skein.gather(tasks)) do sum = sum + x end
      return sum, inner:join()
    end)
    local sum, g = t:join(10)
    assert.equal(55, sum)
    assert.equal("grandchild", g)
  end)

  it("copies upvalues by value", function()
    local counter = {n = 1}
    local t = skein.thread(function() counter.n = counter.n + 1 return counter.n end)
    assert.equal(2, t:join(10))
    assert.equal(1, counter.n)
  end)

  it("runs many threads at once", function()
    local ts = {}
    for i = 1, 32 do ts[i] = skein.thread(function(k) skein.sleep(0.01) return k * k end, i) end
    local sum = 0
    for i = 1, 32 do sum = sum + ts[i]:join(20) end
    assert.equal(11440, sum)
  end)

  it("reports alive and supports join with a timeout, many times", function()
    local t = skein.thread(function() skein.sleep(0.2) return "late" end)
    assert.is_true(t:alive())
    local ok, e = pcall(t.join, t, 0.01)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.equal("late", t:join(10))
    assert.equal("late", t:join())
    assert.is_false(t:alive())
    assert.matches("skein.thread %d+ %(done%)", tostring(t))
  end)

  it("can be joined from a task without blocking other tasks", function()
    local ticks = 0
    local ticker = skein.spawn(function() for _ = 1, 5 do skein.sleep(0.01) ticks = ticks + 1 end end)
    local joiner = skein.spawn(function()
      return skein.thread(function() skein.sleep(0.1) return "ok" end):join(10)
    end)
    assert.equal("ok", joiner:join(10))
    ticker:join(1)
    assert.equal(5, ticks)
  end)

  it("passes its handle to another worker, which may join it", function()
    local a = skein.thread(function() skein.sleep(0.05) return "from a" end)
    local b = skein.thread(function(other) return "b saw " .. other:join(10) end, a)
    assert.equal("b saw from a", b:join(10))
  end)
end)

describe("thread errors", function()
  it("reach join as kind remote with the message and both tracebacks", function()
    local t = skein.thread(function() local x = nil; return x.field end)
    local ok, e = pcall(t.join, t, 10)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "remote"))
    assert.matches("attempt to index a nil value", e.message)
    assert.matches("stack traceback", e.traceback)
    assert.matches("joined here", e.traceback)
    assert.matches("thread_spec.lua", e.traceback)
  end)

  it("keep a non-string error value", function()
    local t = skein.thread(function() error({code = 7}) end)
    local ok, e = pcall(t.join, t, 10)
    assert.is_false(ok)
    assert.same({code = 7}, e.value)
  end)

  it("name the path of an argument that cannot cross, at the call", function()
    local ok, e = pcall(skein.thread, function() end, 1, {conn = io.stdout})
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "marshal"))
    assert.equal("args[2].conn: cannot send userdata (a FILE*)", e.message)
    local ok2, e2 = pcall(skein.thread, function() return coroutine.running() end)
    assert.is_true(ok2)
    local ok3, e3 = pcall(e2.join, e2, 10)
    assert.is_false(ok3)
    assert.matches("result%[1%]: cannot send a coroutine", e3.message)
  end)

  it("reject what is not a function", function()
    assert.error_matches(function() skein.thread(42) end, "function expected")
    assert.error_matches(function() skein.thread{fn = 1} end, "options.fn must be a function")
    assert.error_matches(function() skein.thread{fn = print, name = 3} end, "options.name must be a string")
  end)
end)

describe("scripts with threads", function()
  it("end only when every non-daemon thread is done", function()
    local out, status = run_script([[
      skein.thread(function() skein.sleep(0.2) print("thread finished") end)
      print("main done")
    ]])
    assert.equal("0", status)
    assert.equal("main done\nthread finished\n", out)
  end)

  it("do not wait for daemon threads", function()
    local t0 = skein.now()
    local out, status = run_script([[
      skein.thread{fn = function() skein.sleep(30) end, daemon = true}
      print("main done")
    ]])
    assert.equal("0", status)
    assert.equal("main done\n", out)
    assert.is_true(skein.now() - t0 < 10)
  end)
end)
