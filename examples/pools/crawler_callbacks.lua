-- crawler_callbacks.lua — the executor-with-callbacks crawler: fetch each
-- page on a thread pool and handle every result in a callback that runs
-- back in the submitting worker, as pages finish; the callback parses the
-- page's <title>.
--
-- The pages come from a local server this script starts (skein.http.serve
-- on 127.0.0.1, a free port), never from the network. It answers
-- /page/NAME?delay=S&size=N after S seconds with a page of N bytes, so the
-- pages finish in a known order.
local server <close> = skein.http.serve{handler = function(req)
  local name = req.path:match("^/page/(%w+)$")
  if not name then return 404, nil, "not found\n" end
  skein.sleep(tonumber(req.query:match("delay=([%d.]+)")) or 0)
  local size = tonumber(req.query:match("size=(%d+)")) or 0
  local page = ("<html><head><title>Page %s</title></head><body>"):format(name:upper())
  return 200, {["content-type"] = "text/html"},
    page .. ("x"):rep(size - #page - #"</body></html>") .. "</body></html>"
end}
local base = ("http://127.0.0.1:%d"):format(server:port())

local pages = {
  {path = "/page/a", delay = 0.9, size = 1200},
  {path = "/page/b", delay = 0.1, size = 300},
  {path = "/page/c", delay = 0.5, size = 4500},
}

-- Runs in a pool thread: every thread has its own loop and connections.
local function fetch(base_url, page)
  local response = skein.http.get(("%s%s?delay=%s&size=%d"):format(
    base_url, page.path, page.delay, page.size), {timeout = 10})
  return page.path, response.status, response.body
end

local handled = {}
local pool <close> = skein.pool{kind = "thread", size = 3}
local callbacks = {}
for _, page in ipairs(pages) do
  local future = pool:submit(fetch, base, page)
  callbacks[#callbacks + 1] = future:on_done(function(f)
    local path, status, body = f:get()
    handled[#handled + 1] = path
    print(("parsed %s: %d %q (%d bytes)"):format(path, status, body:match("<title>(.-)</title>"), #body))
  end)
end
skein.gather(callbacks, 10)
print(("%d pages, handled in the order they arrived"):format(#handled))
