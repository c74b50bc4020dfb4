-- ppool_map.lua — skein: map of N trivial items on a 2-process pool
-- (automatic chunking). MODE "warm" times the map alone on a pool whose
-- workers are already up; "whole" is the whole program a user runs: the
-- timed region starts before the pool does and ends after it closed (its
-- workers exited) and the garbage was collected, and bench/run judges this
-- line on the process's wall time. Both end with a collection.
-- Usage: skein ppool_map.lua [N] [warm|whole]
local N = tonumber(arg[1]) or 200000
local MODE = arg[2] or "warm"
assert(MODE == "warm" or MODE == "whole", "mode: warm or whole")
local items = {}
for i = 1, N do items[i] = i end
local function inc(x) return x + 1 end
local elapsed, r
if MODE == "warm" then
  local pool <close> = skein.pool{kind = "process", size = 2}
  pool:apply(function() end)
  local t0 = skein.now()
  r = pool:map(inc, items)
  collectgarbage()
  elapsed = skein.now() - t0
else
  local t0 = skein.now()
  do
    local pool <close> = skein.pool{kind = "process", size = 2}
    r = pool:map(inc, items)
  end
  collectgarbage()
  elapsed = skein.now() - t0
end
assert(r.n == N and r[N] == N + 1)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
