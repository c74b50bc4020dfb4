-- ppool_map.lua — skein: map of N trivial items on a 2-process pool
-- (automatic chunking). Usage: skein ppool_map.lua [N]
local N = tonumber(arg[1]) or 200000
local pool <close> = skein.pool{kind = "process", size = 2}
pool:apply(function() end)
local items = {}
for i = 1, N do items[i] = i end
local t0 = skein.now()
local r = pool:map(function(x) return x + 1 end, items)
local elapsed = skein.now() - t0
assert(r.n == N and r[N] == N + 1)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
