-- spawn_join.lua54.lua — the floor: the same shape as workloads/spawn_join.lua
-- with nothing but the Lua 5.4 VM: create N coroutines that yield once and
-- resume each twice (start, then finish), then collect them, as skein's
-- timed region does. HEAP live small tables are made first, as there.
-- Run with plain lua5.4. Usage: lua5.4 spawn_join.lua54.lua [N] [HEAP] [warm]
-- Lua has no portable wall clock finer than a second, so this times with
-- os.clock (CPU seconds); for a single-threaded CPU-bound loop that equals
-- wall time, and any difference (preemption) makes the floor look faster,
-- which only makes the skein/floor ratio stricter.
local N = tonumber(arg[1]) or 100000
local HEAP = tonumber(arg[2]) or 0
local WARM = arg[3] == "warm"         -- time a second round (see spawn_join.lua)
local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield

local heap = {}
for i = 1, HEAP do heap[i] = { i } end
collectgarbage()

local function body() yield() end

local function round()
  local t0 = os.clock()
  local cos = {}
  for i = 1, N do cos[i] = create(body) end
  for i = 1, N do resume(cos[i]) end
  for i = 1, N do resume(cos[i]) end
  cos = nil
  collectgarbage()
  return os.clock() - t0
end

if WARM then round() end
local elapsed = round()

assert(#heap == HEAP)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
