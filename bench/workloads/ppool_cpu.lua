-- ppool_cpu.lua — skein: CPU-bound map (fib 27) on a pool of two
-- processes; the timed region ends with a collection. Usage: skein ppool_cpu.lua [N]
local N = tonumber(arg[1]) or 16
local pool <close> = skein.pool{kind = "process", size = 2}
pool:apply(function() end)
local items = {}
for i = 1, N do items[i] = 27 end
local t0 = skein.now()
local r = pool:map(function(n)
  local function fib(k) return k < 2 and k or fib(k - 1) + fib(k - 2) end
  return fib(n)
end, items, {chunksize = 1})
collectgarbage()
local elapsed = skein.now() - t0
assert(r.n == N and r[1] == 196418)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
