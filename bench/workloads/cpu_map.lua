-- cpu_map.lua — skein: a CPU-bound map (recursive fib) on a pool of two
-- threads; the timed region ends with a collection. Usage: skein cpu_map.lua [N]  (N items of fib(27))
local N = tonumber(arg[1]) or 16
local pool <close> = skein.pool{kind = "thread", size = 2}
local function fib(n) return n < 2 and n or fib(n - 1) + fib(n - 2) end
local items = {}
for i = 1, N do items[i] = 27 end
local t0 = skein.now()
local r = pool:map(function(n) return fib(n) end, items, {chunksize = 1})
collectgarbage()
local elapsed = skein.now() - t0
assert(#r == N and r[1] == 196418)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
