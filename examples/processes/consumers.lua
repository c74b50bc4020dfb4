-- consumers.lua — replaces the Consumer/Task template of seed 004 (and the
-- JoinableQueue download workers of seed 003): consumer processes take
-- tasks from a joinable queue, put answers on a result queue, call
-- task_done for every item, and stop at a poison pill; the parent waits
-- with tasks.join() and then prints the results.
--
--   class Consumer(Process):
--       def run(self):
--           while True:
--               next_task = self.task_queue.get()
--               if next_task is None: self.task_queue.task_done(); break
--               answer = next_task(); self.task_queue.task_done()
--               self.result_queue.put(answer)
--   class Task: def __call__(self): time.sleep(0.1); return f'{a} * {b} = {a * b}'
--   tasks = JoinableQueue(); results = Queue()
--   for i in range(10): tasks.put(Task(i, i))
--   for i in range(num_consumers): tasks.put(None)
--   tasks.join(); while num_jobs: print(results.get())
--
-- A Task is a closure: it crosses to the consumer process as bytecode with
-- its upvalues a and b copied. Every skein queue is joinable.

local NUM_CONSUMERS, NUM_JOBS = 4, 10

local function consumer(tasks, results)
  local done = 0
  while true do
    local next_task = tasks:get()
    if next_task == nil then                  -- poison pill: shut down
      tasks:task_done()
      return done
    end
    local product, text = next_task()
    tasks:task_done()
    results:put({product, text})
    done = done + 1
  end
end

local function Task(a, b)
  return function()
    skein.sleep(0.1)                          -- pretend to take some time
    return a * b, ("%d * %d = %d"):format(a, b, a * b)
  end
end

local tasks, results = skein.queue(), skein.queue()
print(("creating %d consumers"):format(NUM_CONSUMERS))
local consumers = {}
for i = 1, NUM_CONSUMERS do
  consumers[i] = skein.process{fn = consumer, args = {tasks, results}, name = "consumer-" .. i}
end

for i = 0, NUM_JOBS - 1 do tasks:put(Task(i, i)) end
for _ = 1, NUM_CONSUMERS do tasks:put(nil) end   -- one pill per consumer
tasks:join()                                     -- every job and pill is done

-- Answers arrive in whatever order the consumers finish: sort them.
local answers = {}
for i = 1, NUM_JOBS do answers[i] = results:get() end
table.sort(answers, function(x, y) return x[1] < y[1] end)
for _, r in ipairs(answers) do print("result ---> " .. r[2]) end

local total = 0
for _, c in ipairs(consumers) do total = total + c:join() end
print(("%d consumers exited after %d jobs"):format(#consumers, total))
