-- The worker's allocator (runtime/host/alloc.c) as a program meets it.
local skein = require "skein"
local cli = require "spec.support.cli"

local SKEIN = os.getenv("SKEIN_BIN") or ""
-- Sanitizer builds allocate with plain malloc, so the chunks this file is
-- about exist only in the other builds.
local POOLED = SKEIN:match("asan") == nil

-- minflt(path): minor page faults so far of a process or thread, from its
-- stat file (field 10). Source text, as a child process below uses it too.
local MINFLT = [[
  local function minflt(path)
    local f = assert(io.open(path))
    local s = f:read("a")
    f:close()
    local i = 0
    for v in s:match("%) (.*)$"):gmatch("%S+") do
      i = i + 1
      if i == 8 then return tonumber(v) end
    end
  end
  return minflt
]]
local stat_minflt = load(MINFLT)()
-- This process's.
local function minflt() return stat_minflt("/proc/self/stat") end

describe("the allocator's chunks", function()
  if POOLED then
    -- libuv starts a process with fork then exec; a fork write-protects the
    -- parent's private pages, and the next collection would fault on every
    -- page of the heap (thousands here, tens of thousands in a big program).
    it("are not inherited by fork, so starting a process leaves the next collection fault-free", function()
      local kept = {}
      for i = 1, 100000 do kept[i] = skein.spawn(function() return { i } end) end
      for i = 1, #kept do kept[i] = kept[i]:join() end
      collectgarbage()
      assert.are.equal(1, skein.process(function() return 1 end):join(30))
      local before = minflt()
      collectgarbage()
      local faults = minflt() - before
      assert.are.equal(100000, #kept)
      assert.is_true(faults < 500, faults .. " page faults in one collection")
    end)

    -- Once a heap outgrows its first chunk, each next segment of its chunks is
    -- made present by a helper thread of the process, from its end down, while
    -- the worker makes it present from its start up (alloc.c, populating
    -- ahead): a good
    -- share of a burst's page faults are then taken off the worker's thread.
    -- Counted per thread (/proc/thread-self/stat) and for the whole process
    -- (/proc/self/stat), in a fresh process.
    it("are made present ahead by a helper thread, which takes a share of a burst's page faults", function()
      local r = cli.run({"-e", "local minflt = (function() " .. MINFLT .. " end)()\n" .. [[
        local k0, mine0, all0 = collectgarbage("count"), minflt("/proc/thread-self/stat"), minflt("/proc/self/stat")
        local kept = {}
        for i = 1, 60000 do kept[i] = skein.spawn(function() skein.yield() return i end) end
        local peak = collectgarbage("count")
        for i = 1, #kept do assert(kept[i]:join(30) == i) end
        local mine, all = minflt("/proc/thread-self/stat") - mine0, minflt("/proc/self/stat") - all0
        print(mine, all - mine, math.floor((peak - k0) * 1024 / 4096))
      ]]}, {timeout = 60})
      assert.equal(0, r.code, r.err)
      local mine, others, pages = r.out:match("(%-?%d+)%s+(%-?%d+)%s+(%d+)")
      mine, others, pages = tonumber(mine), tonumber(others), tonumber(pages)
      assert.is_true(pages > 10000, pages .. " pages")
      local release = io.open("/proc/sys/kernel/osrelease"):read("l")
      local major, minor = release:match("^(%d+)%.(%d+)")
      local what = ("%d faults on the worker's thread, %d on others, for %d pages"):format(mine, others, pages)
      if tonumber(major) * 100 + tonumber(minor) >= 514 then   -- MADV_POPULATE_WRITE
        assert.is_true(others > pages / 10, what)
        assert.is_true(mine < pages * 0.85, what)
      else
        assert.is_true(mine <= 2 * pages, what)
      end
    end)

    -- What populating ahead holds present but unused is bounded: the rest of
    -- the current segment and the next one (2 MiB), plus what the scheduler
    -- keeps outside the Lua heap for so many waiting tasks. Measured as the
    -- growth of the resident set beyond that of the Lua heap, in a fresh
    -- process, for bursts of pending tasks of four sizes (so that the burst
    -- ends at different places in its chunk). With whole chunks handed to the
    -- helper (up to 4 MiB ahead) it was 2.9-3.4 MiB at these sizes.
    it("hold at most about two segments present ahead of the heap", function()
      for _, n in ipairs({20000, 30000, 45000, 60000}) do
        local r = cli.run({"-e", ([[
          local function rss()
            for line in io.lines("/proc/self/status") do
              local kb = line:match("^VmRSS:%%s*(%%d+)")
              if kb then return tonumber(kb) * 1024 end
            end
          end
          local N, items = %d, {}
          for i = 1, N do items[i] = false end
          local function sleeper() skein.sleep(3600) end
          collectgarbage() collectgarbage()
          local r0, h0 = rss(), collectgarbage("count") * 1024
          for i = 1, N do items[i] = skein.spawn(sleeper) end
          skein.sleep(0)
          assert(items[N]:status() == "running")
          collectgarbage() collectgarbage()
          local r1, h1 = rss(), collectgarbage("count") * 1024
          print(math.floor((r1 - r0) - (h1 - h0)), math.floor((h1 - h0) / N))
          for i = 1, N do items[i]:cancel() end
        ]]):format(n)}, {timeout = 60})
        assert.equal(0, r.code, r.err)
        local excess, per = r.out:match("(%-?%d+)%s+(%d+)")
        excess, per = tonumber(excess), tonumber(per)
        assert.is_true(per > 1000, per .. " bytes of Lua heap per task")
        assert.is_true(excess < 2.75 * 2^20, ("%d tasks: %d KiB present beyond the heap"):format(n, excess // 1024))
      end
    end)
  end
end)
