"""RQ's side of the broker benchmark (bench/broker/run): the tasks
noop() and lat(stamp) (as in tasks.skein.lua), run by `rq worker` from this
module; the default result_ttl (RQ keeps every result, as skein does).

As a program it is the client:
  rq_app.py enqueue N      N q.enqueue(noop) one after another; prints
                           "BENCH time=<s> n=N" (the calls only)
  rq_app.py latency M RATE M q.enqueue(lat, time.monotonic()) at RATE/s
"""
import os
import sys
import time

URL = os.environ["BENCH_REDIS_URL"]
_conn = None


def noop():
    return None


def lat(stamp):
    global _conn
    waited = time.monotonic() - stamp
    if _conn is None:
        import redis
        _conn = redis.Redis.from_url(URL)
    _conn.rpush("bench:lat", "%.9f" % waited)


def main():
    from redis import Redis
    from rq import Queue
    import rq_app
    q = Queue(connection=Redis.from_url(URL))
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "enqueue":
        t0 = time.monotonic()
        for _ in range(n):
            q.enqueue(rq_app.noop)
        print("BENCH time=%.6f n=%d" % (time.monotonic() - t0, n), flush=True)
    elif mode == "latency":
        gap, t0 = 1.0 / float(sys.argv[3]), time.monotonic()
        for i in range(n):
            d = t0 + i * gap - time.monotonic()
            if d > 0:
                time.sleep(d)
            q.enqueue(rq_app.lat, time.monotonic())
        print("BENCH n=%d" % n, flush=True)
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
