-- thread_pool.lua — the ThreadPool template: apply_async over range(40) on
-- five threads, then close, join and collect the results in order.
local function func(d)
  return d + 1
end

local pool = skein.pool{kind = "thread", size = 5}
local jobs = {}
for d = 0, 39 do
  jobs[#jobs + 1] = pool:submit(func, d)
end
pool:close()
pool:join()

local results = {}
for i, job in ipairs(jobs) do results[i] = job:get() end
print(table.concat(results, " "))
print(("%d results from %d threads"):format(#results, pool:stats().size))
