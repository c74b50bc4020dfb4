-- reuseport_pool.lua — the socket server of seed 003 whose connections are
-- handled by a pool of 3 processes ("however many clients connect, only 3
-- different pids ever serve them"):
--
--   def talk(conn): conn.send(str(os.getpid()).encode()); conn.close()
--   pool = Pool(3)
--   while True:
--       conn, addr = server.accept()
--       pool.apply_async(talk, args=(conn,))
--
-- A socket cannot cross to another process in skein (nor could Python's
-- Pool pickle it); instead every process of the pool listens on the same
-- port with `reuseport = true` and the kernel spreads the connections over
-- them. Each answer names the pid that served it.
--
--   skein reuseport_pool.lua [connections]   (default 30)
local net = skein.net
local NPROCS = 3
local connections = tonumber(arg and arg[1]) or 30

-- The job each pool process runs: serve on `port` until `stop` is set, then
-- report how many connections it answered.
local function serve_until(port, ready, stop)
  local pid, served = skein.self().pid, 0
  local server = skein.net.serve("127.0.0.1", port, function(conn)
    served = served + 1
    conn:write(("served by pid %d\n"):format(pid))
  end, {reuseport = true})
  ready:put(pid)
  stop:wait()
  server:close()
  server:join(5)
  return pid, served
end

-- This process holds the port (port 0: any free one) until the pool's
-- processes listen on it too, then lets go, so that no connection is ever
-- queued on a socket nobody accepts on.
local holder = net.listen("127.0.0.1", 0, {reuseport = true})
local port = holder:port()
local ready, stop = skein.queue(), skein.event()
local pool <close> = skein.pool{kind = "process", size = NPROCS}
local jobs = {}
for i = 1, NPROCS do jobs[i] = pool:submit(serve_until, port, ready, stop) end
for _ = 1, NPROCS do assert(ready:get(10), "a pool process did not start serving") end
holder:close()

-- Clients: `connections` connections, 10 at a time, each reading its answer;
-- more (up to 10 times as many) while the kernel has not yet picked every
-- process once.
local seen, nseen, made = {}, 0, 0
local function connect_once()
  local conn <close> = net.connect("127.0.0.1", port, {timeout = 5})
  local pid = tonumber(conn:read("l", 5):match("^served by pid (%d+)$"))
  if not seen[pid] then seen[pid], nseen = 0, nseen + 1 end
  seen[pid] = seen[pid] + 1
end
while made < connections or (nseen < NPROCS and made < 10 * connections) do
  local batch = {}
  for i = 1, 10 do batch[i] = skein.spawn(connect_once) end
  skein.gather(batch, 10)
  made = made + #batch
end
stop:set()

local pids, answered = {}, 0
for _, job in ipairs(jobs) do
  local pid, served = job:get(10)
  assert(seen[pid] or served == 0, "a process served connections nobody saw")
  pids[#pids + 1] = pid
  answered = answered + served
end
table.sort(pids)
local counts = {}
for i, pid in ipairs(pids) do counts[i] = ("%d: %d"):format(pid, seen[pid] or 0) end
print(("%d connections, answered by %d processes (%d served in all)"):format(made, nseen, answered))
print("connections per pid: " .. table.concat(counts, ", "))
print(("main pid %d served none: %s"):format(skein.self().pid, seen[skein.self().pid] == nil))
