-- echo_server.lua — skein: the echo server of the network workloads
-- (echo_rt, idle_conns). skein.net.serve runs a task per connection that
-- writes back every chunk as it arrives (read format "any"), on the main
-- worker's loop: one process, one thread, like each peer. Listens on
-- 127.0.0.1, a free port, prints "PORT <n>" and serves until killed;
-- bench/run drives it with bench/tools/echo_load.
-- Usage: skein echo_server.lua
local server = skein.net.serve("127.0.0.1", 0, function(s)
  for chunk in s:lines("any") do
    s:write(chunk)
  end
end)
io.stdout:write(("PORT %d\n"):format(server:port()))
io.stdout:flush()
server:join()
