"""http_hello.aiohttp.py - aiohttp's web server answering GET /page/N with
the same page as bench/workloads/http_hello.lua, loaded by the same wrk run
(started from the event loop as a subprocess)."""
import asyncio
import re
import sys

from aiohttp import web

CONNS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
SECS = int(sys.argv[2]) if len(sys.argv) > 2 else 3


async def page(request):
    n = request.match_info["n"]
    return web.Response(
        text="<html><head><title>Page %s</title></head><body><h1>Page %s"
        "</h1><p>Hello from skein.</p></body></html>\n" % (n, n),
        content_type="text/html")


async def main():
    app = web.Application()
    app.router.add_get(r"/page/{n:\d+}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", "-c%d" % CONNS, "-d%ds" % SECS,
        "http://127.0.0.1:%d/page/7" % port,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    await runner.cleanup()
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out.decode())
    if not m:
        sys.exit("wrk failed: " + out.decode())
    t = float(m.group(2)) * {"ms": 1e-3, "m": 60}.get(m.group(3), 1)
    # As the skein side: the time 100000 requests take at wrk's rate.
    print("BENCH time=%.6f n=100000" % (t * 100000 / int(m.group(1))))


if __name__ == "__main__":
    asyncio.run(main())
