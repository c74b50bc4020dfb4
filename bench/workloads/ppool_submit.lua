-- ppool_submit.lua — skein: a 2-process pool, submit N trivial tasks, then
-- get every result; the timed region ends with the collection of the
-- futures. MODE "named" submits one named function with an argument,
-- `pool:submit(inc, i)`; "closure" an inline closure per task,
-- `pool:submit(function() return i + 1 end)` (a new closure with an upvalue
-- each time, the idiomatic Lua form).
-- Usage: skein ppool_submit.lua [N] [named|closure]
local N = tonumber(arg[1]) or 20000
local MODE = arg[2] or "named"
assert(MODE == "named" or MODE == "closure", "mode: named or closure")
local pool <close> = skein.pool{kind = "process", size = 2}
local function inc(x) return x + 1 end
pool:apply(inc, 0)                       -- workers up before the clock starts
local t0 = skein.now()
local futures = {}
if MODE == "named" then
  for i = 1, N do futures[i] = pool:submit(inc, i) end
else
  for i = 1, N do futures[i] = pool:submit(function() return i + 1 end) end
end
local sum = 0
for i = 1, N do sum = sum + futures[i]:get() end
futures = nil
collectgarbage()
local elapsed = skein.now() - t0
assert(sum == N * (N + 1) // 2 + N)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
