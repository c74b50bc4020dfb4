"""pqueue_1p1c.mp_queue.py - multiprocessing.Queue: one producer process
puts N small messages, the parent consumes them; timed up to the
producer's exit, as skein's side."""
import sys
import time
from multiprocessing import Process, Queue

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000


def produce(q, n):
    for i in range(1, n + 1):
        q.put(i)


if __name__ == "__main__":
    q = Queue()
    t0 = time.perf_counter()
    p = Process(target=produce, args=(q, N))
    p.start()
    total = 0
    for _ in range(N):
        total += q.get()
    p.join()
    elapsed = time.perf_counter() - t0
    assert total == N * (N + 1) // 2
    print("BENCH time=%.6f n=%d" % (elapsed, N))
