-- stock.lua — the Redis stock counter of seed 004, across processes (and,
-- with the same code, machines): buyers in a process pool decrement
-- `stock:count` under WATCH/MULTI/EXEC until it is gone,
--
--     pipe.watch('stock:count')
--     count = int(pipe.get('stock:count'))
--     if count > 0:
--         pipe.multi(); pipe.decr('stock:count'); pipe.execute()
--         return True
--     return False
--
-- with 10 buyers submitted to a ProcessPoolExecutor. Here each buyer opens a
-- Redis connection of its own (a transaction belongs to one connection, so
-- buyers must not share one) with skein.broker.redis, and EXEC answers nil
-- when another buyer changed the key after WATCH: the buyer tries again.
-- The stock never goes below zero, and every item is sold exactly once.
-- examples/processes/stock.lua is the same template on one machine, with a
-- shared table instead of Redis.
--
--   skein examples/broker/stock.lua [redis://host:port]
--
-- The Redis URL is the first argument, else $SKEIN_REDIS, else
-- redis://127.0.0.1:6379.

local url = arg[1] or os.getenv("SKEIN_REDIS") or "redis://127.0.0.1:6379"
local host, port = url:match("^redis://([^:/]+):?(%d*)")
assert(host, "expected a redis://host:port URL, got " .. url)
port = tonumber(port) or 6379

local STOCK, BUYERS = 100, 10

-- One buyer: takes one item at a time until none is left; returns how many
-- it got and how many of its transactions another buyer spoiled.
local function buyer(host, port)
  local skein = require "skein"
  local r <close> = skein.broker.redis{host = host, port = port, timeout = 10}
  local got, retries = 0, 0
  while true do
    r:call("WATCH", "stock:count")
    local count = tonumber(r:call("GET", "stock:count"))
    if count <= 0 then
      r:call("UNWATCH")
      return got, retries
    end
    r:call("MULTI")
    r:call("DECR", "stock:count")
    local done = r:call("EXEC")      -- nil: the key changed since WATCH
    if done then got = got + 1 else retries = retries + 1 end
  end
end

local r <close> = skein.broker.redis{host = host, port = port, timeout = 10}
r:call("SET", "stock:count", STOCK)

local pool <close> = skein.pool{kind = "process", size = 4}
local futures = {}
for i = 1, BUYERS do futures[i] = pool:submit(buyer, host, port) end
local sold, spoiled = 0, 0
for i = 1, BUYERS do
  local got, retries = futures[i]:get(60)
  sold, spoiled = sold + got, spoiled + retries
end
print(("sold %d of %d, %d left in Redis"):format(sold, STOCK, tonumber(r:call("GET", "stock:count"))))
print(("%d transactions were retried after another buyer's sale"):format(spoiled))
