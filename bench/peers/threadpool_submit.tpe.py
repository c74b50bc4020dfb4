"""threadpool_submit.tpe.py - concurrent.futures.ThreadPoolExecutor with 2
workers: submit N trivial tasks, then get every result."""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000


def inc(x):
    return x + 1


with ThreadPoolExecutor(max_workers=2) as ex:
    t0 = time.perf_counter()
    futures = [ex.submit(inc, i) for i in range(1, N + 1)]
    total = sum(f.result() for f in futures)
    elapsed = time.perf_counter() - t0
assert total == N * (N + 1) // 2 + N
print("BENCH time=%.6f n=%d" % (elapsed, N))
