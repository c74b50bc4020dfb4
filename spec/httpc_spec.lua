-- skein.http's client (libcurl's multi interface on the worker's loop)
-- against local servers this spec starts (spec/support/httpc_server.py, on
-- loopback, port 0; one of them over TLS with a CA made here by openssl):
-- methods, bodies (string and iterator), headers, redirects, decompression,
-- timeouts, connection and name failures, bad URLs, max_body, streamed
-- bodies with back-pressure, connection reuse, sessions, cancellation, and
-- the same calls from thread and process workers. Every wait is bounded.
local skein = require "skein"
local cli = require "spec.support.cli"
local http = skein.http

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
local SERVER = here .. "/support/httpc_server.py"
local q = cli.q

local caught = require("spec.support.errors").errof

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "command failed: " .. cmd)
end

local pids = {}

-- Starts the test server (TLS when cert and key are given) and returns its
-- base URL; bounded: it dies after 10 minutes whatever happens.
local function start_server(dir, name, cert, key)
  local portfile = dir .. "/" .. name .. ".port"
  local pidfile = dir .. "/" .. name .. ".pid"
  sh(("timeout 600 python3 %s %s %s %s >%s 2>&1 & echo $! >%s"):format(q(SERVER), q(portfile),
    cert and q(cert) or "", key and q(key) or "", q(dir .. "/" .. name .. ".log"), q(pidfile)))
  pids[#pids + 1] = cli.read(pidfile):match("%d+")
  local t0 = skein.now()
  while skein.now() - t0 < 30 do
    local port = cli.read(portfile)
    if port and port:match("^%d+$") then
      return ("%s://127.0.0.1:%s"):format(cert and "https" or "http", port)
    end
    skein.sleep(0.05)
  end
  error("the test server did not start: " .. tostring(cli.read(dir .. "/" .. name .. ".log")))
end

local function conns(base)
  return tonumber(http.get(base .. "/conns").body)
end

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

describe("skein.http client", function()
  local dir, base

  setup(function()
    dir = cli.tmpdir()
    base = start_server(dir, "plain")
  end)

  teardown(function()
    for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
    cli.cleanup()
  end)

  it("gets a page: status, body, lower-case headers, the url", function()
    local r = http.get(base .. "/hello")
    assert.equal(200, r.status)
    assert.equal("hello world", r.body)
    assert.equal("yes", r.headers["x-test"])
    assert.equal("text/plain", r.headers["content-type"])
    assert.equal("11", r.headers["content-length"])
    assert.equal(base .. "/hello", r.url)
    local c = http.get(base .. "/cookies")
    assert.equal("a=1, b=2", c.headers["set-cookie"])
  end)

  it("gives a non-2xx status as a response", function()
    local r = http.get(base .. "/status/404")
    assert.equal(404, r.status)
    assert.equal("status 404", r.body)
    assert.equal(503, http.get(base .. "/status/503").status)
  end)

  it("sends the same request for get(url) as for get(url, {}) (its fast path)", function()
    local function got(r)
      local t = {}
      for k, v in pairs(r.headers) do
        if k:find("^x%-got%-") then t[k] = v end
      end
      return t
    end
    local plain, with = http.get(base .. "/echo"), http.get(base .. "/echo", {})
    assert.equal("GET 0\n", plain.body)
    assert.same(got(with), got(plain))
    assert.truthy(plain.headers["x-got-user-agent"]:find("^skein/"))
    assert.truthy(plain.headers["x-got-accept-encoding"])
    local s <close> = http.session()
    assert.same(got(with), got(s:get(base .. "/echo")))
    -- No Expect, with a body or without.
    assert.is_nil(plain.headers["x-got-expect"])
    assert.is_nil(http.request{url = base .. "/echo", body = "x"}.headers["x-got-expect"])
    assert.equal("landed", http.get(base .. "/redirect/2").body)
    assert.truthy(tostring(caught(http.get, 42)):find("url must be a string"))
  end)

  it("sends a string body, a method and headers", function()
    local r = http.request{url = base .. "/echo", body = "a\0b=c",
      headers = {["X-One"] = "1", ["Content-Type"] = "application/x-test", ["X-Num"] = 42}}
    assert.equal(200, r.status)
    assert.equal("POST 5\na\0b=c", r.body)
    assert.equal("1", r.headers["x-got-x-one"])
    assert.equal("42", r.headers["x-got-x-num"])
    assert.equal("application/x-test", r.headers["x-got-content-type"])
    assert.truthy(r.headers["x-got-user-agent"]:find("^skein/"))
    assert.equal("DELETE 0\n", http.request{method = "delete", url = base .. "/echo"}.body)
    local h = http.request{method = "HEAD", url = base .. "/hello"}
    assert.equal(200, h.status)
    assert.equal("", h.body)
    assert.equal("PUT 3\nxyz", http.request{method = "PUT", url = base .. "/echo", body = "xyz"}.body)
  end)

  it("sends a body an iterator gives, piece by piece, and the iterator may wait", function()
    local pieces, i = {"first,", "", "second,", string.rep("x", 100000), "last"}, 0
    local r = http.request{method = "PUT", url = base .. "/echo", body = function()
      i = i + 1
      skein.sleep(0.01)
      return pieces[i]
    end}
    local want = table.concat(pieces)
    assert.equal(200, r.status)
    assert.equal("PUT " .. #want .. "\n" .. want, r.body)
    assert.equal("chunked", r.headers["x-got-transfer-encoding"])
    local e = caught(http.request, {url = base .. "/echo", body = function() return {} end})
    assert.equal("io", e.kind)
    assert.equal("READ_ERROR", e.code)
  end)

  it("follows redirects, up to max_redirects, or not at all", function()
    local r = http.get(base .. "/redirect/3")
    assert.equal(200, r.status)
    assert.equal("landed", r.body)
    assert.equal(base .. "/redirect/0", r.url)
    local n = http.get(base .. "/redirect/3", {follow = false})
    assert.equal(302, n.status)
    assert.equal("/redirect/2", n.headers.location)
    assert.equal(base .. "/redirect/3", n.url)
    local e = caught(http.get, base .. "/redirect/3", {max_redirects = 2})
    assert.equal("io", e.kind)
    assert.equal("TOO_MANY_REDIRECTS", e.code)
    assert.equal(base .. "/redirect/3", e.url)
    e = caught(http.get, base .. "/loop")
    assert.equal("TOO_MANY_REDIRECTS", e.code)
  end)

  it("decompresses gzip unless told not to", function()
    local r = http.get(base .. "/gzip")
    assert.equal(string.rep("hello gzip ", 100), r.body)
    local raw = http.get(base .. "/gzip", {decompress = false})
    assert.equal("\31\139", raw.body:sub(1, 2))
    assert.equal("gzip", raw.headers["content-encoding"])
  end)

  it("times out: the whole transfer, and a server that stalls mid-body", function()
    local t0 = skein.now()
    local e = caught(http.get, base .. "/slow?s=5", {timeout = 0.3})
    assert.equal("io", e.kind)
    assert.equal("OPERATION_TIMEDOUT", e.code)
    assert.equal(base .. "/slow?s=5", e.url)
    assert.is_true(skein.now() - t0 < 3)
    t0 = skein.now()
    e = caught(http.get, base .. "/stall", {timeout = 0.5})
    assert.equal("OPERATION_TIMEDOUT", e.code)
    assert.is_true(skein.now() - t0 < 3)
    -- A streamed one gives what came, then the error.
    local r = http.get(base .. "/stall", {timeout = 0.5, stream = true})
    assert.equal("0123456789", r:read(10))
    e = caught(r.read, r, "a")
    assert.equal("OPERATION_TIMEDOUT", e.code)
    r:close()
  end)

  it("reports a refused connection, an unknown host and bad URLs", function()
    local srv = skein.net.listen("127.0.0.1", 0)
    local port = srv:port()
    srv:close()
    local url = ("http://127.0.0.1:%d/"):format(port)
    local e = caught(http.get, url)
    assert.equal("io", e.kind)
    assert.equal("COULDNT_CONNECT", e.code)
    assert.equal(url, e.url)
    e = caught(http.get, "http://no-such-host.invalid/")
    assert.equal("COULDNT_RESOLVE_HOST", e.code)
    assert.equal("http://no-such-host.invalid/", e.url)
    e = caught(http.get, "ftp://127.0.0.1/")
    assert.equal("UNSUPPORTED_PROTOCOL", e.code)
    e = caught(http.get, "file:///etc/passwd")
    assert.equal("UNSUPPORTED_PROTOCOL", e.code)
    e = caught(http.get, "http://[::1/")
    assert.equal("URL_MALFORMAT", e.code)
    assert.truthy(tostring(caught(http.get, 42)):find("url must be a string"))
    assert.truthy(tostring(caught(http.request, {url = base, bogus = 1})):find("unknown option 'bogus'"))
    assert.truthy(tostring(caught(http.request, {url = base, headers = {["X-A"] = "a\r\nX-B: b"}}))
      :find("line break"))
    assert.truthy(tostring(caught(http.get, base, {timeout = -1})):find("timeout"))
  end)

  it("stops a whole body past max_body", function()
    local e = caught(http.get, base .. "/big?n=1000000", {max_body = 1000})
    assert.equal("io", e.kind)
    assert.equal("FILESIZE_EXCEEDED", e.code)
    assert.equal(#http.get(base .. "/big?n=1000", {max_body = 1000}).body, 1000)
  end)

  it("stops a 1 GiB body at max_body, with or without a Content-Length, in bounded memory", function()
    local gib = 1024 * 1024 * 1024
    collectgarbage()
    local before = rss_kb()
    for _, path in ipairs{"/fast?n=" .. gib, "/chunked?n=" .. gib} do
      local t0 = skein.now()
      local e = caught(http.get, base .. path, {max_body = 1024 * 1024, timeout = 60})
      assert.equal("io", e.kind, tostring(e))
      assert.equal("FILESIZE_EXCEEDED", e.code, tostring(e))
      assert.matches("max_body", e.message, 1, true)
      -- It stopped near the limit instead of reading the gibibyte through.
      assert.is_true(skein.now() - t0 < 20, path)
    end
    collectgarbage()
    assert.is_true(rss_kb() - before < 32 * 1024, "rss grew by " .. (rss_kb() - before) .. " KiB")
    -- The client goes on working.
    assert.equal(200, http.get(base .. "/status/200").status)
  end)

  it("streams a large body in pieces, holding the server back while nobody reads", function()
    local n = 64 * 1024 * 1024
    local r = http.get(base .. "/fast?n=" .. n, {stream = true})
    assert.equal(200, r.status)
    assert.equal(tostring(n), r.headers["content-length"])
    assert.is_nil(r.body)
    collectgarbage()
    local before = rss_kb()
    skein.sleep(1)              -- nobody reads: curl pauses over the mark
    local grown = rss_kb() - before
    assert.is_true(grown < 16 * 1024, ("RSS grew by %d KiB while nobody read"):format(grown))
    assert.equal("abcdefghijklmno\n", r:read("L"))
    assert.equal("abcdefghijklmno", r:read("l"))
    local got = 32
    while true do
      local s = r:read(65536)
      if s == nil then break end
      got = got + #s
      assert.equal("abcdefghijklmno\n", s:sub(-16))
    end
    assert.equal(n, got)
    assert.is_nil(r:read("l"))
    r:close()
    assert.equal("closed", caught(r.read, r).kind)
    -- Content that changes along the body.
    local b = http.get(base .. "/big?n=1000000", {stream = true})
    assert.equal(("%015d\n"):format(0), b:read("L"))
    assert.equal(("%015d"):format(1), b:read("l"))
    assert.equal(("%015d\n"):format(2), b:read(16))
    local all = b:read("a")
    assert.equal(1000000 - 48, #all)
    assert.equal(("%015d\n"):format(1000000 // 16 - 1), all:sub(-16))
    b:close()
    -- lines()
    local s = http.get(base .. "/big?n=160", {stream = true})
    local lines = {}
    for l in s:lines() do lines[#lines + 1] = l end
    assert.equal(10, #lines)
    assert.equal(("%015d"):format(9), lines[10])
    s:close()
  end)

  it("streams a small body that arrives whole with its head", function()
    -- skein's server writes head and body at once: the transfer is over
    -- before the caller looks, and the response must still stream.
    local srv = http.serve{port = 0, handler = function() return 200, nil, "hello world\nbye\n" end}
    local url = ("http://127.0.0.1:%d/"):format(srv:port())
    for _ = 1, 5 do
      local r = http.get(url, {stream = true})
      assert.equal(200, r.status)
      assert.is_nil(r.body)
      assert.equal("hello world", r:read("l"))
      assert.equal("bye\n", r:read("a"))
      assert.is_nil(r:read("l"))
      r:close()
    end
    local r = http.get(url, {stream = true})
    local lines = {}
    for l in r:lines() do lines[#lines + 1] = l end
    assert.same({"hello world", "bye"}, lines)
    r:close()
    srv:close()
    assert.is_true(srv:join(5))
  end)

  it("runs 50 gets at once in a coroutine pool, reusing connections", function()
    local c0 = conns(base)
    local p <close> = skein.pool{kind = "coroutine", size = 10}
    local urls = {}
    for i = 1, 50 do urls[i] = base .. "/echo?i=" .. i end
    local r = p:map(function(u) return http.get(u).body end, urls)
    for i = 1, 50 do assert.equal("GET 0\n", r[i]) end
    local used = conns(base) - c0
    assert.is_true(used <= 12, "connections opened for 50 gets: " .. used)
    -- One after the other: one connection.
    c0 = conns(base)
    for _ = 1, 20 do assert.equal(200, http.get(base .. "/hello").status) end
    assert.equal(c0, conns(base))
  end)

  it("keeps its connections between two rounds of concurrent gets", function()
    -- curl's default cache holds 4 idle connections per transfer still in
    -- the multi: as a round's transfers ended together, it closed most of
    -- the round's connections, and the next round opened them again.
    local s <close> = http.session()
    local function round()
      local ts = {}
      for i = 1, 40 do ts[i] = skein.spawn(function() return s:get(base .. "/slow?s=0.1").status end) end
      for i = 1, 40 do assert.equal(200, ts[i]:join(30)) end
    end
    local c0 = conns(base)
    round()
    local first = conns(base) - c0
    assert.is_true(first >= 30, "the first round opened only " .. first)
    c0 = conns(base)
    round()
    local again = conns(base) - c0
    assert.is_true(again <= 2, "the second round opened " .. again .. " connections again")
  end)

  it("keeps watching a reused connection without a new poll per request", function()
    -- 200 gets one after the other on one connection: curl removes its
    -- socket after each; the poll stays (idle), so epoll_ctl is not called
    -- per request (it was 3 or 4 times per request).
    local d = cli.tmpdir()
    local script = cli.write(d .. "/seq.lua", ([[
      local url = %q
      skein.http.get(url)
      for _ = 1, 200 do assert(skein.http.get(url).status == 200) end
    ]]):format(base .. "/hello"))
    -- (LeakSanitizer cannot run under ptrace: off for this run.)
    local p = io.popen(("ASAN_OPTIONS=detect_leaks=0 timeout 60 strace -f -c -e trace=epoll_ctl -o %s %s %s; echo $?")
      :format(q(d .. "/count"), q(cli.bin), q(script)))
    local code = p:read("a")
    p:close()
    assert.equal("0", code:match("%d+"), "strace or the script failed")
    local calls = tonumber((cli.read(d .. "/count") or ""):match("(%d+)%s+%d*%s*epoll_ctl")) or 0
    assert.is_true(calls < 40, "epoll_ctl calls for 200 gets: " .. calls)
  end)

  it("finds an idle connection the server closed, without spinning, and reconnects", function()
    local srv = http.serve{port = 0, handler = function() return 200, nil, "one" end}
    local port = srv:port()
    local url = ("http://127.0.0.1:%d/"):format(port)
    assert.equal("one", http.get(url).body)
    -- The server closes the connection curl keeps idle: its poll sees the
    -- end, stops, and the loop does not wake for it again.
    srv:close()
    assert.is_true(srv:join(5))
    local c0 = os.clock()
    skein.sleep(0.3)
    local spent = os.clock() - c0
    assert.is_true(spent < 0.1, ("CPU while idle: %.3f s"):format(spent))
    -- A server on the same port: curl drops the dead connection, opens one.
    local srv2 = http.serve{port = port, handler = function() return 200, nil, "two" end}
    assert.equal("two", http.get(url).body)
    srv2:close()
    srv2:join(5)
  end)

  it("bounds a session's connections and closes it", function()
    local s <close> = http.session{max_conns = 2}
    local c0 = conns(base)
    local ts = {}
    for i = 1, 10 do ts[i] = skein.spawn(function() return s:get(base .. "/slow?s=0.05").status end) end
    for i = 1, 10 do assert.equal(200, ts[i]:join(30)) end
    local used = conns(base) - c0
    assert.is_true(used <= 2, "a session of 2 connections opened " .. used)
    assert.equal("PUT 1\nx", s:request{method = "PUT", url = base .. "/echo", body = "x"}.body)
    -- A transfer its session's close ends raises kind closed.
    local t = skein.spawn(function() return s:get(base .. "/slow?s=5") end)
    skein.sleep(0.2)
    s:close()
    local ok, e = pcall(t.join, t, 5)
    assert.is_false(ok)
    assert.equal("closed", e.value and e.value.kind or e.kind)
    assert.equal("closed", caught(s.get, s, base .. "/hello").kind)
    assert.truthy(tostring(caught(http.session, {max_conns = 0})):find("max_conns"))
  end)

  it("stops a transfer at once when its task is cancelled or its scope times out", function()
    local t0 = skein.now()
    local t = skein.spawn(function() return http.get(base .. "/slow?s=5") end)
    skein.sleep(0.2)
    t:cancel()
    local ok, e = pcall(t.join, t, 5)
    assert.is_false(ok)
    assert.equal("cancelled", e.kind)
    assert.is_true(skein.now() - t0 < 3)
    t0 = skein.now()
    e = caught(skein.timeout, 0.3, function() return http.get(base .. "/slow?s=5") end)
    assert.equal("timeout", e.kind)
    assert.is_true(skein.now() - t0 < 3)
    -- Cancelled while a body iterator waits.
    t = skein.spawn(function()
      return http.request{url = base .. "/echo", body = function() skein.sleep(10) end}
    end)
    skein.sleep(0.2)
    t:cancel()
    assert.equal("cancelled", select(2, pcall(t.join, t, 5)).kind)
    assert.equal(200, http.get(base .. "/hello").status)
  end)

  it("closes a cancelled transfer's connection at once", function()
    local srv = skein.net.listen("127.0.0.1", 0)
    local got = skein.spawn(function()
      local c = srv:accept(10)
      local head = {}
      repeat
        local l = c:read("l", 10)
        l = l and l:gsub("\r$", "")
        head[#head + 1] = l
      until l == "" or l == nil
      -- No answer: the client gives up, and its connection must close now,
      -- not when something collects the transfer.
      local t0 = skein.now()
      local rest = c:read("a", 5)
      c:close()
      return head[1], rest, skein.now() - t0
    end)
    local t = skein.spawn(function() return http.get(("http://127.0.0.1:%d/wait"):format(srv:port())) end)
    skein.sleep(0.3)
    t:cancel()
    assert.equal("cancelled", select(2, pcall(t.join, t, 5)).kind)
    local line, rest, secs = got:join(10)
    srv:close()
    assert.equal("GET /wait HTTP/1.1", line)
    assert.is_nil(rest)     -- the end of the stream, nothing sent
    assert.is_true(secs < 2, "the connection stayed open " .. secs .. " s")
  end)

  it("works from a thread worker and a process worker", function()
    local function fetch(url)
      local sk = require "skein"
      local ts, out = {}, {}
      for i = 1, 5 do ts[i] = sk.spawn(function() return sk.http.get(url).body end) end
      for i = 1, 5 do out[i] = ts[i]:join() end
      return table.concat(out, ",")
    end
    local want = "hello world,hello world,hello world,hello world,hello world"
    assert.equal(want, skein.thread(fetch, base .. "/hello"):join(30))
    assert.equal(want, skein.process(fetch, base .. "/hello"):join(60))
    local p <close> = skein.pool{kind = "thread", size = 2}
    local r = p:map(function(u) return require("skein").http.get(u).status end,
      {base .. "/hello", base .. "/status/201", base .. "/status/404", base .. "/hello"})
    assert.same({200, 201, 404, 200}, {r[1], r[2], r[3], r[4]})
    local e = skein.process(function(url)
      local ok, err = pcall(require("skein").http.get, url)
      return ok, err.kind, err.code
    end, "http://127.0.0.1:1/"):join(60)
    assert.is_false(e)
  end)

  it("keeps its connections out of programs the script runs (close-on-exec)", function()
    local port = tonumber(base:match(":(%d+)$"))
    assert.equal(200, http.get(base .. "/hello").status)      -- a connection now idle in the cache
    -- The inodes of this process's TCP sockets connected to the server's port.
    local mine = {}
    for line in io.lines("/proc/net/tcp") do
      local rport, inode = line:match("^%s*%d+:%s+%x+:%x+%s+%x+:(%x+)%s+%x+%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)")
      if rport and tonumber(rport, 16) == port and inode ~= "0" then mine[#mine + 1] = inode end
    end
    assert.is_true(#mine >= 1, "no connection to the server found in /proc/net/tcp")
    local r = skein.exec.run("sh", {"-c", "for f in /proc/$$/fd/*; do readlink $f; done"})
    for _, inode in ipairs(mine) do
      assert.is_nil(r.stdout:find("socket:[" .. inode .. "]", 1, true), "a child holds the connection")
    end
  end)

  it("ends a script with idle connections in its cache", function()
    local res = cli.run({"-e", ("print(skein.http.get(%q).status)"):format(base .. "/hello")},
      {timeout = 20})
    assert.equal(0, res.code, res.err)
    assert.equal("200\n", res.out)
  end)

  it("ends a script that left a streamed response unread while its server waits to write", function()
    -- The response is garbage once the script's chunk returns; collecting
    -- it ends the transfer, so the handler's write fails and nothing is left
    -- waiting (this hung: the handler waited on a client nobody read).
    local script = [[
local http = skein.http
local srv = http.serve{host = "127.0.0.1", port = 0, handler = function(req)
  req:respond(200, {["content-type"] = "text/plain"})
  for _ = 1, 1000 do req:write(string.rep("x", 10000)) end
end}
local r = http.get(("http://127.0.0.1:%d/"):format(srv:port()), {stream = true})
print(r.status)
srv:close()
]]
    local res = cli.run({"-e", script}, {timeout = 20})
    assert.equal(0, res.code, res.err)
    assert.equal("200\n", res.out)
    -- The same from a thread worker whose function returns with it unread.
    res = cli.run({"-e", "print(skein.thread(function(...) " .. script .. " return 'done' end):join(15))"},
      {timeout = 20})
    assert.equal(0, res.code, res.err)
    assert.equal("200\ndone\n", res.out)
  end)

  it("raises io naming libcurl on a machine where it cannot be loaded, and every other call works", function()
    -- libcurl is loaded on the first request (core/curl.c). A mount
    -- namespace of its own (unshare, as root or through a user namespace)
    -- puts an empty file where the library is, for this one process.
    local p = io.popen("ldconfig -p | grep -m1 'libcurl.so.4 ' | sed 's/.* => //'")
    local lib = p:read("l")
    p:close()
    assert.is_truthy(lib and lib:match("libcurl%.so%.4$"), "libcurl.so.4 not found by ldconfig")
    local script = table.concat({
      "for i = 1, 2 do",
      "  local ok, e = pcall(skein.http.get, 'http://127.0.0.1:9/')",
      "  print(ok, skein.is_error(e) and e.kind, e.message)",
      "end",
      "print(skein.spawn(function() return 'tasks run' end):join(5))",
    }, "\n")
    local f = cli.write(dir .. "/nocurl.lua", script)
    local pp = io.popen(("timeout 60 unshare -r -m sh -c %s 2>&1; echo \"exit=$?\""):format(
      q(("mount --bind /dev/null %s && %s %s"):format(q(lib), q(cli.bin), q(f)))))
    local out = pp:read("a")
    pp:close()
    local body = out:match("^(.-)exit=0%s*$")
    assert.is_truthy(body, out)
    local lines = cli.lines(body)
    assert.equal(3, #lines, body)
    for i = 1, 2 do
      assert.matches("^false\tio\tskein%.http: cannot load libcurl%.so%.4: .*file too short$", lines[i])
    end
    assert.equal("tasks run", lines[3])
  end)

  it("speaks HTTPS to a server whose CA it is given", function()
    local ca, key = dir .. "/ca.pem", dir .. "/ca.key"
    local skey, csr, cert, ext = dir .. "/srv.key", dir .. "/srv.csr", dir .. "/srv.pem", dir .. "/ext"
    local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    sh(("openssl req -x509 %s -keyout %s -out %s -days 2 -subj '/CN=skein test CA' 2>/dev/null")
      :format(ec, q(key), q(ca)))
    sh(("openssl req %s -keyout %s -out %s -subj '/CN=127.0.0.1' 2>/dev/null"):format(ec, q(skey), q(csr)))
    cli.write(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    sh(("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -out %s -days 2 -extfile %s 2>/dev/null")
      :format(q(csr), q(ca), q(key), q(cert), q(ext)))
    local tls = start_server(dir, "tls", cert, skey)
    local r = http.get(tls .. "/hello", {cafile = ca})
    assert.equal(200, r.status)
    assert.equal("hello world", r.body)
    assert.equal("POST 2\nhi", http.request{url = tls .. "/echo", body = "hi", cafile = ca}.body)
    local e = caught(http.get, tls .. "/hello")
    assert.equal("io", e.kind)
    assert.equal("PEER_FAILED_VERIFICATION", e.code)
  end)
end)
