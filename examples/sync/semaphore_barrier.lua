-- semaphore_barrier.lua — at most 3 workers at a time inside a section
-- (threading.Semaphore / multiprocessing.Semaphore), then every worker
-- meets at a barrier (threading.Barrier) before it goes on:
--
--     sem = Semaphore(3)
--     def worker(i):
--         with sem:                     # at most 3 here at once
--             time.sleep(0.1)
--         barrier.wait()                # all 8 meet here
--         print('after the barrier', i)
--
-- The semaphore, the barrier and the counters are shared objects, so the
-- same code runs on threads and on processes; this script does both. The
-- barrier's action runs once, in the worker that arrives last, before any
-- worker is let through. The barrier is reusable: the workers also meet at
-- it once before the section, so that they all race for the slots at once.

local N, SLOTS = 8, 3

local function worker(sem, barrier, inside, peak, passed)
  barrier:wait(60)                  -- all started: they now race for the slots
  sem:with(function()
    local now = inside:add(1, 1)
    peak:update("max", function(m) return math.max(m or 0, now) end)
    skein.sleep(0.2)
    inside:add(1, -1)
  end)
  barrier:wait(30)
  passed:add(1, 1)
end

local function run(kind)
  local sem = skein.semaphore(SLOTS)
  local inside, passed = skein.shared.array("integer", 1), skein.shared.array("integer", 1)
  local peak = skein.shared.table{}
  local met = skein.shared.array("integer", 1)
  -- Used twice: once when every worker has started, once after the
  -- section. Its action records how many had passed the second meeting
  -- before it opened (none can have).
  local barrier = skein.barrier(N, function() met[1] = passed[1] end)
  local workers = {}
  for i = 1, N do
    local start = kind == "thread" and skein.thread or skein.process
    workers[i] = start(worker, sem, barrier, inside, peak, passed)
  end
  for i = 1, N do workers[i]:join(60) end
  print(("%-7s: %d workers, at most %d inside at once (limit %d); %d passed the barrier, %d before it opened")
        :format(kind, N, peak.max, SLOTS, passed[1], met[1]))
end

run("thread")
run("process")
