"""memory.gevent.py - gevent peer of workloads/memory.lua: the growth of
the resident set (VmRSS) per item, in a fresh process, between a baseline
and the moment N items exist (both after gc.collect(); the list holding
them is made before the baseline).
  pending   N greenlets started and blocked in gevent.sleep (killed after)
  finished  N greenlets that returned, joined, kept
Usage: python3 memory.gevent.py [N] [pending|finished]"""
import gc
import sys
import time

import gevent

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
MODE = sys.argv[2] if len(sys.argv) > 2 else "pending"
assert MODE in ("pending", "finished")


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def sleeper():
    gevent.sleep(3600)


def nothing():
    pass


items = [None] * N
gevent.sleep(0)  # the hub is up before the baseline
gc.collect()
rss0 = rss()
t0 = time.perf_counter()
if MODE == "pending":
    for i in range(N):
        items[i] = gevent.spawn(sleeper)
    gevent.sleep(0)  # every greenlet starts and blocks
    assert all(g and not g.dead for g in items[-10:])
else:
    for i in range(N):
        items[i] = gevent.spawn(nothing)
    gevent.joinall(items)
elapsed = time.perf_counter() - t0
gc.collect()
rss1 = rss()
print("BENCH time=%.6f n=%d bytes=%.1f" % (elapsed, N, (rss1 - rss0) / N))
sys.stdout.flush()
if MODE == "pending":
    gevent.killall(items)
