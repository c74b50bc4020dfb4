"""process_start.mp_spawn.py - multiprocessing with the "spawn" start method
(a fresh interpreter per process: the default on macOS and Windows, and the
safe choice in a program with threads): start N processes one after
another, each sending one value back through a Queue, and join each before
the next, as skein's side. Usage: python3 process_start.mp_spawn.py [N]"""
import multiprocessing as mp
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
METHOD = "spawn"


def child(q, x):
    q.put(x)


if __name__ == "__main__":
    ctx = mp.get_context(METHOD)
    q = ctx.Queue()
    t0 = time.perf_counter()
    total = 0
    for i in range(1, N + 1):
        p = ctx.Process(target=child, args=(q, i))
        p.start()
        total += q.get()
        p.join()
    elapsed = time.perf_counter() - t0
    assert total == N * (N + 1) // 2
    print("BENCH time=%.6f n=%d" % (elapsed, N))
