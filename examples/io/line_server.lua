-- line_server.lua — the gevent socket server of seed 003 with a small line
-- protocol instead of a bare echo: one task per connection reads commands,
-- one a line, and answers each with one line.
--
--   PING         -> PONG
--   ECHO <text>  -> <text>
--   TIME         -> the server's clock (UTC, ISO 8601)
--   COUNT        -> how many commands this connection sent so far
--   QUIT         -> BYE, then the server closes the connection
--   anything else -> ERR unknown command '<word>'
--
--   skein line_server.lua [port]   serves on 127.0.0.1 until interrupted
--   skein line_server.lua --demo   serves on a free port, runs three client
--                                  tasks at once, prints their transcripts
--                                  and exits
local net = skein.net

local function session(conn)
  local count = 0
  for line in conn:lines("l") do           -- ends when the client hangs up
    count = count + 1
    local cmd, rest = line:match("^(%S*)%s?(.*)$")
    cmd = cmd:upper()
    if cmd == "PING" then
      conn:write("PONG\n")
    elseif cmd == "ECHO" then
      conn:write(rest, "\n")
    elseif cmd == "TIME" then
      conn:write(os.date("!%Y-%m-%dT%H:%M:%SZ"), "\n")
    elseif cmd == "COUNT" then
      conn:write(count, "\n")
    elseif cmd == "QUIT" then
      conn:write("BYE\n")
      return                               -- serve closes the stream
    else
      conn:write(("ERR unknown command '%s'\n"):format(cmd))
    end
  end
end

local demo = arg and arg[1] == "--demo"
local server = net.serve("127.0.0.1", demo and 0 or tonumber(arg and arg[1]) or 8080, session)
print(("line server on 127.0.0.1:%d"):format(server:port()))
if not demo then
  server:join()                            -- until Ctrl-C
  return
end

-- A client sends its commands one at a time and keeps the transcript; after
-- QUIT it reads on to the end of the stream, which the server's close sends.
local function client(commands)
  local conn <close> = net.connect("127.0.0.1", server:port(), {timeout = 5})
  local transcript = {}
  for _, c in ipairs(commands) do
    conn:write(c, "\n")
    transcript[#transcript + 1] = ("> %s\n< %s"):format(c, conn:read("l", 5))
  end
  local rest = conn:read("a", 5)           -- nothing more: nil (or "")
  transcript[#transcript + 1] = (rest or "") == "" and "(closed by the server)" or "?? " .. rest
  return table.concat(transcript, "\n")
end

local sessions = {
  {"PING", "ECHO hello, skein", "COUNT", "QUIT"},
  {"TIME", "ECHO", "bogus command", "COUNT", "QUIT"},
  {"ping", "ECHO  two  spaces ", "QUIT"},
}
local tasks = {}
for i, commands in ipairs(sessions) do tasks[i] = skein.spawn(client, commands) end
for i, t in ipairs(tasks) do
  print(("-- client %d"):format(i))
  print(t:join(10))
end
server:close()
server:join(5)
print(("%d clients served"):format(#tasks))
