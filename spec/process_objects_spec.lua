-- Shared objects passed to worker processes: every object works in the
-- child with the same semantics and timeouts; a child that dies mid-call
-- leaves the object whole and usable.
local skein = require "skein"

local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]
local SLOW = SKEIN:match("asan") ~= nil

local caught = require("spec.support.errors").errof

describe("objects in worker processes", function()
  it("queues: writers in children, a reader in the parent, nothing lost", function()
    local q = skein.queue()
    local writers = {}
    for w = 1, 3 do
      writers[w] = skein.process(function(queue, id)
        for i = 1, 50 do queue:put({from = id, n = i}) end
        return "done"
      end, q, w)
    end
    for w = 1, 3 do assert.equal("done", writers[w]:join(60)) end
    local seen = {}
    for _ = 1, 150 do
      local item = q:get(5)
      seen[item.from * 1000 + item.n] = true
    end
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    assert.equal(150, count)
    assert.is_true(q:empty())
  end)

  it("queues: a child's get times out, and sees close", function()
    local q = skein.queue(1)
    local p = skein.process(function(queue)
      local ok, e = pcall(queue.get, queue, 0.05)
      local timed_out = not ok and skein.is_error(e, "timeout")
      queue:put("first")
      local ok2, e2 = pcall(queue.put, queue, "second", 0.05)   -- full
      return timed_out, not ok2 and skein.is_error(e2, "timeout")
    end, q)
    local timed_out, full = p:join(60)
    assert.is_true(timed_out)
    assert.is_true(full)
    assert.equal("first", q:get(5))
    q:close()
    local c = skein.process(function(queue) return pcall(queue.put, queue, 1) end, q)
    local ok, e = c:join(60)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "closed"))
  end)

  it("let the child's other tasks run while a call waits in the parent", function()
    local q = skein.queue()
    local p = skein.process(function(queue)
      local ticks = 0
      local ticker = skein.spawn(function()
        for _ = 1, 10 do skein.sleep(0.02) ticks = ticks + 1 end
      end)
      local v = queue:get(30)          -- waits in the parent
      local during = ticks             -- what ran while it waited
      ticker:join()
      return v, during
    end, q)
    skein.sleep(SLOW and 1.5 or 0.6)
    q:put("hello")
    local v, during = p:join(60)
    assert.equal("hello", v)
    assert.equal(10, during)
  end)

  it("a 10 MB value put by a child, joined before reading, does not deadlock", function()
    local q = skein.queue()
    local p = skein.process(function(queue) queue:put(string.rep("z", 10 * 1024 * 1024)) return "put" end, q)
    assert.equal("put", p:join(60))
    assert.equal(10 * 1024 * 1024, #q:get(10))
  end)

  it("events gate children; semaphores bound them", function()
    local ev = skein.event()
    local sem = skein.semaphore(2)
    local inside, most = skein.shared.value(0), skein.shared.value(0)
    local ps = {}
    for i = 1, 4 do
      ps[i] = skein.process(function(e, s, inside_, most_)
        assert(e:wait(30))
        s:acquire()
        local now = inside_:add(1)
        local m = most_:get()
        while now > m and not most_:cas(m, now) do m = most_:get() end
        skein.sleep(0.05)
        inside_:add(-1)
        s:release()
        return true
      end, ev, sem, inside, most)
    end
    skein.sleep(0.2)
    assert.equal(0, inside:get())
    ev:set()
    for i = 1, 4 do assert.is_true(ps[i]:join(60)) end
    assert.is_true(most:get() <= 2)
  end)

  it("locks: a child killed while holding one leaves it usable", function()
    local lk = skein.lock()
    local held = skein.event()
    local p = skein.process(function(l, e)
      l:acquire()
      e:set()
      os.execute("kill -9 " .. skein.self().pid)
      skein.sleep(30)
    end, lk, held)
    assert.is_true(held:wait(30))
    local e = caught(p.join, p, 60)
    assert.is_true(skein.is_error(e, "worker_died"))
    assert.is_true(lk:acquire(5))
    lk:release()
  end)

  it("locks: a grandchild orphaned by a killed child leaves its lock usable", function()
    -- The grandchild dies with its parent, and nobody reaps it but the
    -- system: its lock must still come free, and the parent's wait on the
    -- queue must not stay wedged on the grandchild's stale waiter record.
    local lk, held, q = skein.lock(), skein.event(), skein.queue()
    local p = skein.process(function(l, e, queue)
      local g = skein.process(function(l2, e2, q2)
        l2:acquire()
        e2:set()
        q2:get()                  -- waits here until killed
      end, l, e, queue)
      g:join(60)
    end, lk, held, q)
    assert.is_true(held:wait(30))
    skein.sleep(SLOW and 0.5 or 0.2)
    p:kill()
    assert.is_true(skein.is_error(caught(p.join, p, 60), "worker_died"))
    assert.is_true(lk:acquire(10))
    lk:release()
    local taker = skein.process(function(queue) return queue:get(30) end, q)
    q:put("for the live one")
    assert.equal("for the live one", taker:join(60))
  end)

  it("locks, hold and with work through a proxy", function()
    local lk = skein.rlock()
    local counter = skein.shared.value(0)
    local ps = {}
    for i = 1, 3 do
      ps[i] = skein.process(function(l, c)
        for _ = 1, 20 do
          l:with(function() c:set(c:get() + 1) end)
          do
            local g <close> = l:hold()
            c:set(c:get() + 1)
          end
        end
      end, lk, counter)
    end
    for i = 1, 3 do ps[i]:join(60) end
    assert.equal(120, counter:get())
    assert.is_false(lk:locked())
  end)

  it("shared values, arrays and tables stay exact under concurrent updates", function()
    local v = skein.shared.value(0)
    local a = skein.shared.array("integer", 4)
    local t = skein.shared.table()
    local ps = {}
    for i = 1, 4 do
      ps[i] = skein.process(function(v_, a_, t_, id)
        for _ = 1, 250 do v_:add(1) a_:add(id, 1) end
        for _ = 1, 25 do t_:update("hits", function(x) return (x or 0) + 1 end) end
        t_:append(id)
        t_["worker" .. id] = skein.self().pid
        return #a_
      end, v, a, t, i)
    end
    for i = 1, 4 do assert.equal(4, ps[i]:join(60)) end
    assert.equal(1000, v:get())
    assert.same({250, 250, 250, 250}, a:totable())
    assert.equal(100, t:get("hits"))
    local ids = {}
    for i = 1, 4 do ids[#ids + 1] = t[i] end
    table.sort(ids)
    assert.same({1, 2, 3, 4}, ids)
    for i = 1, 4 do assert.equal(ps[i].pid, t["worker" .. i]) end
  end)

  it("barriers and conditions coordinate children", function()
    local b = skein.barrier(3)
    local cond = skein.condition()
    local box = skein.shared.table()
    local ps = {}
    for i = 1, 3 do
      ps[i] = skein.process(function(bar, c, bx)
        local index = bar:wait(30)
        c:acquire()
        bx:append(index)
        c:notify_all()
        c:release()
        return index
      end, b, cond, box)
    end
    cond:acquire()
    assert.is_true(cond:wait_for(function() return box:len() == 3 end, 30))
    cond:release()
    local idx = {}
    for i = 1, 3 do idx[i] = ps[i]:join(60) end
    table.sort(idx)
    assert.same({0, 1, 2}, idx)
  end)

  it("pipes connect a parent and a child", function()
    local here, there = skein.pipe()
    local p = skein.process(function(conn)
      local msg = conn:recv(30)
      conn:send({echo = msg, from = "child"})
      return conn:poll(0.01)
    end, there)
    here:send("ping")
    assert.same({echo = "ping", from = "child"}, here:recv(30))
    assert.is_false(p:join(60))
  end)

  it("work in process-pool tasks too", function()
    local pool <close> = skein.pool{kind = "process", size = 2}
    local results = skein.shared.table()
    pool:map(function(x) results:set(x, x * x) end, {1, 2, 3, 4, 5}, {chunksize = 1})
    for i = 1, 5 do assert.equal(i * i, results:get(i)) end
  end)

  it("a child killed while a call of it waits here takes nothing with it", function()
    -- The get waits in this process on the child's behalf; once the child
    -- is gone it must not go on and swallow the next item.
    local q = skein.queue()
    local ready = skein.event()
    local p = skein.process(function(queue, ev) ev:set() return queue:get() end, q, ready)
    assert.is_true(ready:wait(30))
    skein.sleep(SLOW and 0.5 or 0.2)
    p:kill()
    assert.is_true(skein.is_error(caught(p.join, p, 60), "worker_died"))
    -- (try_get after a pause: a waiting get here would race the stale one)
    q:put("kept")
    skein.sleep(0.05)
    assert.same({true, "kept"}, {q:try_get()})
    -- The same for a pool task killed at its timeout.
    local pool <close> = skein.pool{kind = "process", size = 1, timeout = SLOW and 1 or 0.3}
    local f = pool:submit(function(queue) return queue:get() end, q)
    assert.is_true(skein.is_error(caught(f.get, f, 60), "timeout"))
    q:put("kept again")
    skein.sleep(0.05)
    assert.same({true, "kept again"}, {q:try_get()})
  end)

  it("a child killed halfway through its puts leaves only whole items", function()
    local q = skein.queue()
    local p = skein.process(function(queue)
      for i = 1, 1000000 do queue:put({i = i, pad = string.rep("p", 100)}) end
    end, q)
    skein.sleep(SLOW and 1 or 0.3)
    p:kill()
    pcall(p.join, p, 60)
    local n = 0
    while true do
      local ok, item = q:try_get()
      if not ok then break end
      n = n + 1
      assert.equal(n, item.i)
      assert.equal(100, #item.pad)
    end
    assert.is_true(n > 0)
  end)

  it("queues reach every worker of a child, and its children", function()
    local q = skein.queue()
    local p = skein.process(function(queue)
      local t = skein.thread(function(q2) q2:put("from a thread of the child") end, queue)
      t:join(30)
      local g = skein.process(function(q3) q3:put("from a grandchild") end, queue)
      g:join(30)
    end, q)
    p:join(60)
    assert.equal("from a thread of the child", q:get(5))
    assert.equal("from a grandchild", q:get(5))
  end)

  it("thread and process handles are joined by a thread of the child and a grandchild", function()
    local th = skein.thread(function() skein.sleep(0.2) return "t" end)
    local pr = skein.process(function() skein.sleep(0.2) return "p" end)
    local p = skein.process(function(h, ph)
      local t = skein.thread(function(a, b) return a:join(30), b:join(30) end, h, ph)
      local g = skein.process(function(a, b) return a:join(30), b:join(30) end, h, ph)
      local t1, t2 = t:join(60)
      local g1, g2 = g:join(60)
      return t1, t2, g1, g2, h:alive(), ph:alive()
    end, th, pr)
    assert.same({"t", "p", "t", "p", false, false}, {p:join(90)})
  end)

  it("barriers meet across a child, a thread of it and its own child", function()
    local ev = skein.event()
    local b = skein.barrier(3, function() ev:set() end)
    local p = skein.process(function(bar)
      local function party(b2)
        local r = {}
        for g = 1, 3 do r[g] = b2:wait(30) end
        return table.concat(r, ",")
      end
      local t = skein.thread(party, bar)
      local g = skein.process(party, bar)
      local mine = party(bar)
      return mine, t:join(60), g:join(60)
    end, b)
    local rs = {p:join(90)}
    assert.equal(3, #rs)
    for gen = 1, 3 do
      local seen = {}
      for i = 1, 3 do
        local parts = {}
        for v in rs[i]:gmatch("%d+") do parts[#parts + 1] = tonumber(v) end
        seen[i] = parts[gen]
      end
      table.sort(seen)
      assert.same({0, 1, 2}, seen)
    end
    assert.is_true(ev:is_set())           -- the action ran, marshalled, in some party
    assert.equal(0, b.n_waiting)
    assert.is_false(b.broken)
  end)

  it("barriers: a party killed while it waits breaks the barrier for the others", function()
    -- Four parties: the parent and two children wait, then one of the
    -- children is killed; nobody is left to wait for the fourth.
    local b = skein.barrier(4)
    local victim = skein.process(function(bar) bar:wait(60) end, b)
    local other = skein.process(function(bar)
      local ok, e = pcall(bar.wait, bar, 30)
      return ok, skein.is_error(e, "broken"), tostring(e and e.message or e)
    end, b)
    local killer = skein.spawn(function()
      local t0 = skein.now()
      while b.n_waiting < 3 and skein.now() - t0 < 30 do skein.sleep(0.01) end
      skein.sleep(0.05)
      victim:kill()
    end)
    local t0 = skein.now()
    local e = caught(b.wait, b, 30)
    assert.is_true(skein.is_error(e, "broken"))
    assert.matches("broken while this party waited", e.message)
    assert.is_true(skein.now() - t0 < 20)
    killer:join(30)
    assert.is_true(skein.is_error(caught(victim.join, victim, 60), "worker_died"))
    local ok, broken, msg = other:join(60)
    assert.is_false(ok)
    assert.is_true(broken, msg)
    assert.is_true(b.broken)
    b:reset()
    assert.is_false(b.broken)
    assert.equal(0, b.n_waiting)
  end)
end)
