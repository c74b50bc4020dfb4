-- Pool workers keep running the tasks their initializer started while they
-- wait for jobs (thread_pool.c: a worker with work of its own sleeps in its
-- loop; proc_child.c: next_job_frame), and still take jobs at once.
local skein = require "skein"

for _, kind in ipairs({"thread", "process"}) do
  describe("a " .. kind .. " pool's background between jobs", function()
    it("runs a timer loop the initializer started while no job runs", function()
      local ticks = skein.queue()
      local pool <close> = skein.pool{kind = kind, size = 1, init = function(q)
        skein.spawn(function()
          for i = 1, 1000 do q:put(i) skein.sleep(0.01) end
        end)
      end, init_args = {ticks}}
      assert.equal(1, pool:submit(function() return 1 end):get(30))
      local before = ticks:size()
      skein.sleep(0.6)
      local during = ticks:size() - before
      -- About 60 at this pace; before, none ran until the next job.
      assert.is_true(during >= 10, during .. " ticks while idle")
    end)

    it("wakes a background task that waits on a queue another worker fills", function()
      local inbox, outbox = skein.queue(), skein.queue()
      local pool <close> = skein.pool{kind = kind, size = 1, init = function(i, o)
        skein.spawn(function()
          while true do
            local v = i:get()
            if v == nil then return end
            o:put("echo " .. v)
          end
        end)
      end, init_args = {inbox, outbox}}
      assert.equal(2, pool:submit(function() return 2 end):get(30))
      for n = 1, 5 do
        skein.sleep(0.05)          -- the worker is idle when the item comes
        inbox:put(n)
        assert.equal("echo " .. n, outbox:get(10))
      end
    end)

    it("serves a pool one of its jobs made and returned while the worker is idle", function()
      local outer <close> = skein.pool{kind = kind, size = 1}
      local inner = outer:submit(function()
        local p = skein.pool{kind = "thread", size = 1}
        _G.kept_pool = p          -- the maker keeps it; the caller gets a copy
        return p
      end):get(30)
      skein.sleep(0.2)            -- the maker's worker has no job now
      assert.equal(42, inner:submit(function() return 42 end):get(10))
    end)

    it("takes jobs at once and in full while its background runs, and closes", function()
      local pool = skein.pool{kind = kind, size = 2, init = function()
        skein.spawn(function()
          while true do skein.sleep(0.005) end
        end)
      end}
      local fs = {}
      for i = 1, 300 do fs[i] = pool:submit(function(x) return x * 2 end, i) end
      for i = 1, 300 do assert.equal(2 * i, fs[i]:get(30)) end
      skein.sleep(0.1)
      local t0 = skein.now()
      assert.equal(7, pool:submit(function() return 7 end):get(30))
      -- A submit wakes an idle worker through its loop, not after a tick.
      assert.is_true(skein.now() - t0 < 2)
      pool:close()
      assert.is_true(pool:join(30) ~= false)
    end)
  end)
end
