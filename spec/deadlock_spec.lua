-- Waits that nothing can ever end are reported as deadlocks, not hangs —
-- also on shared objects, as long as no other worker could end them.
local skein = require "skein"

local function kind_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return skein.is_error(e) and e.kind or tostring(e)
end

describe("deadlock detection", function()
  it("catches a get on a queue no other worker holds", function()
    local q = skein.queue()
    assert.equal("deadlock", kind_of(q.get, q))
  end)

  it("catches a wait on an event nobody can set", function()
    local ev = skein.event()
    assert.equal("deadlock", kind_of(ev.wait, ev))
  end)

  it("catches a task joined while it waits on such a queue", function()
    local q = skein.queue()
    local t = skein.spawn(function() return q:get() end)
    assert.equal("deadlock", kind_of(t.join, t))
    t:cancel()
  end)

  it("does not fire while another worker may still end the wait", function()
    local q = skein.queue()
    skein.thread(function(queue) skein.sleep(0.2) queue:put("late") end, q)
    assert.equal("late", q:get(10))
    local p = skein.process(function(queue) skein.sleep(0.2) queue:put("from a process") end, q)
    assert.equal("from a process", q:get(30))
    p:join(30)
  end)

  it("fires once the only process that could end the wait is gone", function()
    -- The wait begins while the child (which shares the queue) is alive,
    -- and must not hang after it exits.
    local q = skein.queue()
    local p = skein.process(function(queue) skein.sleep(0.3) end, q)
    local t0 = skein.now()
    assert.equal("deadlock", kind_of(q.get, q))
    assert.is_true(skein.now() - t0 < 20)
    p:join(30)
    local ev = skein.event()
    p = skein.process(function(e) skein.sleep(0.3) end, ev)
    assert.equal("deadlock", kind_of(ev.wait, ev))
    p:join(30)
  end)

  it("does not lose a wake sent by a process just before it exits", function()
    for _ = 1, 20 do
      local here, there = skein.pipe()
      local p = skein.process(function(conn) conn:send("bye") conn:close() end, there)
      assert.equal("bye", here:recv(30))
      p:join(30)
    end
  end)

  it("still honours timeouts", function()
    local q = skein.queue()
    assert.equal("timeout", kind_of(q.get, q, 0.05))
  end)
end)
