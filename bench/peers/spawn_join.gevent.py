"""spawn_join.gevent.py - gevent peer: spawn N greenlets that each
gevent.sleep(0) once, then joinall. Prints one BENCH line for bench/run."""
import sys
import time

import gevent

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000


def body():
    gevent.sleep(0)


t0 = time.perf_counter()
greenlets = [gevent.spawn(body) for _ in range(N)]
gevent.joinall(greenlets)
elapsed = time.perf_counter() - t0
print("BENCH time=%.6f n=%d" % (elapsed, N))
