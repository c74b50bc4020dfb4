-- The client side of the broker benchmark for skein (bench/broker/run):
--   enqueue N [TASKS]  submits N no-op tasks by name to the pool "bench",
--                      one after another from one task (TASKS > 1: from that
--                      many tasks at once, so the XADDs are pipelined), and
--                      prints "BENCH time=<s> n=N" (the submits only)
--   latency M RATE     submits M tasks lat(skein.now()) at RATE per second
local url = os.getenv("BENCH_REDIS_URL")
local mode, n, k = arg[1], tonumber(arg[2]), tonumber(arg[3])
assert(url and n, "usage: client.skein.lua enqueue N [TASKS] | latency M RATE")
local b = skein.broker(url)
local pool = b:pool("bench")

if mode == "enqueue" then
  k = k or 1
  local t0 = skein.now()
  if k == 1 then
    for _ = 1, n do pool:submit("noop") end
  else
    local left, ts = n, {}
    for j = 1, k do
      ts[j] = skein.spawn(function()
        while left > 0 do
          left = left - 1
          pool:submit("noop")
        end
      end)
    end
    for j = 1, k do ts[j]:join() end
  end
  local t = skein.now() - t0
  print(("BENCH time=%.6f n=%d"):format(t, n))
elseif mode == "latency" then
  local gap, t0 = 1 / k, skein.now()
  for i = 1, n do
    local due = t0 + (i - 1) * gap
    local d = due - skein.now()
    if d > 0 then skein.sleep(d) end
    pool:submit("lat", skein.now())
  end
  print(("BENCH n=%d"):format(n))
else
  error("unknown mode " .. tostring(mode))
end
b:close()
