"""ppool_submit.apply_async.py - multiprocessing.Pool(2).apply_async: N
trivial tasks, then get every result."""
import sys
import time
from multiprocessing import Pool

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


def inc(x):
    return x + 1


if __name__ == "__main__":
    with Pool(2) as pool:
        pool.apply(inc, (0,))
        t0 = time.perf_counter()
        results = [pool.apply_async(inc, (i,)) for i in range(1, N + 1)]
        total = sum(r.get() for r in results)
        elapsed = time.perf_counter() - t0
    assert total == N * (N + 1) // 2 + N
    print("BENCH time=%.6f n=%d" % (elapsed, N))
