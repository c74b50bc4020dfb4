// http_hello.node.js — Node's http server answering GET /page/N with the
// same page as bench/workloads/http_hello.lua, loaded by the same wrk run
// (started from this process, asynchronously).
'use strict';
const http = require('http');
const { execFile } = require('child_process');
const CONNS = +(process.argv[2] || 100), SECS = +(process.argv[3] || 3);

const srv = http.createServer((req, res) => {
  const m = /^\/page\/(\d+)$/.exec(req.url);
  if (!m) { res.writeHead(404); res.end('not found\n'); return; }
  const n = m[1];
  // setHeader (not writeHead) lets end() add Content-Length, as the other
  // servers send it, instead of a chunked body.
  res.setHeader('content-type', 'text/html');
  res.end('<html><head><title>Page ' + n + '</title></head><body><h1>Page ' + n +
          '</h1><p>Hello from skein.</p></body></html>\n');
});
srv.keepAliveTimeout = 30000;
srv.listen(0, '127.0.0.1', () => {
  const port = srv.address().port;
  execFile('wrk', ['-t1', '-c' + CONNS, '-d' + SECS + 's', `http://127.0.0.1:${port}/page/7`],
    (err, out) => {
      const m = /(\d+) requests in ([\d.]+)(\w+)/.exec(out || '');
      if (err || !m) { console.error('wrk failed', err, out); process.exit(1); }
      const t = +m[2] * (m[3] === 'ms' ? 1e-3 : m[3] === 'm' ? 60 : 1);
      // As the skein side: the time 100000 requests take at wrk's rate.
      console.log(`BENCH time=${(t * 100000 / +m[1]).toFixed(6)} n=100000`);
      process.exit(0);
    });
});
