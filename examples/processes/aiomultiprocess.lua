-- aiomultiprocess.lua — replaces the aiomultiprocess templates of seed 004:
-- coroutine functions run in worker processes (Worker: one process per
-- call, its result awaited by the parent) and in a process pool whose
-- tasks each wait on several things at once.
--
--   async def async_process_task(name):
--       print(f"[{os.getpid()}] {name} starts"); await asyncio.sleep(1)
--       return f"result from [{os.getpid()}] {name}"
--   worker_1 = Worker(target=async_process_task, args=("process 1",)); worker_1.start()
--   result_1 = await worker_1
--
--   async def get(url): async with request("GET", url) as response: return await response.text()
--   async with Pool() as pool:
--       async for result in pool.map(get, urls): ...
--
-- There is no async/await split: any function can wait, and each worker
-- process has its own scheduler, so a task spawns coroutines (skein.spawn)
-- and waits for them together (skein.gather) as asyncio.gather does.

-- Worker: a coroutine function in a process of its own, result joined.
-- Both workers run at once.
local function async_process_task(name)
  skein.sleep(0.2)                            -- await asyncio.sleep(1)
  return ("result from %s (a %s worker)"):format(name, skein.self().kind)
end

local worker_1 = skein.process(async_process_task, "process 1")
local worker_2 = skein.process(async_process_task, "process 2")
print("result_1: " .. worker_1:join())
print("result_2: " .. worker_2:join())

-- Pool: each task fetches a page and its three assets at the same time
-- (for real, with skein.http.get, from the local server below) and reports
-- how many requests were in flight together.
--
-- The server runs in this (the main) process on 127.0.0.1, a free port,
-- never the network: /SITE/ is a page titled SITE, /SITE/NAME an asset of
-- 100 bytes per letter of NAME; every answer comes after 0.1 s, so a task's
-- four requests overlap. The pool's processes get its base URL in the urls.
local server <close> = skein.http.serve{handler = function(req)
  local site, asset = req.path:match("^/([%w%-]+)/(.*)$")
  if not site then return 404, nil, "not found\n" end
  skein.sleep(0.1)
  if asset == "" then
    return 200, {["content-type"] = "text/html"},
      ("<html><head><title>%s</title></head><body>%s</body></html>"):format(site, site)
  end
  return 200, nil, ("x"):rep(100 * #asset)
end}
local base = ("http://127.0.0.1:%d"):format(server:port())

local function get(url)
  local in_flight, most = 0, 0
  local function download(u)
    in_flight = in_flight + 1
    most = math.max(most, in_flight)
    local response = skein.http.get(u, {timeout = 10})
    in_flight = in_flight - 1
    return response
  end
  local parts = {url, url .. "style.css", url .. "app.js", url .. "logo.png"}
  local tasks = {}
  for i, u in ipairs(parts) do tasks[i] = skein.spawn(download, u) end
  local responses = skein.gather(tasks, 20)
  local total, ok = 0, 0
  for _, r in ipairs(responses) do
    total = total + #r.body
    if r.status == 200 then ok = ok + 1 end
  end
  return ("%s: %q, %d bytes in %d files (%d with status 200), %d requests at once"):format(
    url:match("^http://[^/]+(.*)$"), responses[1].body:match("<title>(.-)</title>"),
    total, #responses, ok, most)
end

local urls = {}
for i, site in ipairs{"a-example", "b-example", "c-example", "d-example"} do
  urls[i] = ("%s/%s/"):format(base, site)
end
local pool <close> = skein.pool{kind = "process", size = 2}
for _, result in pool:imap(get, urls, {timeout = 30}) do   -- in order, each as soon as it is ready
  print(result)
end
