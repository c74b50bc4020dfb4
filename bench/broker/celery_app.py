"""Celery's side of the broker benchmark (bench/broker/run).

The app: broker Redis ($BENCH_REDIS_URL), result backend Redis too (skein
stores every result; $BENCH_CELERY_BACKEND=none drops it), acks_late, the
default prefetch multiplier (4), JSON. Tasks: noop() and lat(stamp) (as in
tasks.skein.lua: the time from the client's stamp, time.monotonic(), to the
task's start goes onto the list bench:lat).

As a program it is the client:
  celery_app.py enqueue N      N noop.delay() one after another; prints
                               "BENCH time=<s> n=N" (the calls only)
  celery_app.py latency M RATE M lat.delay(time.monotonic()) at RATE/s
"""
import os
import sys
import time

from celery import Celery

URL = os.environ["BENCH_REDIS_URL"]
BACKEND = os.environ.get("BENCH_CELERY_BACKEND", "redis")

app = Celery("celery_app", broker=URL, backend=None if BACKEND == "none" else URL)
app.conf.update(
    task_acks_late=True,
    task_ignore_result=BACKEND == "none",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
)

_conn = None


@app.task
def noop():
    return None


@app.task
def lat(stamp):
    global _conn
    waited = time.monotonic() - stamp
    if _conn is None:
        import redis
        _conn = redis.Redis.from_url(URL)
    _conn.rpush("bench:lat", "%.9f" % waited)


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "enqueue":
        t0 = time.monotonic()
        for _ in range(n):
            noop.delay()
        print("BENCH time=%.6f n=%d" % (time.monotonic() - t0, n), flush=True)
    elif mode == "latency":
        gap, t0 = 1.0 / float(sys.argv[3]), time.monotonic()
        for i in range(n):
            d = t0 + i * gap - time.monotonic()
            if d > 0:
                time.sleep(d)
            lat.delay(time.monotonic())
        print("BENCH n=%d" % n, flush=True)
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
