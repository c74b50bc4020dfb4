-- Futures are shared objects across processes (issue 16 item 2): once a
-- future crosses to another process it lives in the shared segment, and
-- every worker of the tree may get it, wait for it in select, cancel it or
-- stop waiting for it; references are counted across processes and the
-- segment's use returns to where it started once every holder dropped them.
local skein = require "skein"

describe("futures across processes", function()
  it("are read by a child, a thread of it and a grandchild", function()
    local pool <close> = skein.pool{kind = "thread", size = 2}
    local f = pool:submit(function() skein.sleep(0.2) return "v", 42 end)
    local p = skein.process(function(fut)
      local t = skein.thread(function(f2) return f2:get(30) end, fut)
      local g = skein.process(function(f3) return f3:get(30) end, fut)
      local a, b = fut:get(30)
      return a, b, t:join(60), g:join(60), fut:status()
    end, f)
    assert.same({"v", 42, "v", "v", "done"}, {p:join(90)})
    assert.same({"v", 42}, {f:get(5)})
  end)

  it("work in a child's select, with a timeout", function()
    local pool <close> = skein.pool{kind = "thread", size = 1}
    local gate = skein.event()
    local slow = pool:submit(function(g) g:wait(30) return "late" end, gate)
    local p = skein.process(function(fut, g)
      local early = fut:wait(0.01)
      g:set()
      local i, v = skein.select({fut}, 30)
      return early, i, v
    end, slow, gate)
    assert.same({false, 1, "late"}, {p:join(60)})
  end)

  it("are cancelled from a child before they start, and never run", function()
    local pool <close> = skein.pool{kind = "thread", size = 1}
    local ran = skein.event()
    local gate = skein.event()
    local blocker = pool:submit(function(g) g:wait(30) return "blocker" end, gate)
    local pending = pool:submit(function(r) r:set() return "ran" end, ran)
    -- A task of this process waits on the future before it crosses: the
    -- child's cancel must wake it too.
    local waiter = skein.spawn(function() return pcall(pending.get, pending, 30) end)
    skein.sleep(0.05)
    local p = skein.process(function(fut) return fut:cancel(), fut:status() end, pending)
    assert.same({true, "cancelled"}, {p:join(60)})
    local ok, e = waiter:join(30)
    assert.is_false(ok)
    assert.equal("cancelled", e.kind)
    gate:set()
    assert.equal("blocker", blocker:get(30))
    pool:close()
    pool:join(30)
    assert.is_false(ran:is_set())
    assert.equal("cancelled", pending:status())
  end)

  it("stop a child's waiting get when its task is cancelled", function()
    local pool <close> = skein.pool{kind = "thread", size = 1}
    local gate = skein.event()
    local f = pool:submit(function(g) g:wait(30) return 1 end, gate)
    local p = skein.process(function(fut)
      local t = skein.spawn(function() return fut:get() end)
      skein.sleep(0.1)
      local t0 = skein.now()
      t:cancel()
      local ok, e = pcall(t.join, t, 5)
      return ok, e and e.kind, skein.now() - t0
    end, f)
    local ok, kind, took = p:join(60)
    assert.is_false(ok)
    assert.equal("cancelled", kind)
    assert.is_true(took < 2)
    gate:set()
    assert.equal(1, f:get(30))
  end)

  it("made by a child's pool reach the parent, and fail when that child dies", function()
    local q = skein.queue()
    local p = skein.process(function(out)
      local pool = skein.pool{kind = "thread", size = 1}
      local quick = pool:submit(function() return "quick" end)
      quick:get(30)
      local never = pool:submit(function() skein.sleep(3600) end)
      out:put({quick, never})
      skein.sleep(3600)
    end, q)
    local fs = q:get(30)
    assert.equal("quick", fs[1]:get(5))
    assert.is_false(fs[2]:done())
    p:kill()
    local ok, e = pcall(fs[2].get, fs[2], 30)
    assert.is_false(ok)
    assert.equal("worker_died", e.kind)
    assert.matches("owned this future ended", e.message)
  end)

  it("are freed when the last holder in any process drops them (worker handles too)", function()
    -- In a fresh process tree, so that nothing another spec left behind
    -- is collected meanwhile.
    local script = os.tmpname()
    local fh = assert(io.open(script, "w"))
    fh:write([==[
local skein = require "skein"
-- What the segment holds once this worker dropped its garbage and the
-- daemons of dropped pools ended.
local function seg()
  collectgarbage()
  collectgarbage()
  skein.sleep(0.1)
  collectgarbage()
  local s = skein.stats()
  return s.shm_objects, s.shm_inuse
end
local keep = skein.event()   -- the segment exists from here on
local objects0, inuse0 = seg()
do
  local pool <close> = skein.pool{kind = "thread", size = 2}
  local q, done = skein.queue(), skein.queue()
  local child = skein.process(function(batches, acks)
    local sum = 0
    for batch in batches:iter() do
      for _, f in ipairs(batch) do sum = sum + f:get(30) end
      batch = nil
      collectgarbage()
      acks:put(true)
    end
    return sum
  end, q, done)
  -- 100 000 futures cross to the child, 1 000 at a time.
  for _ = 1, 100 do
    local batch = {}
    for j = 1, 1000 do batch[j] = pool:submit(function() return 1 end) end
    q:put(batch)
    batch = nil
    assert(done:get(60))
  end
  q:close()
  assert(child:join(120) == 100000)
  -- And back: futures of a child's pool, returned as its results.
  local sums = 0
  for _ = 1, 20 do
    local fs = skein.process(function()
      local cp = skein.pool{kind = "thread", size = 1}
      local list = {}
      for i = 1, 500 do list[i] = cp:submit(function() return i end) end
      list[500]:get(30)
      return list
    end):join(60)
    for _, f in ipairs(fs) do sums = sums + f:get(30) end
  end
  assert(sums == 20 * 125250)
  -- Objects in a process pool's results, whose replies may be held and
  -- sent in batches: each reply's references come with it.
  do
    local pp <close> = skein.pool{kind = "process", size = 2}
    local fs = {}
    for i = 1, 2000 do fs[i] = pp:submit(function() local q = skein.queue() q:put(i) return q end) end
    local t = 0
    for i = 1, 2000 do t = t + fs[i]:get(60):get(5) end
    assert(t == 2001000)
  end
  -- Worker handles go the same way: 200 thread handles and 20 process
  -- handles joined by a child.
  for _ = 1, 4 do
    local hs = {}
    for i = 1, 50 do hs[i] = skein.thread(function() return i end) end
    for i = 51, 55 do hs[i] = skein.process(function() return i end) end
    local s = skein.process(function(list)
      local t = 0
      for _, h in ipairs(list) do t = t + h:join(60) end
      return t
    end, hs):join(120)
    assert(s == 1540)
    for _, h in ipairs(hs) do h:join(60) end
  end
end
local objects1, inuse1 = seg()
print(objects0, objects1, inuse0, inuse1)
]==])
    fh:close()
    local p = io.popen(("timeout -k 2 300 %s %s 2>&1"):format(os.getenv("SKEIN_BIN") or "skein", script))
    local out = p:read("a")
    p:close()
    os.remove(script)
    local o0, o1, b0, b1 = out:match("^(%d+)\t(%d+)\t(%d+)\t(%d+)\n$")
    assert.is_not_nil(o0, out)
    assert.equal(o0, o1)
    assert.equal(b0, b1)
  end)
end)
