-- Synchronisation objects: lock, rlock, semaphore, bounded semaphore,
-- condition, barrier (and event), between tasks of one worker and between
-- thread workers, with timeouts, cancellation and bad input. Every wait is
-- bounded so that a hang fails fast.
local skein = require "skein"

local function errkind(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return skein.is_error(e) and e.kind or tostring(e), e
end

local function errmsg(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

-- Runs every function as a task and returns their tasks.
local function spawn_all(n, fn, ...)
  local ts = {}
  for i = 1, n do ts[i] = skein.spawn(fn, i, ...) end
  return ts
end

local function join_all(ts, timeout)
  local r = {}
  for i, t in ipairs(ts) do r[i] = t:join(timeout or 5) end
  return r
end

describe("skein.lock", function()
  it("acquires, reports locked and releases", function()
    local lk = skein.lock()
    assert.is_false(lk:locked())
    assert.is_true(lk:acquire())
    assert.is_true(lk:locked())
    lk:release()
    assert.is_false(lk:locked())
  end)

  it("times out when another task holds it, and 0 does not block", function()
    local lk = skein.lock()
    local holder = skein.spawn(function() lk:acquire(); skein.sleep(0.2); lk:release() end)
    skein.sleep(0.02)
    assert.is_false(lk:acquire(0))
    local t0 = skein.now()
    assert.is_false(lk:acquire(0.05))
    assert.is_true(skein.now() - t0 >= 0.04)
    assert.is_true(lk:acquire(2))
    lk:release()
    holder:join(1)
  end)

  it("excludes tasks that yield inside the critical section", function()
    local lk, counter = skein.lock(), 0
    local ts = spawn_all(8, function()
      for _ = 1, 20 do
        lk:acquire(5)
        local v = counter
        skein.yield()
        counter = v + 1
        lk:release()
      end
    end)
    join_all(ts)
    assert.equal(160, counter)
  end)

  it("refuses to release a lock that is not held, or held by another task", function()
    local lk = skein.lock()
    assert.matches("not held", errmsg(lk.release, lk))
    lk:acquire()
    local t = skein.spawn(function() return pcall(lk.release, lk) end)
    local ok, e = t:join(1)
    assert.is_false(ok)
    assert.matches("held by another task", tostring(e))
    lk:release()
  end)

  it("reports a self-deadlock instead of hanging, and times out with a timeout", function()
    local lk = skein.lock()
    lk:acquire()
    assert.matches("deadlock", errmsg(lk.acquire, lk))
    assert.is_false(lk:acquire(0.01))
    lk:release()
  end)

  it("hold() gives a to-be-closed guard that releases at the end of the scope", function()
    local lk = skein.lock()
    do
      local g <close> = lk:hold()
      assert.is_true(lk:locked())
      assert.matches("skein.guard: .* %(held%)", tostring(g))
    end
    assert.is_false(lk:locked())
    local ok = pcall(function()
      local g <close> = lk:hold(1)
      error("inside")
    end)
    assert.is_false(ok)
    assert.is_false(lk:locked())
  end)

  it("a guard released early is not released twice", function()
    local lk = skein.lock()
    do
      local g <close> = lk:hold()
      g:release()
      assert.is_false(lk:locked())
      assert.matches("released", tostring(g))
    end
    assert.is_false(lk:locked())
  end)

  it("hold(timeout) raises kind timeout when it cannot acquire", function()
    local lk = skein.lock()
    local holder = skein.spawn(function() lk:acquire(); skein.sleep(0.2); lk:release() end)
    skein.sleep(0.02)
    assert.equal("timeout", errkind(lk.hold, lk, 0.02))
    holder:join(1)
  end)

  it("a task that fails inside a hold scope releases the lock", function()
    local lk = skein.lock()
    local t = skein.spawn(function()
      local g <close> = lk:hold()
      skein.sleep(0.01)
      error("failed while holding")
    end)
    assert.matches("failed while holding", errmsg(t.join, t, 1))
    assert.is_false(lk:locked())
    assert.is_true(lk:acquire(0))
    lk:release()
  end)

  it("with(fn, ...) returns fn's results and releases on success", function()
    local lk = skein.lock()
    local a, b = lk:with(function(x, y)
      assert.is_true(lk:locked())
      skein.sleep(0.01)
      return x + y, "two"
    end, 1, 2)
    assert.equal(3, a)
    assert.equal("two", b)
    assert.is_false(lk:locked())
  end)

  it("with(fn) releases and re-raises fn's error value unchanged", function()
    local lk = skein.lock()
    local marker = {}
    local ok, e = pcall(lk.with, lk, function() error(marker) end)
    assert.is_false(ok)
    assert.equal(marker, e)
    assert.is_false(lk:locked())
    assert.matches("function expected", errmsg(lk.with, lk, 42))
    assert.is_false(lk:locked())
  end)

  it("with() releases when the task running it is cancelled", function()
    local lk = skein.lock()
    local t = skein.spawn(function() lk:with(function() skein.sleep(5) end) end)
    skein.sleep(0.02)
    assert.is_true(lk:locked())
    t:cancel()
    assert.equal("cancelled", errkind(t.join, t, 1))
    assert.is_false(lk:locked())
  end)

  it("a cancelled waiter leaves the lock usable by the next waiter", function()
    local lk = skein.lock()
    lk:acquire()
    local a = skein.spawn(function() lk:acquire(); lk:release() end)
    local b = skein.spawn(function() local ok = lk:acquire(2); if ok then lk:release() end; return ok end)
    skein.sleep(0.02)
    a:cancel()
    assert.equal("cancelled", errkind(a.join, a, 1))
    lk:release()
    assert.is_true(b:join(3))
  end)

  it("a waiter woken by release and then cancelled hands the lock on", function()
    local lk = skein.lock()
    lk:acquire()
    local a = skein.spawn(function() lk:acquire(); return "a" end)
    local b = skein.spawn(function() local ok = lk:acquire(2); if ok then lk:release() end; return ok end)
    skein.sleep(0.02)
    lk:release()  -- picks a ...
    a:cancel()    -- ... which leaves before taking it
    assert.equal("cancelled", errkind(a.join, a, 1))
    local t0 = skein.now()
    assert.is_true(b:join(3))
    assert.is_true(skein.now() - t0 < 1)
    assert.is_false(lk:locked())
  end)

  it("honours skein.timeout scopes while waiting", function()
    local lk = skein.lock()
    local holder = skein.spawn(function() lk:acquire(); skein.sleep(0.3); lk:release() end)
    skein.sleep(0.01)
    assert.equal("timeout", errkind(skein.timeout, 0.03, function() return lk:acquire() end))
    holder:join(1)
  end)

  it("rejects negative and NaN timeouts", function()
    local lk = skein.lock()
    assert.matches("negative", errmsg(lk.acquire, lk, -1))
    assert.matches("NaN", errmsg(lk.acquire, lk, 0 / 0))
    assert.matches("number", errmsg(lk.acquire, lk, "soon"))
    assert.matches("negative", errmsg(lk.hold, lk, -1))
    assert.is_false(lk:locked())
  end)

  it("can be waited on with skein.select", function()
    local lk = skein.lock()
    lk:acquire()
    local t = skein.spawn(function() return skein.select({lk}, 2) end)
    skein.sleep(0.02)
    lk:release()
    assert.equal(1, t:join(3))
    assert.is_true(lk:locked())
  end)

  it("has a readable tostring", function()
    local lk = skein.lock()
    assert.matches("^skein.lock: .* %(unlocked%)$", tostring(lk))
    lk:acquire()
    assert.matches("^skein.lock: .* %(locked%)$", tostring(lk))
    lk:release()
  end)

  it("gives 4 threads x 1000 increments of a shared counter no lost update", function()
    -- get then set is not atomic: only the lock keeps updates from being
    -- lost (without it this loses about a quarter of them)
    local num, lk, start = skein.shared.value(0), skein.lock(), skein.barrier(4)
    local function bump(num, lk, start, n)
      start:wait(30)  -- all four run at once
      for _ = 1, n do
        assert(lk:acquire(30), "lock not acquired in 30 s")
        num:set(num:get() + 1)
        lk:release()
      end
      return n
    end
    local ts = {}
    for i = 1, 4 do ts[i] = skein.thread(bump, num, lk, start, 1000) end
    for i = 1, 4 do assert.equal(1000, ts[i]:join(120)) end
    assert.equal(4000, num:get())
  end)

  it("wakes a thread waiting for a lock that the main worker releases", function()
    local lk, ready = skein.lock(), skein.event()
    lk:acquire()
    local th = skein.thread(function(lk, ready)
      local skein = require "skein"
      local t0 = skein.now()
      ready:set()                  -- t0 is before the release, however late this thread started
      local ok = lk:acquire(5)
      lk:release()
      return ok, skein.now() - t0
    end, lk, ready)
    assert.is_true(ready:wait(10))
    skein.sleep(0.05)
    lk:release()
    local ok, waited = th:join(10)
    assert.is_true(ok)
    assert.is_true(waited >= 0.02)
  end)

  it("a waiter left behind by a closed thread does not swallow a release", function()
    local lk = skein.lock()
    lk:acquire()
    local th = skein.thread(function(lk)
      local skein = require "skein"
      skein.spawn{fn = function() lk:acquire() end, daemon = true}
      skein.sleep(0.02)  -- its daemon task now waits; the thread then ends
      return true
    end, lk)
    assert.is_true(th:join(10))
    local b = skein.spawn(function() local ok = lk:acquire(5); if ok then lk:release() end; return ok end)
    skein.sleep(0.02)
    lk:release()
    assert.is_true(b:join(1))
  end)

  it("times out in a thread while the main worker holds it", function()
    local lk = skein.lock()
    lk:acquire()
    local th = skein.thread(function(lk) return lk:acquire(0.05), lk:locked() end, lk)
    local ok, locked = th:join(10)
    assert.is_false(ok)
    assert.is_true(locked)
    lk:release()
  end)
end)

describe("skein.rlock", function()
  it("re-enters in the same task and needs as many releases", function()
    local lk = skein.rlock()
    lk:acquire(); lk:acquire(1)
    assert.matches("locked x2", tostring(lk))
    lk:release()
    assert.is_true(lk:locked())
    lk:release()
    assert.is_false(lk:locked())
    assert.matches("not held", errmsg(lk.release, lk))
  end)

  it("is not re-entrant across tasks", function()
    local lk = skein.rlock()
    lk:acquire()
    local t = skein.spawn(function() return lk:acquire(0.02) end)
    assert.is_false(t:join(1))
    lk:release()
  end)

  it("nests with() and hold()", function()
    local lk = skein.rlock()
    local r = lk:with(function()
      local g <close> = lk:hold()
      return lk:with(function() return tostring(lk) end)
    end)
    assert.matches("locked x3", r)
    assert.is_false(lk:locked())
  end)

  it("is owned per task, also across threads", function()
    -- Events order the two sides (a sleep did not under load: the thread
    -- may take longer than any fixed time to start).
    local lk, held, go = skein.rlock(), skein.event(), skein.event()
    local th = skein.thread(function(lk, held, go)
      lk:acquire(); lk:acquire()
      held:set()
      go:wait(10)
      lk:release(); lk:release()
      return true
    end, lk, held, go)
    assert.is_true(held:wait(10))
    assert.is_false(lk:acquire(0))
    assert.matches("held by another task", errmsg(lk.release, lk))
    go:set()
    assert.is_true(th:join(10))
    assert.is_true(lk:acquire(1))
    lk:release()
  end)

  it("has a readable tostring", function()
    assert.matches("^skein.rlock: .* %(unlocked%)$", tostring(skein.rlock()))
  end)
end)

describe("skein.semaphore", function()
  it("counts acquires and releases, defaulting to 1", function()
    local s = skein.semaphore()
    assert.equal(1, s:value())
    assert.is_true(s:acquire())
    assert.equal(0, s:value())
    assert.is_false(s:acquire(0))
    s:release(3)
    assert.equal(3, s:value())
    assert.equal(5, skein.semaphore(5):value())
    assert.equal(0, skein.semaphore(0):value())
  end)

  it("rejects a bad initial value or release count", function()
    assert.matches("non%-negative integer expected, got %-1", errmsg(skein.semaphore, -1))
    assert.matches("non%-negative integer expected, got 1.5", errmsg(skein.semaphore, 1.5))
    assert.matches("non%-negative integer expected, got string", errmsg(skein.semaphore, "2"))
    assert.matches("non%-negative integer", errmsg(skein.bounded_semaphore, -3))
    local s = skein.semaphore(1)
    assert.matches("positive integer expected, got 0", errmsg(s.release, s, 0))
    assert.matches("positive integer expected", errmsg(s.release, s, -2))
    assert.equal(1, s:value())
  end)

  it("times out, and rejects negative and NaN timeouts", function()
    local s = skein.semaphore(0)
    local t0 = skein.now()
    assert.is_false(s:acquire(0.03))
    assert.is_true(skein.now() - t0 >= 0.025)
    assert.matches("negative", errmsg(s.acquire, s, -0.5))
    assert.matches("NaN", errmsg(s.acquire, s, 0 / 0))
  end)

  it("release(n) wakes n waiting tasks", function()
    local s = skein.semaphore(0)
    local ts = spawn_all(3, function() return s:acquire(2) end)
    skein.sleep(0.02)
    s:release(2)
    assert.is_true(ts[1]:join(1))
    assert.is_true(ts[2]:join(1))
    assert.is_false(ts[3]:done())
    s:release()
    assert.is_true(ts[3]:join(1))
    assert.equal(0, s:value())
  end)

  it("limits how many tasks run at once", function()
    local s, active, peak = skein.semaphore(3), 0, 0
    local ts = spawn_all(10, function()
      assert(s:acquire(5))
      active = active + 1
      if active > peak then peak = active end
      skein.sleep(0.01)
      active = active - 1
      s:release()
    end)
    join_all(ts)
    assert.equal(3, peak)
    assert.equal(3, s:value())
  end)

  it("hold() and with() release what they took", function()
    local s = skein.semaphore(2)
    do
      local g <close> = s:hold()
      assert.equal(1, s:value())
    end
    assert.equal(2, s:value())
    assert.equal("r", s:with(function() assert.equal(1, s:value()); return "r" end))
    assert.equal(2, s:value())
    pcall(s.with, s, function() error("x") end)
    assert.equal(2, s:value())
    local z = skein.semaphore(0)
    assert.equal("timeout", errkind(z.hold, z, 0.01))
  end)

  it("a cancelled waiter leaves the semaphore usable", function()
    local s = skein.semaphore(0)
    local a = skein.spawn(function() return s:acquire(5) end)
    local b = skein.spawn(function() return s:acquire(2) end)
    skein.sleep(0.02)
    s:release()  -- picks a ...
    a:cancel()   -- ... which leaves without taking it: b gets it
    assert.equal("cancelled", errkind(a.join, a, 1))
    assert.is_true(b:join(3))
    assert.equal(0, s:value())
  end)

  it("can be waited on with skein.select", function()
    local s = skein.semaphore(0)
    skein.spawn(function() skein.sleep(0.02); s:release() end)
    local i, v = skein.select({s}, 2)
    assert.equal(1, i)
    assert.is_true(v)
    assert.equal(0, s:value())
    assert.is_nil(skein.select({s}, 0.02))
  end)

  it("a select that takes another item hands its wake on", function()
    local s, ev = skein.semaphore(0), skein.event()
    local sel = skein.spawn(function() return skein.select({ev, s}, 2) end)
    local b = skein.spawn(function() return s:acquire(2) end)
    skein.sleep(0.02)
    ev:set()
    s:release()
    assert.equal(1, sel:join(1))
    assert.is_true(b:join(3))
  end)

  it("limits concurrency across threads", function()
    local limit, inside = skein.semaphore(2), skein.semaphore(0)
    local function work(limit, inside)
      local skein = require "skein"
      local peak = 0
      for _ = 1, 20 do
        assert(limit:acquire(10))
        inside:release()
        local v = inside:value()
        if v > peak then peak = v end
        skein.sleep(0.002)
        assert(inside:acquire(0))
        limit:release()
      end
      return peak
    end
    local ts, peak = {}, 0
    for i = 1, 4 do ts[i] = skein.thread(work, limit, inside) end
    for i = 1, 4 do peak = math.max(peak, ts[i]:join(30)) end
    assert.equal(2, peak)
    assert.equal(2, limit:value())
    assert.equal(0, inside:value())
  end)

  it("has a readable tostring", function()
    assert.matches("^skein.semaphore: .* %(value 4%)$", tostring(skein.semaphore(4)))
  end)
end)

describe("skein.bounded_semaphore", function()
  it("raises when released above its initial value", function()
    local s = skein.bounded_semaphore(2)
    assert.matches("released too many times", errmsg(s.release, s))
    s:acquire(); s:acquire()
    s:release(2)
    assert.matches("released too many times", errmsg(s.release, s))
    assert.equal(2, s:value())
    assert.matches("^skein.bounded_semaphore: .* %(value 2 of 2%)$", tostring(s))
  end)

  it("a guard closed after an extra release reports it", function()
    local s = skein.bounded_semaphore(1)
    local ok, e = pcall(function()
      local g <close> = s:hold()
      s:release()
    end)
    assert.is_false(ok)
    assert.matches("released too many times", tostring(e))
    assert.equal(1, s:value())
  end)
end)

describe("skein.condition", function()
  it("uses an rlock by default and delegates acquire and release", function()
    local cv = skein.condition()
    assert.is_true(cv:acquire())
    assert.is_true(cv:acquire(1))
    cv:release(); cv:release()
    assert.matches("not held", errmsg(cv.release, cv))
    assert.matches("^skein.condition: .* %(0 waiting%)$", tostring(cv))
    assert.matches("skein.lock or skein.rlock", errmsg(skein.condition, {}))
  end)

  it("refuses wait, wait_for and notify without holding its lock", function()
    local cv = skein.condition()
    assert.matches("without holding its lock", errmsg(cv.wait, cv, 0.01))
    assert.matches("without holding its lock", errmsg(cv.wait_for, cv, function() return true end, 0.01))
    assert.matches("without holding its lock", errmsg(cv.notify, cv))
    assert.matches("without holding its lock", errmsg(cv.notify_all, cv))
    local t = skein.spawn(function() cv:acquire(); skein.sleep(0.1); cv:release() end)
    skein.sleep(0.02)
    assert.matches("without holding its lock", errmsg(cv.notify, cv))
    t:join(1)
  end)

  it("rejects bad timeouts and notify counts before releasing anything", function()
    local cv = skein.condition()
    cv:acquire()
    assert.matches("negative", errmsg(cv.wait, cv, -1))
    assert.matches("NaN", errmsg(cv.wait, cv, 0 / 0))
    assert.matches("negative", errmsg(cv.wait_for, cv, function() end, -1))
    assert.matches("function expected", errmsg(cv.wait_for, cv, nil, 1))
    assert.matches("non%-negative integer", errmsg(cv.notify, cv, -1))
    cv:release()
    assert.matches("not held", errmsg(cv.release, cv))
  end)

  it("wait times out with false and holds the lock again", function()
    local cv = skein.condition()
    cv:acquire()
    local t0 = skein.now()
    assert.is_false(cv:wait(0.03))
    assert.is_true(skein.now() - t0 >= 0.025)
    cv:release()
    assert.matches("not held", errmsg(cv.release, cv))
  end)

  it("releases its lock while waiting and restores every rlock level", function()
    local lk = skein.rlock()
    local cv = skein.condition(lk)
    local t = skein.spawn(function()
      lk:acquire(); lk:acquire()
      local r = cv:wait(2)
      local s = tostring(lk)
      lk:release(); lk:release()
      return r, s
    end)
    skein.sleep(0.02)
    assert.is_false(lk:locked())
    cv:with(function() cv:notify() end)
    local r, s = t:join(3)
    assert.is_true(r)
    assert.matches("locked x2", s)
    assert.is_false(lk:locked())
  end)

  it("works over a plain lock", function()
    local lk = skein.lock()
    local cv = skein.condition(lk)
    local t = skein.spawn(function() return cv:with(function() return cv:wait(2) end) end)
    skein.sleep(0.02)
    lk:with(function() cv:notify() end)
    assert.is_true(t:join(3))
  end)

  it("notify wakes one waiter, notify(n) n, notify_all the rest", function()
    local cv, woken = skein.condition(), 0
    local ts = spawn_all(5, function()
      return cv:with(function()
        local r = cv:wait(3)
        if r then woken = woken + 1 end
        return r
      end)
    end)
    skein.sleep(0.02)
    assert.matches("%(5 waiting%)", tostring(cv))
    cv:with(function() cv:notify() end)
    skein.sleep(0.02)
    assert.equal(1, woken)
    cv:with(function() cv:notify(2) end)
    skein.sleep(0.02)
    assert.equal(3, woken)
    cv:with(function() cv:notify(0) end)
    skein.sleep(0.02)
    assert.equal(3, woken)
    cv:with(function() cv:notify_all() end)
    for _, r in ipairs(join_all(ts)) do assert.is_true(r) end
    assert.equal(5, woken)
  end)

  it("wait_for returns the predicate's value, or its last value on timeout", function()
    local cv, items = skein.condition(), {}
    assert.equal("now", cv:with(function() return cv:wait_for(function() return "now" end) end))
    local t = skein.spawn(function()
      return cv:with(function() return cv:wait_for(function() return items[1] end, 3) end)
    end)
    skein.sleep(0.02)
    cv:with(function() cv:notify() end)  -- woken, predicate still false: waits on
    skein.sleep(0.02)
    assert.is_false(t:done())
    cv:with(function() items[1] = "item"; cv:notify() end)
    assert.equal("item", t:join(3))
    local t0 = skein.now()
    assert.is_false(cv:with(function() return cv:wait_for(function() return false end, 0.03) end))
    assert.is_true(skein.now() - t0 >= 0.025)
  end)

  it("serves a producer and consumers between tasks", function()
    local cv, buf, got = skein.condition(), {}, {}
    local consumers = spawn_all(3, function()
      local mine = 0
      while true do
        local v = cv:with(function()
          assert(cv:wait_for(function() return #buf > 0 end, 5), "consumer timed out")
          return table.remove(buf, 1)
        end)
        if v == "stop" then return mine end
        got[#got + 1] = v
        mine = mine + 1
      end
    end)
    for i = 1, 30 do
      cv:with(function() buf[#buf + 1] = i; cv:notify() end)
      if i % 7 == 0 then skein.sleep(0.001) end
    end
    cv:with(function() for _ = 1, 3 do buf[#buf + 1] = "stop" end; cv:notify_all() end)
    local total = 0
    for _, n in ipairs(join_all(consumers)) do total = total + n end
    assert.equal(30, total)
    table.sort(got)
    for i = 1, 30 do assert.equal(i, got[i]) end
  end)

  it("a cancelled waiter re-holds the lock before the error reaches it", function()
    local cv = skein.condition()
    local t = skein.spawn(function()
      cv:acquire()
      local ok, e = pcall(cv.wait, cv, 5)
      local held = pcall(cv.release, cv)
      return ok, skein.is_error(e, "cancelled"), held
    end)
    skein.sleep(0.02)
    cv:acquire()   -- the waiter cannot take the lock back yet ...
    t:cancel()
    skein.sleep(0.05)
    assert.is_false(t:done())   -- ... so its error waits too
    cv:release()
    local ok, cancelled, held = t:join(2)
    assert.is_false(ok)
    assert.is_true(cancelled)
    assert.is_true(held)
    assert.is_true(cv:acquire(0))
    cv:release()
  end)

  it("a skein.timeout scope ends a wait with the lock held again", function()
    local cv = skein.condition()
    local t = skein.spawn(function()
      cv:acquire()
      local ok, e = pcall(skein.timeout, 0.03, function() return cv:wait() end)
      local held = pcall(cv.release, cv)
      return ok, skein.is_error(e, "timeout"), held
    end)
    local ok, timed_out, held = t:join(2)
    assert.is_false(ok)
    assert.is_true(timed_out)
    assert.is_true(held)
  end)

  it("a notified waiter that is cancelled passes the notification on", function()
    local cv = skein.condition()
    local a = skein.spawn(function() return cv:with(function() return cv:wait(5) end) end)
    local b = skein.spawn(function() return cv:with(function() return cv:wait(2) end) end)
    skein.sleep(0.02)
    cv:with(function() cv:notify(1) end)  -- picks a ...
    a:cancel()                            -- ... which leaves: b is notified
    assert.equal("cancelled", errkind(a.join, a, 1))
    local t0 = skein.now()
    assert.is_true(b:join(3))
    assert.is_true(skein.now() - t0 < 1)
  end)

  it("a cancelled waiter does not wedge the condition", function()
    local cv = skein.condition()
    local a = skein.spawn(function() return cv:with(function() return cv:wait(5) end) end)
    local b = skein.spawn(function() return cv:with(function() return cv:wait(2) end) end)
    skein.sleep(0.02)
    a:cancel()
    assert.equal("cancelled", errkind(a.join, a, 1))
    cv:with(function() cv:notify() end)
    assert.is_true(b:join(3))
  end)

  it("serves a producer thread and consumer threads", function()
    -- a FIFO in a shared table (items at head..tail-1), guarded by cv's lock
    local buf = skein.shared.table{head = 1, tail = 1}
    local cv = skein.condition()
    local function consumer(cv, buf)
      local function pop()
        local h = buf:get("head")
        if h == buf:get("tail") then return nil end
        local v = buf:get(h)
        buf:set(h, nil)
        buf:set("head", h + 1)
        return v
      end
      local got = {}
      while true do
        local v = cv:with(function()
          local v
          assert(cv:wait_for(function() v = pop(); return v end, 20), "consumer timed out")
          return v
        end)
        if v == "stop" then return table.concat(got, ",") end
        got[#got + 1] = v
      end
    end
    local function producer(cv, buf, n, consumers)
      local skein = require "skein"
      local function push(v)
        local t = buf:get("tail")
        buf:set(t, v)
        buf:set("tail", t + 1)
      end
      for i = 1, n do
        cv:with(function() push(i); cv:notify() end)
        if i % 5 == 0 then skein.sleep(0.001) end
      end
      cv:with(function()
        for _ = 1, consumers do push("stop") end
        cv:notify_all()
      end)
      return true
    end
    local cs = {skein.thread(consumer, cv, buf), skein.thread(consumer, cv, buf)}
    local p = skein.thread(producer, cv, buf, 40, 2)
    assert.is_true(p:join(60))
    local all = {}
    for _, c in ipairs(cs) do
      for v in c:join(60):gmatch("%d+") do all[#all + 1] = tonumber(v) end
    end
    table.sort(all)
    assert.equal(40, #all)
    for i = 1, 40 do assert.equal(i, all[i]) end
    assert.equal(buf.head, buf.tail)
  end)

  it("wakes a thread waiting on it when a task notifies", function()
    local cv = skein.condition()
    local started = skein.event()
    local th = skein.thread(function(cv, started)
      return cv:with(function()
        started:set()
        return cv:wait(10)
      end)
    end, cv, started)
    assert.is_true(started:wait(10))
    cv:with(function() cv:notify() end)  -- the thread holds the lock until it waits
    assert.is_true(th:join(10))
  end)
end)

describe("skein.barrier", function()
  it("rejects a bad number of parties or action", function()
    assert.matches("positive integer %(the number of parties%) expected, got 0", errmsg(skein.barrier, 0))
    assert.matches("positive integer", errmsg(skein.barrier, -2))
    assert.matches("positive integer", errmsg(skein.barrier, 2.5))
    assert.matches("positive integer", errmsg(skein.barrier))
    assert.matches("function expected", errmsg(skein.barrier, 2, "not a function"))
  end)

  it("exposes parties, n_waiting and broken", function()
    local b = skein.barrier(3)
    assert.equal(3, b.parties)
    assert.equal(0, b.n_waiting)
    assert.is_false(b.broken)
    local t = skein.spawn(function() return b:wait(2) end)
    skein.sleep(0.02)
    assert.equal(1, b.n_waiting)
    assert.matches("^skein.barrier: .* %(1 of 3 waiting%)$", tostring(b))
    b:abort()
    assert.equal("broken", errkind(t.join, t, 1))
  end)

  it("returns distinct indices to the parties of each generation", function()
    local b = skein.barrier(3)
    local ts = spawn_all(3, function()
      local r = {}
      for g = 1, 4 do r[g] = b:wait(3) end
      return r
    end)
    local rs = join_all(ts)
    for g = 1, 4 do
      local seen = {}
      for i = 1, 3 do seen[#seen + 1] = rs[i][g] end
      table.sort(seen)
      assert.same({0, 1, 2}, seen)
    end
  end)

  it("a barrier of one passes at once", function()
    local b = skein.barrier(1)
    assert.equal(0, b:wait(1))
    assert.equal(0, b:wait())
  end)

  it("runs the action once per generation, in the last party, before releasing", function()
    local runs, order = 0, {}
    local b
    b = skein.barrier(3, function()
      runs = runs + 1
      order[#order + 1] = "action"
      assert.equal(0, b.n_waiting)
    end)
    local ts = spawn_all(3, function(i)
      skein.sleep(0.01 * i)
      local idx = b:wait(3)
      order[#order + 1] = "party"
      return idx
    end)
    local rs = join_all(ts)
    assert.equal(1, runs)
    assert.equal("action", order[1])
    assert.equal(2, rs[3])  -- the last to arrive ran it and got n-1
  end)

  it("a timeout breaks the barrier for every party and for later waits", function()
    local b = skein.barrier(3)
    local other = skein.spawn(function() return b:wait(5) end)
    skein.sleep(0.01)
    local t0 = skein.now()
    local kind, e = errkind(b.wait, b, 0.03)
    assert.equal("broken", kind)
    assert.matches("timed out", e.message)
    assert.is_true(skein.now() - t0 < 1)
    assert.equal("broken", errkind(other.join, other, 1))
    assert.is_true(b.broken)
    assert.equal("broken", errkind(b.wait, b, 1))
    assert.matches("%(broken%)", tostring(b))
    b:reset()
    assert.is_false(b.broken)
    local ts = spawn_all(3, function() return b:wait(2) end)
    join_all(ts)
  end)

  it("abort wakes the waiting parties with kind broken", function()
    local b = skein.barrier(4)
    local ts = spawn_all(2, function() return b:wait(5) end)
    skein.sleep(0.02)
    b:abort()
    for _, t in ipairs(ts) do assert.equal("broken", errkind(t.join, t, 1)) end
    assert.is_true(b.broken)
  end)

  it("reset wakes the waiting parties with kind broken and starts afresh", function()
    local b = skein.barrier(3)
    local ts = spawn_all(2, function() return b:wait(5) end)
    skein.sleep(0.02)
    b:reset()
    for _, t in ipairs(ts) do assert.equal("broken", errkind(t.join, t, 1)) end
    assert.is_false(b.broken)
    assert.equal(0, b.n_waiting)
    join_all(spawn_all(3, function() return b:wait(2) end))
  end)

  it("a cancelled party breaks the barrier instead of wedging it", function()
    local b = skein.barrier(3)
    local a = skein.spawn(function() return b:wait(5) end)
    local c = skein.spawn(function() return b:wait(5) end)
    skein.sleep(0.02)
    a:cancel()
    assert.equal("cancelled", errkind(a.join, a, 1))
    assert.equal("broken", errkind(c.join, c, 1))
    b:reset()
    join_all(spawn_all(3, function() return b:wait(2) end))
  end)

  it("an action that raises breaks the barrier; the last party gets the error", function()
    local b = skein.barrier(2, function() error("action failed") end)
    local first = skein.spawn(function() return b:wait(3) end)
    skein.sleep(0.01)
    assert.matches("action failed", errmsg(b.wait, b, 3))
    assert.equal("broken", errkind(first.join, first, 1))
    assert.is_true(b.broken)
  end)

  it("rejects negative and NaN timeouts without joining", function()
    local b = skein.barrier(2)
    assert.matches("negative", errmsg(b.wait, b, -1))
    assert.matches("NaN", errmsg(b.wait, b, 0 / 0))
    assert.equal(0, b.n_waiting)
    assert.is_false(b.broken)
  end)

  it("meets three threads, generation after generation, and runs a marshalled action", function()
    local ev = skein.event()
    local b = skein.barrier(3, function() ev:set() end)
    local function party(b)
      local r = {}
      for g = 1, 5 do r[g] = b:wait(20) end
      return table.concat(r, ",")
    end
    local ts = {}
    for i = 1, 3 do ts[i] = skein.thread(party, b) end
    local rs = {}
    for i = 1, 3 do rs[i] = {} for v in ts[i]:join(30):gmatch("%d") do rs[i][#rs[i] + 1] = tonumber(v) end end
    for g = 1, 5 do
      local seen = {rs[1][g], rs[2][g], rs[3][g]}
      table.sort(seen)
      assert.same({0, 1, 2}, seen)
    end
    assert.is_true(ev:is_set())
  end)

  it("breaks for threads still waiting when a thread times out", function()
    local b = skein.barrier(3)
    local function party(b, timeout)
      local skein = require "skein"
      local ok, e = pcall(b.wait, b, timeout)
      return ok, skein.is_error(e) and e.kind or tostring(e)
    end
    local waiting = skein.thread(party, b, 20)
    skein.sleep(0.02)
    local impatient = skein.thread(party, b, 0.05)
    local ok1, k1 = impatient:join(20)
    local ok2, k2 = waiting:join(20)
    assert.is_false(ok1)
    assert.equal("broken", k1)
    assert.is_false(ok2)
    assert.equal("broken", k2)
  end)
end)

describe("skein.event", function()
  it("gates tasks and threads, times out, and has a tostring", function()
    local ev = skein.event()
    assert.matches("^skein.event: .* %(clear%)$", tostring(ev))
    assert.is_false(ev:wait(0.01))
    assert.matches("negative", errmsg(ev.wait, ev, -1))
    local t = skein.spawn(function() return ev:wait(3) end)
    local th = skein.thread(function(ev) return ev:wait(10) end, ev)
    skein.sleep(0.02)
    ev:set()
    assert.is_true(t:join(1))
    assert.is_true(th:join(10))
    assert.matches("%(set%)", tostring(ev))
  end)

  it("a cancelled waiter does not stop set() from waking the others", function()
    local ev = skein.event()
    local a = skein.spawn(function() return ev:wait(5) end)
    local b = skein.spawn(function() return ev:wait(2) end)
    skein.sleep(0.02)
    a:cancel()
    ev:set()
    assert.equal("cancelled", errkind(a.join, a, 1))
    assert.is_true(b:join(1))
  end)
end)
