-- memory.lua — skein: what N live things cost in memory, measured in a
-- fresh process as the growth of its resident set (VmRSS) and of its Lua
-- heap (collectgarbage "count") between a baseline and the moment they all
-- exist, over N. The table holding them is made before the baseline (a
-- program has it anyway), and both readings follow a full collection.
--   pending   N tasks started and blocked in skein.sleep (a long one; they
--             are cancelled after the reading)
--   finished  N tasks that returned, joined, their handles kept
--   future    N futures of a 2-thread pool whose results were got, kept
-- Prints "BENCH time=<seconds to make them> n=N bytes=<RSS per item>
-- heap=<Lua heap per item>". Usage: skein memory.lua [N] [pending|finished|future]
local N = tonumber(arg[1]) or 30000
local MODE = arg[2] or "pending"

local function rss()
  local f = assert(io.open("/proc/self/status"))
  for line in f:lines() do
    local kb = line:match("^VmRSS:%s*(%d+)")
    if kb then f:close() return tonumber(kb) * 1024 end
  end
  f:close()
  error("no VmRSS in /proc/self/status")
end

local items = {}
for i = 1, N do items[i] = false end
local pool
if MODE == "future" then
  pool = skein.pool{kind = "thread", size = 2}
  pool:apply(function() end)           -- its threads are up before the baseline
end
local function inc(x) return x + 1 end
local function sleeper() skein.sleep(3600) end
local function nothing() end

collectgarbage()
collectgarbage()
local rss0, heap0 = rss(), collectgarbage("count") * 1024
local t0 = skein.now()
if MODE == "pending" then
  for i = 1, N do items[i] = skein.spawn(sleeper) end
  skein.sleep(0)                       -- every task starts and blocks
  assert(items[N]:status() == "running")
elseif MODE == "finished" then
  for i = 1, N do items[i] = skein.spawn(nothing) end
  for i = 1, N do items[i]:join() end
elseif MODE == "future" then
  for i = 1, N do items[i] = pool:submit(inc, i) end
  for i = 1, N do assert(items[i]:get() == i + 1) end
else
  error("mode: pending, finished or future")
end
local elapsed = skein.now() - t0
collectgarbage()
collectgarbage()
local rss1, heap1 = rss(), collectgarbage("count") * 1024
print(("BENCH time=%.6f n=%d bytes=%.1f heap=%.1f"):format(elapsed, N,
  (rss1 - rss0) / N, (heap1 - heap0) / N))

if MODE == "pending" then
  for i = 1, N do items[i]:cancel() end
  for i = 1, N do pcall(items[i].join, items[i]) end
elseif MODE == "future" then
  pool:close()
  pool:join()
end
