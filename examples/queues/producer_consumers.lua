-- producer_consumers.lua — the queue.Queue template with threads: one
-- producer thread puts numbers, three consumer threads take them until the
-- queue is closed. close() replaces the endless `while True` loops: each
-- consumer's iter() ends once the queue is closed and drained.
local function produce(q, n)
  for num = 0, n - 1 do
    q:put(num)
    if num % 25 == 0 then skein.sleep(0.001) end
  end
  q:close()
end

local function consume(q, seen)
  local count = 0
  for num in q:iter() do
    seen:put(num)
    count = count + 1
  end
  return count
end

local q, seen = skein.queue(10), skein.queue()  -- bounded: back-pressure
local producer = skein.thread(produce, q, 100)
local consumers = {}
for i = 1, 3 do consumers[i] = skein.thread(consume, q, seen) end

producer:join()
local total = 0
for _, c in ipairs(consumers) do total = total + c:join() end

local nums = {}
for i = 1, seen:size() do nums[i] = seen:get() end
table.sort(nums)
print(("3 consumers took %d numbers"):format(total))
print(("each of 0..99 exactly once: %s"):format(tostring(#nums == 100 and nums[1] == 0 and nums[100] == 99)))
