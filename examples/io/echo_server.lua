-- echo_server.lua — the seeds' gevent socket server (seed 003, "socket
-- concurrency in one thread with gevent"): one task per connection echoes
-- what the client sends until it hangs up, and many clients talk to it at
-- once.
--
--   from gevent import monkey; monkey.patch_all()
--   def talk(conn):
--       while True:
--           data = conn.recv(1024)
--           if not data: break
--           conn.send(data)
--       conn.close()
--   server = socket(); server.bind(('127.0.0.1', 8080)); server.listen(5)
--   while True:
--       conn, addr = server.accept()
--       gevent.spawn(talk, conn)
--
-- skein.net.serve is that accept loop: it runs the handler as a task per
-- connection and closes the stream when the handler returns.
--
--   skein echo_server.lua [port]   serves on 127.0.0.1 until interrupted
--   skein echo_server.lua --demo   serves on a free port, runs 5 client
--                                  threads against it (the seed's "many
--                                  clients in threads"), prints what they
--                                  got back and exits
local net = skein.net

local function talk(conn)
  while true do
    local data = conn:read("any")          -- what arrived, at least a byte
    if not data then break end             -- nil: the client hung up
    conn:write(data)
  end
end

local demo = arg and arg[1] == "--demo"
local server = net.serve("127.0.0.1", demo and 0 or tonumber(arg and arg[1]) or 8080, talk)
print(("echo server on 127.0.0.1:%d"):format(server:port()))
if not demo then
  server:join()                            -- until Ctrl-C
  return
end

-- One client: connects, sends `n` lines, reads each echo, and returns them.
-- It runs in a thread worker, so it has its own loop and its own skein.net.
local function client(port, id, n)
  local conn <close> = skein.net.connect("127.0.0.1", port, {timeout = 5})
  local got = {}
  for i = 1, n do
    conn:write(("client %d, message %d\n"):format(id, i))
    got[#got + 1] = conn:read("l", 5)
  end
  return got
end

local threads = {}
for id = 1, 5 do threads[id] = skein.thread(client, server:port(), id, 3) end
local total = 0
for id, t in ipairs(threads) do
  local got = t:join(10)
  print(("client %d got back: %s"):format(id, table.concat(got, " | ")))
  total = total + #got
end
server:close()
server:join(5)
print(("%d clients, %d messages echoed"):format(#threads, total))
