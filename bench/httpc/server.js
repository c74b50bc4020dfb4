// The fixed local server of the HTTP client benchmark: a small page on
// 127.0.0.1, any free port (printed on stdout), keep-alive.
const http = require("http");
const page = "<html><body>" + "hello skein ".repeat(8) + "</body></html>\n";
const srv = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html", "Content-Length": Buffer.byteLength(page) });
  res.end(page);
});
srv.keepAliveTimeout = 60000;
srv.listen(0, "127.0.0.1", () => console.log(srv.address().port));
