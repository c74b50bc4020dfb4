-- threadpool_submit.luv.lua — luv (libuv for plain Lua): queue N trivial
-- uv.new_work items on libuv's thread pool and count the results. luv has
-- one form only: new_work takes the function once, each queue call sends
-- arguments, so MODE is accepted and ignored (bench/run reuses this peer's
-- runs for the closure line). With HEAP > 0 the process first makes HEAP
-- small live tables, and the timed region ends with a collection, as
-- skein's does.
-- Usage: lua5.4 threadpool_submit.luv.lua [N] [named|closure] [HEAP]
local uv = require "luv"
local N = tonumber(arg[1]) or 100000
local HEAP = tonumber(arg[3]) or 0

local heap = {}
for i = 1, HEAP do heap[i] = { i } end
collectgarbage()

local sum = 0
local work = uv.new_work(function(x) return x + 1 end, function(r) sum = sum + r end)
local t0 = uv.hrtime()
for i = 1, N do work:queue(i) end
uv.run()
collectgarbage()
local elapsed = (uv.hrtime() - t0) / 1e9
assert(sum == N * (N + 1) // 2 + N)
assert(#heap == HEAP)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
