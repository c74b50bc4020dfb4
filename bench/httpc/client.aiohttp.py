# N GETs of a small page with C in flight (a coroutine per slot) on one
# aiohttp ClientSession. Prints "secs=<s> ok=<n>".
import asyncio, sys, time
import aiohttp

async def main(url, n, c):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:
        async def one():
            async with s.get(url) as r:
                await r.read()
        await asyncio.gather(*(one() for _ in range(c)))   # warm: C connections up
        left = [n]
        ok = [0]
        async def worker():
            while left[0] > 0:
                left[0] -= 1
                async with s.get(url) as r:
                    body = await r.read()
                    if r.status == 200 and body:
                        ok[0] += 1
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        print("secs=%.4f ok=%d" % (time.perf_counter() - t0, ok[0]))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
