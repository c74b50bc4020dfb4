"""spawn_join.asyncio.py - asyncio peer: gather N tasks that each
await asyncio.sleep(0) once. With HEAP > 0 the process first holds HEAP
small live lists. The tasks are freed by reference count when gather
returns, inside the timed region (they make no cycles, so gc.collect()
would find nothing). With "warm" one untimed round runs first and the
second is timed, as in workloads/spawn_join.lua. Prints one BENCH line for
bench/run. Usage: python3 spawn_join.asyncio.py [N] [HEAP] [warm]"""
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
HEAP = int(sys.argv[2]) if len(sys.argv) > 2 else 0
WARM = len(sys.argv) > 3 and sys.argv[3] == "warm"


async def body():
    await asyncio.sleep(0)


async def main():
    if WARM:
        await asyncio.gather(*[body() for _ in range(N)])
    t0 = time.perf_counter()
    await asyncio.gather(*[body() for _ in range(N)])
    return time.perf_counter() - t0


heap = [[i] for i in range(HEAP)]
elapsed = asyncio.run(main())
assert len(heap) == HEAP
print("BENCH time=%.6f n=%d" % (elapsed, N))
