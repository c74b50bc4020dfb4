-- The /page/N server of bench/workloads/http_hello.lua, for profiling: it
-- prints "PORT <n>", answers N requests (arg[1]), then closes and exits,
-- so a profiler sees a fixed amount of work. bench/httpc/profile runs it.
local N = tonumber(arg[1])
local done, served = skein.event(), 0
local s = skein.http.serve{port = 0, handler = function(req)
  local n = req.path:match("^/page/(%d+)$")
  if not n then return 404, nil, "not found\n" end
  served = served + 1
  if served == N then done:set() end
  return 200, {["content-type"] = "text/html"},
    "<html><head><title>Page " .. n .. "</title></head><body><h1>Page " .. n ..
    "</h1><p>Hello from skein.</p></body></html>\n"
end}
print("PORT " .. s:port())
io.stdout:flush()
done:wait()
s:close()
s:join(10)
