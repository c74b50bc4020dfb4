-- skein.http.serve: requests and responses (GET, POST, HEAD, headers,
-- query), keep-alive, Connection: close and HTTP/1.0, pipelining, chunked
-- request and response bodies, the limits (400, 413, 431, a client too slow
-- with its headers) none of which reaches the handler or stops the server,
-- a failing handler (500, the error on stderr, the connection usable),
-- max_conns, server:close with idle connections, a Unix socket, curl
-- against a server in a thread worker, and a server per process of a
-- process pool sharing one port (reuseport). Clients are raw skein.net
-- streams; every read is bounded.
local skein = require "skein"
local net, http = skein.net, skein.http

local T = 5   -- seconds any single read may take

-- Reads one response from stream c: {status=, headers=, body=, chunks=}, or
-- nil when the stream ended first. `head`: a response to HEAD (no body).
local function response(c, head)
  local line = c:read("l", T)
  if line == nil then return nil end
  local status = tonumber(line:match("^HTTP/1%.1 (%d%d%d) "))
  assert(status, "bad status line: " .. line)
  local h = {}
  while true do
    local l = assert(c:read("l", T), "the stream ended in the headers")
    l = l:gsub("\r$", "")
    if l == "" then break end
    local k, v = l:match("^([^:]+): (.*)$")
    k = k:lower()
    h[k] = h[k] and (h[k] .. ", " .. v) or v
  end
  local body, chunks = "", nil
  if head or status == 204 or status == 304 then
    body = ""
  elseif h["content-length"] then
    local n = tonumber(h["content-length"])
    body = n > 0 and c:read(n, T) or ""
  elseif h["transfer-encoding"] == "chunked" then
    chunks = {}
    while true do
      local size = tonumber((assert(c:read("l", T)):gsub("\r$", "")), 16)
      if size == 0 then
        assert.equal("\r", c:read("l", T))
        break
      end
      chunks[#chunks + 1] = c:read(size, T)
      assert.equal("\r", c:read("l", T))
    end
    body = table.concat(chunks)
  else
    body = c:read("a", T)
  end
  return {status = status, headers = h, body = body, chunks = chunks}
end

local function get(path, extra)
  return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n"):format(path, extra or "")
end

-- A server whose handler echoes what it saw; `calls` counts handler runs.
local function echo_server(opts)
  local state = {calls = 0}
  opts = opts or {}
  opts.handler = opts.handler or function(req)
    state.calls = state.calls + 1
    local hs = {}
    for k, v in pairs(req.headers) do hs[#hs + 1] = k .. "=" .. v end
    table.sort(hs)
    return 200, {["content-type"] = "text/plain", ["x-method"] = req.method},
      ("%s|%s|%s|%s|%s"):format(req.method, req.path, req.query, table.concat(hs, ";"), req.body)
  end
  local srv = http.serve(opts)
  return srv, srv:port(), state
end

local function connect(port)
  return net.connect("127.0.0.1", port)
end

-- Runs fn with io.stderr replaced; returns what was written to it.
local function capture_stderr(fn)
  local real, got = io.stderr, {}
  io.stderr = {write = function(self, ...)
    for _, s in ipairs({...}) do got[#got + 1] = tostring(s) end
    return self
  end}
  local ok, e = pcall(fn)
  io.stderr = real
  assert(ok, e)
  return table.concat(got)
end

local function stop(srv)
  srv:close()
  assert.is_true(srv:join(T))
end

describe("skein.http.serve", function()
  it("answers GET and POST with the method, path, query, headers and body", function()
    local srv, port = echo_server()
    local c = connect(port)
    c:write(get("/a/b?x=1&y=%20", "X-Rep: 1\r\nX-Rep: 2\r\n"))
    local r = response(c)
    assert.equal(200, r.status)
    assert.equal("GET|/a/b|x=1&y=%20|host=t;x-rep=1, 2|", r.body)
    assert.equal("GET", r.headers["x-method"])
    assert.equal("text/plain", r.headers["content-type"])
    assert.equal(tostring(#r.body), r.headers["content-length"])
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r.headers.date)
    c:write("POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
    r = response(c)
    assert.equal("POST|/form||content-length=11;host=t|hello world", r.body)
    c:close()
    stop(srv)
    -- header lists (a line each), numbers, the handler's own Date; the
    -- server's Content-Length wins over the handler's
    srv = http.serve{handler = function()
      return 201, {["set-cookie"] = {"a=1", "b=2"}, ["x-n"] = 42, date = "then",
                   ["content-length"] = 999}, 7
    end}
    c = connect(srv:port())
    c:write(get("/"))
    r = response(c)
    assert.equal(201, r.status)
    assert.equal("a=1, b=2", r.headers["set-cookie"])
    assert.equal("42", r.headers["x-n"])
    assert.equal("then", r.headers.date)
    assert.equal("1", r.headers["content-length"])
    assert.equal("7", r.body)
    c:close()
    stop(srv)
  end)

  it("answers HEAD with the length but no body, and 204 without either", function()
    local srv = http.serve{handler = function(req)
      if req.path == "/empty" then return 204 end
      if req.path == "/stream" then
        req:respond(200)
        req:write("not for HEAD")
        return
      end
      return 200, nil, "twelve bytes"
    end}
    local c = connect(srv:port())
    c:write("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    local r = response(c, true)
    assert.equal(200, r.status)
    assert.equal("12", r.headers["content-length"])
    c:write(get("/empty"))
    r = response(c)
    assert.equal(204, r.status)
    assert.is_nil(r.headers["content-length"])
    c:write(get("/"))
    assert.equal("twelve bytes", response(c).body)   -- nothing stray came before it
    -- a streamed answer to HEAD: its head, no chunk and no end of chunks
    c:write("HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    r = response(c, true)
    assert.equal("chunked", r.headers["transfer-encoding"])
    c:write(get("/"))
    assert.equal("twelve bytes", response(c).body)
    c:close()
    stop(srv)
  end)

  it("keeps a connection alive for several requests", function()
    local srv = http.serve{handler = function(req) return 200, nil, req.path end}
    local c = connect(srv:port())
    for i = 1, 5 do
      c:write(get("/r" .. i))
      local r = response(c)
      assert.equal("/r" .. i, r.body)
      assert.is_nil(r.headers.connection)
    end
    assert.equal(1, srv:connections())
    c:close()
    stop(srv)
  end)

  it("closes after Connection: close, and after an HTTP/1.0 request", function()
    local srv, port = echo_server()
    local c = connect(port)
    c:write(get("/", "Connection: close\r\n"))
    local r = response(c)
    assert.equal(200, r.status)
    assert.equal("close", r.headers.connection)
    assert.is_nil(c:read("any", T))
    c:close()
    c = connect(port)
    c:write("GET /old HTTP/1.0\r\n\r\n")
    r = response(c)
    assert.equal("GET|/old|||", r.body)
    assert.equal("close", r.headers.connection)
    assert.is_nil(c:read("any", T))
    c:close()
    -- HTTP/1.0 with keep-alive asked for stays open
    c = connect(port)
    c:write("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = response(c)
    assert.equal("keep-alive", r.headers.connection)
    c:write("GET /b HTTP/1.0\r\n\r\n")
    assert.equal("GET|/b|||", response(c).body)
    c:close()
    stop(srv)
  end)

  it("answers pipelined requests in order", function()
    local srv = http.serve{handler = function(req)
      if req.path == "/slow" then skein.sleep(0.2) end
      return 200, nil, req.path .. ":" .. req.body
    end}
    local c = connect(srv:port())
    -- two (then three) requests in one write; the first is the slow one
    c:write(get("/slow") .. get("/fast"))
    assert.equal("/slow:", response(c).body)
    assert.equal("/fast:", response(c).body)
    c:write("POST /p1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nabPOST /p2 HTTP/1.1\r\nContent-Length: 3\r\n\r\ncde" .. get("/end"))
    assert.equal("/p1:ab", response(c).body)
    assert.equal("/p2:cde", response(c).body)
    assert.equal("/end:", response(c).body)
    -- 200 at once, read only after all were sent
    local many = {}
    for i = 1, 200 do many[i] = get("/n" .. i) end
    c:write(table.concat(many))
    for i = 1, 200 do assert.equal("/n" .. i .. ":", response(c).body) end
    c:close()
    stop(srv)
  end)

  it("reads a chunked request body and streams a chunked response", function()
    local srv = http.serve{handler = function(req)
      if req.path == "/stream" then
        req:respond(200, {["content-type"] = "text/plain"})
        for i = 1, 3 do req:write("part" .. i .. ";") end
        req:write("")            -- an empty piece sends nothing
        req:write(42)
        return
      end
      return 200, nil, req.body .. "|" .. (req.headers["transfer-encoding"] or "")
    end}
    local c = connect(srv:port())
    c:write("POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    skein.sleep(0.05)
    c:write("1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n")
    assert.equal("hello world!|chunked", response(c).body)
    c:write(get("/stream"))
    local r = response(c)
    assert.equal("chunked", r.headers["transfer-encoding"])
    assert.is_nil(r.headers["content-length"])
    assert.same({"part1;", "part2;", "part3;", "42"}, r.chunks)
    -- the connection goes on after a streamed response
    c:write(get("/x"))
    assert.equal("|", response(c).body)
    -- an HTTP/1.0 client gets the stream raw, then the end of the connection
    c:close()
    c = connect(srv:port())
    c:write("GET /stream HTTP/1.0\r\n\r\n")
    r = response(c)
    assert.equal("part1;part2;part3;42", r.body)
    c:close()
    stop(srv)
  end)

  it("answers 400, 413 and 431 without calling the handler, and goes on serving", function()
    local srv, port, state = echo_server{max_body = 10, max_header = 1024}
    local cases = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", 413},
      {"GET / HTTP/1.1\r\nX-Big: " .. string.rep("a", 2000) .. "\r\n\r\n", 431},
      {"GET /" .. string.rep("u", 2000) .. " HTTP/1.1\r\n\r\n", 431},
      {"GET / HTTP/1.1\r\nHost: t\r\n", 400, true},   -- cut short by the client
      {"CONNECT a:443 HTTP/1.1\r\n\r\n", 400},
      -- what request smuggling needs: names that are not tokens, bare LF
      {"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n: empty\r\n\r\n", 400},
      {"GET / HTTP/1.1\nHost: t\n\n", 400},
    }
    for _, case in ipairs(cases) do
      local c = connect(port)
      c:write(case[1])
      if case[3] then c:shutdown() end
      local r = response(c)
      assert.equal(case[2], r.status, case[1]:sub(1, 40))
      assert.equal("close", r.headers.connection)
      assert.is_nil(c:read("any", T))   -- and the connection is closed
      c:close()
    end
    assert.equal(0, state.calls)
    -- a body at the limit is fine; the server still serves
    local c = connect(port)
    c:write("POST /ok HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789")
    assert.equal("POST|/ok||content-length=10|0123456789", response(c).body)
    -- a request after a good one on the same connection can still fail alone
    c:write("NOT HTTP AT ALL\r\n\r\n")
    assert.equal(400, response(c).status)
    c:close()
    assert.equal(1, state.calls)
    stop(srv)
  end)

  it("drops a client too slow to send its headers after header_timeout", function()
    local srv, port, state = echo_server{header_timeout = 0.3}
    local c = connect(port)
    local t0 = skein.now()
    c:write("GET / HTTP/1.1\r\nHost: t\r\n")   -- and never the blank line
    assert.is_nil(c:read("any", T))
    local took = skein.now() - t0
    assert.is_true(took >= 0.25 and took < 3, "dropped after " .. took)
    c:close()
    -- an idle keep-alive connection goes the same way; a body may be slow
    c = connect(port)
    c:write("POST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
    skein.sleep(0.5)
    c:write("cd")
    assert.equal("POST|/b||content-length=4|abcd", response(c).body)
    t0 = skein.now()
    assert.is_nil(c:read("any", T))
    assert.is_true(skein.now() - t0 < 3)
    c:close()
    assert.equal(1, state.calls)
    stop(srv)
  end)

  it("answers 500 for a handler that fails, reports it on stderr, and keeps the connection", function()
    local srv = http.serve{handler = function(req)
      if req.path == "/boom" then error("kaboom") end
      if req.path == "/badbody" then return 200, nil, {} end
      if req.path == "/badheader" then return 200, {["x-a"] = "1\r\nx-b: 2"}, "" end
      if req.path == "/midway" then
        req:respond(200)
        req:write("a")
        error("after the start")
      end
      return 200, nil, "fine"
    end}
    local c = connect(srv:port())
    local err = capture_stderr(function()
      c:write(get("/boom"))
      local r = response(c)
      assert.equal(500, r.status)
      assert.is_nil(r.headers.connection)
      c:write(get("/"))
      assert.equal("fine", response(c).body)
      c:write(get("/badbody") .. get("/badheader"))
      assert.equal(500, response(c).status)
      assert.equal(500, response(c).status)
    end)
    assert.matches("kaboom", err)
    assert.matches("traceback", err)
    assert.matches("a body of type table", err)
    assert.matches("line break", err)
    -- a failure after the response started cuts the connection
    err = capture_stderr(function()
      c:write(get("/midway"))
      local line = c:read("l", T)
      assert.matches("200", line)
      local rest = c:read("a", T)
      assert.is_nil(rest:find("0\r\n\r\n", 1, true))
    end)
    assert.matches("after the start", err)
    c:close()
    stop(srv)
  end)

  it("goes on serving when a client leaves in the middle of a response", function()
    local failed = skein.queue()
    local srv = http.serve{handler = function(req)
      if req.path == "/big" then return 200, nil, string.rep("b", 8 * 1024 * 1024) end
      req:respond(200)
      local ok, e = pcall(function()
        for _ = 1, 10000 do req:write(string.rep("s", 65536)) end
      end)
      failed:put(ok and "no error" or e.kind)
      error(e, 0)
    end}
    local err = capture_stderr(function()
      for _, path in ipairs({"/stream", "/big"}) do
        local c = connect(srv:port())
        c:write(get(path))
        assert.matches("200", c:read("l", T))
        c:close()
      end
      assert.equal("io", failed:get(T))
      -- the server still answers
      local c = connect(srv:port())
      c:write(get("/big"))
      assert.equal(8 * 1024 * 1024, #response(c).body)
      c:close()
    end)
    assert.equal("", err)
    stop(srv)
  end)

  it("pauses accepting at max_conns", function()
    local srv, port = echo_server{max_conns = 1}
    local a = connect(port)
    a:write(get("/a"))
    assert.equal(200, response(a).status)
    local b = connect(port)
    b:write(get("/b"))
    local ok, e = pcall(b.read, b, "l", 0.3)
    assert.is_false(ok)
    assert.equal("timeout", e.kind)
    a:close()
    assert.equal("GET|/b||host=t|", response(b).body)
    b:close()
    stop(srv)
  end)

  it("closes idle keep-alive connections on close, and lets a running request finish", function()
    local started = skein.event()
    local srv = http.serve{handler = function(req)
      if req.path == "/slow" then
        started:set()
        skein.sleep(0.3)
      end
      return 200, nil, req.path
    end}
    local idle, busy = connect(srv:port()), connect(srv:port())
    idle:write(get("/x"))
    assert.equal("/x", response(idle).body)
    busy:write(get("/slow"))
    assert.is_true(started:wait(T))
    srv:close()
    assert.is_nil(idle:read("any", T))
    local r = response(busy)
    assert.equal("/slow", r.body)
    assert.equal("close", r.headers.connection)
    assert.is_true(srv:join(T))
    idle:close(); busy:close()
  end)

  it("serves on a Unix socket", function()
    local path = os.tmpname()
    os.remove(path)
    local srv = http.serve{path = path, handler = function(req) return 200, nil, "unix " .. req.path end}
    local c = net.connect({path = path})
    c:write(get("/u"))
    assert.equal("unix /u", response(c).body)
    c:close()
    stop(srv)
    os.remove(path)
  end)

  it("rejects bad options", function()
    local function bad(o, pat)
      local ok, e = pcall(http.serve, o)
      assert.is_false(ok)
      assert.matches(pat, tostring(e))
    end
    bad(nil, "options table")
    bad({}, "handler")
    bad({handler = print, port = -1}, "port")
    bad({handler = print, max_body = 1.5}, "max_body")
    bad({handler = print, header_timeout = 0}, "header_timeout")
    bad({handler = print, nope = 1}, "unknown option 'nope'")
  end)

  it("interoperates with curl, from a server in a thread worker", function()
    if os.execute("command -v curl >/dev/null 2>&1") ~= true then
      pending("curl is not installed")
      return
    end
    local q, stop_ev = skein.queue(), skein.event()
    local th = skein.thread(function(q2, ev)
      local sk = require "skein"
      local s = sk.http.serve{handler = function(req)
        if req.path == "/stream" then
          req:respond(200, {["content-type"] = "text/plain"})
          for i = 1, 3 do req:write("c" .. i) end
          return
        end
        return 201, {["x-len"] = #req.body}, req.method .. " " .. #req.body
      end}
      q2:put(s:port())
      ev:wait(30)
      s:close()
      s:join(5)
    end, q, stop_ev)
    local port = q:get(T)
    local function curl(args)
      local p = io.popen(("timeout 10 curl -s -S -i %s 2>&1"):format(args))
      local out = p:read("a")
      p:close()
      return out
    end
    local base = ("http://127.0.0.1:%d"):format(port)
    local out = curl(base .. "/a " .. base .. "/stream")
    assert.matches("HTTP/1.1 201 Created", out, 1, true)
    assert.matches("GET 0", out, 1, true)
    assert.matches("c1c2c3", out, 1, true)
    -- a 200 KB body with Expect: 100-continue, answered at once
    local t0 = skein.now()
    local f = os.tmpname()
    local fh = io.open(f, "wb")
    fh:write(string.rep("z", 200000))
    fh:close()
    out = curl(("-H 'Expect: 100-continue' --data-binary @%s %s/up"):format(f, base))
    os.remove(f)
    assert.matches("POST 200000", out, 1, true)
    assert.is_true(skein.now() - t0 < 0.9, "100-continue was not answered")
    stop_ev:set()
    th:join(T)
  end)

  it("runs a server per process of a 3-process pool on one port (reuseport)", function()
    local probe = net.listen("127.0.0.1", 0)
    local port = probe:port()
    probe:close()
    local pool = skein.pool{kind = "process", size = 3}
    local ready, done = skein.queue(), skein.event()
    local futs = {}
    for i = 1, 3 do
      futs[i] = pool:submit(function(p, rq, ev)
        local sk = require "skein"
        local s = sk.http.serve{port = p, reuseport = true, handler = function()
          return 200, nil, tostring(sk.self().pid)
        end}
        rq:put(true)
        ev:wait(30)
        s:close()
        s:join(5)
        return sk.self().pid
      end, port, ready, done)
    end
    for _ = 1, 3 do assert.is_true(ready:get(10)) end
    local seen, n = {}, 0
    for _ = 1, 60 do
      local c = connect(port)
      c:write(get("/", "Connection: close\r\n"))
      local pid = response(c).body
      if not seen[pid] then seen[pid], n = true, n + 1 end
      c:close()
    end
    done:set()
    local pids = {}
    for i = 1, 3 do pids[futs[i]:get(10)] = true end
    for pid in pairs(seen) do assert.is_true(pids[tonumber(pid)], "a response from pid " .. pid) end
    assert.equal(3, n)
    pool:close()
    pool:join(10)
  end)
end)
