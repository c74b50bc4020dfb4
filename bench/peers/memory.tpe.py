"""memory.tpe.py - concurrent.futures peer of workloads/memory.lua: the
growth of the resident set (VmRSS) per future of a 2-thread
ThreadPoolExecutor, in a fresh process, between a baseline and the moment
N futures whose results were got exist (both after gc.collect(); the list
holding them is made before the baseline).
Usage: python3 memory.tpe.py [N] future"""
import gc
import sys
import time
from concurrent.futures import ThreadPoolExecutor

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
MODE = sys.argv[2] if len(sys.argv) > 2 else "future"
assert MODE == "future"


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def inc(x):
    return x + 1


items = [None] * N
with ThreadPoolExecutor(max_workers=2) as ex:
    ex.submit(inc, 0).result()
    ex.submit(inc, 0).result()  # both threads up before the baseline
    gc.collect()
    rss0 = rss()
    t0 = time.perf_counter()
    for i in range(N):
        items[i] = ex.submit(inc, i)
    for i in range(N):
        assert items[i].result() == i + 1
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss1 = rss()
print("BENCH time=%.6f n=%d bytes=%.1f" % (elapsed, N, (rss1 - rss0) / N))
