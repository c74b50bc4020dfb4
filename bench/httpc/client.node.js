// N GETs of a small page with C in flight on Node's own client: one
// http.Agent (keepAlive, maxSockets C), C async loops each awaiting a GET
// and its whole body. Prints "secs=<s> ok=<n>".
'use strict';
const http = require('http');
const [url, n, c] = [process.argv[2], +process.argv[3], +process.argv[4]];
const agent = new http.Agent({ keepAlive: true, maxSockets: c });

function get() {
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve(res.statusCode === 200 && Buffer.concat(chunks).length > 0));
      res.on('error', reject);
    }).on('error', reject);
  });
}

(async () => {
  await Promise.all(Array.from({ length: c }, get));   // warm: C connections up
  let left = n, ok = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: c }, async () => {
    while (left > 0) {
      left--;
      if (await get()) ok++;
    }
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`secs=${secs.toFixed(4)} ok=${ok}`);
  agent.destroy();
})();
