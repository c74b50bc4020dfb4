-- value_array.lua — replaces multiprocessing's Value/Array template of
-- seed 004: a child process sets a shared double and negates a shared
-- integer array in place, and the parent sees both changes; then four
-- processes add to the same value and array slots.
--
--   def f(n, a): n.value = 3.1415927; for i in range(len(a)): a[i] = -a[i]
--   num = Value('d', 0.0); arr = Array('i', range(10))
--   p = Process(target=f, args=(num, arr)); p.start(); p.join()
--   print(num.value); print(arr[:])
--
-- The child gets proxies: n:set, #a, a[i] and a[i] = x each run in the
-- parent, which owns the objects. `add` is one atomic call, so concurrent
-- increments from several processes are never lost (Python needs
-- `with num.get_lock(): num.value += 1` for that).

local function f(n, a)
  n:set(3.1415927)
  for i = 1, #a do a[i] = -a[i] end
end

local range = {}
for i = 1, 10 do range[i] = i - 1 end

local num = skein.shared.value(0.0)
local arr = skein.shared.array("integer", range)

local p = skein.process(f, num, arr)
p:join()

print(num:get())
print("[" .. table.concat(arr:totable(), ", ") .. "]")

-- Four processes, 200 increments each, on one value and four array slots.
local hits = skein.shared.value(0)
local per_slot = skein.shared.array("integer", 4)
local workers = {}
for w = 1, 4 do
  workers[w] = skein.process(function(h, slots)
    for i = 1, 200 do
      h:add(1)
      slots:add(i % 4 + 1, 1)
    end
  end, hits, per_slot)
end
for _, w in ipairs(workers) do w:join() end
print(("hits = %d, per slot = [%s]"):format(hits:get(), table.concat(per_slot:totable(), ", ")))
