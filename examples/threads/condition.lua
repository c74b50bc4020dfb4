-- condition.lua — a Condition shared by two consumer threads and a
-- producer thread, a port of the Python template:
--
--     def consumer(cond):
--         with cond:
--             print("consumer before wait"); cond.wait(); print("consumer after wait")
--     def producer(cond):
--         with cond:
--             print("producer before notifyAll"); cond.notifyAll()
--             print("producer after notifyAll")
--
-- Python orders the threads with time.sleep(2); here each consumer reports
-- through a semaphore once it holds the condition's lock, so the next
-- thread can only take the lock after the previous one is waiting (wait
-- releases it). Both consumers wake together on notify_all and re-take the
-- lock one after the other in either order, so the main thread prints their
-- "after wait" reports in join order.
local function consumer(name, cond, ready)
  return cond:with(function()
    print(name .. ": consumer before wait")
    ready:release()
    local notified = cond:wait(10)   -- bounded, so a bug cannot hang the example
    return ("%s: consumer after wait (%s)"):format(name, notified and "notified" or "timed out")
  end)
end

local function producer(cond)
  cond:with(function()
    print("p: producer before notify_all")
    cond:notify_all()
    print("p: producer after notify_all")
  end)
end

local cond, ready = skein.condition(), skein.semaphore(0)
local c1 = skein.thread{fn = consumer, args = {"c1", cond, ready}, name = "c1"}
assert(ready:acquire(10), "c1 did not start")
local c2 = skein.thread{fn = consumer, args = {"c2", cond, ready}, name = "c2"}
assert(ready:acquire(10), "c2 did not start")
local p = skein.thread{fn = producer, args = {cond}, name = "p"}
p:join(10)
print(c1:join(10))
print(c2:join(10))
