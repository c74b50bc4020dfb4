-- process_coroutine.lua — replaces the "process + coroutine" template of
-- seed 000: a pool of three processes, each task running its sub-list on a
-- pool of three coroutines (gevent's pool.Pool(3), or asyncpool in the
-- Python 3 version) whose jobs wait on the network concurrently, then
-- appending the results to a Manager list.
--
--   def func(d): return d * d
--   def GeventPools(l, results):
--       p = pool.Pool(3); jobs = [p.spawn(func, i) for i in l]
--       gevent.joinall(jobs); results.append([j.get() for j in jobs])
--   pool = Pool(processes=3); results = Manager().list()
--   for l in data: pool.apply_async(GeventPools, (l, results))
--   pool.close(); pool.join(); print(results)
--
-- No monkey-patching and no pipe conflict between the coroutine loop and the
-- process pool: every worker process has its own scheduler. Each job fetches
-- its square for real (skein.http.get) from a local server that this script
-- starts on 127.0.0.1 (a free port), never the network: /square/D answers
-- D * D after 0.2 s. Each task counts how many of its coroutines were
-- waiting on the server at once.

local server <close> = skein.http.serve{handler = function(req)
  local d = tonumber(req.path:match("^/square/(%-?%d+)$"))
  if not d then return 404, nil, "not found\n" end
  skein.sleep(0.2)
  return 200, {["content-type"] = "text/plain"}, tostring(d * d)
end}
local base = ("http://127.0.0.1:%d"):format(server:port())

local function GeventPools(base_url, l, results)
  local running, most = 0, 0
  local function func(d)
    running = running + 1
    most = math.max(most, running)
    local response = skein.http.get(("%s/square/%d"):format(base_url, d), {timeout = 10})
    running = running - 1
    assert(response.status == 200, response.body)
    return tonumber(response.body)
  end
  local p <close> = skein.pool{kind = "coroutine", size = 3}
  local jobs = {}
  for i, x in ipairs(l) do jobs[i] = p:submit(func, x) end
  local tmp_results = {}
  for i, job in ipairs(jobs) do tmp_results[i] = job:get(20) end
  results:append(tmp_results)
  return most
end

local data = {{1, 2, 3}, {3, 4, 5}, {5, 6, 7}, {7, 8, 9}, {9, 10, 11}}
local pool = skein.pool{kind = "process", size = 3}
local results = skein.shared.table()
local jobs = {}
for i, l in ipairs(data) do jobs[i] = pool:submit(GeventPools, base, l, results) end
pool:close()
pool:join(30)

local concurrent = {}
for i, job in ipairs(jobs) do concurrent[i] = job:get(30) end

local lists = results:totable()
table.sort(lists, function(x, y) return x[1] < y[1] end)
local parts = {}
for i, l in ipairs(lists) do parts[i] = "[" .. table.concat(l, ", ") .. "]" end
print("[" .. table.concat(parts, ", ") .. "]")
print("coroutines waiting on the server at once in each task: " .. table.concat(concurrent, " "))
