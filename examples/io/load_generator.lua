-- load_generator.lua — the rate-shaped load generator of seed 003: a rule
-- says how many requests to fire at the start of each second, each request
-- runs concurrently, and each reports whether it succeeded and how long it
-- took.
--
--   rule = {0: 500, 1: 30}      # second 0: 500 requests at once; then 30
--   for k in rule:
--       time.sleep(k)
--       for i in range(rule[k]):
--           threading.Thread(target=geturl).start()
--
-- Here a request is a task, not a thread: it connects, sends a one-line
-- HTTP/1.0 request, reads the whole answer and checks its status line.
-- Without --target the server is started in this script (skein.net.serve,
-- a task per connection) on a free port.
--
--   skein load_generator.lua [N [S]] [--target host:port]
--     N requests at the start of each of S seconds (default 50 and 3)
local net = skein.net

local n, seconds, target = 50, 3, nil
do
  local pos = {}
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--target" then target, i = arg[i + 1], i + 1 else pos[#pos + 1] = arg[i] end
    i = i + 1
  end
  n = math.tointeger(tonumber(pos[1] or n)) or error("N must be an integer")
  seconds = math.tointeger(tonumber(pos[2] or seconds)) or error("S must be an integer")
end

local server, host, port
if target then
  host, port = target:match("^(.+):(%d+)$")
  port = tonumber(port) or error("--target wants host:port")
else
  server = net.serve("127.0.0.1", 0, function(conn)
    local request = conn:read("l", 5)
    if not request then return end
    repeat                                   -- skip the headers, to the blank line
      local header = conn:read("l", 5)
    until header == nil or header:match("^\r?$")
    local body = ("you asked for %s\n"):format(request:match("^GET (%S+)") or "?")
    conn:write("HTTP/1.0 200 OK\r\nContent-Length: ", #body, "\r\n\r\n", body)
  end, {backlog = 1024})
  host, port = "127.0.0.1", server:port()
end

-- One request: returns true and its latency, or false and why it failed.
local function request(second, i)
  local t0 = skein.now()
  local ok, answer = pcall(function()
    local conn <close> = net.connect(host, port, {timeout = 5})
    conn:write(("GET /s%d/r%d HTTP/1.0\r\nHost: %s\r\n\r\n"):format(second, i, host))
    return conn:read("a", 5)
  end)
  local latency = skein.now() - t0
  if ok and answer and answer:match("^HTTP/1%.%d 200 ") then return true, latency end
  if ok then return false, "bad answer" end
  return false, skein.is_error(answer) and (answer.code or answer.kind) or tostring(answer)
end

-- Fire the bursts on time: burst s starts s seconds after the first, however
-- long the earlier requests take.
local start, bursts = skein.now(), {}
for s = 1, seconds do
  skein.sleep(math.max(0, start + (s - 1) - skein.now()))
  local tasks = {}
  for i = 1, n do tasks[i] = skein.spawn(request, s, i) end
  bursts[s] = tasks
end

local total_ok, total_failed = 0, 0
for s, tasks in ipairs(bursts) do
  local ok, failed, sum, max, why = 0, 0, 0, 0, {}
  for _, t in ipairs(tasks) do
    local good, v = t:join(15)
    if good then
      ok, sum, max = ok + 1, sum + v, math.max(max, v)
    else
      failed = failed + 1
      why[v] = (why[v] or 0) + 1
    end
  end
  local reasons = {}
  for k, c in pairs(why) do reasons[#reasons + 1] = ("%s x%d"):format(k, c) end
  table.sort(reasons)
  print(("second %d: %d requests, %d ok, %d failed%s, latency avg %.1f ms, max %.1f ms"):format(
    s, #tasks, ok, failed, #reasons > 0 and " (" .. table.concat(reasons, ", ") .. ")" or "",
    ok > 0 and sum / ok * 1000 or 0, max * 1000))
  total_ok, total_failed = total_ok + ok, total_failed + failed
end
print(("total: %d requests in %d bursts, %d ok, %d failed"):format(
  total_ok + total_failed, seconds, total_ok, total_failed))
if server then
  server:close()
  server:join(5)
end
