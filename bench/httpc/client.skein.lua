-- N GETs of a small page with C in flight (a task per slot), on skein.http.
-- Prints "secs=<s> ok=<n>".
local url, n, c = arg[1], tonumber(arg[2]), tonumber(arg[3])
local http = skein.http
local warm = {}                             -- warm: C connections up
for i = 1, c do warm[i] = skein.spawn(http.get, url) end
for i = 1, c do warm[i]:join() end
warm = nil
local t0 = skein.now()
local left, ok = n, 0
local tasks = {}
for i = 1, c do
  tasks[i] = skein.spawn(function()
    while left > 0 do
      left = left - 1
      local r = http.get(url)
      if r.status == 200 and #r.body > 0 then ok = ok + 1 end
    end
  end)
end
for i = 1, c do tasks[i]:join() end
tasks = nil
collectgarbage()
print(("secs=%.4f ok=%d"):format(skein.now() - t0, ok))
