-- spawn_join.lua — skein: spawn N tasks that each yield once, then join them
-- all; the timed region ends with the collection of the finished tasks, so
-- it counts everything the program pays for them. With HEAP > 0 the process
-- first makes HEAP small live tables (a program that already holds data),
-- which the collection then has to trace as a real program's would.
-- Prints one "BENCH" line for bench/run. Usage: skein spawn_join.lua [N] [HEAP]
local N = tonumber(arg[1]) or 100000
local HEAP = tonumber(arg[2]) or 0
local spawn, yield, now = skein.spawn, skein.yield, skein.now

local heap = {}
for i = 1, HEAP do heap[i] = { i } end
collectgarbage()

local function body() yield() end

local t0 = now()
local tasks = {}
for i = 1, N do tasks[i] = spawn(body) end
for i = 1, N do tasks[i]:join() end
tasks = nil
collectgarbage()
local elapsed = now() - t0

assert(#heap == HEAP)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
