"""A local HTTP(S) server for spec/httpc_spec.lua (loopback, port 0).

Usage: httpc_server.py PORTFILE [CERT KEY]
Writes the port it listens on to PORTFILE once it accepts connections.
Routes:
  /hello                 "hello world", header X-Test: yes
  /echo                  any method: "<METHOD> <n>\\n<body>" (chunked request bodies
                         decoded); request headers come back as X-Got-<name>
  /redirect/N            302 to /redirect/N-1; /redirect/0 says "landed"
  /loop                  302 to itself
  /gzip                  a gzip-encoded body, whatever the request asks
  /slow?s=S              answers after S seconds
  /big?n=N               N bytes: lines "%015d\\n" (the last one cut short)
  /fast?n=N              N bytes of "abcdefghijklmno\\n" lines, as fast as it can
  /chunked?n=N           N bytes like /fast, chunked (no Content-Length)
  /stall                 promises 100 bytes, sends 10, then waits 30 s
  /status/N              status N
  /cookies               two Set-Cookie fields
  /conns                 how many connections the server has accepted
"""
import gzip
import http.server
import os
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

conns = 0
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global conns
        with lock:
            conns += 1
        super().setup()

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def route(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        p = u.path
        body = self.read_body()
        if p == "/hello":
            return self.send(200, "hello world", [("X-Test", "yes"), ("Content-Type", "text/plain")])
        if p == "/echo":
            hs = [("X-Got-" + k, v) for k, v in self.headers.items()]
            return self.send(200, ("%s %d\n" % (self.command, len(body))).encode() + body, hs)
        if p.startswith("/redirect/"):
            n = int(p.rsplit("/", 1)[1])
            if n == 0:
                return self.send(200, "landed")
            return self.send(302, "go on", [("Location", "/redirect/%d" % (n - 1))])
        if p == "/loop":
            return self.send(302, "again", [("Location", "/loop")])
        if p == "/gzip":
            return self.send(200, gzip.compress(b"hello gzip " * 100), [("Content-Encoding", "gzip")])
        if p == "/slow":
            time.sleep(float(q.get("s", ["2"])[0]))
            return self.send(200, "slow")
        if p == "/big":
            n = int(q["n"][0])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            sent, i = 0, 0
            chunk = []
            while sent < n:
                line = b"%015d\n" % i
                i += 1
                line = line[: n - sent]
                chunk.append(line)
                sent += len(line)
                if len(chunk) >= 4096:
                    self.wfile.write(b"".join(chunk))
                    chunk = []
            self.wfile.write(b"".join(chunk))
            return
        if p == "/fast":
            n = int(q["n"][0])
            block = b"abcdefghijklmno\n" * 65536
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            sent = 0
            while sent < n:
                k = min(len(block), n - sent)
                self.wfile.write(block[:k])
                sent += k
            return
        if p == "/chunked":
            n = int(q["n"][0])
            block = b"abcdefghijklmno\n" * 4096
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < n:
                k = min(len(block), n - sent)
                self.wfile.write(b"%x\r\n" % k + block[:k] + b"\r\n")
                sent += k
            self.wfile.write(b"0\r\n\r\n")
            return
        if p == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            time.sleep(30)
            return
        if p.startswith("/status/"):
            n = int(p.rsplit("/", 1)[1])
            return self.send(n, "status %d" % n)
        if p == "/cookies":
            return self.send(200, "", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        if p == "/conns":
            with lock:
                return self.send(200, str(conns))
        return self.send(404, "not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = route


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    if len(sys.argv) > 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, sys.argv[1])
    srv.serve_forever()


if __name__ == "__main__":
    main()
