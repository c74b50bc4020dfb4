"""echo_server.gevent.py - gevent peer of workloads/echo_server.lua: an echo
server on gevent.server.StreamServer (a greenlet per connection doing recv
then sendall), one process, one thread. Listens on 127.0.0.1, a free port,
and prints "PORT <n>"; runs until killed. bench/run drives it with
bench/tools/echo_load (workloads echo_rt and idle_conns).
Usage: python3 echo_server.gevent.py"""
import socket

from gevent.server import StreamServer


def handle(sock, _address):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)
    except ConnectionError:
        pass


server = StreamServer(("127.0.0.1", 0), handle, backlog=511)
server.start()
print("PORT %d" % server.server_port, flush=True)
server.serve_forever()
