"""spawn_join.asyncio.py - asyncio peer: gather N tasks that each
await asyncio.sleep(0) once. Prints one BENCH line for bench/run."""
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000


async def body():
    await asyncio.sleep(0)


async def main():
    t0 = time.perf_counter()
    await asyncio.gather(*[body() for _ in range(N)])
    return time.perf_counter() - t0


elapsed = asyncio.run(main())
print("BENCH time=%.6f n=%d" % (elapsed, N))
