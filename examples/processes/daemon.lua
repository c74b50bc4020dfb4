-- daemon.lua — daemon and non-daemon processes, a port of the Python
-- template:
--
--     pid_1 = multiprocessing.Process(name='daemon', target=daemon)
--     pid_1.daemon = True          # sleeps 2 s
--     pid_2 = multiprocessing.Process(name='non-daemon', target=non_daemon)
--     pid_1.start(); pid_2.start()
--     pid_1.join(1)
--     print(f'pid_2.is_alive() ---> {pid_2.is_alive()}')
--     pid_2.join()
--
-- The script waits for its non-daemon processes when it ends and kills its
-- daemon ones (as Python terminates daemonic children at exit): the daemon
-- never prints its "Exiting" line. The same goes for skein.thread{daemon=}.
-- Output lines of the two children may interleave in either order.

local function daemon()
  print("Starting: " .. skein.self().name)
  io.stdout:flush()
  skein.sleep(2)
  print("Exiting : " .. skein.self().name)   -- never printed: killed at exit
end

local function non_daemon()
  print("Starting: " .. skein.self().name)
  print("Exiting : " .. skein.self().name)
end

local p1 = skein.process{fn = daemon, name = "daemon", daemon = true}
local p2 = skein.process{fn = non_daemon, name = "non-daemon"}
local ok, e = pcall(p1.join, p1, 1)          -- gives up after one second
print(("p1.join(1) ---> %s"):format(ok and "ended" or e.kind))
print(("p2:alive() ---> %s"):format(p2:alive()))
p2:join()
print(("p1:alive() ---> %s"):format(p1:alive()))
-- A daemon thread is left behind the same way.
skein.thread{fn = function() skein.sleep(5) print("never printed") end, daemon = true}
print("main ends")
