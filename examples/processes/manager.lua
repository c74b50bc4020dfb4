-- manager.lua — replaces the Manager template of seed 004: a Value, an
-- Array and a list made by a manager and changed by a child process, then a
-- dict that several processes update at once.
--
--   server = multiprocessing.Manager()
--   x = server.Value('d', 0.0); arr = server.Array('i', range(10)); l = server.list()
--   def f(x, arr, l): x.value = 3.14; arr[0] = 5; l.append('Hello')
--   proc = Process(target=f, args=(x, arr, l)); proc.start(); proc.join()
--   print(x.value); print(arr); print(l)
--
-- No manager process is needed: the objects live in this process and a child
-- reaches them through proxies, as Manager proxies reach the server.

local range = {}
for i = 1, 10 do range[i] = i - 1 end

local x = skein.shared.value(0.0)
local arr = skein.shared.array("integer", range)
local l = skein.shared.table()

local proc = skein.process(function(xv, a, list)
  xv:set(3.14)
  a[1] = 5
  list:append("Hello")
end, x, arr, l)
proc:join()

print(x:get())
print("[" .. table.concat(arr:totable(), ", ") .. "]")
print("['" .. table.concat(l:totable(), "', '") .. "']")

-- A dict shared by four processes: word counts. `update` is an atomic
-- read-modify-write of one entry (its function runs where the table lives);
-- d[w] = d[w] + 1 from several processes would lose counts, as it does on a
-- Manager dict.
local text = {
  "the quick brown fox", "jumps over the lazy dog",
  "the dog sleeps", "the fox runs",
}
local counts = skein.shared.table()
local workers = {}
for i, line in ipairs(text) do
  workers[i] = skein.process(function(words, d, id)
    for w in words:gmatch("%a+") do
      d:update(w, function(n) return (n or 0) + 1 end)
    end
    d["worker " .. id] = "done"
  end, line, counts, i)
end
for _, w in ipairs(workers) do w:join() end

local words, reported = {}, 0
for k, v in pairs(counts:totable()) do
  if k:match("^worker") then reported = reported + 1
  else words[#words + 1] = k .. "=" .. v end
end
table.sort(words)
print(table.concat(words, " "))
print(reported .. " workers reported")
