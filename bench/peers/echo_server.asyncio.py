"""echo_server.asyncio.py - asyncio peer of workloads/echo_server.lua: an
echo server on asyncio streams (asyncio.start_server; a coroutine per
connection reads what arrived and writes it back), one process, one thread,
the default event loop. Listens on 127.0.0.1, a free port, and prints
"PORT <n>"; runs until killed. bench/run drives it with bench/tools/echo_load
(workloads echo_rt and idle_conns).
Usage: python3 echo_server.asyncio.py"""
import asyncio


async def handle(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    # backlog as skein's and Node's listen (511); asyncio sets TCP_NODELAY
    # on its TCP transports itself.
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=511)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
