"""ppool_latency.ppe.py - ProcessPoolExecutor(1): N sequential round trips
of one trivial task; p50/p99 on stderr."""
import sys
import time
from concurrent.futures import ProcessPoolExecutor

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000


def ident(x):
    return x


if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=1) as ex:
        ex.submit(ident, 0).result()
        lat = []
        t0 = time.perf_counter()
        for i in range(N):
            s = time.perf_counter()
            ex.submit(ident, i).result()
            lat.append(time.perf_counter() - s)
        elapsed = time.perf_counter() - t0
    lat.sort()
    sys.stderr.write("latency p50=%.1fus p99=%.1fus\n" % (lat[N // 2] * 1e6, lat[int(N * 0.99)] * 1e6))
    print("BENCH time=%.6f n=%d" % (elapsed, N))
