"""threadpool_submit.tpe.py - concurrent.futures.ThreadPoolExecutor with 2
workers: submit N trivial tasks, then get every result. MODE "named"
submits a named function, "closure" a new lambda per task. With HEAP > 0
the process first holds HEAP small live lists. The futures are dropped
(freed by reference count; they make no cycles) inside the timed region.
Usage: python3 threadpool_submit.tpe.py [N] [named|closure] [HEAP]"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
MODE = sys.argv[2] if len(sys.argv) > 2 else "named"
HEAP = int(sys.argv[3]) if len(sys.argv) > 3 else 0
assert MODE in ("named", "closure")


def inc(x):
    return x + 1


heap = [[i] for i in range(HEAP)]
with ThreadPoolExecutor(max_workers=2) as ex:
    t0 = time.perf_counter()
    if MODE == "named":
        futures = [ex.submit(inc, i) for i in range(1, N + 1)]
    else:
        futures = [ex.submit(lambda i=i: i + 1) for i in range(1, N + 1)]
    total = sum(f.result() for f in futures)
    del futures
    elapsed = time.perf_counter() - t0
assert total == N * (N + 1) // 2 + N
assert len(heap) == HEAP
print("BENCH time=%.6f n=%d" % (elapsed, N))
