-- worker_heartbeat.lua — a pool's initializer starts work of its own in
-- each worker: here a heartbeat that reports "still alive" every 50 ms on a
-- queue the parent reads (the same shape keeps a connection open, serves a
-- small status socket, or refreshes a cache). Such tasks are the worker's
-- background: they run while the worker's tasks wait and while the worker
-- waits for its next task, and end with the worker.
local beats = skein.queue()

local pool <close> = skein.pool{kind = "process", size = 2, name = "heartbeat",
  init = function(q)
    local me = skein.self().pid
    skein.spawn(function()
      for n = 1, math.huge do
        q:put({pid = me, n = n})
        skein.sleep(0.05)
      end
    end)
  end,
  init_args = {beats}}

-- Some work first: square 1..10 on the two workers.
local squares = pool:map(function(x) return x * x end, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
print("squares: " .. table.concat(squares, " "))

-- Then nothing for half a second: the heartbeats go on.
while beats:size() > 0 do beats:get() end
skein.sleep(0.5)
local per_worker, workers = {}, 0
while beats:size() > 0 do
  local b = beats:get()
  if not per_worker[b.pid] then workers = workers + 1 end
  per_worker[b.pid] = (per_worker[b.pid] or 0) + 1
end
local everyone = workers == 2
for _, count in pairs(per_worker) do everyone = everyone and count >= 3 end
print(("heartbeats while idle: %s"):format(everyone and "every worker, several times" or "missing"))
