"""ppool_submit.apply_async.py - multiprocessing.Pool(2).apply_async: N
trivial tasks, then get every result; the AsyncResults are freed (by
reference count) inside the timed region. This peer has no closure form (a
lambda does not pickle), so bench/run reuses its runs for the closure line."""
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
        del results
        elapsed = time.perf_counter() - t0
    assert total == N * (N + 1) // 2 + N
    print("BENCH time=%.6f n=%d" % (elapsed, N))
