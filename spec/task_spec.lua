-- Tasks: spawn, join, cancel, done, status, ids and names, and the way a
-- task's code meets coroutines and non-yieldable contexts.
local skein = require "skein"

local function errkind(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return skein.is_error(e) and e.kind or e, e
end

describe("skein.spawn", function()
  it("runs the function with its arguments and join returns every result", function()
    local t = skein.spawn(function(a, b) return a + b, nil, "three" end, 1, 2)
    local r = table.pack(t:join(1))
    assert.equal(3, r.n)
    assert.equal(3, r[1])
    assert.is_nil(r[2])
    assert.equal("three", r[3])
  end)

  it("returns nothing for a task that returns nothing", function()
    local t = skein.spawn(function() end)
    assert.equal(0, select("#", t:join(1)))
  end)

  it("starts tasks on the next turn, not inside spawn", function()
    local ran = false
    local t = skein.spawn(function() ran = true end)
    assert.is_false(ran)
    assert.equal("pending", t:status())
    t:join(1)
    assert.is_true(ran)
    assert.equal("done", t:status())
    assert.is_true(t:done())
  end)

  it("reports running while suspended", function()
    local t = skein.spawn(function() skein.sleep(0.05) end)
    skein.sleep(0.01)
    assert.equal("running", t:status())
    assert.is_false(t:done())
    t:join(1)
  end)

  it("accepts the table form with args, name and daemon", function()
    local t = skein.spawn{fn = function(...) return select("#", ...), ... end,
                          args = {n = 3, 1, nil, 3}, name = "worker-1"}
    assert.equal("worker-1", t.name)
    local n, a, b, c = t:join(1)
    assert.same({3, 1, nil, 3}, {n, a, b, c})
    assert.matches('skein.task %d+ "worker%-1"', tostring(t))
    local d = skein.spawn{fn = function() return "d" end, daemon = true}
    assert.equal("d", d:join(1))
  end)

  it("gives every task a distinct increasing id", function()
    local a, b = skein.spawn(function() end), skein.spawn(function() end)
    assert.is_true(b.id > a.id)
    a:join(1); b:join(1)
  end)

  it("accepts callable tables", function()
    local callable = setmetatable({}, {__call = function(_, x) return x * 2 end})
    assert.equal(42, skein.spawn(callable, 21):join(1))
  end)

  it("rejects what cannot be called, with a clear message", function()
    assert.error_matches(function() skein.spawn(42) end,
      "bad argument #1 to '[%w.]*spawn' %(function expected, got number%)")
    assert.error_matches(function() skein.spawn{fn = 42} end, "options.fn must be a function")
    assert.error_matches(function() skein.spawn{fn = print, args = 5} end, "options.args must be a table")
    assert.error_matches(function() skein.spawn{fn = print, name = {}} end, "options.name must be a string")
    assert.error_matches(function() skein.spawn({fn = print}, 1) end, "no arguments after an options table")
  end)

  it("lets tasks spawn tasks", function()
    local t = skein.spawn(function()
      local inner = skein.spawn(function() skein.sleep(0.01) return "inner" end)
      return inner:join() .. "+outer"
    end)
    assert.equal("inner+outer", t:join(1))
  end)

  it("runs thousands of tasks", function()
    local ts, sum = {}, 0
    for i = 1, 5000 do ts[i] = skein.spawn(function() skein.yield() return i end) end
    for i = 1, 5000 do sum = sum + ts[i]:join(5) end
    assert.equal(5000 * 5001 // 2, sum)
  end)

  it("keeps tasks nobody holds alive to their end, through waves that reuse their places", function()
    -- The worker holds each unfinished task by a slot of its own (tasks.c,
    -- anchor); slots freed in one order are handed out again in another.
    -- A task collected early, or two tasks given one slot, would show as a
    -- crash or as skein.current() naming some other task.
    local finished, wrong = 0, 0
    local function body(turns)
      local me = skein.current()
      for _ = 1, turns do
        skein.yield()
        if skein.current() ~= me then wrong = wrong + 1 end
      end
      collectgarbage()
      if skein.current() ~= me then wrong = wrong + 1 end
      finished = finished + 1
    end
    for wave = 1, 4 do
      -- Tasks that end in spawn order, in reverse, and interleaved.
      for i = 1, 300 do
        local turns = wave == 1 and 1 or wave == 2 and 301 - i or (i * 7) % 13
        skein.spawn(body, turns)
      end
      if wave % 2 == 0 then collectgarbage() end
      local keep = skein.spawn(function() skein.sleep(0.01) end)
      keep:join(10)
      local t0 = skein.now()
      while finished < 300 * wave and skein.now() - t0 < 10 do skein.sleep(0.001) end
      assert.equal(300 * wave, finished)
    end
    assert.equal(0, wrong)
  end)
end)

describe("task:join", function()
  it("raises the task's own error value, strings and tables alike", function()
    local t = skein.spawn(function() error("plain failure") end)
    local ok, e = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("plain failure", e)
    local obj = {code = 7}
    local t2 = skein.spawn(function() error(obj) end)
    local ok2, e2 = pcall(t2.join, t2)
    assert.is_false(ok2)
    assert.equal(obj, e2)
    local t3 = skein.spawn(function() error() end)
    local ok3, e3 = pcall(t3.join, t3)
    assert.is_false(ok3)
    assert.is_nil(e3)
    assert.equal("failed", t3:status())
  end)

  it("raises timeout when the task does not finish in time", function()
    local t = skein.spawn(function() skein.sleep(1) end)
    local started = skein.now()
    local kind, e = errkind(t.join, t, 0.05)
    assert.equal("timeout", kind)
    assert.matches("timed out", e.message)
    assert.is_true(skein.now() - started < 0.5)
    assert.equal("timeout", (errkind(t.join, t, 0)))
    t:cancel()
  end)

  it("rejects negative, NaN and non-number timeouts", function()
    local t = skein.spawn(function() end)
    assert.error_matches(function() t:join(-1) end, "timeout must not be negative")
    assert.error_matches(function() t:join(0 / 0) end, "timeout is NaN")
    assert.error_matches(function() t:join("soon") end, "number %(timeout in seconds%) or nil expected")
    assert.error_matches(function() skein.spawn(print).join(42) end, "skein.Task expected")
    t:join(1)
  end)

  it("refuses to let a task join itself", function()
    local t
    t = skein.spawn(function() return pcall(t.join, t) end)
    local ok, e = t:join(1)
    assert.is_false(ok)
    assert.matches("cannot join itself", e)
  end)

  it("can be called many times and by many tasks", function()
    local t = skein.spawn(function() skein.sleep(0.02) return "v" end)
    local joiners = {}
    for i = 1, 5 do joiners[i] = skein.spawn(function() return t:join() end) end
    for i = 1, 5 do assert.equal("v", joiners[i]:join(1)) end
    assert.equal("v", t:join())
    assert.equal("v", t:join())
  end)
end)

describe("task:cancel", function()
  it("cancels a task that never started: it never runs", function()
    local ran = false
    local t = skein.spawn(function() ran = true end)
    assert.is_true(t:cancel())
    assert.equal("cancelled", t:status())
    assert.equal("cancelled", (errkind(t.join, t)))
    skein.sleep(0.01)
    assert.is_false(ran)
  end)

  it("raises cancelled inside a suspended task and join reports it", function()
    local reached = false
    local t = skein.spawn(function() skein.sleep(10) reached = true end)
    skein.sleep(0.01)
    assert.is_true(t:cancel())
    local kind, e = errkind(t.join, t, 1)
    assert.equal("cancelled", kind)
    assert.matches("was cancelled", tostring(e))
    assert.equal("cancelled", t:status())
    assert.is_false(reached)
  end)

  it("is a no-op on a finished task", function()
    local t = skein.spawn(function() return 1 end)
    t:join(1)
    assert.is_false(t:cancel())
    assert.equal("done", t:status())
    assert.equal(1, t:join())
  end)

  it("is sticky: a swallowed cancel comes back at the next suspension", function()
    local log = {}
    local t = skein.spawn(function()
      local ok, e = pcall(skein.sleep, 10)
      log[#log + 1] = skein.is_error(e, "cancelled") and "first" or tostring(e)
      local ok2, e2 = pcall(skein.sleep, 0.01)
      log[#log + 1] = skein.is_error(e2, "cancelled") and "second" or "not cancelled"
      skein.yield()
      log[#log + 1] = "never"
    end)
    skein.sleep(0.01)
    t:cancel()
    assert.equal("cancelled", (errkind(t.join, t, 1)))
    assert.same({"first", "second"}, log)
  end)

  it("lets a task that swallows the cancel and returns without suspending finish", function()
    local t = skein.spawn(function()
      pcall(skein.sleep, 10)
      return "finished anyway"
    end)
    skein.sleep(0.01)
    t:cancel()
    assert.equal("finished anyway", t:join(1))
    assert.equal("done", t:status())
  end)

  it("closes to-be-closed variables of the cancelled task", function()
    local closed = false
    local t = skein.spawn(function()
      local guard <close> = setmetatable({}, {__close = function() closed = true end})
      skein.sleep(10)
    end)
    skein.sleep(0.01)
    t:cancel()
    pcall(t.join, t, 1)
    assert.is_true(closed)
  end)
end)

describe("task:error", function()
  it("returns the error and traceback of a failed task", function()
    local t = skein.spawn(function() error("bad thing") end)
    pcall(t.join, t)
    local e, tb = t:error()
    assert.matches("bad thing", e)
    assert.matches("stack traceback", tb)
    assert.is_nil(skein.spawn(function() end):error())
  end)

  -- A finished task keeps its outcome where its coroutine was (tasks.c):
  -- each kind of outcome must read back as it was made, and a task's name
  -- must survive its end.
  it("keeps every kind of outcome, and the name, after the task ends", function()
    local err = setmetatable({}, {__tostring = function() return "custom error" end})
    local failed = skein.spawn{fn = function() skein.yield() error(err) end, name = "f"}
    local none = skein.spawn{fn = function() skein.yield() end, name = "n"}
    local one = skein.spawn(function() skein.yield() return false end)
    local holes = skein.spawn(function() skein.yield() return nil, 2, nil end)
    local many = skein.spawn(function() skein.yield() return 1, "two", 3 end)
    local cancelled = skein.spawn{fn = function() skein.sleep(10) end, name = "c"}
    skein.sleep(0)
    cancelled:cancel()
    local ok, e = pcall(failed.join, failed, 5)
    assert.is_false(ok)
    assert.equal(err, e)                          -- the same object, not a copy
    local e2, tb = failed:error("an extra argument")
    assert.equal(err, e2)
    assert.matches("custom error", tb)
    assert.matches("stack traceback", tb)
    assert.equal("f", failed.name)
    assert.matches('"f" %(failed%)', tostring(failed))
    assert.equal(0, select("#", none:join(5)))
    assert.equal("n", none.name)
    assert.are.same({n = 1, false}, table.pack(one:join(5)))
    assert.are.same({n = 3, nil, 2, nil}, table.pack(holes:join(5)))
    assert.are.same({n = 3, 1, "two", 3}, table.pack(many:join(5)))
    assert.are.same({n = 3, 1, "two", 3}, table.pack(many:join(5)))   -- again
    assert.error_matches(function() cancelled:join(5) end, "cancelled")
    assert.equal("c", cancelled.name)
    assert.equal("cancelled", cancelled:status())
    -- The coroutines that ran them are reused by the next tasks, which
    -- start clean.
    local again = {}
    for i = 1, 20 do again[i] = skein.spawn(function(x) return x * 2, select("#", x) end, i) end
    for i = 1, 20 do
      local v, n = again[i]:join(5)
      assert.equal(2 * i, v)
      assert.equal(1, n)
    end
  end)
end)

describe("scheduling", function()
  it("round-robins tasks that yield", function()
    local log = {}
    local a = skein.spawn(function() for i = 1, 3 do log[#log + 1] = "a" .. i; skein.yield() end end)
    local b = skein.spawn(function() for i = 1, 3 do log[#log + 1] = "b" .. i; skein.yield() end end)
    a:join(1); b:join(1)
    assert.same({"a1", "b1", "a2", "b2", "a3", "b3"}, log)
  end)

  it("treats a bare coroutine.yield in a task like skein.yield", function()
    local log = {}
    local a = skein.spawn(function() log[#log + 1] = 1; coroutine.yield(); log[#log + 1] = 3 end)
    local b = skein.spawn(function() log[#log + 1] = 2 end)
    a:join(1); b:join(1)
    assert.same({1, 2, 3}, log)
  end)

  it("blocks correctly inside the user's own coroutines (generators)", function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do skein.sleep(0.001); coroutine.yield(i) end
    end)
    local t = skein.spawn(function() return gen() + gen() + gen() end)
    assert.equal(6, t:join(1))
  end)

  it("blocks in non-yieldable contexts (a sort comparator) by running the loop", function()
    local other_ran = false
    local t = skein.spawn(function()
      local list = {3, 1, 2}
      table.sort(list, function(x, y) skein.sleep(0.001) return x < y end)
      return table.concat(list, ",")
    end)
    local o = skein.spawn(function() other_ran = true end)
    assert.equal("1,2,3", t:join(1))
    o:join(1)
    assert.is_true(other_ran)
  end)

  it("joins from inside string.gsub callbacks", function()
    local worker = skein.spawn(function() skein.sleep(0.01) return "X" end)
    local s = ("a-b"):gsub("-", function() return worker:join(1) end)
    assert.equal("aXb", s)
  end)

  it("skein.current names the running task and is nil at the root", function()
    assert.is_nil(skein.current())
    local t
    t = skein.spawn(function() return skein.current() == t end)
    assert.is_true(t:join(1))
  end)

  it("reports a wait that can never end as a deadlock instead of hanging", function()
    local forever = skein.spawn(function() skein.sleep(math.huge) end)
    local kind, e = errkind(forever.join, forever)
    assert.equal("deadlock", kind)
    assert.matches("can never end", e.message)
    forever:cancel()
    assert.equal("cancelled", (errkind(forever.join, forever, 1)))
  end)
end)
