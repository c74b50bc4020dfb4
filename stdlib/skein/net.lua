--- skein.net.serve: a task per connection, over the C core's listen and
-- accept (lua/net.c). Adds `serve` to the skein.net table it is given.
local skein, core = ...

local type, error, pairs, setmetatable, tostring, xpcall = type, error, pairs, setmetatable, tostring, xpcall
local math_type = math.type
local traceback = debug.traceback
local net, spawn, now = skein.net, skein.spawn, skein.now

local function argerr(msg, level)
  error(("bad argument to 'skein.net.serve' (%s)"):format(msg), (level or 2) + 1)
end

local callable = core._callable

local Server = {}
Server.__index = Server
Server.__name = "skein.net.Server"

-- A handler that fails is reported on stderr; the server goes on.
local function report(self, err)
  io.stderr:write(("skein.net.serve (%s): a connection handler failed: %s\n"):format(self._where, tostring(err)))
end

local function is_kind(err, kind)
  return type(err) == "table" and err.kind == kind
end

local function acceptor(self, handler, max_conns)
  local lst, live = self._listener, self._live
  local failing        -- the code of the accept failure last reported
  while not self._closed do
    if max_conns and self._n >= max_conns then
      -- At the limit: accepting pauses (the kernel's backlog holds the
      -- next connections) until a handler returns.
      local list = {}
      for t in pairs(live) do list[#list + 1] = t end
      if #list > 0 then skein.wait(list, {mode = "first"}) end
    else
      local ok, s = pcall(lst.accept, lst)
      if not ok then
        if self._closed or is_kind(s, "closed") then break end
        if is_kind(s, "cancelled") or is_kind(s, "interrupted") then error(s, 0) end
        -- Out of descriptors and the like: the connection stays queued in
        -- the kernel. Say so once per kind of failure, give the handlers a
        -- moment to free some, and try again.
        local code = type(s) == "table" and s.code or tostring(s)
        if code ~= failing then
          io.stderr:write(("skein.net.serve (%s): %s (connections wait until it can accept)\n"):format(self._where, tostring(s)))
          failing = code
        end
        skein.sleep(0.05)
      else
        failing = nil
        self._n = self._n + 1
        local t
        t = spawn(function()
          local ok2, err = xpcall(handler, traceback, s)
          s:close()
          live[t] = nil
          self._n = self._n - 1
          if not ok2 then report(self, err) end
        end)
        if not t:done() then live[t] = true end
      end
    end
  end
end

--- skein.net.serve(host, port, handler, [opts]) / serve({path=}, handler, [opts]) -> server
function net.serve(a, b, c, d)
  local port, handler, opts
  if type(a) == "table" then
    handler, opts = b, c
  else
    if type(a) ~= "string" then argerr("host must be a string or {path = ...}") end
    if math_type(b) ~= "integer" then argerr("port must be an integer") end
    port, handler, opts = b, c, d
  end
  if not callable(handler) then argerr("handler must be a function") end
  if opts ~= nil and type(opts) ~= "table" then argerr("options must be a table") end
  local max_conns = opts and opts.max_conns
  if max_conns ~= nil and (math_type(max_conns) ~= "integer" or max_conns < 1) then
    argerr("max_conns must be a positive integer")
  end
  local lst
  if port then lst = net.listen(a, port, opts) else lst = net.listen(a, opts) end
  local self = setmetatable({_listener = lst, _live = {}, _n = 0, _closed = false,
                             _where = tostring(lst):match("%((.*)%)") or "?"}, Server)
  self._acceptor = spawn(acceptor, self, handler, max_conns)
  return self
end

--- server:port() -> the port it listens on
function Server:port()
  return self._listener:port()
end

--- server:close(): stops accepting; running handlers go on.
function Server:close()
  if self._closed then return end
  self._closed = true
  self._listener:close()
end
Server.__close = Server.close

--- server:join([timeout]) -> true once the acceptor and every handler
-- finished (after close), or raises kind "timeout".
function Server:join(timeout)
  local deadline = timeout and now() + timeout
  while true do
    local list = {}
    if not self._acceptor:done() then list[1] = self._acceptor end
    for t in pairs(self._live) do list[#list + 1] = t end
    if #list == 0 then return true end
    local left = deadline and deadline - now()
    if left and left <= 0 then
      error(core.error("timeout", ("server:join timed out after %g s"):format(timeout)), 2)
    end
    skein.wait(list, {timeout = left})
  end
end

--- server:connections() -> how many handlers run now
function Server:connections()
  return self._n
end

Server.__tostring = function(self)
  return ("skein.net.Server (%s%s)"):format(self._where, self._closed and ", closed" or "")
end

return net
