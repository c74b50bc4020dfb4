-- spawn_join.lua — skein: spawn N tasks that each yield once, then join them
-- all; the timed region ends with the collection of the finished tasks, so
-- it counts everything the program pays for them. With HEAP > 0 the process
-- first makes HEAP small live tables (a program that already holds data),
-- which the collection then has to trace as a real program's would. With
-- "warm" the same round runs once untimed first and the second round is
-- timed: a process that has done this before (its allocator holds the
-- memory of the first round's tasks; a fresh process pays the kernel for
-- every new page, which on a VM costs several microseconds each).
-- Prints one "BENCH" line for bench/run.
-- Usage: skein spawn_join.lua [N] [HEAP] [warm]
local N = tonumber(arg[1]) or 100000
local HEAP = tonumber(arg[2]) or 0
local WARM = arg[3] == "warm"
local spawn, yield, now = skein.spawn, skein.yield, skein.now

local heap = {}
for i = 1, HEAP do heap[i] = { i } end
collectgarbage()

local function body() yield() end

local function round()
  local t0 = now()
  local tasks = {}
  for i = 1, N do tasks[i] = spawn(body) end
  for i = 1, N do tasks[i]:join() end
  tasks = nil
  collectgarbage()
  return now() - t0
end

if WARM then round() end
local elapsed = round()

assert(#heap == HEAP)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
