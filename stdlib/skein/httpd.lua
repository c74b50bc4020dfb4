--- skein.http.serve: an HTTP/1.1 server on skein.net.serve and the C
-- request parser (lua/httpd.c over runtime/core/httpd_proto.c, on llhttp).
--
-- Each connection is one task (skein.net.serve's); it runs the handler
-- for each of its requests in turn, in that task: the next request is not
-- read before the response to this one went out, so pipelined requests get
-- their responses in order without buffering any, and a request costs no
-- task of its own. Adds `serve` to the skein.http table it is given.
local skein, core = ...

local type, error, pairs, setmetatable, tostring, pcall, xpcall =
  type, error, pairs, setmetatable, tostring, pcall, xpcall
local math_type, format = math.type, string.format
local traceback = debug.traceback
local hd, net, now = core._httpd, skein.net, skein.now
local http = skein.http
local conn_new, head = hd.conn, hd.head

local function argerr(msg)
  error(("bad argument to 'skein.http.serve' (%s)"):format(msg), 3)
end

local callable = core._callable

local Server = {}
Server.__index = Server
Server.__name = "skein.http.Server"

local function report(self, what, err)
  io.stderr:write(("skein.http.serve (%s): %s: %s\n"):format(self._where, what, tostring(err)))
end

-- The request handed to the handler: fields method, path, query, headers,
-- body (set by the C side); the connection's state in _-fields.
local Req = {}
Req.__index = Req
Req.__name = "skein.http.Request"

--- req:respond(status, [headers]): starts a streamed response (chunked;
-- for an HTTP/1.0 client, raw until the connection closes).
function Req:respond(status, headers)
  if self._started then error("req:respond: the response has started already", 2) end
  local h, keep, body_ok = head(status or 200, headers, nil, self._keep, self._v10)
  self._started = true
  self._keep = keep
  self._body = body_ok and self.method ~= "HEAD"
  self._chunked = self._body and not self._v10
  self:_out(h)
end

-- Writes to the client; a failure (the client went away) is remembered,
-- so that the handler's error it becomes is not reported as the handler's.
function Req:_out(...)
  local ok, e = pcall(self._s.write, self._s, ...)
  if not ok then
    self._broken = e
    error(e, 0)
  end
end

--- req:write(chunk): one piece of a streamed body (after req:respond).
function Req:write(chunk)
  if not self._started then error("req:write: call req:respond(status, headers) first", 2) end
  if math_type(chunk) then chunk = tostring(chunk) end
  if type(chunk) ~= "string" then
    error(("bad argument #1 to 'req:write' (string expected, got %s)"):format(type(chunk)), 2)
  end
  if #chunk == 0 or not self._body then return end
  if self._chunked then self:_out(format("%x\r\n", #chunk), chunk, "\r\n")
  else self:_out(chunk) end
end

local function is_kind(err, kind)
  return type(err) == "table" and err.kind == kind
end

local PLAIN = {["content-type"] = "text/plain; charset=utf-8"}

-- Answers a request the handler never saw (400, 413, 431) and closes:
-- the write side is shut and what the client still sends is read and
-- dropped for a moment, so that closing with unread bytes does not reset
-- the connection before the client read the answer.
local function refuse(s, status, reason)
  local body = format("%d %s\n", status, reason)
  pcall(function()
    s:write(head(status, PLAIN, #body, false, false), body)
    s:shutdown()
    local deadline, got = now() + 1, 0
    while got < 1048576 do
      local d = s:read("any", deadline - now() > 0 and deadline - now() or 0)
      if not d then break end
      got = got + #d
    end
  end)
end

-- Sends a whole response; false when the connection must close after it.
local function send(s, req, status, headers, body, keep)
  local h, keep2, body_ok = head(status, headers, #body, keep, req._v10)
  if body_ok and req.method ~= "HEAD" and #body > 0 then s:write(h, body)
  else s:write(h) end
  return keep2
end

local ERR500 = "500 Internal Server Error\n"

-- One connection: the requests it carries, one after the other.
local function serve_conn(self, s, handler, o)
  local c <close> = conn_new(s, o.max_header, o.max_body)
  local idle = self._idle
  while not self._closed do
    idle[s] = true
    local ok, req, keep, v10 = pcall(c.next, c, o.header_timeout)
    idle[s] = nil
    if not ok and (is_kind(req, "cancelled") or is_kind(req, "interrupted")) then error(req, 0) end
    if not ok or not req then
      -- The end, a client too slow with its headers (or idle too long),
      -- a read error, or closed by server:close().
      if ok and req == false then refuse(s, keep, v10) end
      return
    end
    req._s, req._v10, req._keep = s, v10, keep and not self._closed
    setmetatable(req, Req)
    local hok, status, headers, body = xpcall(handler, traceback, req)
    if not hok and (is_kind(status, "cancelled") or is_kind(status, "interrupted")) then
      error(status, 0)
    end
    if self._closed then req._keep = false end
    if req._started then
      if not hok then
        -- Mid-response: the client sees it cut short. A client that went
        -- away is no failure of the handler's.
        if status ~= req._broken then report(self, "the handler failed", status) end
        return
      end
      if req._chunked then
        if not pcall(s.write, s, "0\r\n\r\n") then return end
      end
      if not req._keep then return end
    else
      if hok then
        if body == nil then body = "" elseif math_type(body) then body = tostring(body) end
        if type(body) ~= "string" then
          hok, status = false, ("the handler returned a body of type %s (a string expected)"):format(type(body))
        else
          local wok, k = pcall(send, s, req, status or 200, headers, body, req._keep)
          if not wok then
            if type(k) == "table" and k.kind then return end   -- the stream failed
            hok, status = false, k                              -- a bad status or header
          elseif not k then
            return
          end
        end
      end
      if not hok then
        report(self, "the handler failed", status)
        local wok, k = pcall(send, s, req, 500, PLAIN, ERR500, req._keep)
        if not wok or not k then return end
      end
    end
  end
end

local function opt_int(o, k, min)
  local v = o[k]
  if v ~= nil and (math_type(v) ~= "integer" or v < min) then
    argerr(("%s must be an integer >= %d"):format(k, min))
  end
  return v
end

local known = {host = true, port = true, path = true, handler = true, max_body = true,
               max_header = true, header_timeout = true, max_conns = true, reuseport = true,
               backlog = true}

--- skein.http.serve{host=, port=, path=, handler=, max_body=, max_header=,
-- header_timeout=, max_conns=, reuseport=, backlog=} -> server
function http.serve(opts)
  if type(opts) ~= "table" then argerr("options table expected") end
  for k in pairs(opts) do
    if not known[k] then argerr(("unknown option '%s'"):format(tostring(k))) end
  end
  local handler = opts.handler
  if not callable(handler) then argerr("handler must be a function") end
  local o = {max_header = opt_int(opts, "max_header", 1), max_body = opt_int(opts, "max_body", 0),
             header_timeout = opts.header_timeout or 10}
  if o.max_body == 0 then o.max_body = nil end
  if type(o.header_timeout) ~= "number" or not (o.header_timeout > 0) then
    argerr("header_timeout must be a positive number")
  end
  local lopts = {max_conns = opt_int(opts, "max_conns", 1), backlog = opt_int(opts, "backlog", 1),
                 reuseport = opts.reuseport}
  local self = setmetatable({_idle = {}, _closed = false}, Server)
  local function on_conn(s)
    return serve_conn(self, s, handler, o)
  end
  if opts.path ~= nil then
    if type(opts.path) ~= "string" then argerr("path must be a string") end
    self._srv = net.serve({path = opts.path}, on_conn, lopts)
  else
    local host, port = opts.host or "127.0.0.1", opts.port or 0
    if type(host) ~= "string" then argerr("host must be a string") end
    if math_type(port) ~= "integer" or port < 0 or port > 65535 then
      argerr("port must be an integer from 0 to 65535")
    end
    self._srv = net.serve(host, port, on_conn, lopts)
  end
  self._where = tostring(self._srv):match("%((.-)%)$") or "?"
  return self
end

--- server:port() -> the port it listens on
function Server:port()
  return self._srv:port()
end

--- server:close(): stops accepting and closes the connections waiting for
-- a request; a request being handled gets its response (with
-- "Connection: close").
function Server:close()
  if self._closed then return end
  self._closed = true
  self._srv:close()
  for s in pairs(self._idle) do s:close() end
end
Server.__close = Server.close

--- server:join([timeout]) -> true once every connection ended (after close)
function Server:join(timeout)
  return self._srv:join(timeout)
end

--- server:connections() -> how many connections are open
function Server:connections()
  return self._srv:connections()
end

Server.__tostring = function(self)
  return ("skein.http.Server (%s%s)"):format(self._where, self._closed and ", closed" or "")
end

return http
