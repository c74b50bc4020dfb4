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
-- Skein threads share no Lua memory, so `num` lives in a small file that
-- both threads read and rewrite while they hold the lock. Each turn takes
-- the rlock twice (lock:with, then a re-entrant lock:hold inside it) to
-- show that its owner may re-enter it. Which thread wins a turn is up to
-- the OS, so the lines carry no thread names and the output is the same
-- on every run.
local num_file = os.tmpname()

local function write_num(path, n)
  local f = assert(io.open(path, "w"))
  f:write(tostring(n))
  f:close()
end

-- The thread body: runs in its own worker, so it gets everything it uses
-- as arguments (the lock is shared by reference).
local function run(lock, path)
  local function read_num()
    local f = assert(io.open(path))
    local n = tonumber(f:read("a"))
    f:close()
    return n
  end
  local function write_num(n)
    local f = assert(io.open(path, "w"))
    f:write(tostring(n))
    f:close()
  end
  local increments = 0
  while true do
    local finished = lock:with(function()
      local again <close> = lock:hold()   -- re-entry: an RLock allows it
      local num = read_num()
      print(("locked, Number: %d"):format(num))
      if num >= 5 then
        print(("released, Number: %d"):format(num))
        return true
      end
      write_num(num + 1)
      increments = increments + 1
      print(("released, Number: %d"):format(num + 1))
      return false
    end)
    if finished then return increments end
  end
end

write_num(num_file, 0)
local lock = skein.rlock()
print("MainThread is running...")
local t1 = skein.thread{fn = run, args = {lock, num_file}, name = "Thread_1"}
local t2 = skein.thread{fn = run, args = {lock, num_file}, name = "Thread_2"}
local total = t1:join(30) + t2:join(30)
print(("Thread_1 and Thread_2 ended after %d increments in all"):format(total))
print(("MainThread ended, lock is %s"):format(lock:locked() and "held" or "free"))
os.remove(num_file)
