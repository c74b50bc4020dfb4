"""queue_1p1c.threading.py - Python peer: one producer thread puts N small
messages (the integers 0..N-1) into a queue.Queue, one consumer thread gets
them until a None poison pill. Prints one BENCH line for bench/run."""
import queue
import sys
import threading
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000


def producer(q, n):
    put = q.put
    for i in range(1, n + 1):
        put(i)
    put(None)


def consumer(q, out):
    get = q.get
    count = total = 0
    while True:
        v = get()
        if v is None:
            break
        count += 1
        total += v
    out.append((count, total))


q = queue.Queue()
out = []
t0 = time.perf_counter()
c = threading.Thread(target=consumer, args=(q, out))
p = threading.Thread(target=producer, args=(q, N))
c.start()
p.start()
p.join()
c.join()
elapsed = time.perf_counter() - t0
assert out == [(N, N * (N + 1) // 2)], "lost or duplicated messages"
print("BENCH time=%.6f n=%d" % (elapsed, N))
