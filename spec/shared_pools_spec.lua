-- Pools cross to every worker of the process tree (issue 16 item 2): a
-- thread or process pool sent to a thread, a child process, a thread of
-- that child or a grandchild keeps its methods there; submit, map, stats,
-- close and join reach the pool's owner, and the futures that come back are
-- shared objects (get, select, cancel from anywhere).
local skein = require "skein"

describe("pools across workers", function()
  it("reach a thread, a child, a thread of the child and a grandchild", function()
    local pool <close> = skein.pool{kind = "thread", size = 2}
    local function use(p, x)
      local f = p:submit(function(y) return y * 2 end, x)
      local m = p:map(function(y) return y + 1 end, {x, x + 1})
      return f:get(30), m[1], m[2]
    end
    local t = skein.thread(use, pool, 1)
    assert.same({2, 2, 3}, {t:join(60)})
    local p = skein.process(function(pl, fn)
      local th = skein.thread(fn, pl, 10)
      local g = skein.process(fn, pl, 100)
      local a = {fn(pl, 1000)}
      local b = {th:join(60)}
      local c = {g:join(60)}
      return a[1], a[2], b[1], b[3], c[1], c[3]
    end, pool, use)
    assert.same({2000, 1001, 20, 12, 200, 102}, {p:join(120)})
    assert.is_true(pool:stats().done >= 4)
  end)

  it("a process pool is used from a child, and its futures come back", function()
    local pool <close> = skein.pool{kind = "process", size = 1}
    local p = skein.process(function(pl)
      local f = pl:submit(function() return "from the pool", skein.self().kind end)
      f:wait(30)
      return f, pl:stats().size
    end, pool)
    local f, size = p:join(60)
    assert.equal(1, size)
    assert.same({"from the pool", "process"}, {f:get(30)})
  end)

  it("futures a child submitted are cancelled and selected there", function()
    local pool <close> = skein.pool{kind = "thread", size = 1}
    local gate = skein.event()
    local p = skein.process(function(pl, g)
      local busy = pl:submit(function(e) e:wait(30) return "busy" end, g)
      local later = pl:submit(function() return "later" end)
      local cancelled = later:cancel()
      g:set()
      local i, v = skein.select({busy}, 30)
      return cancelled, later:status(), i, v
    end, pool, gate)
    assert.same({true, "cancelled", 1, "busy"}, {p:join(60)})
  end)

  it("close from a holder closes the owner's pool", function()
    local pool = skein.pool{kind = "thread", size = 1}
    local t = skein.thread(function(pl)
      pl:close()
      return pl:join(30)
    end, pool)
    t:join(60)
    assert.is_true(pool:stats().closed)
    local ok, e = pcall(pool.submit, pool, function() end)
    assert.is_false(ok)
    assert.equal("closed", e.kind)
  end)

  it("a copy keeps the pool alive after its owner dropped it; the last copy's going closes it", function()
    local function workers() return skein.stats().workers end
    local base = workers()
    local q = skein.queue()
    do
      local pool = skein.pool{kind = "thread", size = 2}
      pool:map(function(x) skein.sleep(0.05) return x end, {1, 2})   -- both workers started
      q:put(pool)
    end
    collectgarbage()
    collectgarbage()
    assert.equal(base + 2, workers())       -- still there: the copy in q holds it
    local t = skein.thread(function(queue)
      local pl = queue:get(5)
      return pl:submit(function() return "still served" end):get(30)
    end, q)
    assert.equal("still served", t:join(60))
    t = nil
    collectgarbage()
    collectgarbage()
    -- No copy is left anywhere: within a few seconds the pool closes and
    -- its workers exit.
    local deadline = skein.now() + 10
    while workers() > base and skein.now() < deadline do
      collectgarbage()
      skein.sleep(0.1)
    end
    assert.equal(base, workers())
  end)

  it("a pool dropped with no copies anywhere closes at once", function()
    local base = skein.stats().workers
    do
      local pool = skein.pool{kind = "thread", size = 2}
      pool:map(function(x) skein.sleep(0.05) return x end, {1, 2})
      assert.equal(base + 2, skein.stats().workers)
    end
    collectgarbage()
    collectgarbage()
    local deadline = skein.now() + 5
    while skein.stats().workers > base and skein.now() < deadline do skein.sleep(0.05) end
    assert.equal(base, skein.stats().workers)
  end)

  it("raise worker_died when the owner's process is gone", function()
    local q = skein.queue()
    local p = skein.process(function(out)
      local pool = skein.pool{kind = "thread", size = 1}
      out:put(pool)
      skein.sleep(3600)
    end, q)
    local pool = q:get(30)
    assert.equal(5, pool:submit(function() return 5 end):get(30))
    p:kill()
    pcall(p.join, p, 30)
    local ok, e = pcall(pool.submit, pool, function() return 6 end)
    assert.is_false(ok)
    assert.equal("worker_died", e.kind)
  end)

  it("a coroutine pool says it stays with the worker that made it", function()
    local pool <close> = skein.pool{kind = "coroutine", size = 2}
    local t = skein.thread(function(pl) return pcall(pl.submit, pl, function() end) end, pool)
    local ok, e = t:join(60)
    assert.is_false(ok)
    assert.equal("usage", e.kind)
    assert.matches("used only by the worker that made it", e.message)
  end)
end)
