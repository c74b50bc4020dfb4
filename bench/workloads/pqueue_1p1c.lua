-- pqueue_1p1c.lua — skein: one producer process puts N small messages on a
-- queue, the parent consumes them; timed up to the producer's exit and a
-- collection. Usage: skein pqueue_1p1c.lua [N]
local N = tonumber(arg[1]) or 200000
local q = skein.queue()
local t0 = skein.now()
local producer = skein.process(function(queue, n)
  for i = 1, n do queue:put(i) end
end, q, N)
local sum = 0
for _ = 1, N do sum = sum + q:get() end
producer:join()
producer = nil
collectgarbage()
local elapsed = skein.now() - t0
assert(sum == N * (N + 1) // 2)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
