-- http_hello.lua — skein: an HTTP/1.1 server answering GET /page/N with a
-- small HTML page, loaded by wrk (keep-alive, CONNS connections, one wrk
-- thread) for SECS seconds. The server runs in PROCS workers: the main
-- worker (PROCS = 1; wrk is started from a thread worker, which waits for
-- it) or the processes of a process pool, each with its own server on one
-- port (reuseport). wrk runs for a fixed time, bench/run compares times
-- for a fixed n: the BENCH line gives the time N_REF requests take at the
-- rate wrk measured (so rate = completed requests / wrk's time).
local CONNS, SECS, PROCS = tonumber(arg[1]) or 100, tonumber(arg[2]) or 3, tonumber(arg[3]) or 1

local function server(port, ready, stop)
  local sk = require "skein"
  local s = sk.http.serve{port = port, reuseport = true, handler = function(req)
    local n = req.path:match("^/page/(%d+)$")
    if not n then return 404, nil, "not found\n" end
    return 200, {["content-type"] = "text/html"},
      "<html><head><title>Page " .. n .. "</title></head><body><h1>Page " .. n ..
      "</h1><p>Hello from skein.</p></body></html>\n"
  end}
  ready:put(true)
  stop:wait()
  s:close()
  s:join(5)
end

local probe = skein.net.listen("127.0.0.1", 0)
local port = probe:port()
probe:close()
local ready, stop = skein.queue(), skein.event()
local workers, pool = {}, nil
if PROCS == 1 then
  workers[1] = skein.spawn(server, port, ready, stop)
else
  pool = skein.pool{kind = "process", size = PROCS}
  for i = 1, PROCS do workers[i] = pool:submit(server, port, ready, stop) end
end
for _ = 1, PROCS do assert(ready:get(10), "a server did not start") end

local out = skein.thread(function(cmd)
  local p = assert(io.popen(cmd))
  local text = p:read("a")
  p:close()
  return text
end, ("wrk -t1 -c%d -d%ds http://127.0.0.1:%d/page/7 2>&1"):format(CONNS, SECS, port)):join()
stop:set()
for _, w in ipairs(workers) do if w.join then w:join(10) else w:get(10) end end
if pool then pool:close(); pool:join(10) end

local n, t, unit = out:match("(%d+) requests in ([%d%.]+)(%a+)")
if not n then error("wrk gave no result:\n" .. out) end
t = tonumber(t) * (unit == "ms" and 1e-3 or unit == "m" and 60 or 1)
local errs = out:match("Non%-2xx or 3xx responses: (%d+)") or out:match("Socket errors: ([^\n]*)")
if errs then io.stderr:write("wrk: " .. errs .. "\n") end
io.stderr:write((out:match("Requests/sec:%s*[%d%.]+") or "") .. "\n")
local N_REF = 100000
print(("BENCH time=%.6f n=%d"):format(t * N_REF / tonumber(n), N_REF))
