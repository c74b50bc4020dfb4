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

-- Pool: each task "downloads" a page and its three assets at the same time
-- and reports how many downloads were in flight together.
local function get(url)
  local in_flight, most = 0, 0
  local function download(path, seconds)
    in_flight = in_flight + 1
    most = math.max(most, in_flight)
    skein.sleep(seconds)
    in_flight = in_flight - 1
    return #path * 10                         -- a made-up size
  end
  local parts = {url, url .. "/style.css", url .. "/app.js", url .. "/logo.png"}
  local tasks = {}
  for i, path in ipairs(parts) do tasks[i] = skein.spawn(download, path, 0.1 * i) end
  local sizes = skein.gather(tasks)
  local total = 0
  for _, n in ipairs(sizes) do total = total + n end
  return ("%s: %d bytes in %d files, %d downloads at once"):format(url, total, #sizes, most)
end

local urls = {"https://a.example", "https://b.example", "https://c.example", "https://d.example"}
local pool <close> = skein.pool{kind = "process", size = 2}
for _, result in pool:imap(get, urls) do   -- in order, each as soon as it is ready
  print(result)
end
