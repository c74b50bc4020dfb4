-- threadpool_submit.lua — skein: a 2-thread pool, submit N trivial tasks,
-- then get every result. Usage: skein threadpool_submit.lua [N]
local N = tonumber(arg[1]) or 100000
local pool <close> = skein.pool{kind = "thread", size = 2}
local function inc(x) return x + 1 end

local t0 = skein.now()
local futures = {}
for i = 1, N do futures[i] = pool:submit(inc, i) end
local sum = 0
for i = 1, N do sum = sum + futures[i]:get() end
local elapsed = skein.now() - t0
assert(sum == N * (N + 1) // 2 + N)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
