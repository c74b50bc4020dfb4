--- skein.http's client: get, request and session, over the C half in
-- lua/httpc.c (transfers on the worker's libcurl multi handle, driven by
-- its loop: runtime/core/curl.c). Adds them to the skein.http table it is
-- given, taking the C half's internal functions out of it.
local skein, core = ...

local type, error, pairs, ipairs, setmetatable, tostring, pcall = type, error, pairs, ipairs, setmetatable, tostring, pcall
local math_type = math.type
local http = skein.http
local start, new_multi = http._start, http._multi
http._start, http._multi = nil, nil

local USER_AGENT = "skein/" .. tostring(skein.version)
local MAX_REDIRECTS = 20

local function argerr(fname, msg, level)
  error(("bad argument to '%s' (%s)"):format(fname, msg), (level or 2) + 1)
end

local callable = core._callable

local KNOWN = {
  method = true, url = true, headers = true, body = true, timeout = true,
  connect_timeout = true, follow = true, max_redirects = true, decompress = true,
  cafile = true, stream = true, max_body = true,
}

local function seconds(fname, opts, k)
  local v = opts[k]
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v or v <= 0 then
    argerr(fname, ("option '%s' must be a positive number of seconds"):format(k), 4)
  end
  return v
end

local function count(fname, opts, k, min)
  local v = opts[k]
  if v == nil then return nil end
  if math_type(v) ~= "integer" or v < min then
    argerr(fname, ("option '%s' must be an integer >= %d"):format(k, min), 4)
  end
  return v
end

local function boolean(fname, opts, k, def)
  local v = opts[k]
  if v == nil then return def end
  if type(v) ~= "boolean" then argerr(fname, ("option '%s' must be a boolean"):format(k), 4) end
  return v
end

-- A header name or value may not break the request's lines.
local function header_text(fname, s, what)
  if type(s) == "number" then s = tostring(s) end
  if type(s) ~= "string" then argerr(fname, ("header %s must be a string"):format(what), 5) end
  if s:find("[\r\n%z]") then argerr(fname, ("header %s contains a line break or NUL"):format(what), 5) end
  return s
end

--- Checks a request's options and returns what the C half starts from.
local function spec_of(fname, opts)
  if type(opts) ~= "table" then argerr(fname, "options table expected, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not KNOWN[k] then argerr(fname, ("unknown option '%s'"):format(tostring(k)), 3) end
  end
  local url = opts.url
  if type(url) ~= "string" then argerr(fname, "option 'url' must be a string", 3) end
  local body, iter = opts.body, nil
  if body ~= nil and type(body) ~= "string" then
    if not callable(body) then
      argerr(fname, "option 'body' must be a string or an iterator function", 3)
    end
    iter, body = body, nil
  end
  local method = opts.method
  if method == nil then method = (body or iter) and "POST" or "GET" end
  if type(method) ~= "string" or not method:match("^[%w!#$%%&'*+.^_`|~-]+$") then
    argerr(fname, "option 'method' must be a method name", 3)
  end
  method = method:upper()
  local lines, seen = {}, {}
  local headers = opts.headers
  if headers ~= nil then
    if type(headers) ~= "table" then argerr(fname, "option 'headers' must be a table", 3) end
    for name, v in pairs(headers) do
      name = header_text(fname, name, "name")
      if name == "" or name:find("[%s:]") then argerr(fname, ("bad header name '%s'"):format(name), 3) end
      seen[name:lower()] = true
      if type(v) == "table" then
        for _, one in ipairs(v) do lines[#lines + 1] = name .. ": " .. header_text(fname, one, "value") end
      else
        v = header_text(fname, v, "value")
        -- curl sends "Name;" for an empty value ("Name:" would remove the header).
        lines[#lines + 1] = v == "" and name .. ";" or name .. ": " .. v
      end
    end
  end
  -- No waiting a second for "100 Continue" before sending a body.
  if not seen["expect"] and (body or iter) then lines[#lines + 1] = "Expect:" end
  if iter and not seen["transfer-encoding"] and not seen["content-length"] then
    lines[#lines + 1] = "Transfer-Encoding: chunked"
  end
  return {
    method = method, url = url, headers = lines, body = body, body_iter = iter ~= nil, iter = iter,
    timeout = seconds(fname, opts, "timeout"),
    connect_timeout = seconds(fname, opts, "connect_timeout"),
    follow = boolean(fname, opts, "follow", true),
    max_redirects = count(fname, opts, "max_redirects", 0) or MAX_REDIRECTS,
    decompress = boolean(fname, opts, "decompress", true),
    cafile = opts.cafile ~= nil and (type(opts.cafile) == "string" and opts.cafile
      or argerr(fname, "option 'cafile' must be a path", 3)) or nil,
    stream = boolean(fname, opts, "stream", false),
    max_body = count(fname, opts, "max_body", 1),
    user_agent = USER_AGENT,
  }
end

-- A streamed response: its fields, and read/lines/close over the transfer.
local Response = {}
Response.__index = Response
Response.__name = "skein.http.Response"
local live = setmetatable({}, {__mode = "k"})   -- response -> {transfer, method, url}

local function transfer_of(self)
  local t = live[self]
  if t == nil then error(core.error("closed", "cannot use an HTTP response after it was closed"), 3) end
  return t
end

--- response:read([fmt]) -> data | nil at the end (fmt as a stream's read)
function Response:read(fmt)
  local t = transfer_of(self)
  return t[1]:read(fmt or "l", t[2], t[3])
end

--- response:lines([fmt]) -> iterator
function Response:lines(fmt)
  local t = transfer_of(self)
  fmt = fmt or "l"
  return function() return t[1]:read(fmt, t[2], t[3]) end
end

--- response:close(): stops the transfer if it still runs.
function Response:close()
  local t = live[self]
  if t then
    live[self] = nil
    t[1]:close()
  end
end
Response.__close = Response.close

local function drive(x, spec)
  local iter = spec.iter
  while true do
    local ev = x:_step()
    if ev == "body" then
      local piece
      repeat piece = iter() until piece ~= ""
      if type(piece) == "number" then piece = tostring(piece) end
      if piece ~= nil and type(piece) ~= "string" then
        error(core.error("io", ("%s %s: the body iterator gave a %s (strings expected)")
          :format(spec.method, spec.url, type(piece)), {code = "READ_ERROR", url = spec.url}), 0)
      end
      x:_feed(piece)
    elseif ev == "head" or (ev == "done" and spec.stream) then
      -- A streamed response stays one even when its whole body came in
      -- with its head (a small page in one write): the body waits in the
      -- transfer for read/lines. (It came back as a plain table with no
      -- body, the body lost.)
      local r = setmetatable(x:_response(spec.method, spec.url), Response)
      live[r] = {x, spec.method, spec.url}
      return r
    else
      local r = x:_response(spec.method, spec.url)
      x:close()
      return r
    end
  end
end

-- Runs one request on `multi` (nil: the worker's). A call that leaves
-- early (an error, a cancel, a skein.timeout scope) stops its transfer at
-- once.
local function perform(multi, spec)
  local x = start(multi, spec)
  local ok, r = pcall(drive, x, spec)
  if not ok then
    x:close()
    error(r, 0)
  end
  return r
end

local function get_spec(fname, url, opts)
  if type(url) ~= "string" then argerr(fname, "url must be a string, got " .. type(url), 2) end
  local o = {}
  if opts ~= nil then
    if type(opts) ~= "table" then argerr(fname, "options table expected, got " .. type(opts), 2) end
    for k, v in pairs(opts) do o[k] = v end
  end
  o.url, o.method = url, o.method or "GET"
  return spec_of(fname, o)
end

-- The spec of a plain get(url), as spec_of makes it, with less work: the
-- fast path of the commonest call.
local function plain_get(url)
  return {method = "GET", url = url, headers = {}, follow = true,
          max_redirects = MAX_REDIRECTS, decompress = true, user_agent = USER_AGENT}
end

--- skein.http.get(url, [opts]) -> response
function http.get(url, opts)
  if opts == nil and type(url) == "string" then return perform(nil, plain_get(url)) end
  return perform(nil, get_spec("skein.http.get", url, opts))
end

--- skein.http.request{method=, url=, headers=, body=, ...} -> response
function http.request(opts)
  return perform(nil, spec_of("skein.http.request", opts))
end

-- A session: a libcurl multi handle of its own (its connections, limits).
local Session = {}
Session.__index = Session
Session.__name = "skein.http.Session"

local function multi_of(self)
  local m = self._multi
  if m == nil then error(core.error("closed", "cannot use an HTTP session after it was closed"), 3) end
  return m
end

function Session:get(url, opts)
  if opts == nil and type(url) == "string" then return perform(multi_of(self), plain_get(url)) end
  return perform(multi_of(self), get_spec("session:get", url, opts))
end

function Session:request(opts)
  return perform(multi_of(self), spec_of("session:request", opts))
end

--- session:close(): ends its transfers (they raise kind "closed") and its connections.
function Session:close()
  local m = self._multi
  self._multi = nil
  if m then m:close() end
end
Session.__close = Session.close

--- skein.http.session{max_conns=, max_per_host=} -> session
function http.session(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argerr("skein.http.session", "options table expected, got " .. type(opts)) end
  for k in pairs(opts) do
    if k ~= "max_conns" and k ~= "max_per_host" then
      argerr("skein.http.session", ("unknown option '%s'"):format(tostring(k)))
    end
  end
  local mc = count("skein.http.session", opts, "max_conns", 1)
  local mh = count("skein.http.session", opts, "max_per_host", 1)
  return setmetatable({_multi = new_multi(mc or 0, mh or 0)}, Session)
end

