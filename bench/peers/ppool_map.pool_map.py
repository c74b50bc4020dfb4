"""ppool_map.pool_map.py - multiprocessing.Pool(2).map over N trivial
items (default chunking)."""
import sys
import time
from multiprocessing import Pool

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000


def inc(x):
    return x + 1


if __name__ == "__main__":
    with Pool(2) as pool:
        pool.apply(inc, (0,))
        items = list(range(1, N + 1))
        t0 = time.perf_counter()
        r = pool.map(inc, items)
        elapsed = time.perf_counter() - t0
    assert len(r) == N and r[-1] == N + 1
    print("BENCH time=%.6f n=%d" % (elapsed, N))
