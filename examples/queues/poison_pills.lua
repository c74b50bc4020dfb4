-- poison_pills.lua — the JoinableQueue template with worker threads: a
-- task queue and a result queue, consumers that stop at a poison pill
-- (nil), task_done for every item and join to wait for all of them.
-- Tasks are functions: they cross to the threads as bytecode with their
-- upvalues copied.
local NUM_CONSUMERS, NUM_JOBS = 4, 10

local function consumer(tasks, results)
  local done = 0
  while true do
    local next_task = tasks:get()
    if next_task == nil then       -- poison pill: shut down
      tasks:task_done()
      return done
    end
    skein.sleep(0.01)              -- pretend to take some time to do the work
    results:put({next_task()})
    done = done + 1
    tasks:task_done()
  end
end

local function task(a, b)
  return function() return a * b, ("%d * %d = %d"):format(a, b, a * b) end
end

local tasks, results = skein.queue(), skein.queue()
print(("creating %d consumers"):format(NUM_CONSUMERS))
local consumers = {}
for i = 1, NUM_CONSUMERS do
  consumers[i] = skein.thread{fn = consumer, args = {tasks, results}, name = "consumer-" .. i}
end

for i = 0, NUM_JOBS - 1 do tasks:put(task(i, i)) end
for _ = 1, NUM_CONSUMERS do tasks:put(nil) end   -- one pill per consumer
tasks:join()                                     -- every job and pill is done

-- Results arrive in whatever order the consumers finish; sort them.
local answers = {}
for _ = 1, NUM_JOBS do
  answers[#answers + 1] = results:get()      -- {product, text}
end
table.sort(answers, function(x, y) return x[1] < y[1] end)
for _, r in ipairs(answers) do print("result ---> " .. r[2]) end

local total = 0
for _, c in ipairs(consumers) do total = total + c:join() end
print(("%d consumers exited after %d jobs"):format(#consumers, total))
