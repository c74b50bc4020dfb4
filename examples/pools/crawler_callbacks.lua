-- crawler_callbacks.lua — the executor-with-callbacks crawler: "fetch" each
-- page on a thread pool and handle every result in a callback that runs
-- back in the submitting worker, as pages finish. (The fetch is simulated
-- with a sleep so the example needs no network.)
local pages = {
  {url = "https://example.org/a", delay = 0.06, size = 1200},
  {url = "https://example.org/b", delay = 0.02, size = 300},
  {url = "https://example.org/c", delay = 0.04, size = 4500},
}

local function fetch(page)
  skein.sleep(page.delay)
  return page.url, page.size
end

local handled = {}
local pool <close> = skein.pool{kind = "thread", size = 3}
local callbacks = {}
for _, page in ipairs(pages) do
  local future = pool:submit(fetch, page)
  callbacks[#callbacks + 1] = future:on_done(function(f)
    local url, size = f:get()
    handled[#handled + 1] = url
    print(("parsed %s (%d bytes)"):format(url, size))
  end)
end
skein.gather(callbacks)
print(("%d pages, handled in the order they arrived"):format(#handled))
