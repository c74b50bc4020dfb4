-- Queues: order, bounds, values that cross, timeouts, close, task_done and
-- join, iteration, select, cancellation, and use across threads. Every
-- wait is bounded so that a hang fails instead of stalling the suite.
-- Thread functions use the global `skein` (each worker has its own), so
-- this file keeps no local of that name for them to capture.

local errors = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/errors.lua")
local errof, kindof = errors.errof, errors.kindof

describe("skein.queue", function()
  describe("construction", function()
    it("accepts nothing, a maxsize or an options table", function()
      assert.matches("^skein.queue fifo %(0 items%)$", tostring(skein.queue()))
      assert.matches("^skein.queue fifo %(0/3 items%)$", tostring(skein.queue(3)))
      assert.matches("^skein.queue lifo %(0/2 items%)$", tostring(skein.queue{maxsize = 2, order = "lifo"}))
      assert.matches("^skein.queue priority %(0 items%)$", tostring(skein.queue{order = "priority"}))
      assert.matches("^skein.queue fifo %(0 items%)$", tostring(skein.queue(0)))
    end)

    it("rejects bad sizes and orders with clear errors", function()
      assert.matches("must not be negative", tostring(errof(skein.queue, -1)))
      assert.matches("must not be negative", tostring(errof(skein.queue, {maxsize = -5})))
      assert.matches("integer", tostring(errof(skein.queue, 1.5)))
      assert.matches("integer", tostring(errof(skein.queue, 0 / 0)))
      assert.matches("order must be", tostring(errof(skein.queue, {order = "random"})))
      assert.matches("order must be", tostring(errof(skein.queue, {order = 3})))
      assert.matches("maxsize", tostring(errof(skein.queue, "big")))
    end)
  end)

  describe("order", function()
    it("is first in, first out by default", function()
      local q = skein.queue()
      for i = 1, 300 do q:put(i) end  -- crosses several chunks
      assert.equal(300, q:size())
      for i = 1, 300 do assert.equal(i, q:get(1)) end
      assert.is_true(q:empty())
    end)

    it("keeps first in, first out through long swings of its length", function()
      -- A long queue's chunks grow (up to 2048 items), emptied ones are kept
      -- for reuse and a short queue goes back to small ones: the order and
      -- the values survive every turn, and a queue dropped while it holds
      -- items of every size frees them (checked under ASan).
      local q = skein.queue()
      local nextput, nextget = 1, 1
      for _, len in ipairs({100000, 10, 5000, 130, 128, 129, 40000, 1, 3000}) do
        for _ = 1, len do
          q:put(nextput)
          nextput = nextput + 1
        end
        while q:size() > len // 3 do
          assert.equal(nextget, q:get(1))
          nextget = nextget + 1
        end
      end
      while nextget < nextput do
        assert.equal(nextget, q:get(1))
        nextget = nextget + 1
      end
      assert.is_true(q:empty())
      local owning = skein.queue()
      for i = 1, 20000 do
        owning:put(i % 3 == 0 and {i} or i % 3 == 1 and string.rep("s", 30) .. i or i)
      end
      for _ = 1, 7000 do owning:get(1) end
      owning = nil
      collectgarbage()
    end)

    it("is last in, first out for lifo", function()
      local q = skein.queue{order = "lifo"}
      for i = 1, 5 do q:put(i) end
      local got = {}
      for i = 1, 5 do got[i] = q:get(1) end
      assert.same({5, 4, 3, 2, 1}, got)
    end)

    it("is lowest priority first, first in first out among equals", function()
      local q = skein.queue{order = "priority"}
      q:put("low", 10)
      q:put("first-1", 1)
      q:put("half", 0.5)
      q:put("second-1", 1)
      q:put("neg", -3)
      q:put("third-1", 1)
      local got = {}
      for i = 1, 6 do
        local v, p = q:get(1)
        got[i] = v .. "@" .. tostring(p)
      end
      assert.same({"neg@-3", "half@0.5", "first-1@1", "second-1@1", "third-1@1", "low@10"}, got)
      assert.equal(math.type(1), math.type(select(2, (function() q:put("x", 7) return q:get(1) end)())))
    end)

    it("needs a number priority and takes a timeout after it", function()
      local q = skein.queue{order = "priority", maxsize = 1}
      assert.matches("number", tostring(errof(q.put, q, "x")))
      assert.matches("NaN", tostring(errof(q.put, q, "x", 0 / 0)))
      q:put("a", 1, 0.5)
      local t0 = skein.now()
      assert.equal("timeout", kindof(q.put, q, "b", 2, 0.05))
      assert.is_true(skein.now() - t0 >= 0.04)
      assert.is_false(q:try_put("c", 0))
      assert.equal("a", q:get(1))
      assert.is_true(q:try_put("c", 0))
      local ok, v, p = q:try_get()
      assert.same({true, "c", 0}, {ok, v, p})
    end)
  end)

  describe("non-blocking calls", function()
    it("try_put and try_get report instead of waiting", function()
      local q = skein.queue(1)
      assert.is_false(q:full())
      assert.is_true(q:try_put("a"))
      assert.is_true(q:full())
      assert.is_false(q:try_put("b"))
      local ok, v = q:try_get()
      assert.is_true(ok)
      assert.equal("a", v)
      assert.same({false}, {q:try_get()})
    end)

    it("put_nowait and get_nowait raise full and empty", function()
      local q = skein.queue(1)
      q:put_nowait(1)
      assert.equal("full", kindof(q.put_nowait, q, 2))
      assert.equal(1, q:get_nowait())
      assert.equal("empty", kindof(q.get_nowait, q))
    end)

    it("size, empty and full follow the contents", function()
      local q = skein.queue(2)
      assert.is_true(q:empty())
      q:put(1)
      assert.equal(1, q:size())
      assert.is_false(q:empty())
      assert.is_false(q:full())
      q:put(2)
      assert.is_true(q:full())
      assert.is_false(skein.queue():full())
    end)
  end)

  describe("values", function()
    it("copies scalars, strings and tables, keeping integer and float apart", function()
      local q = skein.queue()
      local long = string.rep("ab\0", 1000)
      local t = {1, 2, {x = "y"}, f = 1.5}
      t.self = t
      for _, v in ipairs({true, false, 42, 42.0, -0.5, "", "short", long}) do q:put(v) end
      q:put(nil)
      q:put(t)
      assert.is_true(q:get(1))
      assert.is_false(q:get(1))
      assert.equal("integer", math.type(q:get(1)))
      assert.equal("float", math.type(q:get(1)))
      assert.equal(-0.5, q:get(1))
      assert.equal("", q:get(1))
      assert.equal("short", q:get(1))
      assert.equal(long, q:get(1))
      assert.is_nil(q:get(1))
      local u = q:get(1)
      assert.are_not.equal(t, u)
      assert.same({1, 2, {x = "y"}}, {u[1], u[2], u[3]})
      assert.equal(u, u.self)
    end)

    it("copies the value at put time", function()
      local q = skein.queue()
      local t = {n = 1}
      q:put(t)
      t.n = 2
      assert.equal(1, q:get(1).n)
    end)

    it("passes functions and shared objects (by reference)", function()
      local q, inner = skein.queue(), skein.queue()
      q:put(function(a) return a * 2 end)
      q:put(inner)
      assert.equal(10, q:get(1)(5))
      local got = q:get(1)
      got:put("through the copy")
      assert.equal("through the copy", inner:get(1))
    end)

    it("fails at put with kind marshal, naming the path", function()
      local q = skein.queue()
      local kind, e = kindof(q.put, q, {a = {conn = io.stdout}})
      assert.equal("marshal", kind)
      assert.equal("item.a.conn", e.path)
      assert.matches("^item%.a%.conn: cannot send userdata", e.message)
      kind, e = kindof(q.put, q, coroutine.create(print))
      assert.equal("marshal", kind)
      assert.equal("item", e.path)
      assert.equal("marshal", kindof(q.try_put, q, {io.stdout}))
      assert.equal(0, q:size())
    end)

    it("needs a value, though nil may be passed", function()
      local q = skein.queue()
      assert.matches("value expected", tostring(errof(q.put, q)))
      q:put(nil)
      assert.equal(1, q:size())
    end)
  end)

  describe("timeouts", function()
    it("get raises timeout on an empty queue", function()
      local q = skein.queue()
      local t0 = skein.now()
      assert.equal("timeout", kindof(q.get, q, 0.05))
      assert.is_true(skein.now() - t0 >= 0.04)
      assert.equal("timeout", kindof(q.get, q, 0))
    end)

    it("put raises timeout on a full queue and leaves it unchanged", function()
      local q = skein.queue(1)
      q:put("kept")
      assert.equal("timeout", kindof(q.put, q, "dropped", 0.02))
      assert.equal(1, q:size())
      assert.equal("kept", q:get(1))
      assert.same({false}, {q:try_get()})
    end)

    it("rejects negative, NaN and non-number timeouts", function()
      local q = skein.queue()
      assert.matches("negative", tostring(errof(q.get, q, -1)))
      assert.matches("NaN", tostring(errof(q.get, q, 0 / 0)))
      assert.matches("number", tostring(errof(q.get, q, "soon")))
      assert.matches("negative", tostring(errof(q.put, q, 1, -1)))
      assert.matches("negative", tostring(errof(q.join, q, -1)))
      assert.equal(0, q:size())
    end)

    it("honours a skein.timeout scope around a wait", function()
      local q = skein.queue()
      local ok, e = pcall(skein.timeout, 0.05, function() return q:get() end)
      assert.is_false(ok)
      assert.equal("timeout", e.kind)
    end)
  end)

  describe("between tasks", function()
    it("hands items from a producer task to a consumer task", function()
      local q = skein.queue()
      local consumer = skein.spawn(function()
        local got = {}
        for i = 1, 100 do got[i] = q:get(5) end
        return got
      end)
      skein.spawn(function() for i = 1, 100 do q:put(i) if i % 10 == 0 then skein.yield() end end end)
      local got = consumer:join(5)
      assert.equal(100, #got)
      for i = 1, 100 do assert.equal(i, got[i]) end
    end)

    it("applies back-pressure: a producer waits while the queue is full", function()
      local q = skein.queue(2)
      local log = {}
      local producer = skein.spawn(function()
        for i = 1, 6 do
          q:put(i, 5)
          log[#log + 1] = "put " .. i
        end
      end)
      skein.sleep(0.02)
      assert.same({"put 1", "put 2"}, log)
      assert.is_true(q:full())
      for i = 1, 6 do
        assert.equal(i, q:get(5))
        assert.is_true(q:size() <= 2)
        skein.sleep(0.001)
      end
      producer:join(5)
      assert.equal(6, #log)
    end)

    it("wakes every blocked getter and putter on close", function()
      local q, full = skein.queue(), skein.queue(1)
      full:put("x")
      local getters, putters = {}, {}
      for i = 1, 3 do
        getters[i] = skein.spawn(function() return q:get(5) end)
        putters[i] = skein.spawn(function() return full:put(i, 5) end)
      end
      skein.sleep(0.02)
      local t0 = skein.now()
      q:close()
      full:close()
      for i = 1, 3 do
        assert.equal("closed", kindof(getters[i].join, getters[i], 5))
        assert.equal("closed", kindof(putters[i].join, putters[i], 5))
      end
      assert.is_true(skein.now() - t0 < 1)
      assert.equal("x", full:get(1))
    end)
  end)

  describe("close", function()
    it("lets gets drain what is left, then raises closed; puts raise closed", function()
      local q = skein.queue()
      q:put(1)
      q:put(2)
      q:close()
      q:close()  -- idempotent
      assert.is_true(q:closed())
      assert.equal("closed", kindof(q.put, q, 3))
      assert.equal("closed", kindof(q.try_put, q, 3))
      assert.equal(1, q:get(1))
      assert.same({true, 2}, {q:try_get()})
      assert.equal("closed", kindof(q.get, q, 1))
      assert.equal("closed", kindof(q.try_get, q))
      assert.equal("closed", kindof(q.get_nowait, q))
      assert.matches("closed", tostring(q))
    end)

    it("ends iter once drained", function()
      local q = skein.queue()
      local sum = 0
      local consumer = skein.spawn(function()
        for v in q:iter() do sum = sum + v end
        return "done"
      end)
      for i = 1, 10 do q:put(i) end
      skein.sleep(0.01)
      for i = 11, 20 do q:put(i) end
      q:close()
      assert.equal("done", consumer:join(5))
      assert.equal(210, sum)
    end)
  end)

  describe("task_done and join", function()
    it("join waits until every item put was marked done", function()
      local q = skein.queue()
      local processed = {}
      local worker = skein.spawn(function()
        while true do
          local v = q:get(5)
          if v == "stop" then q:task_done() return end
          skein.sleep(0.002)
          processed[#processed + 1] = v
          q:task_done()
        end
      end)
      for i = 1, 5 do q:put(i) end
      assert.is_true(q:join(5))
      assert.same({1, 2, 3, 4, 5}, processed)
      q:put("stop")
      q:join(5)
      worker:join(5)
    end)

    it("join returns at once when nothing is pending, raises timeout otherwise", function()
      local q = skein.queue()
      assert.is_true(q:join(0))
      q:put(1)
      assert.equal("timeout", kindof(q.join, q, 0.02))
      q:get(1)
      assert.equal("timeout", kindof(q.join, q, 0.01))
      q:task_done()
      assert.is_true(q:join(1))
    end)

    it("task_done raises when called more times than items were put", function()
      local q = skein.queue()
      assert.matches("more times", tostring(errof(q.task_done, q)))
      q:put(1)
      q:task_done()
      assert.matches("more times", tostring(errof(q.task_done, q)))
    end)
  end)

  describe("select", function()
    it("returns the index and item of whichever queue has one", function()
      local a, b = skein.queue(), skein.queue()
      b:put("from b")
      assert.same({2, "from b"}, {skein.select({a, b}, 1)})
      skein.spawn(function() skein.sleep(0.01) a:put("from a") end)
      assert.same({1, "from a"}, {skein.select({a, b}, 1)})
      assert.is_nil(skein.select({a, b}, 0.01))
      local p = skein.queue{order = "priority"}
      p:put("urgent", 0)
      assert.same({2, "urgent", 0}, {skein.select({a, p}, 1)})
    end)

    it("raises closed for a closed and drained queue", function()
      local a, b = skein.queue(), skein.queue()
      skein.spawn(function() skein.sleep(0.01) a:close() end)
      assert.equal("closed", kindof(skein.select, {a, b}, 1))
    end)

    it("hands an item on when a woken select takes another", function()
      local a, b = skein.queue(), skein.queue()
      local sel = skein.spawn(function() return skein.select({a, b}, 5) end)
      local other = skein.spawn(function() return b:get(5) end)
      skein.sleep(0.01)
      a:put("A")
      b:put("B")
      assert.same({1, "A"}, {sel:join(5)})
      assert.equal("B", other:join(5))
    end)
  end)

  describe("cancellation", function()
    it("cancelling a task blocked in get leaves the queue usable", function()
      local q = skein.queue()
      local t = skein.spawn(function() return q:get(5) end)
      skein.sleep(0.01)
      t:cancel()
      assert.equal("cancelled", kindof(t.join, t, 1))
      q:put("after")
      assert.equal("after", q:get(1))
      assert.equal(0, q:size())
    end)

    it("a woken getter that is cancelled passes the item on", function()
      local q = skein.queue()
      local a = skein.spawn(function() return q:get(5) end)
      local b = skein.spawn(function() return q:get(5) end)
      skein.sleep(0.01)
      q:put("only one")
      a:cancel()  -- a was woken for the item but never ran
      assert.equal("cancelled", kindof(a.join, a, 1))
      assert.equal("only one", b:join(2))
    end)

    it("cancelling a task blocked in put drops its item and frees the slot", function()
      local q = skein.queue(1)
      q:put("first")
      local t = skein.spawn(function() q:put("never", 5) end)
      skein.sleep(0.01)
      t:cancel()
      assert.equal("cancelled", kindof(t.join, t, 1))
      assert.equal("first", q:get(1))
      assert.same({false}, {q:try_get()})
      q:put("next", 1)
      assert.equal("next", q:get(1))
    end)
  end)

  describe("handles", function()
    it("is released by __close and unusable afterwards", function()
      local keep
      do
        local q <close> = skein.queue()
        q:put(1)
        keep = q
      end
      assert.matches("released", tostring(keep))
      assert.matches("after it was closed", tostring(errof(keep.put, keep, 1)))
    end)

    it("rejects a non-queue self", function()
      local q = skein.queue()
      assert.matches("skein.Queue expected", tostring(errof(q.put, {}, 1)))
      assert.matches("skein.Queue expected", tostring(errof(q.get, skein.event())))
      local a = skein.pipe()
      assert.matches("skein.Queue expected", tostring(errof(q.get, a)))
      assert.matches("skein.PipeEnd expected", tostring(errof(a.recv, q)))
    end)
  end)

  describe("between threads", function()
    it("is shared by reference with a thread", function()
      local q, back = skein.queue(), skein.queue()
      local t = skein.thread(function(q, back)
        for v in q:iter() do back:put(v * v) end
        return "drained"
      end, q, back)
      for i = 1, 10 do q:put(i) end
      q:close()
      assert.equal("drained", t:join(10))
      for i = 1, 10 do assert.equal(i * i, back:get(5)) end
    end)

    it("applies back-pressure to a producer thread", function()
      local q = skein.queue(3)
      local t = skein.thread(function(q)
        local max = 0
        for i = 1, 200 do
          q:put(i, 5)
          local n = q:size()
          if n > max then max = n end
        end
        q:put("end", 5)
        return max
      end, q)
      local n = 0
      while true do
        local v = q:get(5)
        if v == "end" then break end
        n = n + 1
        assert.equal(n, v)
        assert.is_true(q:size() <= 3)
        if n % 50 == 0 then skein.sleep(0.005) end
      end
      assert.is_true(t:join(10) <= 3)
    end)

    it("moves items between 4 threads with poison pills, nothing lost or duplicated", function()
      for _, maxsize in ipairs({0, 8}) do
        local q = skein.queue(maxsize)
        local results = skein.queue()
        local producers, consumers = {}, {}
        for p = 1, 2 do
          producers[p] = skein.thread(function(q, p)
            for i = 1, 5000 do q:put(p * 100000 + i, 10) end
          end, q, p)
        end
        for c = 1, 2 do
          consumers[c] = skein.thread(function(q, results)
            local got = {}
            while true do
              local v = q:get(10)
              if v == "STOP" then break end
              got[#got + 1] = v
            end
            results:put(got)
            return #got
          end, q, results)
        end
        for p = 1, 2 do producers[p]:join(20) end
        q:put("STOP", 10)
        q:put("STOP", 10)
        local total = consumers[1]:join(20) + consumers[2]:join(20)
        assert.equal(10000, total)
        local seen = {}
        for _ = 1, 2 do
          for _, v in ipairs(results:get(5)) do
            assert.is_nil(seen[v], "duplicate " .. tostring(v))
            seen[v] = true
          end
        end
        for p = 1, 2 do
          for i = 1, 5000 do assert.is_true(seen[p * 100000 + i], "lost " .. (p * 100000 + i)) end
        end
        assert.equal(0, q:size())
      end
    end)

    it("wakes getters and putters blocked in threads on close", function()
      local q, full = skein.queue(), skein.queue(1)
      full:put("x")
      local g = skein.thread(function(q) return pcall(q.get, q, 10) end, q)
      local p = skein.thread(function(full) return pcall(full.put, full, "y", 10) end, full)
      skein.sleep(0.05)
      local t0 = skein.now()
      q:close()
      full:close()
      local ok1, e1 = g:join(5)
      local ok2, e2 = p:join(5)
      assert.is_false(ok1)
      assert.equal("closed", e1.kind)
      assert.is_false(ok2)
      assert.equal("closed", e2.kind)
      assert.is_true(skein.now() - t0 < 2)
    end)

    it("task_done in threads releases join in the main worker", function()
      local q = skein.queue()
      local workers = {}
      for w = 1, 2 do
        workers[w] = skein.thread(function(q)
          for v in q:iter() do
            if v == false then q:task_done() break end
            q:task_done()
          end
        end, q)
      end
      for i = 1, 500 do q:put(i) end
      assert.is_true(q:join(10))
      q:put(false)
      q:put(false)
      for w = 1, 2 do workers[w]:join(10) end
      assert.is_true(q:join(1))
    end)

    it("does not lose a wake to a waiter whose thread has ended", function()
      local q = skein.queue()
      local t = skein.thread(function(q)
        skein.spawn{fn = function() q:get() end, daemon = true}  -- left waiting
        skein.sleep(0.02)
        return "ended"
      end, q)
      assert.equal("ended", t:join(5))
      local g = skein.spawn(function() return q:get(5) end)
      skein.sleep(0.01)
      local t0 = skein.now()
      q:put("for the living")
      assert.equal("for the living", g:join(5))
      assert.is_true(skein.now() - t0 < 1)
    end)

    it("wakes a getter asleep in another thread at a lone put, promptly", function()
      local q, back = skein.queue(), skein.queue()
      local t = skein.thread(function(q, back)
        local v = q:get()               -- no timeout: only the put's wake ends it
        back:put(v)
      end, q, back)
      skein.sleep(0.05)                 -- well past the getter's spin: asleep
      local t0 = skein.now()
      q:put("lone")
      assert.equal("lone", back:get(5))
      assert.is_true(skein.now() - t0 < 1)
      t:join(5)
    end)

    it("loses no wake in a ping-pong whose puts land as the getter goes to sleep", function()
      -- Each round is one put with no other traffic, after a pause of a
      -- varying length, so that some puts meet the other side spinning,
      -- some meet it registering and some find it asleep. A lost wake
      -- shows as a get that times out.
      local ping, pong = skein.queue(), skein.queue()
      local rounds = 3000
      local t = skein.thread(function(ping, pong, rounds)
        local x = 0
        for i = 1, rounds do
          local v = ping:get(5)
          for _ = 1, (i * 7919) % 3000 do x = x + 1 end
          pong:put(v + 1)
        end
        return x
      end, ping, pong, rounds)
      local x = 0
      for i = 1, rounds do
        for _ = 1, (i * 104729) % 3000 do x = x + 1 end
        ping:put(i)
        assert.equal(i + 1, pong:get(5))
      end
      t:join(10)
    end)

    it("carries a 10 MB string from one thread to another", function()
      local q = skein.queue(1)
      local t = skein.thread(function(q)
        local s = string.rep("0123456789", 1024 * 1024)
        q:put(s, 10)
        q:put(s:sub(1, 10) .. "!", 10)
      end, q)
      local big = q:get(10)
      assert.equal(10 * 1024 * 1024, #big)
      assert.equal("0123456789", big:sub(-10))
      assert.equal("0123456789!", q:get(10))
      t:join(10)
    end)

    it("lets select in the main worker wait on queues fed by threads", function()
      local a, b = skein.queue(), skein.queue()
      local t = skein.thread(function(a, b)
        skein.sleep(0.02)
        b:put("late b")
      end, a, b)
      assert.same({2, "late b"}, {skein.select({a, b}, 5)})
      t:join(5)
    end)
  end)
end)
