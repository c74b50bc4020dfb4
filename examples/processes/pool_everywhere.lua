-- pool_everywhere.lua — one pool, its futures and its workers' handles,
-- used from every corner of a process tree. Python cannot do this: a
-- ProcessPoolExecutor, its Futures and Process objects do not pickle, so a
-- child process can neither submit to its parent's pool nor wait on its
-- parent's futures.
--
-- The main worker makes a thread pool. Two child processes (one of them
-- with a grandchild) submit crawl-like jobs to it, hand the futures back
-- through a queue, and a watcher thread here waits for them with select.
-- A worker process started here is joined by one of the children.

local pool <close> = skein.pool{kind = "thread", size = 4, name = "fetchers"}
local futures = skein.queue()

local function fetch(url)
  skein.sleep(0.01 * (#url % 5))         -- pretend to download
  return url, #url * 100
end

-- A child submits to the parent's pool and passes the futures on.
local function producer(p, out, urls, fetch_fn)
  for _, url in ipairs(urls) do out:put(p:submit(fetch_fn, url)) end
  return #urls
end

local helper = skein.process(function() skein.sleep(0.1) return "helper done" end)

local a = skein.process(producer, pool, futures, {"a.example/1", "a.example/22", "a.example/333"}, fetch)
local b = skein.process(function(p, out, fetch_fn, h)
  -- A grandchild submits too, and this child joins a process it was handed.
  local g = skein.process(producer, p, out, {"g.example/x", "g.example/yy"}, fetch_fn)
  local n = producer(p, out, {"b.example/q"}, fetch_fn)
  return n + g:join(30), h:join(30)
end, pool, futures, fetch, helper)

local na = a:join(30)
local nb, said = b:join(30)
print(("children submitted %d jobs; the helper said %q"):format(na + nb, said))

-- A thread of this process waits for every future with select, as they finish.
local watcher = skein.thread(function(q, n)
  local pending = {}
  for i = 1, n do pending[i] = q:get(30) end
  local total, lines = 0, {}
  while #pending > 0 do
    local i, url, size = skein.select(pending, 30)
    total = total + size
    lines[#lines + 1] = url
    table.remove(pending, i)
  end
  table.sort(lines)
  return total, table.concat(lines, " ")
end, futures, na + nb)

local total, urls = watcher:join(60)
print(("fetched %d bytes: %s"):format(total, urls))
