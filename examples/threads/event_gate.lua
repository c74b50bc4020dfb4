-- event_gate.lua — an Event gating three waiting threads, a port of the
-- Python template:
--
--     def do(event):
--         print('start'); event.wait(); print('execute')
--     event_obj = threading.Event()
--     for i in range(10): threading.Thread(target=do, args=(event_obj,)).start()
--     event_obj.set()
--
-- The main thread starts the workers one at a time, waiting for each to
-- report in (through a semaphore) so that the "start" lines come out in
-- order; the workers then block on the event until the main thread sets
-- it. Their "execute" reports are printed by the main thread in join
-- order, since the three wake at the same moment.
local function worker(i, gate, ready)
  print(("Thread-%d: start"):format(i))
  ready:release()
  local opened = gate:wait(10)   -- bounded, so a bug cannot hang the example
  return ("Thread-%d: %s"):format(i, opened and "execute" or "gave up waiting")
end

local gate, ready = skein.event(), skein.semaphore(0)
local threads = {}
for i = 1, 3 do
  threads[i] = skein.thread{fn = worker, args = {i, gate, ready}, name = "Thread-" .. i}
  assert(ready:acquire(10), "a worker did not start")
end
skein.sleep(0.1)
print(("main: 3 threads wait at the gate (%s)"):format(gate:is_set() and "open" or "closed"))
print("main: opening the gate")
gate:set()
for i = 1, 3 do print(threads[i]:join(10)) end
print("main: done")
