-- lifo_priority.lua — the LIFO and priority queues of Python's queue
-- module (LifoQueue, PriorityQueue), and a worker thread draining a
-- priority queue by urgency.
local lifo = skein.queue{order = "lifo"}
for i = 1, 5 do lifo:put(i) end
local out = {}
while not lifo:empty() do out[#out + 1] = lifo:get() end
print("lifo:     " .. table.concat(out, " "))

local pq = skein.queue{order = "priority"}
pq:put("write report", 3)
pq:put("fix the outage", 1)
pq:put("answer email", 2)
pq:put("restart the server", 1)        -- same priority: first in, first out
out = {}
while not pq:empty() do
  local job, prio = pq:get()
  out[#out + 1] = ("%d:%s"):format(prio, job)
end
print("priority: " .. table.concat(out, ", "))

-- A worker thread serves the jobs in priority order; a job of priority
-- math.huge is the poison pill that comes out last.
local jobs, log = skein.queue{order = "priority"}, skein.queue()
for i, level in ipairs({5, 1, 4, 2, 3}) do jobs:put(("job%d"):format(i), level) end
jobs:put(false, math.huge)
local worker = skein.thread(function(jobs, log)
  while true do
    local job, level = jobs:get()
    if not job then return end
    log:put(("level %d: %s"):format(level, job))
  end
end, jobs, log)
worker:join()
while not log:empty() do print(log:get()) end
