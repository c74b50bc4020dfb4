-- queue_1p1c.lua — skein: one producer thread puts N small messages (the
-- integers 1..N) into an unbounded skein.queue, one consumer thread gets
-- them until a nil poison pill; the main worker times it, up to the
-- collection of what it made. Prints one "BENCH" line for bench/run.
-- Usage: skein queue_1p1c.lua [N]
local N = tonumber(arg[1]) or 1000000

local function producer(q, n)
  local put = q.put
  for i = 1, n do put(q, i) end
  put(q, nil)
end

local function consumer(q)
  local get = q.get
  local count, sum = 0, 0
  while true do
    local v = get(q)
    if v == nil then break end
    count, sum = count + 1, sum + v
  end
  return count, sum
end

local q = skein.queue()
local t0 = skein.now()
local c = skein.thread(consumer, q)
local p = skein.thread(producer, q, N)
p:join()
local count, sum = c:join()
c, p = nil, nil
collectgarbage()
local elapsed = skein.now() - t0
assert(count == N and sum == N * (N + 1) // 2, "lost or duplicated messages")

print(("BENCH time=%.6f n=%d"):format(elapsed, N))
