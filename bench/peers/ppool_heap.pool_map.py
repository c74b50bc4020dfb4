"""ppool_heap.pool_map.py - a program that already holds 100 000 small
objects made by as many finished coroutines starts multiprocessing.Pool(2)
and maps N trivial items; timed: start-up, map, shutdown, a collection."""
import asyncio
import gc
import sys
import time
from multiprocessing import Pool

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000


def inc(x):
    return x + 1


async def one(i):
    return [i]


async def many():
    return await asyncio.gather(*(one(i) for i in range(1, 100001)))


if __name__ == "__main__":
    kept = [r[0] for r in asyncio.run(many())]
    items = list(range(1, N + 1))
    t0 = time.perf_counter()
    with Pool(2) as pool:
        r = pool.map(inc, items)
    gc.collect()
    elapsed = time.perf_counter() - t0
    assert len(r) == N and r[-1] == N + 1 and len(kept) == 100000
    print("BENCH time=%.6f n=%d" % (elapsed, N))
