-- value_array.lua — multiprocessing's Value/Array template: a worker
-- changes a shared number and negates a shared integer array in place, and
-- the parent sees both changes.
--
--   num = Value('d', 0.0); arr = Array('i', range(10))
--   p = Process(target=f, args=(num, arr)); p.start(); p.join()
--   print(num.value); print(arr[:])
--
-- Shared objects cross to workers by reference, so `f` gets the same value
-- and array, not copies. (Threads for now; processes take the same code.)

local function f(n, a)
  n:set(3.1415927)
  for i = 1, #a do a[i] = -a[i] end
end

local range = {}
for i = 1, 10 do range[i] = i - 1 end

local num = skein.shared.value(0.0)
local arr = skein.shared.array("integer", range)

local p = skein.thread(f, num, arr)
p:join()

print(num:get())
print("[" .. table.concat(arr:totable(), ", ") .. "]")

-- Locked updates: four workers add to the same value and array slots.
local hits = skein.shared.value(0)
local per_slot = skein.shared.array("integer", 4)
local workers = {}
for w = 1, 4 do
  workers[w] = skein.thread(function(id, h, slots)
    for i = 1, 1000 do
      h:add(1)
      slots:add(i % 4 + 1, 1)
    end
    return id
  end, w, hits, per_slot)
end
for _, w in ipairs(workers) do w:join() end
print(("hits = %d, per slot = [%s]"):format(hits:get(), table.concat(per_slot:totable(), ", ")))
