// echo_server.node.js - Node peer of workloads/echo_server.lua: an echo
// server on Node's `net` (each 'data' chunk written back), one process (no
// cluster), its one JavaScript thread. Listens on 127.0.0.1, a free port,
// and prints "PORT <n>"; runs until killed. bench/run drives it with
// bench/tools/echo_load (workloads echo_rt and idle_conns).
// Usage: node echo_server.node.js
'use strict';
const net = require('net');

const server = net.createServer({ noDelay: true }, (sock) => {
  sock.on('data', (chunk) => sock.write(chunk));
  sock.on('error', () => {});
});
server.listen({ host: '127.0.0.1', port: 0, backlog: 511 }, () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
