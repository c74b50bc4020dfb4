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

  it("still honours timeouts", function()
    local q = skein.queue()
    assert.equal("timeout", kind_of(q.get, q, 0.05))
  end)
end)
