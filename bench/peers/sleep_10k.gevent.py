"""sleep_10k.gevent.py - gevent peer: spawn N greenlets that each
gevent.sleep(S), then joinall. Prints one BENCH line for bench/run."""
import sys
import time

import gevent

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
S = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0


def body():
    gevent.sleep(S)


t0 = time.perf_counter()
greenlets = [gevent.spawn(body) for _ in range(N)]
gevent.joinall(greenlets)
elapsed = time.perf_counter() - t0
print("BENCH time=%.6f n=%d" % (elapsed, N))
