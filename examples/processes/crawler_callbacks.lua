-- crawler_callbacks.lua — replaces the ProcessPoolExecutor crawler of
-- seeds 001 and 003 (version 3, "async + callbacks"): worker processes only
-- fetch pages; each result is parsed by a callback that runs in the main
-- process as soon as its page arrives, while the workers go on fetching.
--
--   def get(url): response = requests.get(url); time.sleep(random.randint(1, 3))
--                 if response.status_code == 200: return response.text
--   def parse(obj): print(f'{os.getpid()} parsed: {len(obj.result())}')
--   pool = ProcessPoolExecutor(4)
--   for url in url_list: pool.submit(get, url).add_done_callback(parse)
--   pool.shutdown(wait=True)
--
-- The fetch is simulated with a sleep and a made-up body, so the example
-- needs no network. Pages arrive in an order that depends on timing, so the
-- parsed lines are printed sorted once every callback has run.

local url_list = {
  "http://www.taobao.com", "http://www.baidu.com", "http://www.JD.com",
  "https://atlasnq.github.io/", "http://www.baidu.com", "http://www.sohu.com",
  "http://www.youku.com", "https://www.cnblogs.com/chennaqin/",
  "https://atlasnq.github.io/", "http://www.sina.com",
}

local function get(url)
  skein.sleep(0.05 * (#url % 4 + 1))          -- the download
  return url, ("<html>%s</html>"):format(url:rep(10)), skein.self().pid
end

local main_pid = skein.self().pid
local parsed, in_workers, in_main = {}, true, true
local function parse(future)
  local url, text, fetched_by = future:get()
  parsed[#parsed + 1] = ("parsed %-36s %d bytes"):format(url, #text)
  in_workers = in_workers and fetched_by ~= main_pid
  in_main = in_main and skein.self().pid == main_pid
end

local pool = skein.pool{kind = "process", size = 4}
local callbacks = {}
for _, url in ipairs(url_list) do
  callbacks[#callbacks + 1] = pool:submit(get, url):on_done(parse)
end
pool:shutdown{wait = true}
skein.gather(callbacks)                       -- every callback has run

table.sort(parsed)
for _, line in ipairs(parsed) do print(line) end
print(("%d pages; fetched in worker processes: %s; parsed in the main process: %s"):format(
  #parsed, in_workers, in_main))
