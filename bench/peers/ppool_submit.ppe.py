"""ppool_submit.ppe.py - ProcessPoolExecutor(2): submit N trivial tasks,
then get every result; the futures are freed (by reference count) inside
the timed region. This peer has no closure form (a lambda does not pickle),
so bench/run reuses its runs for the closure line."""
import sys
import time
from concurrent.futures import ProcessPoolExecutor

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


def inc(x):
    return x + 1


if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=2) as ex:
        ex.submit(inc, 0).result()
        t0 = time.perf_counter()
        futures = [ex.submit(inc, i) for i in range(1, N + 1)]
        total = sum(f.result() for f in futures)
        del futures
        elapsed = time.perf_counter() - t0
    assert total == N * (N + 1) // 2 + N
    print("BENCH time=%.6f n=%d" % (elapsed, N))
