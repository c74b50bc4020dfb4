-- stock.lua — selling off a stock from many processes at once, a port of the
-- Python template that decrements a Redis counter under WATCH/MULTI from a
-- ProcessPoolExecutor:
--
--     pipe.watch('stock:count')
--     count = int(pipe.get('stock:count'))
--     if count > 0:
--         pipe.multi(); pipe.decr('stock:count'); pipe.execute()
--         return True
--     return False
--
-- Here the counter is an entry of a skein.shared.table, which lives in
-- shared memory that every process of the tree uses directly. `update` is
-- the atomic read-check-write that WATCH/MULTI/EXEC retries for: while the
-- function runs, the entry is claimed and other buyers wait, so the stock
-- can never go below zero and no sale is counted twice. (The same template
-- against a real Redis, across machines, is examples/broker/stock.lua.)

local STOCK, BUYERS = 100, 10

-- One buyer: take one item at a time until none is left; returns how many
-- it got. `sold` is set to true when this call took an item.
local function buyer(store)
  local got = 0
  while true do
    local sold = false
    store:update("stock:count", function(count)
      if count > 0 then
        sold = true
        return count - 1
      end
      return count
    end)
    if not sold then return got end
    got = got + 1
  end
end

local store = skein.shared.table{}
store["stock:count"] = STOCK
local got = {}
do
  local pool <close> = skein.pool{kind = "process", size = 4}
  local futures = {}
  for i = 1, BUYERS do futures[i] = pool:submit(buyer, store) end
  for i = 1, BUYERS do got[i] = futures[i]:get(60) end
end
local total = 0
for i = 1, BUYERS do total = total + got[i] end
print(("%d buyers bought %d items; %d left in stock"):format(BUYERS, total, store["stock:count"]))
print(total == STOCK and "no item sold twice, none lost" or "WRONG COUNT")
