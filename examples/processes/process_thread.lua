-- process_thread.lua — replaces the "process + thread" template of seed
-- 000: a pool of three processes, each task squaring one sub-list on a
-- pool of three threads inside its process and appending the list of
-- squares to a Manager list.
--
--   def func(d): return d * d
--   def thread_pools(l, results):
--       pool = ThreadPool(3); jobs = [pool.apply_async(func, (i,)) for i in l]
--       pool.close(); pool.join(); results.append([j.get() for j in jobs])
--   pool = Pool(processes=3); results = Manager().list()
--   for l in data: pool.apply_async(thread_pools, (l, results))
--   pool.close(); pool.join(); print(results)
--
-- The thread pool's workers are threads of the worker process; only that
-- process's main worker touches the shared list (objects of the parent are
-- reached from a child's main worker only). Sub-lists finish in any order:
-- sort by first element before printing.

local function func(d)
  return d * d
end

local function thread_pools(l, results)
  local pool <close> = skein.pool{kind = "thread", size = 3}
  local jobs = {}
  for i, x in ipairs(l) do jobs[i] = pool:submit(func, x) end
  local tmp_results = {}
  for i, job in ipairs(jobs) do tmp_results[i] = job:get() end
  results:append(tmp_results)
  return skein.self().kind, pool:stats().size
end

local data = {{1, 2, 3}, {3, 4, 5}, {5, 6, 7}, {7, 8, 9}, {9, 10, 11}}
local pool = skein.pool{kind = "process", size = 3}
local results = skein.shared.table()
local jobs = {}
for i, l in ipairs(data) do jobs[i] = pool:submit(thread_pools, l, results) end
pool:close()
pool:join()

local where = {}
for _, job in ipairs(jobs) do
  local kind, threads = job:get()
  where[("a pool of %d threads in a %s worker"):format(threads, kind)] = true
end

local lists = results:totable()
table.sort(lists, function(x, y) return x[1] < y[1] end)
local parts = {}
for i, l in ipairs(lists) do parts[i] = "[" .. table.concat(l, ", ") .. "]" end
print("[" .. table.concat(parts, ", ") .. "]")
for w in pairs(where) do print(("%d sub-lists, each squared by %s"):format(#lists, w)) end
