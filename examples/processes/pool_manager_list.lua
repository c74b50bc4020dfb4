-- pool_manager_list.lua — replaces the "process concurrency" template of
-- seed 000: a Pool of five processes runs func over range(40) with
-- apply_async, and every result is appended to a Manager list.
--
--   def func(d, results): results.append(d + 1)
--   pool = Pool(processes=5); results = Manager().list()
--   for d in range(40): pool.apply_async(func, (d, results))
--   pool.close(); pool.join(); print(results)
--
-- The shared table lives in the shared segment, where every worker process
-- appends to the same one, each append whole under its lock, so no result
-- is lost or doubled. Workers finish in any order: sort the list before
-- printing.

local function func(d, results)
  results:append(d + 1)
  return skein.self().pid
end

local pool = skein.pool{kind = "process", size = 5}
local results = skein.shared.table()
local jobs = {}
for d = 0, 39 do
  jobs[#jobs + 1] = pool:submit(func, d, results)
end
pool:close()
pool:join()

local elsewhere = true
for _, job in ipairs(jobs) do                 -- get raises if a task failed
  elsewhere = elsewhere and job:get() ~= skein.self().pid
end

local list = results:totable()
table.sort(list)
print("[" .. table.concat(list, ", ") .. "]")
print(("%d results from a pool of %d processes; every task ran in a worker process: %s"):format(
  #list, pool:stats().size, elsewhere))
