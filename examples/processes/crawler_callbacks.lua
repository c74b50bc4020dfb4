-- crawler_callbacks.lua — replaces the ProcessPoolExecutor crawler of
-- seeds 001 and 003, its three versions: (1) the workers fetch, and the main
-- process parses every page once all are in; (2) each worker parses the page
-- it fetched (the two steps coupled); (3) "async + callbacks", below: worker
-- processes only fetch pages; each result is parsed by a callback that runs
-- in the main process as soon as its page arrives, while the workers go on
-- fetching.
--
--   def get(url): response = requests.get(url); time.sleep(random.randint(1, 3))
--                 if response.status_code == 200: return response.text
--   def parse(obj): print(f'{os.getpid()} parsed: {len(obj.result())}')
--   pool = ProcessPoolExecutor(4)
--   for url in url_list: pool.submit(get, url).add_done_callback(parse)
--   pool.shutdown(wait=True)
--
-- The pages are fetched for real (skein.http.get) from a local server that
-- this script starts on 127.0.0.1 (a free port), never from the network:
-- /site/NAME answers a small HTML page titled NAME, after a pause that
-- depends on the name (the seed's random sleep). Pages arrive in an order
-- that depends on timing, so the parsed lines are printed sorted once every
-- callback has run.

local server <close> = skein.http.serve{handler = function(req)
  local name = req.path:match("^/site/([%w%.%-]+)/?$")
  if not name then return 404, nil, "not found\n" end
  skein.sleep(0.05 * (#name % 4 + 1))
  return 200, {["content-type"] = "text/html; charset=utf-8"},
    ("<html><head><title>%s</title></head><body>%s</body></html>"):format(name, name:rep(10))
end}
local base = ("http://127.0.0.1:%d"):format(server:port())

local sites = {
  "www.taobao.com", "www.baidu.com", "www.JD.com", "atlasnq.github.io", "www.baidu.com",
  "www.sohu.com", "www.youku.com", "www.cnblogs.com", "atlasnq.github.io", "www.sina.com",
}
local url_list = {}
for i, site in ipairs(sites) do url_list[i] = base .. "/site/" .. site .. "/" end

-- Runs in a worker process (the base URL travels in each url).
local function get(url)
  local response = skein.http.get(url, {timeout = 10})
  return url, response.status, response.body, skein.self().pid
end

local main_pid = skein.self().pid
local function title(text) return text:match("<title>(.-)</title>") end

-- Version 1: submit every fetch, wait for all, then parse them one by one.
do
  local pool = skein.pool{kind = "process", size = 4}
  local obj_list = {}
  for i, url in ipairs(url_list) do obj_list[i] = pool:submit(get, url) end
  pool:shutdown{wait = true}
  local titles, bytes = 0, 0
  for _, obj in ipairs(obj_list) do
    local _, status, text = obj:get(30)
    if status == 200 and title(text) then titles, bytes = titles + 1, bytes + #text end
  end
  print(("version 1: %d titles parsed after every page was in, %d bytes"):format(titles, bytes))
end

-- Version 2: each worker parses the page it fetched.
do
  local function get_and_parse(url)
    local _, status, text, pid = get(url)
    return status == 200 and title(text) ~= nil, #text, pid
  end
  local pool = skein.pool{kind = "process", size = 4}
  local obj_list = {}
  for i, url in ipairs(url_list) do obj_list[i] = pool:submit(get_and_parse, url) end
  pool:shutdown{wait = true}
  local titles, bytes, in_workers = 0, 0, true
  for _, obj in ipairs(obj_list) do
    local ok, n, pid = obj:get(30)
    if ok then titles, bytes = titles + 1, bytes + n end
    in_workers = in_workers and pid ~= main_pid
  end
  print(("version 2: %d titles parsed in the worker processes (%s), %d bytes"):format(
    titles, in_workers, bytes))
end

-- Version 3: each result parsed by a callback in the main process.
local parsed, in_workers, in_main = {}, true, true
local function parse(future)
  local url, status, text, fetched_by = future:get()
  parsed[#parsed + 1] = ("parsed %-28s %d  title %-19s %d bytes"):format(
    url:sub(#base + 1), status, title(text), #text)
  in_workers = in_workers and fetched_by ~= main_pid
  in_main = in_main and skein.self().pid == main_pid
end

local pool = skein.pool{kind = "process", size = 4}
local callbacks = {}
for _, url in ipairs(url_list) do
  callbacks[#callbacks + 1] = pool:submit(get, url):on_done(parse)
end
pool:shutdown{wait = true}
skein.gather(callbacks, 30)                   -- every callback has run

table.sort(parsed)
for _, line in ipairs(parsed) do print(line) end
print(("version 3: %d pages; fetched in worker processes: %s; parsed in the main process: %s"):format(
  #parsed, in_workers, in_main))
