-- taskmaster.lua — replaces the BaseManager task/result manager of seed 004
-- (task_master.py), ported onto skein.broker:
--
--   QueueManager.register('get_task', callable=get_task)
--   QueueManager.register('get_result', callable=get_result)
--   manager = QueueManager(address=('127.0.0.1', 5000), authkey=b'abc')
--   manager.start()
--   for value in range(10):
--       n = random.randint(0, 100); print('Put task %d' % n); task.put(n)
--   print('Try get result...')
--   for value in range(10):
--       r = result.get(timeout=10); print('Result: %s' % r)
--   manager.shutdown(); print('master exit.')
--
-- No manager server and no result queue: Redis holds the tasks (a stream of
-- the pool "squares") and their results, and the workers are `skein worker`
-- processes on this host or others, serving examples/broker/tasks.lua:
--
--   skein worker --broker redis://127.0.0.1:6379 --queue squares --tasks examples/broker/tasks.lua
--   skein examples/broker/taskmaster.lua [redis://host:port]
--
-- The Redis URL is the first argument, else $SKEIN_REDIS, else
-- redis://127.0.0.1:6379. A task survives the death of the worker that ran
-- it (it runs again elsewhere), which BaseManager's queue does not.

local url = arg[1] or os.getenv("SKEIN_REDIS") or "redis://127.0.0.1:6379"
local broker = skein.broker(url)
local squares = broker:pool("squares")

-- Put 10 tasks: each submit is a task on the pool's stream, and its future
-- is where the result will come back.
local futures, ns = {}, {}
for i = 1, 10 do
  local n = math.random(0, 100)
  print(("Put task %d"):format(n))
  ns[i] = n
  futures[i] = squares:submit("square", n)
end

-- Collect the 10 results, in the order the tasks were put.
print("Try get result...")
for i, f in ipairs(futures) do
  local sq, pid = f:get(10)
  print(("Result: %d * %d = %d (worker pid %d)"):format(ns[i], ns[i], sq, pid))
end

broker:close()
print("master exit.")
