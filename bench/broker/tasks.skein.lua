-- The tasks `skein worker` serves in the broker benchmark (bench/broker/run).
--   noop()      does nothing (the throughput runs)
--   lat(stamp)  the latency runs: stamp is the client's skein.now() (the
--               system's monotonic clock, the same one Python's
--               time.monotonic() reads) just before it submitted; the task
--               pushes how long it waited to start (seconds) onto the list
--               bench:lat, on a connection of its own.
local port = assert(tonumber(os.getenv("BENCH_REDIS_PORT")), "BENCH_REDIS_PORT is not set")
local conn

return {
  noop = function() end,
  lat = function(stamp)
    local waited = skein.now() - stamp
    conn = conn or skein.broker.redis{port = port}
    conn:call("RPUSH", "bench:lat", ("%.9f"):format(waited))
  end,
}
