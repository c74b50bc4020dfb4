--- The Lua halves of shared objects across processes (lua/rpc.c): the
-- server task that performs a child's calls on this process's objects, and
-- the methods every proxy has locally.
local skein, core = ...

local pack, unpack, type, pcall, tostring = table.pack, table.unpack, type, pcall, tostring
local objid = core._objid

--- Performs one request. Locks and semaphores acquired for the child are
-- counted, so that they can be released if the child goes away.
local function perform(held, op, name, obj, ...)
  if op == "call" then
    local m = obj[name]
    if type(m) ~= "function" then
      error(skein.error("remote", ("%s has no method %q"):format(tostring(obj), tostring(name))), 0)
    end
    local r = pack(m(obj, ...))
    if name == "acquire" and r[1] == true then
      local id = objid(obj)
      held[id] = held[id] or {obj = obj, n = 0}
      held[id].n = held[id].n + 1
    elseif name == "release" then
      local h = held[objid(obj)]
      if h then h.n = h.n - 1 end
    end
    return unpack(r, 1, r.n)
  elseif op == "index" then
    local key = ...
    local v = obj[key]
    if type(v) == "function" then return nil, true end   -- a method: call it remotely
    return v, false
  elseif op == "newindex" then
    local key, value = ...
    obj[key] = value
    return
  elseif op == "len" then
    return #obj
  end
  error(skein.error("remote", "unknown request " .. tostring(op)), 0)
end

--- Serves one child's connection until the child is gone.
local function serve(conn)
  local held = {}
  while true do
    local id, body = conn:next()
    if not id then break end
    local req = pack(pcall(skein.decode, body))
    local reply
    if not req[1] then
      reply = pack(false, req[2])
    else
      reply = pack(pcall(perform, held, unpack(req, 2, req.n)))
    end
    local ok, encoded = pcall(skein.encode, unpack(reply, 1, reply.n))
    if not ok then encoded = skein.encode(false, encoded) end
    local sent, e = pcall(conn.reply, conn, id, encoded)
    if not sent then conn:reply(id, skein.encode(false, e)) end
  end
  for _, h in pairs(held) do
    for _ = 1, h.n do pcall(h.obj.release, h.obj) end
  end
end

-- hold and with on a proxy: acquire and release are remote calls.
local proxy_methods = {}
function proxy_methods.hold(obj, timeout)
  if not obj:acquire(timeout) then
    error(skein.error("timeout", "hold timed out"), 2)
  end
  return setmetatable({}, {__close = function() obj:release() end})
end
function proxy_methods.with(obj, fn, ...)
  obj:acquire()
  local r = pack(pcall(fn, ...))
  obj:release()
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

core._rpc_setup(serve, proxy_methods)
return true
