-- manager_list.lua — the "process pool + Manager list" template: five
-- workers handle range(40), each item's result is appended to one shared
-- list, and the parent prints the list when the workers are done.
--
--   def func(d, results): results.append(d + 1)
--   pool = Pool(5); results = Manager().list()
--   for d in range(40): pool.apply_async(func, (d, results))
--   pool.close(); pool.join(); print(results)
--
-- Here five threads share a ticket counter (a shared value: `add` is atomic,
-- so each item goes to exactly one worker) and the results list (a shared
-- table used as a list). Workers finish in any order, so the list is sorted
-- before printing, which makes the output the same on every run.

local function func(d, results)
  results:append(d + 1)
end

local data = 40
local results = skein.shared.table()
local next_item = skein.shared.value(0)

local workers = {}
for w = 1, 5 do
  workers[w] = skein.thread(function(items, tickets, res, work)
    local done = 0
    while true do
      local d = tickets:add(1) - 1          -- claim the next item: 0, 1, 2, ...
      if d >= items then break end
      work(d, res)
      done = done + 1
    end
    return done
  end, data, next_item, results, func)
end

local handled = 0
for _, w in ipairs(workers) do handled = handled + w:join() end

local list = results:totable()
table.sort(list)
print(("%d items handled, %d results"):format(handled, #results))
print("[" .. table.concat(list, ", ") .. "]")

-- The process+thread variant: each worker squares one sub-list and appends
-- the whole result list, so the shared list holds lists.
local nested = {{1, 2, 3}, {3, 4, 5}, {5, 6, 7}, {7, 8, 9}, {9, 10, 11}}
local squares = skein.shared.table()
local jobs = {}
for i, l in ipairs(nested) do
  jobs[i] = skein.thread(function(sub, res, idx)
    local out = {}
    for j, x in ipairs(sub) do out[j] = x * x end
    res:set(idx, out)                       -- by position, so the order is fixed
  end, l, squares, i)
end
for _, j in ipairs(jobs) do j:join() end
local parts = {}
for i, l in squares:pairs() do parts[i] = "[" .. table.concat(l, ", ") .. "]" end
print("[" .. table.concat(parts, ", ") .. "]")
