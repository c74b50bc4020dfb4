"""ppool_map.pool_map.py - multiprocessing.Pool(2).map over N trivial
items (default chunking). MODE "warm" times the map alone on a pool whose
workers are up; "whole" times pool start-up, the map and the pool's exit
(bench/run judges that line on the process's wall time).
Usage: python3 ppool_map.pool_map.py [N] [warm|whole]"""
import sys
import time
from multiprocessing import Pool

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
MODE = sys.argv[2] if len(sys.argv) > 2 else "warm"
assert MODE in ("warm", "whole")


def inc(x):
    return x + 1


if __name__ == "__main__":
    items = list(range(1, N + 1))
    if MODE == "warm":
        with Pool(2) as pool:
            pool.apply(inc, (0,))
            t0 = time.perf_counter()
            r = pool.map(inc, items)
            elapsed = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        with Pool(2) as pool:
            r = pool.map(inc, items)
        elapsed = time.perf_counter() - t0
    assert len(r) == N and r[-1] == N + 1
    print("BENCH time=%.6f n=%d" % (elapsed, N))
