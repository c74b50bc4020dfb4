-- The edges of the waits on queues, pipe ends and select (they all run
-- through the one wait loop, sk_wait_on): a handle closed by <close> while
-- a task waits on it, a woken poll that passes the wake on, a woken putter
-- that is cancelled, select's links removed from every candidate. Every
-- wait is bounded so that a hang fails instead of stalling the suite.

local errors = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/errors.lua")
local kindof = errors.kindof

-- Closes the handle `h` (its __close) from another task after a moment.
local function close_soon(h)
  return skein.spawn(function()
    skein.sleep(0.02)
    getmetatable(h).__close(h)
  end)
end

describe("waits on queues", function()
  it("a get whose handle is closed meanwhile raises closed", function()
    local q = skein.queue()
    local t = skein.spawn(function() return q:get(0.3) end)
    close_soon(q):join(1)
    local kind, e = kindof(t.join, t, 2)
    assert.equal("closed", kind)
    assert.matches("after it was closed", e.message)
  end)

  it("a put whose handle is closed meanwhile raises closed", function()
    local q = skein.queue(1)
    q:put("first")
    local t = skein.spawn(function() q:put({"never"}, 0.3) end)
    close_soon(q):join(1)
    assert.equal("closed", (kindof(t.join, t, 2)))
  end)

  it("a join whose handle is closed meanwhile raises closed", function()
    local q = skein.queue()
    q:put(1)
    local t = skein.spawn(function() return q:join(0.3) end)
    close_soon(q):join(1)
    assert.equal("closed", (kindof(t.join, t, 2)))
  end)

  it("a woken putter that is cancelled passes the room on", function()
    local q = skein.queue(1)
    q:put("first")
    local a = skein.spawn(function() q:put("a", 5) end)
    local b = skein.spawn(function() q:put("b", 5) end)
    skein.sleep(0.01)
    assert.equal("first", q:get(1))
    a:cancel()  -- a was woken for the room but never ran
    assert.equal("cancelled", (kindof(a.join, a, 1)))
    b:join(2)
    assert.equal("b", q:get(1))
    assert.same({false}, {q:try_get()})
  end)

  it("a get in a skein.timeout scope ends with the scope and leaves the queue usable", function()
    local q = skein.queue()
    local t0 = skein.now()
    local ok, e = pcall(skein.timeout, 0.05, function() return q:get(5) end)
    assert.is_false(ok)
    assert.equal("timeout", e.kind)
    assert.is_true(skein.now() - t0 < 2)
    q:put("x")
    assert.equal("x", q:get(1))
  end)

  it("iter waits for items, then ends once closed and drained", function()
    local q = skein.queue()
    local seen = {}
    local t = skein.spawn(function()
      for v in q:iter() do seen[#seen + 1] = v end
      return #seen
    end)
    for i = 1, 3 do
      skein.sleep(0.01)
      q:put(i)
    end
    q:close()
    assert.equal(3, t:join(2))
    assert.same({1, 2, 3}, seen)
  end)
end)

describe("waits on pipe ends", function()
  it("a recv whose handle is closed meanwhile raises closed", function()
    local a, b = skein.pipe()
    local t = skein.spawn(function() return b:recv(0.3) end)
    close_soon(b):join(1)
    assert.equal("closed", (kindof(t.join, t, 2)))
    a:close()
  end)

  it("a recv on an end closed meanwhile raises closed", function()
    local a, b = skein.pipe()
    local t = skein.spawn(function() return b:recv(5) end)
    skein.sleep(0.01)
    b:close()
    local kind, e = kindof(t.join, t, 2)
    assert.equal("closed", kind)
    assert.matches("this pipe end is closed", e.message)
  end)

  it("a woken poll passes the wake on to a receiver", function()
    local a, b = skein.pipe()
    local p = skein.spawn(function() return b:poll(5) end)
    skein.sleep(0.01)
    local r = skein.spawn(function() return b:recv(5) end)
    skein.sleep(0.01)
    a:send("one")  -- wakes the oldest waiter, the poll, which takes nothing
    assert.is_true(p:join(2))
    assert.equal("one", r:join(1))  -- woken, not found by its own timeout
  end)

  it("poll without a timeout answers at once", function()
    local a, b = skein.pipe()
    assert.is_false(b:poll())
    a:send(1)
    assert.is_true(b:poll())
    assert.equal(1, b:recv(1))
    assert.is_false(b:poll(0.01))
  end)
end)

describe("select", function()
  it("leaves no waiter behind on the candidates it did not take", function()
    local a, b = skein.queue(), skein.queue()
    for _ = 1, 3 do
      local t = skein.spawn(function() return skein.select({a, b}, 5) end)
      skein.sleep(0.01)
      b:put("b")
      assert.same({2, "b"}, {t:join(2)})
    end
    -- A getter of a now gets the next item: no stale select record takes
    -- its wake.
    local g = skein.spawn(function() return a:get(5) end)
    skein.sleep(0.01)
    a:put("a")
    assert.equal("a", g:join(1))
  end)

  it("waits on tasks and queues together", function()
    local q = skein.queue()
    local slow = skein.spawn(function() skein.sleep(0.05) return "done" end)
    assert.same({1, "done"}, {skein.select({slow, q}, 2)})
    local never = skein.spawn(function() skein.sleep(5) end)
    local t = skein.spawn(function() return skein.select({never, q}, 2) end)
    skein.sleep(0.01)
    q:put("q")
    assert.same({2, "q"}, {t:join(2)})
    never:cancel()
  end)

  it("a candidate closed while select waits raises closed at the next look", function()
    local a, b = skein.queue(), skein.queue()
    local t = skein.spawn(function() return skein.select({a, b}, 2) end)
    close_soon(a):join(1)
    b:put("b")
    local kind, e = kindof(t.join, t, 3)
    assert.equal("closed", kind)
    assert.matches("item 1 of the list was closed", e.message)
  end)

  it("returns nil on timeout and at once for an empty list", function()
    assert.is_nil(skein.select({}, 5))
    assert.is_nil(skein.select({skein.queue()}, 0.01))
  end)
end)

describe("waits across a queue's move to the shared segment", function()
  -- Sending a queue to a process moves it into the segment; waits that
  -- began on the local queue look again and go on waiting on the shared
  -- one.
  it("serves a getter, a select and a joiner that blocked before the move", function()
    local q, q2, q3 = skein.queue(), skein.queue(), skein.queue()
    q3:put("work")
    local getter = skein.spawn(function() return q:get(20) end)
    local sel = skein.spawn(function() return skein.select({q2}, 20) end)
    local joiner = skein.spawn(function() return q3:join(20) end)
    skein.sleep(0.05)
    local p = skein.process(function(a, b, c)
      skein.sleep(0.1)
      a:put("x")
      b:put("y")
      assert(c:get(5) == "work")
      c:task_done()
    end, q, q2, q3)
    local ok, e = pcall(function()
      assert.equal("x", getter:join(20))
      assert.same({1, "y"}, {sel:join(20)})
      assert.is_true(joiner:join(20))
    end)
    if p:alive() then p:kill() end
    pcall(p.join, p, 10)
    assert(ok, e)
  end)

  it("serves a putter blocked on a full queue before the move", function()
    local q = skein.queue(1)
    q:put("first")
    local putter = skein.spawn(function() q:put("second", 20) return true end)
    skein.sleep(0.05)
    local p = skein.process(function(a)
      skein.sleep(0.1)
      return a:get(5)
    end, q)
    local ok, e = pcall(function()
      assert.equal("first", p:join(20))
      assert.is_true(putter:join(20))
      assert.equal("second", q:get(5))
    end)
    if p:alive() then p:kill() end
    pcall(p.join, p, 10)
    assert(ok, e)
  end)
end)
