-- Pipes: two connected ends, duplex or one-way, between tasks and threads;
-- closing, end of data, poll, select. Every wait is bounded. Thread
-- functions use the global `skein`.

local errors = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/errors.lua")
local errof, kindof = errors.errof, errors.kindof

describe("skein.pipe", function()
  it("carries values both ways on a duplex pipe", function()
    local a, b = skein.pipe()
    a:send("to b")
    a:send({n = 1, list = {1, 2, 3}})
    b:send(42)
    assert.equal("to b", b:recv(1))
    assert.same({n = 1, list = {1, 2, 3}}, b:recv(1))
    assert.equal(42, a:recv(1))
    assert.matches("^skein.pipe end %(duplex%)$", tostring(a))
  end)

  it("keeps order and copies values at send time", function()
    local a, b = skein.pipe()
    local t = {v = 1}
    for i = 1, 300 do a:send(i) end
    a:send(t)
    t.v = 2
    for i = 1, 300 do assert.equal(i, b:recv(1)) end
    assert.equal(1, b:recv(1).v)
  end)

  it("makes a one-way pipe of a receiving and a sending end", function()
    local r, w = skein.pipe(false)
    assert.matches("receiving end", tostring(r))
    assert.matches("sending end", tostring(w))
    assert.matches("cannot send", tostring(errof(r.send, r, 1)))
    assert.matches("cannot receive", tostring(errof(w.recv, w, 1)))
    assert.matches("cannot receive", tostring(errof(w.poll, w)))
    w:send("one way")
    assert.equal("one way", r:recv(1))
    assert.matches("boolean", tostring(errof(skein.pipe, "no")))
  end)

  it("raises timeout when nothing arrives in time", function()
    local a, b = skein.pipe()
    local t0 = skein.now()
    assert.equal("timeout", kindof(b.recv, b, 0.05))
    assert.is_true(skein.now() - t0 >= 0.04)
    assert.matches("negative", tostring(errof(b.recv, b, -1)))
  end)

  it("polls without taking anything", function()
    local a, b = skein.pipe()
    assert.is_false(b:poll())
    assert.is_false(b:poll(0.01))
    a:send("x")
    assert.is_true(b:poll())
    assert.is_true(b:poll(1))
    assert.equal("x", b:recv(1))
    skein.spawn(function() skein.sleep(0.01) a:send("later") end)
    assert.is_true(b:poll(5))
    assert.equal("later", b:recv(1))
  end)

  it("wakes a task blocked in recv", function()
    local a, b = skein.pipe()
    local t = skein.spawn(function() return b:recv(5) end)
    skein.sleep(0.01)
    a:send("hello")
    assert.equal("hello", t:join(5))
  end)

  describe("closing", function()
    it("lets the peer receive what was sent, then raises closed", function()
      local a, b = skein.pipe()
      a:send(1)
      a:send(2)
      a:close()
      assert.is_true(a:closed())
      assert.equal(1, b:recv(1))
      assert.is_true(b:poll())
      assert.equal(2, b:recv(1))
      assert.is_true(b:poll())  -- recv would not block: it raises
      local kind, e = kindof(b.recv, b, 1)
      assert.equal("closed", kind)
      assert.matches("other end", e.message)
    end)

    it("makes sends to a closed peer raise closed", function()
      local a, b = skein.pipe()
      b:close()
      assert.equal("closed", kindof(a.send, a, "lost"))
      local r, w = skein.pipe(false)
      r:close()
      assert.equal("closed", kindof(w.send, w, "lost"))
    end)

    it("makes the closed end itself unusable", function()
      local a, b = skein.pipe()
      a:close()
      a:close()  -- idempotent
      local kind, e = kindof(a.send, a, 1)
      assert.equal("closed", kind)
      assert.matches("this pipe end is closed", e.message)
      assert.equal("closed", kindof(a.recv, a, 1))
      assert.matches("closed%)$", tostring(a))
    end)

    it("wakes a blocked receiver when the peer closes", function()
      local a, b = skein.pipe()
      local t = skein.spawn(function() return b:recv(5) end)
      skein.sleep(0.01)
      local t0 = skein.now()
      a:close()
      assert.equal("closed", kindof(t.join, t, 5))
      assert.is_true(skein.now() - t0 < 1)
    end)

    it("closes an end whose last handle is collected", function()
      local r, w = skein.pipe(false)
      w:send("last words")
      w = nil
      collectgarbage()
      collectgarbage()
      assert.equal("last words", r:recv(1))
      assert.equal("closed", kindof(r.recv, r, 1))
    end)
  end)

  it("fails at send with kind marshal, naming the path", function()
    local a, b = skein.pipe()
    local kind, e = kindof(a.send, a, {fh = io.stdout})
    assert.equal("marshal", kind)
    assert.equal("item.fh", e.path)
    assert.is_false(b:poll())
  end)

  it("is something select can receive on", function()
    local a, b = skein.pipe()
    local q = skein.queue()
    skein.spawn(function() skein.sleep(0.01) a:send("via pipe") end)
    assert.same({2, "via pipe"}, {skein.select({q, b}, 5)})
    assert.is_nil(skein.select({q, b}, 0.01))
    a:close()
    assert.equal("closed", kindof(skein.select, {q, b}, 1))
  end)

  describe("between threads", function()
    it("plays ping-pong with a thread over a duplex pipe", function()
      local a, b = skein.pipe()
      local t = skein.thread(function(b)
        local n = 0
        while true do
          local v = b:recv(10)
          if v == "bye" then return n end
          n = n + 1
          b:send(v + 1)
        end
      end, b)
      local v = 0
      for _ = 1, 100 do
        a:send(v)
        v = a:recv(10)
      end
      a:send("bye")
      assert.equal(100, v)
      assert.equal(100, t:join(10))
    end)

    it("reports the end of data across threads", function()
      local r, w = skein.pipe(false)
      local t = skein.thread(function(w)
        for i = 1, 1000 do w:send(i) end
        w:close()
      end, w)
      w = nil
      local sum, n = 0, 0
      while true do
        local ok, v = pcall(r.recv, r, 10)
        if not ok then
          assert.equal("closed", v.kind)
          break
        end
        sum, n = sum + v, n + 1
      end
      assert.equal(1000, n)
      assert.equal(500500, sum)
      t:join(10)
    end)

    it("wakes a thread blocked in recv when the main worker closes the peer", function()
      local a, b = skein.pipe()
      local t = skein.thread(function(b) return pcall(b.recv, b, 10) end, b)
      skein.sleep(0.05)
      a:close()
      local ok, e = t:join(5)
      assert.is_false(ok)
      assert.equal("closed", e.kind)
    end)

    it("sends ends themselves to a thread", function()
      local a, b = skein.pipe()
      local carrier = skein.queue()
      local t = skein.thread(function(carrier)
        local pipe_end = carrier:get(10)
        pipe_end:send("hello from the thread")
      end, carrier)
      carrier:put(b)
      assert.equal("hello from the thread", a:recv(10))
      t:join(10)
    end)
  end)
end)
