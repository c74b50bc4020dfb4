-- echo_server.lua — skein: the echo server of the network workloads
-- (echo_rt, echo_rt_gen2, idle_conns). skein.net.serve runs a task per
-- connection that writes back every chunk as it arrives (read format
-- "any"), on the main worker's loop: one process, one thread, like each
-- peer. Listens on 127.0.0.1, a free port, prints "PORT <n>" and serves
-- until killed (the server's accept loop is a task: the script runs until
-- it is closed); bench/run drives it with bench/tools/echo_load.
-- Usage: skein echo_server.lua
local function echo(s)
  for chunk in s:lines("any") do
    s:write(chunk)
  end
end

local server = skein.net.serve("127.0.0.1", 0, function(s)
  -- The generator ends its connections with a reset (SO_LINGER 0): that
  -- ends a handler quietly, as it does in the peers; anything else is
  -- raised (and reported by serve).
  local ok, err = pcall(echo, s)
  if not ok and not (skein.is_error(err, "io") and (err.code == "ECONNRESET" or err.code == "EPIPE")) then
    error(err, 0)
  end
end)
io.stdout:write(("PORT %d\n"):format(server:port()))
io.stdout:flush()
