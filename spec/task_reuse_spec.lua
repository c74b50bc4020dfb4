-- Tasks reuse the coroutines of finished tasks (runtime/host/tasks.c,
-- keep_coroutine): what a reused coroutine must not carry over, and when a
-- coroutine is not reused.
local skein = require "skein"
local cli = require "spec.support.cli"

local function spawn_join(fn, ...)
  return skein.spawn(fn, ...):join(5)
end

describe("coroutine reuse", function()
  it("spawning one task at a time allocates no new coroutine per task", function()
    -- In a fresh process, so that nothing of the test runner's allocates
    -- between the two counts.
    local r = cli.run({"-e", [[
      for _ = 1, 10 do skein.spawn(function() skein.yield() end):join(5) end
      collectgarbage()
      collectgarbage("stop")
      local before = collectgarbage("count")
      local n, keep = 5000, {}
      for i = 1, n do
        local t = skein.spawn(function(x) skein.yield() return x end, i)
        assert(t:join(5) == i)
        keep[i] = t              -- the task objects stay; their coroutines go back
      end
      print(string.format("%.0f", (collectgarbage("count") - before) * 1024 / n))
    ]]}, {timeout = 60})
    assert.equal(0, r.code, r.err)
    local per_task = tonumber(r.out:match("%d+"))
    -- A task object (with its share of the list) is about 450 bytes; a new
    -- coroutine with its stack would add about 1 KiB.
    assert.is_true(per_task < 900, per_task .. " bytes per task")
  end)

  it("gives every task that takes its own coroutine a coroutine of its own", function()
    local seen, count = {}, 0
    for _ = 1, 300 do
      local co, main = spawn_join(function() return coroutine.running() end)
      assert.is_false(main)
      assert.equal("thread", type(co))
      if not seen[co] then count = count + 1 end
      seen[co] = true
    end
    assert.equal(300, count)
  end)

  it("a task after one that took its coroutine does not get that coroutine", function()
    local first = spawn_join(function() return coroutine.running() end)
    for _ = 1, 50 do
      local t = skein.spawn(function() skein.yield() end)
      t:join(5)
    end
    -- The first task's coroutine is still its own: finished, never resumed again.
    assert.equal("dead", coroutine.status(first))
  end)

  it("clears a hook the last task left on its coroutine", function()
    local hits = 0
    spawn_join(function()
      debug.sethook(function() hits = hits + 1 end, "", 1)
      debug.sethook()             -- (make sure the hook itself works first)
      debug.sethook(function() hits = hits + 1 end, "", 1)
    end)
    local after_first = hits
    assert.is_true(after_first > 0)
    for _ = 1, 20 do
      spawn_join(function()
        local s = 0
        for i = 1, 100 do s = s + i end
        return s
      end)
    end
    assert.equal(after_first, hits)
  end)

  it("starts a reused coroutine with only its own arguments and no leftovers", function()
    for i = 1, 200 do
      local r = table.pack(spawn_join(function(...) return select("#", ...), ... end, i, nil, "x"))
      assert.same({n = 4, 3, i, nil, "x"}, r)
    end
  end)

  it("closes a finished task's <close> variables before its coroutine is reused", function()
    local closed = 0
    for _ = 1, 100 do
      spawn_join(function()
        local c <close> = setmetatable({}, {__close = function() closed = closed + 1 end})
        skein.yield()
      end)
    end
    assert.equal(100, closed)
  end)

  it("runs tasks after failed and cancelled ones normally", function()
    for i = 1, 50 do
      local bad = skein.spawn(function() skein.yield() error("boom " .. i) end)
      local ok, e = pcall(bad.join, bad, 5)
      assert.is_false(ok)
      assert.matches("boom " .. i, tostring(e))
      local never = skein.spawn(function() skein.sleep(10) end)
      skein.yield()
      never:cancel()
      assert.equal(i, spawn_join(function() skein.yield() return i end))
    end
  end)

  it("keeps coroutine.running as Lua's at the root", function()
    local co, main = coroutine.running()
    assert.is_true(main)
    assert.equal("thread", type(co))
  end)
end)
