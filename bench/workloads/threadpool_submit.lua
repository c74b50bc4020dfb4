-- threadpool_submit.lua — skein: a 2-thread pool, submit N trivial tasks,
-- then get every result; the timed region ends with the collection of the
-- futures. MODE "named" submits one named function with an argument,
-- `pool:submit(inc, i)`; "closure" submits an inline closure per task,
-- `pool:submit(function() return i + 1 end)` (the idiomatic Lua form: a new
-- closure with an upvalue each time). With HEAP > 0 the process first makes
-- HEAP small live tables, which the collection then has to trace.
-- Usage: skein threadpool_submit.lua [N] [named|closure] [HEAP]
local N = tonumber(arg[1]) or 100000
local MODE = arg[2] or "named"
local HEAP = tonumber(arg[3]) or 0
assert(MODE == "named" or MODE == "closure", "mode: named or closure")

local heap = {}
for i = 1, HEAP do heap[i] = { i } end
collectgarbage()

local pool <close> = skein.pool{kind = "thread", size = 2}
local function inc(x) return x + 1 end

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
assert(#heap == HEAP)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
