-- threadpool_submit.luv.lua — luv (libuv for plain Lua): queue N trivial
-- uv.new_work items on libuv's thread pool and count the results.
local uv = require "luv"
local N = tonumber(arg[1]) or 100000
local sum = 0
local work = uv.new_work(function(x) return x + 1 end, function(r) sum = sum + r end)
local t0 = uv.hrtime()
for i = 1, N do work:queue(i) end
uv.run()
local elapsed = (uv.hrtime() - t0) / 1e9
assert(sum == N * (N + 1) // 2 + N)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
