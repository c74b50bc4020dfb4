-- ppool_latency.lua — skein: N sequential round trips (submit, then get)
-- of one trivial task on a 1-process pool; prints p50/p99 on stderr. The
-- timed region ends with the collection of the futures.
local N = tonumber(arg[1]) or 2000
local pool <close> = skein.pool{kind = "process", size = 1}
local function id(x) return x end
pool:apply(id, 0)
local lat = {}
local t0 = skein.now()
for i = 1, N do
  local s = skein.now()
  pool:submit(id, i):get()
  lat[i] = skein.now() - s
end
collectgarbage()
local elapsed = skein.now() - t0
table.sort(lat)
io.stderr:write(("latency p50=%.1fus p99=%.1fus\n"):format(lat[N // 2] * 1e6, lat[math.ceil(N * 0.99)] * 1e6))
print(("BENCH time=%.6f n=%d p50=%.6f p99=%.6f"):format(elapsed, N, lat[N // 2], lat[math.ceil(N * 0.99)]))
