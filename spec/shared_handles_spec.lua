-- Thread and process handles cross to every worker of the process tree
-- (issue 16 item 2): a handle sent to a thread, a child, a thread of the
-- child or a grandchild joins the same worker there, takes part in
-- skein.select, reports the same failures, and a waiting join stops when
-- its task is cancelled. Handles also work in select where they were made.
local skein = require "skein"

describe("worker handles across workers", function()
  it("a process handle is joined by a thread of this process", function()
    local pr = skein.process{fn = function() return "from p", 7 end, name = "px"}
    local t = skein.thread(function(h) return h.name, h.kind, h:join(30) end, pr)
    assert.same({"px", "process", "from p", 7}, {t:join(60)})
    assert.same({"from p", 7}, {pr:join(30)})
  end)

  it("handles are selected where they were made and in a child", function()
    local gate = skein.event()
    local th = skein.thread(function(g) g:wait(30) return "thread" end, gate)
    local pr = skein.process(function(g) g:wait(30) return "process" end, gate)
    assert.is_nil(skein.select({th, pr}, 0.05))
    local p = skein.process(function(a, b, g)
      local none = skein.select({a, b}, 0.05)
      g:set()
      local seen = {}
      for _ = 1, 2 do
        local i, v = skein.select({a, b}, 30)
        seen[i] = v
        if i == 1 then a = skein.event() else b = skein.event() end
      end
      return none, seen[1], seen[2]
    end, th, pr, gate)
    assert.same({nil, "thread", "process"}, {p:join(60)})
    local i, v = skein.select({th}, 5)
    assert.same({1, "thread"}, {i, v})
  end)

  it("a failure reads the same from a child", function()
    local th = skein.thread(function() error("thread boom") end)
    local pr = skein.process(function() error("process boom") end)
    local p = skein.process(function(a, b)
      local ok1, e1 = pcall(a.join, a, 30)
      local ok2, e2 = pcall(b.join, b, 30)
      return ok1, e1.kind, e1.message, ok2, e2.kind, e2.message
    end, th, pr)
    local ok1, k1, m1, ok2, k2, m2 = p:join(60)
    assert.is_false(ok1)
    assert.equal("remote", k1)
    assert.matches("thread boom", m1)
    assert.is_false(ok2)
    assert.equal("remote", k2)
    assert.matches("process boom", m2)
  end)

  it("a child kills a process it was handed and sees how it ended", function()
    local victim = skein.process(function() skein.sleep(3600) end)
    local p = skein.process(function(h)
      local sent = h:kill()
      local ok, e = pcall(h.join, h, 30)
      return sent, ok, e.kind, h.exit_signal, h:alive(), h:kill()
    end, victim)
    assert.same({true, false, "worker_died", 9, false, false}, {p:join(60)})
  end)

  it("a join waiting in a child stops when its task is cancelled", function()
    local gate = skein.event()
    local th = skein.thread(function(g) g:wait(30) return 1 end, gate)
    local p = skein.process(function(h)
      local t = skein.spawn(function() return h:join() end)
      skein.sleep(0.1)
      local t0 = skein.now()
      t:cancel()
      local ok, e = pcall(t.join, t, 5)
      return ok, e.kind, skein.now() - t0
    end, th)
    local ok, kind, took = p:join(60)
    assert.is_false(ok)
    assert.equal("cancelled", kind)
    assert.is_true(took < 2)
    gate:set()
    assert.equal(1, th:join(30))
  end)

  it("a handle whose owner process died fails its join with worker_died", function()
    local q = skein.queue()
    local p = skein.process(function(out)
      out:put(skein.thread(function() skein.sleep(3600) end))
      skein.sleep(3600)
    end, q)
    local h = q:get(30)
    assert.is_true(h:alive())
    p:kill()
    local ok, e = pcall(h.join, h, 30)
    assert.is_false(ok)
    assert.equal("worker_died", e.kind)
  end)
end)
