"""memory.asyncio.py - asyncio peer of workloads/memory.lua: the growth of
the resident set (VmRSS) per item, in a fresh process, between a baseline
and the moment N items exist (both after gc.collect(); the list holding
them is made before the baseline).
  pending   N tasks started and blocked in asyncio.sleep (cancelled after)
  finished  N tasks that returned, gathered, kept
Usage: python3 memory.asyncio.py [N] [pending|finished]"""
import asyncio
import gc
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
MODE = sys.argv[2] if len(sys.argv) > 2 else "pending"
assert MODE in ("pending", "finished")


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def sleeper():
    await asyncio.sleep(3600)


async def nothing():
    pass


async def main():
    items = [None] * N
    gc.collect()
    rss0 = rss()
    t0 = time.perf_counter()
    if MODE == "pending":
        for i in range(N):
            items[i] = asyncio.create_task(sleeper())
        await asyncio.sleep(0)  # every task starts and blocks
    else:
        for i in range(N):
            items[i] = asyncio.create_task(nothing())
        await asyncio.gather(*items)
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss1 = rss()
    print("BENCH time=%.6f n=%d bytes=%.1f" % (elapsed, N, (rss1 - rss0) / N))
    sys.stdout.flush()
    if MODE == "pending":
        for t in items:
            t.cancel()
        await asyncio.gather(*items, return_exceptions=True)


asyncio.run(main())
