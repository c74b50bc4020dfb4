-- producer_consumer.lua — the generator-based producer/consumer: the
-- producer hands each item straight to the consumer coroutine, which
-- returns its answer through yield. No locks, one thread.
local function consumer()
  return coroutine.wrap(function(n)
    local r = ""
    while true do
      if not n then return end
      print(("[CONSUMER] Consuming %s..."):format(n))
      skein.sleep(0.01)                      -- the work; other tasks may run
      r = "200 OK"
      n = coroutine.yield(r)
    end
  end)
end

local function produce(c)
  for n = 1, 5 do
    print(("[PRODUCER] Producing %s..."):format(n))
    local r = c(n)
    print(("[PRODUCER] Consumer return: %s"):format(r))
  end
  c(nil)                                     -- close the consumer
end

produce(consumer())
