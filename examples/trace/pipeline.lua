-- pipeline.lua — something worth looking at on a timeline: a producer task
-- feeds a queue, two consumer tasks hand each item to a thread pool (a hash
-- that costs a little CPU), and a process pool, one of whose jobs runs a
-- pool of its own, adds up the results; one job crashes its worker.
--
--   skein --trace pipeline.json examples/trace/pipeline.lua
--
-- then open pipeline.json at https://ui.perfetto.dev (or chrome://tracing):
-- one row per process, one track per worker, each task's runs and waits,
-- and arrows from every submit to the worker that ran the job.
local skein = require "skein"

local q = skein.queue(4)
local threads <close> = skein.pool{kind = "thread", size = 2, name = "hash"}
local procs <close> = skein.pool{kind = "process", size = 2, name = "sum"}

local function hash(n)
  local h = 0
  for i = 1, 20000 * n do h = (h * 31 + i) % 1000003 end
  return h
end

local producer = skein.spawn(function()
  for i = 1, 12 do q:put(i) skein.sleep(0.002) end
  q:put(nil) q:put(nil)                     -- one stop mark per consumer
end)

local results = {}
local function consumer()
  while true do
    local n = q:get()
    if n == nil then return end
    local h = threads:submit(hash, n % 4 + 1):get()
    results[#results + 1] = h
  end
end
local c1, c2 = skein.spawn(consumer), skein.spawn(consumer)
producer:join() c1:join() c2:join()

local total = procs:submit(function(list)
  local skein = require "skein"
  local inner <close> = skein.pool{kind = "process", size = 1, name = "inner"}
  local s = 0
  for _, v in ipairs(list) do s = s + v end
  return inner:submit(function(x) return x % 997 end, s):get()
end, results):get()

local crash = procs:submit(function() os.exit(3) end)
local ok, err = pcall(crash.get, crash)
print(("%d hashes, checksum %d; the crashed job: %s"):format(#results, total,
      ok and "ran?" or err.kind))
