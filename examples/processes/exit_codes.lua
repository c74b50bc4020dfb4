-- exit_codes.lua — replaces the exit-status template of seed 004: workers
-- that end normally, return a value, raise, call exit, or are terminated
-- or killed; the parent joins each one and prints how it ended.
--
--   def exit_error(): sys.exit(1)
--   def exit_ok(): return
--   def return_value(): return 1
--   def raises(): raise RuntimeError('There was an error!')
--   def terminated(): time.sleep(3)
--   for f in [...]: j = Process(target=f, name=f.__name__); j.start()
--   jobs[-1].terminate()
--   for j in jobs: j.join(); print('%15s.exitcode = %s' % (j.name, j.exitcode))
--
-- Python folds everything into exitcode (-15 for SIGTERM). Here join returns
-- the function's results or raises: kind "remote" for an error the function
-- raised (exit_code 1), kind "worker_died" for a process that died before it
-- answered (os.exit(n): exit_code n; a signal: exit_signal).

local function exit_error() os.exit(1) end
local function exit_ok() return end
local function return_value() return 1 end
local function raises() error("There was an error!", 0) end
local function terminated() skein.sleep(30) end
local function killed() skein.sleep(30) end

local funcs = {
  {"exit_error", exit_error}, {"exit_ok", exit_ok}, {"return_value", return_value},
  {"raises", raises}, {"terminated", terminated}, {"killed", killed},
}
local jobs = {}
for i, f in ipairs(funcs) do
  print("Starting process for " .. f[1])
  jobs[i] = skein.process{fn = f[2], name = f[1]}
end

jobs[5]:terminate()          -- SIGTERM
jobs[6]:kill()               -- SIGKILL

for _, j in ipairs(jobs) do
  local ok, err = pcall(j.join, j)
  local how
  if ok then
    how = "returned " .. tostring(err)
  elseif err.kind == "remote" then
    how = "raised: " .. tostring(err.value)
  elseif err.signal then
    how = "died: " .. err.signal_name
  else
    how = "died: exit code " .. err.exit_code
  end
  print(("%15s.exit_code = %-4s exit_signal = %-4s %s"):format(
    j.name, tostring(j.exit_code), tostring(j.exit_signal), how))
end
