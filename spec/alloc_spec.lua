-- The worker's allocator (runtime/host/alloc.c) as a program meets it.
local skein = require "skein"

local SKEIN = os.getenv("SKEIN_BIN") or ""
-- Sanitizer builds allocate with plain malloc, so the chunks this file is
-- about exist only in the other builds.
local POOLED = SKEIN:match("asan") == nil

-- Minor page faults of this process so far (/proc/self/stat, field 10).
local function minflt()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("a")
  f:close()
  local i = 0
  for v in s:match("%) (.*)$"):gmatch("%S+") do
    i = i + 1
    if i == 8 then return tonumber(v) end
  end
end

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
  end
end)
