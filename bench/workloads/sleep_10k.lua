-- sleep_10k.lua — skein: N tasks each sleep 1 s concurrently; the timed
-- region runs from the first spawn to the last join and the collection of
-- the finished tasks. Prints one "BENCH" line for bench/run.
-- Usage: skein sleep_10k.lua [N] [seconds]
local N = tonumber(arg[1]) or 10000
local S = tonumber(arg[2]) or 1.0
local spawn, sleep, now = skein.spawn, skein.sleep, skein.now

local function body() sleep(S) end

local t0 = now()
local tasks = {}
for i = 1, N do tasks[i] = spawn(body) end
for i = 1, N do tasks[i]:join() end
tasks = nil
collectgarbage()
local elapsed = now() - t0

print(("BENCH time=%.6f n=%d"):format(elapsed, N))
