"""sleep_10k.asyncio.py - asyncio peer: gather N tasks that each
await asyncio.sleep(S). Prints one BENCH line for bench/run."""
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
S = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0


async def body():
    await asyncio.sleep(S)


async def main():
    t0 = time.perf_counter()
    await asyncio.gather(*[body() for _ in range(N)])
    return time.perf_counter() - t0


elapsed = asyncio.run(main())
print("BENCH time=%.6f n=%d" % (elapsed, N))
