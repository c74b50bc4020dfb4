"""spawn_join.gevent.py - gevent peer: spawn N greenlets that each
gevent.sleep(0) once, then joinall. With HEAP > 0 the process first holds
HEAP small live lists. The greenlets are freed by reference count inside
the timed region. Prints one BENCH line for bench/run.
Usage: python3 spawn_join.gevent.py [N] [HEAP]"""
import sys
import time

import gevent

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
HEAP = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def body():
    gevent.sleep(0)


heap = [[i] for i in range(HEAP)]
t0 = time.perf_counter()
greenlets = [gevent.spawn(body) for _ in range(N)]
gevent.joinall(greenlets)
del greenlets
elapsed = time.perf_counter() - t0
assert len(heap) == HEAP
print("BENCH time=%.6f n=%d" % (elapsed, N))
