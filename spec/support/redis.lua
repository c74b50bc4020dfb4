--- A real redis-server for the broker specs: started on a loopback port
-- (a free one, or the one given, to restart on it) in a directory of the
-- spec's, daemonized with a pid file; a missing redis-server fails the spec.
local skein = require "skein"
local cli = require "spec.support.cli"

local M = {}

--- A loopback port nothing listens on now.
function M.free_port()
  local srv = skein.net.listen("127.0.0.1", 0)
  local port = srv:port()
  srv:close()
  return port
end

--- Polls `pred` every 50 ms for at most `secs` seconds.
function M.eventually(secs, pred)
  local deadline = skein.now() + secs
  while skein.now() < deadline do
    if pred() then return true end
    skein.sleep(0.05)
  end
  return pred()
end

--- Starts redis-server in `dir` on `port` (or a free one), with AOF when
-- `aof` (fsync always); returns once it answers PING: port, url, pid.
function M.start(dir, port, aof)
  port = port or M.free_port()
  local q = cli.q
  local pidfile = dir .. "/redis.pid"
  local persist = aof and "--appendonly yes --appendfsync always" or "--appendonly no"
  local rc = os.execute(("cd %s && timeout 10 redis-server --port %d --bind 127.0.0.1 %s"
    .. " --dir %s --save '' --daemonize yes --pidfile %s --logfile %s >/dev/null 2>&1")
    :format(q(dir), port, persist, q(dir), q(pidfile), q(dir .. "/redis.log")))
  assert(rc, "redis-server could not be started (is it installed?)")
  local c = skein.broker.redis{port = port, timeout = 1}
  local up = M.eventually(10, function() return pcall(c.call, c, "PING") end)
  c:close()
  assert(up, "redis-server did not answer on port " .. port)
  assert(M.eventually(5, function() return tonumber(cli.read(pidfile) or "") ~= nil end))
  return port, "redis://127.0.0.1:" .. port, tonumber(cli.read(pidfile))
end

return M
