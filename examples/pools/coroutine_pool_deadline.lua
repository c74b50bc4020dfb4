-- coroutine_pool_deadline.lua — the gevent pool template: 40 jobs on a pool
-- of eight coroutines, all under one deadline. Jobs that sleep past the
-- deadline are cut short; the rest report their results.
local function func(d)
  skein.sleep(d == 39 and 5 or 0.01)       -- one job is far too slow
  return d + 1
end

local pool <close> = skein.pool{kind = "coroutine", size = 8}
local jobs = {}
for d = 0, 39 do jobs[#jobs + 1] = pool:submit(func, d) end

local ok, err = pcall(skein.timeout, 0.5, function()
  for _, job in ipairs(jobs) do job:wait() end
end)
if not ok then print("[-] Time out....", skein.is_error(err, "timeout")) end

local results = {}
for _, job in ipairs(jobs) do
  if job:done() then results[#results + 1] = job:get() else job:cancel() end
end
print(table.concat(results, " "))
print(("%d of %d jobs finished before the deadline"):format(#results, #jobs))
pool:terminate()
