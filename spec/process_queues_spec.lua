-- Queues and pipe ends shared by processes. The first time one is sent to
-- another process it moves into the tree's shared-memory segment, and from
-- then on every process of the tree (children, grandchildren, threads and
-- pools inside them) works on that one copy, with the semantics it has
-- between threads: order, bounds, timeouts, task_done/join, close, iter,
-- select, values that cross, processes that die.
--
-- Every wait is bounded so that a hang fails instead of stalling the suite,
-- and a child still running when a test ends is killed (after_each).
-- Process functions use the global `skein` (each worker has its own), so
-- this file keeps no local of that name for them to capture.

local errors = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/errors.lua")
local errof, kindof = errors.errof, errors.kindof

local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]
local SLOW = SKEIN:match("asan") ~= nil
local PAUSE = SLOW and 0.5 or 0.2   -- lets a child reach the wait it is meant to block in

-- Every process a test starts, to be killed if it outlives the test.
local started = {}

local function process(fn, ...)
  local p = skein.process(fn, ...)
  started[#started + 1] = p
  return p
end

-- Joins a process with a bounded wait; a child that does not finish in
-- time is killed, so that it cannot keep the suite alive.
local function join(p, timeout)
  local r = table.pack(pcall(p.join, p, timeout or 30))
  if not r[1] then
    if p:alive() then p:kill() end
    error(r[2], 0)
  end
  return table.unpack(r, 2, r.n)
end

-- Waits (bounded) until pred() holds.
local function wait_until(pred, timeout, what)
  local deadline = skein.now() + (timeout or 30)
  while not pred() do
    assert(skein.now() < deadline, "timed out waiting for " .. (what or "a condition"))
    skein.sleep(0.01)
  end
end

describe("queues shared by processes", function()
  after_each(function()
    for _, p in ipairs(started) do
      if p:alive() then
        p:kill()
        pcall(p.join, p, 10)
      end
    end
    started = {}
  end)

  it("keep lifo and priority order, fifo among equal priorities", function()
    local lifo = skein.queue{order = "lifo"}
    local prio = skein.queue{order = "priority"}
    -- Items put before the queue moves to the segment keep their place.
    lifo:put(0)
    prio:put("parent-1", 1)
    local p = process(function(l, q)
      for i = 1, 5 do l:put(i) end
      q:put("low", 10)
      q:put("first-1", 1)
      q:put("half", 0.5)
      q:put("second-1", 1)
      q:put("neg", -3)
      q:put("third-1", 1)
      return "put"
    end, lifo, prio)
    assert.equal("put", join(p))
    assert.equal(6, lifo:size())
    local got = {}
    for i = 1, 6 do got[i] = lifo:get(30) end
    assert.same({5, 4, 3, 2, 1, 0}, got)
    assert.equal(7, prio:size())
    got = {}
    for i = 1, 7 do
      local v, pr = prio:get(30)
      got[i] = v .. "@" .. tostring(pr)
    end
    assert.same({"neg@-3", "half@0.5", "parent-1@1", "first-1@1", "second-1@1", "third-1@1", "low@10"}, got)
    -- and the other way: the parent puts, a child gets
    for i, v in ipairs({5, 1, 3, 1, 2}) do prio:put(("%d#%d"):format(v, i), v) end
    for i = 1, 3 do lifo:put(i) end
    local c = process(function(l, q)
      local out = {}
      for _ = 1, 3 do out[#out + 1] = l:get(30) end
      for _ = 1, 5 do
        local v, pr = q:get(30)
        out[#out + 1] = v
        out[#out + 1] = math.type(pr)
      end
      return out
    end, lifo, prio)
    assert.same({3, 2, 1, "1#2", "integer", "1#4", "integer", "2#5", "integer", "3#3", "integer", "5#1", "integer"},
      join(c))
  end)

  it("bound a producer in a child until the parent consumes, and time its puts out", function()
    local q = skein.queue(2)
    local p = process(function(queue)
      for i = 1, 6 do queue:put(i, 30) end
      return "done"
    end, q)
    wait_until(function() return q:size() == 2 end, 30, "the queue to fill")
    skein.sleep(PAUSE)
    assert.is_true(q:full())
    assert.equal(2, q:size())
    assert.is_true(p:alive())            -- blocked in its third put
    assert.is_false(q:try_put("no room"))
    for i = 1, 6 do assert.equal(i, q:get(30)) end
    assert.equal("done", join(p))
    assert.is_true(q:empty())

    -- nobody consumes: the child's put times out, and the item is not put
    local q2 = skein.queue(1)
    local c = process(function(queue)
      queue:put("a")
      local t0 = skein.now()
      local ok, e = pcall(queue.put, queue, "b", 0.2)
      local waited = skein.now() - t0
      local ok2, e2 = pcall(queue.put_nowait, queue, "c")
      return ok, e, waited, queue:try_put("d"), ok2, e2
    end, q2)
    local ok, e, waited, tried, ok2, e2 = join(c)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.is_true(waited >= 0.15)
    assert.is_false(tried)
    assert.is_false(ok2)
    assert.is_true(skein.is_error(e2, "full"))
    assert.equal(1, q2:size())
    assert.equal("a", q2:get(30))
    assert.equal("timeout", kindof(q2.get, q2, 0.01))
  end)

  it("count task_done across processes for join, and refuse too many", function()
    local q = skein.queue()
    local N = 200
    for i = 1, N do q:put(i) end
    q:put("stop")
    q:put("stop")
    local workers = {}
    for w = 1, 2 do
      workers[w] = process(function(queue)
        local n, sum = 0, 0
        while true do
          local v = queue:get(30)
          if v == "stop" then
            queue:task_done()
            return n, sum
          end
          n, sum = n + 1, sum + v
          queue:task_done()
        end
      end, q)
    end
    -- a joiner in another process waits as well
    local joiner = process(function(queue) return queue:join(30) end, q)
    assert.is_true(q:join(30))
    local n, sum = 0, 0
    for w = 1, 2 do
      local a, b = join(workers[w])
      n, sum = n + a, sum + b
    end
    assert.equal(N, n)
    assert.equal(N * (N + 1) // 2, sum)
    assert.is_true(join(joiner))
    assert.is_true(q:join(0))
    -- one more task_done than items put: here, and in a child
    assert.matches("more times", tostring(errof(q.task_done, q)))
    local c = process(function(queue) return pcall(queue.task_done, queue) end, q)
    local ok, e = join(c)
    assert.is_false(ok)
    assert.matches("more times", tostring(e))
    -- a new item makes join wait again until a child marks it done
    q:put("again")
    assert.equal("timeout", kindof(q.join, q, 0.05))
    local d = process(function(queue) local v = queue:get(30) queue:task_done() return v end, q)
    assert.is_true(q:join(30))
    assert.equal("again", join(d))
  end)

  it("wake a child asleep in get at a lone put, promptly", function()
    local q, ready = skein.queue(), skein.queue()
    local p = process(function(queue, r)
      r:put("waiting")
      local v = queue:get()             -- no timeout: only the put's wake ends it
      return v, skein.now()
    end, q, ready)
    assert.equal("waiting", ready:get(30))
    skein.sleep(PAUSE)                  -- well past the getter's spin: asleep
    local t0 = skein.now()
    q:put("lone")
    local v = join(p)
    assert.equal("lone", v)
    assert.is_true(skein.now() - t0 < (SLOW and 5 or 2))
  end)

  it("carry every kind of scalar unchanged, in order, both ways", function()
    local values = {n = 0}
    local function add(v) values.n = values.n + 1; values[values.n] = v end
    add(nil); add(true); add(false); add(0); add(-1); add(math.maxinteger); add(math.mininteger)
    add(2.0); add(-0.0); add(1 / 0); add(-1 / 0); add(0.1); add("")
    add("a\0b"); add(string.rep("x", 24)); add(string.rep("y", 25)); add({k = "table"})
    local q, back = skein.queue(), skein.queue()
    local p = process(function(queue, out, n)
      for _ = 1, n do
        local v = queue:get(30)
        out:put(v)
      end
    end, q, back, values.n)
    for i = 1, values.n do q:put(values[i]) end
    for i = 1, values.n do
      local want, got = values[i], back:get(30)
      if type(want) == "table" then
        assert.same(want, got)
      else
        assert.equal(math.type(want), math.type(got))
        assert.equal(want, got)
        if want == 0 and math.type(want) == "float" then assert.equal(1 / want, 1 / got) end
      end
    end
    join(p)
    -- NaN is not equal to itself: checked apart
    q:put(0 / 0)
    local nan = q:get(5)
    assert.is_true(nan ~= nan)
  end)

  it("move a long queue to the segment with its items in order", function()
    -- Its items sit in chunks of several sizes (they grow with the queue):
    -- the move copies every one, in order, and the local chunks go.
    local q = skein.queue()
    for i = 1, 9000 do q:put(i) end
    for i = 1, 1000 do assert.equal(i, q:get(1)) end
    local p = process(function(queue)
      local n, ok = 0, true
      for i = 1001, 9000 do
        local v = queue:get(30)
        if v ~= i then ok = false end
        n = n + 1
      end
      return n, ok
    end, q)
    local n, ok = join(p)
    assert.equal(8000, n)
    assert.is_true(ok)
    assert.equal(0, q:size())
  end)

  it("wake a child blocked in get with closed, and end a child's iter", function()
    local q = skein.queue()
    local ready = skein.queue()
    local p = process(function(queue, r)
      r:put("waiting")
      local ok, e = pcall(queue.get, queue, 30)
      return ok, e
    end, q, ready)
    assert.equal("waiting", ready:get(30))
    skein.sleep(PAUSE)
    local t0 = skein.now()
    q:close()
    local ok, e = join(p)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "closed"))
    assert.is_true(skein.now() - t0 < 10)

    -- iter drains what is left after close, then ends
    local q2 = skein.queue()
    local c = process(function(queue, r)
      local n, sum = 0, 0
      r:put("iterating")
      for v in queue:iter() do n, sum = n + 1, sum + v end
      return n, sum, queue:closed()
    end, q2, ready)
    assert.equal("iterating", ready:get(30))
    for i = 1, 50 do q2:put(i) end
    skein.sleep(PAUSE)
    for i = 51, 100 do q2:put(i) end
    q2:close()
    local n, sum, closed = join(c)
    assert.equal(100, n)
    assert.equal(5050, sum)
    assert.is_true(closed)
    assert.equal("closed", kindof(q2.put, q2, 1))
  end)

  it("serve select in the parent and in a child", function()
    local a, b = skein.queue(), skein.queue()
    local pa = process(function(q) for i = 1, 50 do q:put("a" .. i) end end, a)
    local pb = process(function(q) for i = 1, 50 do q:put("b" .. i) end end, b)
    local seen = {a = {}, b = {}}
    for _ = 1, 100 do
      local i, v = skein.select({a, b}, 30)
      assert.is_not_nil(i, "select timed out")
      local which = i == 1 and "a" or "b"
      assert.equal(which, v:sub(1, 1))
      local list = seen[which]
      list[#list + 1] = tonumber(v:sub(2))
    end
    for _, which in ipairs({"a", "b"}) do
      assert.equal(50, #seen[which])
      for i = 1, 50 do assert.equal(i, seen[which][i]) end
    end
    join(pa)
    join(pb)
    assert.is_nil(skein.select({a, b}, 0.01))

    -- a child selects over queues the parent fills
    local q1, q2 = skein.queue(), skein.queue{order = "priority"}
    local ready = skein.queue()
    local c = process(function(x, y, r)
      local out = {}
      out[1] = skein.select({x, y}, 0.05) == nil   -- nothing yet: times out
      r:put("selecting")
      while true do
        local i, v, pr = skein.select({x, y}, 30)
        if v == "stop" then break end
        out[#out + 1] = ("%d:%s:%s"):format(i, v, tostring(pr))
      end
      local ok, e = pcall(skein.select, {x, y}, 30)   -- x closed and drained, y empty
      out[#out + 1] = not ok and skein.is_error(e, "closed")
      return out
    end, q1, q2, ready)
    assert.equal("selecting", ready:get(30))
    skein.sleep(PAUSE)
    q2:put("urgent", 0)
    skein.sleep(PAUSE)
    q1:put("plain")
    skein.sleep(PAUSE)
    q1:put("stop")
    skein.sleep(PAUSE)
    q1:close()
    assert.same({true, "2:urgent:0", "1:plain:nil", true}, join(c))
  end)

  it("outlive the child that created them", function()
    -- put into a queue of the parent's
    local carrier = skein.queue()
    local c = process(function(out)
      local mine = skein.queue()
      mine:put("from the child")
      mine:put({n = 2})
      out:put(mine)
      return "gone"
    end, carrier)
    assert.equal("gone", join(c))
    local mine = carrier:get(30)
    assert.equal("from the child", mine:get(30))
    assert.same({n = 2}, mine:get(30))
    for i = 1, 3 do mine:put(i) end
    assert.equal(1, mine:get(30))
    -- and still shared with another child
    local d = process(function(queue) return queue:get(30), queue:get(30) end, mine)
    assert.same({2, 3}, {join(d)})
    assert.is_true(mine:empty())

    -- returned as the process's result
    local p = process(function()
      local q = skein.queue{order = "priority", maxsize = 3}
      q:put("c", 3)
      q:put("a", 1)
      q:put("b", 2)
      return q
    end)
    local q = join(p)
    assert.is_false(p:alive())
    assert.equal(3, q:size())
    assert.is_true(q:full())
    assert.is_false(q:try_put("d", 0))
    assert.equal("a", q:get(30))
    assert.equal("b", q:get(30))
    q:put("z", 0)
    assert.equal("z", q:get(30))
    assert.equal("c", q:get(30))
    assert.equal("timeout", kindof(q.get, q, 0.01))
  end)

  it("reach a grandchild inside a table sent through another queue", function()
    local carrier = skein.queue()
    local back = skein.queue()
    carrier:put({reply = back, n = 20, tag = "job"})
    local p = process(function(inbox)
      local msg = inbox:get(30)
      local inner = skein.queue()
      local g = skein.process(function(box)
        local m = box:get(30)
        for i = 1, m.n do m.reply:put({i = i, sq = i * i, pid = skein.self().pid}) end
        m.reply:put(m.tag)
        return "grandchild done"
      end, inner)
      inner:put(msg)
      return g:join(30), skein.self().pid
    end, carrier)
    local gc, child_pid = join(p)
    assert.equal("grandchild done", gc)
    local pids = {}
    for i = 1, 20 do
      local item = back:get(30)
      assert.equal(i, item.i)
      assert.equal(i * i, item.sq)
      pids[item.pid] = true
    end
    assert.equal("job", back:get(30))
    local gpid = next(pids)
    assert.is_not_nil(gpid)
    assert.is_nil(next(pids, gpid))
    assert.are_not.equal(child_pid, gpid)
    assert.are_not.equal(skein.self().pid, gpid)
    assert.is_true(back:empty())
  end)

  it("deliver every item exactly once among many producers and consumers", function()
    local q = skein.queue(100)
    local P, N = 4, 5000
    local producers, consumers = {}, {}
    for c = 1, 2 do
      consumers[c] = process(function(queue)
        local got = {}
        for v in queue:iter() do got[#got + 1] = v end
        return got
      end, q)
    end
    for p = 1, P do
      producers[p] = process(function(queue, id, n)
        for i = 1, n do queue:put(id * 1000000 + i, 30) end
        return n
      end, q, p, N)
    end
    for p = 1, P do assert.equal(N, join(producers[p], 60)) end
    q:close()
    local seen, total = {}, 0
    for c = 1, 2 do
      local got = join(consumers[c], 60)
      local last = {}
      for _, v in ipairs(got) do
        assert.is_nil(seen[v], "received twice: " .. v)
        seen[v] = true
        total = total + 1
        -- one producer's items reach one consumer in the order put
        local id, i = v // 1000000, v % 1000000
        assert.is_true(i > (last[id] or 0))
        last[id] = i
      end
    end
    assert.equal(P * N, total)
    for p = 1, P do
      for i = 1, N do assert.is_true(seen[p * 1000000 + i], "lost") end
    end
  end)

  it("give back every byte of the segment once items crossed both ways", function()
    -- Each process counts the blocks it was handed and those it freed on
    -- its own slot; a block made by one process and freed by another
    -- must still come out even in skein.stats().shm_inuse. A first child
    -- moves both queues into the segment before the count is taken.
    local to_child, to_parent = skein.queue(), skein.queue()
    local mover = skein.process(function() end, to_child, to_parent)
    join(mover, 30)
    mover = nil
    collectgarbage()
    local before = skein.stats().shm_inuse
    local child = skein.process(function(inq, outq, n)
      for i = 1, n do outq:put({i, ("x"):rep(i % 300)}) end
      local sum = 0
      for _ = 1, n do sum = sum + #inq:get(30) end
      return sum
    end, to_child, to_parent, 3000)
    local mid
    for i = 1, 3000 do
      local t = to_parent:get(30)
      assert.equal(i, t[1])
      to_child:put(("y"):rep(i % 200))
      if i == 1500 then mid = skein.stats().shm_inuse end
    end
    local expect = 0
    for i = 1, 3000 do expect = expect + i % 200 end
    assert.equal(expect, join(child, 60))
    assert.is_true(mid > before)             -- it did count the blocks in flight
    child = nil
    collectgarbage()
    assert.equal(before, skein.stats().shm_inuse)
  end)

  it("do not let a child killed in get swallow a later item", function()
    local q = skein.queue()
    local ready = skein.queue()
    local getter = function(queue, r, name)
      r:put(name)
      return queue:get(30)
    end
    local p1 = process(getter, q, ready, "first")
    assert.equal("first", ready:get(30))
    skein.sleep(PAUSE)                  -- p1 is blocked in get
    local p2 = process(getter, q, ready, "second")
    assert.equal("second", ready:get(30))
    skein.sleep(PAUSE)                  -- p2 waits behind p1
    p1:kill()
    q:put("kept")                      -- p1 may not have been reaped yet
    assert.is_true(skein.is_error(errof(p1.join, p1, 30), "worker_died"))
    assert.equal("kept", join(p2))
    assert.is_true(q:empty())

    -- once the killed child has been reaped, as well
    local p3 = process(getter, q, ready, "third")
    assert.equal("third", ready:get(30))
    skein.sleep(PAUSE)
    p3:kill()
    assert.is_true(skein.is_error(errof(p3.join, p3, 30), "worker_died"))
    local p4 = process(getter, q, ready, "fourth")
    assert.equal("fourth", ready:get(30))
    skein.sleep(PAUSE)
    q:put("kept again")
    assert.equal("kept again", join(p4))
  end)

  it("carry a 10 MB string from a child that is joined before the get", function()
    local q = skein.queue()
    local p = process(function(queue)
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local big = string.rep(table.concat(bytes), 10 * 4096)   -- 10 MiB
      queue:put(big)
      queue:put({tag = "wrapped", data = big .. "!"})
      return #big
    end, q)
    assert.equal(10 * 1024 * 1024, join(p, 60))
    local v = q:get(30)
    assert.equal(10 * 1024 * 1024, #v)
    local sum = 0
    for i = 1, #v, 4099 do sum = sum + v:byte(i) * (i % 7 + 1) end
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local expect = string.rep(table.concat(bytes), 10 * 4096)
    local esum = 0
    for i = 1, #expect, 4099 do esum = esum + expect:byte(i) * (i % 7 + 1) end
    assert.equal(esum, sum)
    assert.is_true(v == expect)
    local w = q:get(30)
    assert.equal("wrapped", w.tag)
    assert.equal(#expect + 1, #w.data)
    assert.is_true(w.data == expect .. "!")
  end)

  it("carry nested tables, closures and queue handles from a child", function()
    local out = skein.queue()
    local p = process(function(o)
      local inner = skein.queue{order = "lifo"}
      inner:put("inside-1")
      inner:put("inside-2")
      local base, scale = 10, {k = 3}
      local function f(x) return (x + base) * scale.k end
      local t = {
        a = {b = {c = {1, 2.5, "three", true, "\0bin\255"}}},
        f = f,
        make = function(n) return function() return n + base end end,
        q = inner,
        list = {inner, inner},
        int = 7, float = 7.0,
      }
      t.self = t
      t.a.b.up = t.a
      o:put(t)
      return "sent"
    end, out)
    assert.equal("sent", join(p))
    local v = out:get(30)
    assert.same({1, 2.5, "three", true, "\0bin\255"}, v.a.b.c)
    assert.equal(v, v.self)
    assert.equal(v.a, v.a.b.up)
    assert.equal("integer", math.type(v.int))
    assert.equal("float", math.type(v.float))
    assert.equal(45, v.f(5))
    assert.equal(15, v.make(5)())
    -- (handles are not promised to compare equal, as between threads: the
    -- three reach one queue)
    assert.equal("inside-2", v.q:get(30))
    v.list[1]:put("from the parent")
    assert.equal("from the parent", v.q:get(30))
    assert.equal("inside-1", v.list[2]:get(30))
    assert.is_true(v.q:empty())
  end)

  it("connect pipe ends across a child and a grandchild", function()
    local a, b = skein.pipe()
    local p = process(function(conn)
      local g = skein.process(function(c)
        local n = 0
        while true do
          local v = c:recv(30)
          if v == "bye" then return n end
          n = n + 1
          c:send(v + 1)
        end
      end, conn)
      local n = g:join(60)
      local polled = conn:poll(0.01)     -- the grandchild took everything
      conn:send("tail-1")
      conn:send({tail = 2})
      conn:close()
      local ok, e = pcall(conn.send, conn, "after close")
      return polled, n, conn:closed(), not ok and skein.is_error(e, "closed")
    end, b)
    local v = 0
    for _ = 1, 1000 do
      a:send(v)
      v = a:recv(30)
    end
    assert.equal(1000, v)
    a:send("bye")
    local polled, n, closed_there, send_refused = join(p, 60)
    assert.is_false(polled)
    assert.equal(1000, n)
    assert.is_true(closed_there)
    assert.is_true(send_refused)
    assert.is_true(b:closed())          -- closed anywhere is closed everywhere
    assert.is_false(a:closed())
    assert.equal("tail-1", a:recv(30))
    assert.same({tail = 2}, a:recv(30))
    assert.is_true(a:poll(1))           -- recv would not block: it raises
    local kind, e = kindof(a.recv, a, 30)
    assert.equal("closed", kind)
    assert.matches("other end", e.message)
    assert.equal("closed", kindof(a.send, a, "lost"))
  end)

  it("take puts from process-pool tasks while the parent consumes", function()
    local pool <close> = skein.pool{kind = "process", size = 2}
    local q = skein.queue(4)            -- small: tasks must wait for the parent
    local T, N = 6, 100
    local futures = {}
    for t = 1, T do
      futures[t] = pool:submit(function(queue, id, n)
        for i = 1, n do queue:put(id * 1000 + i, 30) end
        return id
      end, q, t, N)
    end
    local seen, count = {}, 0
    for _ = 1, T * N do
      local v = q:get(30)
      assert.is_nil(seen[v])
      seen[v] = true
      count = count + 1
    end
    for t = 1, T do assert.equal(t, futures[t]:get(30)) end
    assert.equal(T * N, count)
    assert.is_true(q:empty())

    -- a queue captured as an upvalue, drained by a task of the parent
    local squares = skein.queue(2)
    local consumer = skein.spawn(function()
      local sum = 0
      for _ = 1, 20 do sum = sum + squares:get(30) end
      return sum
    end)
    local r = pool:map(function(x) squares:put(x * x, 30) return x end, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
      11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, {chunksize = 1})
    assert.equal(20, #r)
    assert.equal(2870, consumer:join(30))
  end)

  it("close a pipe end whose only other holder was killed", function()
    local here, there = skein.pipe()
    local p = process(function(conn) conn:send("hi") skein.sleep(30) end, there)
    there = nil
    collectgarbage()
    collectgarbage()
    assert.equal("hi", here:recv(30))
    p:kill()
    pcall(p.join, p, 30)
    collectgarbage()
    assert.equal("closed", kindof(here.recv, here, 30))
  end)
end)
