-- manager_dict.lua — the Manager template: a Value, an Array and a list
-- made by a manager and changed by a worker, then a dict that several
-- workers update at once.
--
--   server = multiprocessing.Manager()
--   x = server.Value('d', 0.0); arr = server.Array('i', range(10)); l = server.list()
--   def f(x, arr, l): x.value = 3.14; arr[0] = 5; l.append('Hello')
--   proc = Process(target=f, args=(x, arr, l)); proc.start(); proc.join()
--   print(x.value); print(arr); print(l)

local range = {}
for i = 1, 10 do range[i] = i - 1 end

local x = skein.shared.value(0.0)
local arr = skein.shared.array("integer", range)
local l = skein.shared.table()

local proc = skein.thread(function(xv, a, list)
  xv:set(3.14)
  a[1] = 5
  list:append("Hello")
end, x, arr, l)
proc:join()

print(x:get())
print("[" .. table.concat(arr:totable(), ", ") .. "]")
print("['" .. table.concat(l:totable(), "', '") .. "']")

-- A dict shared by four workers: word counts. `update` is an atomic
-- read-modify-write of one entry (t.k = t.k + 1 from several workers would
-- lose counts); plain assignment is enough for keys only one worker writes.
local text = {
  "the quick brown fox", "jumps over the lazy dog",
  "the dog sleeps", "the fox runs",
}
local counts = skein.shared.table()
local workers = {}
for i, line in ipairs(text) do
  workers[i] = skein.thread(function(words, c, id)
    for w in words:gmatch("%a+") do
      c:update(w, function(n) return (n or 0) + 1 end)
    end
    c["worker " .. id] = "done"
  end, line, counts, i)
end
for _, w in ipairs(workers) do w:join() end

local words = {}
for k, v in counts:pairs() do
  if not k:match("^worker") then words[#words + 1] = k .. "=" .. v end
end
table.sort(words)
print(table.concat(words, " "))
print(#counts:keys() - #words .. " workers reported")
