-- rlock_counter.lua — two threads count to 5 under one RLock, a port of the
-- Python template (threading.RLock guarding a global `num`):
--
--     mylock.acquire()
--     print('%s locked, Number: %d' % (name, num))
--     if num >= 5: mylock.release(); break
--     num += 1
--     print('%s released, Number: %d' % (name, num))
--     mylock.release()
--
-- Skein threads share no Lua memory, so `num` is a skein.shared.value that
-- both threads read and rewrite while they hold the lock (get then set is
-- not atomic: the lock is what keeps it right). Each turn takes the rlock
-- twice (lock:with, then a re-entrant lock:hold inside it) to show that its
-- owner may re-enter it. Which thread wins a turn is up to the OS, so the
-- lines carry no thread names and the output is the same on every run.

-- The thread body runs in its own worker: it gets what it shares as
-- arguments (the lock and the value cross by reference).
local function run(lock, num)
  local increments = 0
  while true do
    local finished = lock:with(function()
      local again <close> = lock:hold()   -- re-entry: an RLock allows it
      local n = num:get()
      print(("locked, Number: %d"):format(n))
      if n >= 5 then
        print(("released, Number: %d"):format(n))
        return true
      end
      num:set(n + 1)
      increments = increments + 1
      print(("released, Number: %d"):format(n + 1))
      return false
    end)
    if finished then return increments end
  end
end

local lock, num = skein.rlock(), skein.shared.value(0)
print("MainThread is running...")
local t1 = skein.thread{fn = run, args = {lock, num}, name = "Thread_1"}
local t2 = skein.thread{fn = run, args = {lock, num}, name = "Thread_2"}
local total = t1:join(30) + t2:join(30)
print(("Thread_1 and Thread_2 ended after %d increments in all"):format(total))
print(("MainThread ended, lock is %s"):format(lock:locked() and "held" or "free"))
