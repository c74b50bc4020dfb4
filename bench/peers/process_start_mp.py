"""process_start_mp.py - the body of the process_start peers
(process_start.mp_fork.py, process_start.mp_spawn.py): start N processes
one after another with multiprocessing's given start method, each sending
one value back through a Queue, and join each before the next, as skein's
side (workloads/process_start.lua). Prints one BENCH line for bench/run."""
import multiprocessing as mp
import sys
import time


def child(q, x):
    q.put(x)


def main(method):
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    ctx = mp.get_context(method)
    q = ctx.Queue()
    t0 = time.perf_counter()
    total = 0
    for i in range(1, n + 1):
        p = ctx.Process(target=child, args=(q, i))
        p.start()
        total += q.get()
        p.join()
    elapsed = time.perf_counter() - t0
    assert total == n * (n + 1) // 2
    print("BENCH time=%.6f n=%d" % (elapsed, n))
