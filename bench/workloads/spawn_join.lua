-- spawn_join.lua — skein: spawn N tasks that each yield once, then join them
-- all. Prints one "BENCH" line for bench/run. Usage: skein spawn_join.lua [N]
local N = tonumber(arg[1]) or 100000
local spawn, yield, now = skein.spawn, skein.yield, skein.now

local function body() yield() end

local t0 = now()
local tasks = {}
for i = 1, N do tasks[i] = spawn(body) end
for i = 1, N do tasks[i]:join() end
local elapsed = now() - t0

print(("BENCH time=%.6f n=%d"):format(elapsed, N))
