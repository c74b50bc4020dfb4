--- skein.service: an object that lives in a worker of its own (a thread or a
-- process) and whose methods other workers call through a proxy, one call at
-- a time in arrival order (Python's BaseManager.register).
--
-- Everything a proxy holds is a shared object or plain data: the request
-- queue, the `over` event (set once the worker has ended), the `info` value
-- (why it ended, when it died) and the exposed names. The proxy's metatable
-- is registered by name in every worker (stdlib/skein.lua makes it and passes
-- it here, where the metamethods are filled in), so a proxy crosses to threads, processes, grandchildren and
-- pool tasks by copy and works there directly, with no server in between:
-- a call puts {args..., m=, r=} on the request queue, where `r` is a fresh
-- one-slot reply queue, and waits on `r` or `over` with skein.select, so
-- timeouts, cancellation and select on a pending call are those of any wait.
-- Arguments that could fail to decode in the service's worker (anything but
-- nil, booleans, numbers and strings) travel apart, in a one-slot queue of
-- their own (`a`), so that the service always reads `m` and `r` and can
-- answer a call whose arguments it cannot decode.
local skein, core, Proxy = ...

local type, error, pairs, ipairs, next, tostring, select = type, error, pairs, ipairs, next, tostring, select
local io = io
local setmetatable, getmetatable, rawget, pcall, xpcall = setmetatable, getmetatable, rawget, pcall, xpcall
local pack, unpack, concat, sort = table.pack, table.unpack, table.concat, table.sort
local new_error, is_error, spawn = core.error, skein.is_error, core.spawn
local sk_select, queue, event, shared_value = skein.select, skein.queue, skein.event, skein.shared.value
local traceback = debug.traceback

local PENDING_MT_NAME = "skein.ServiceCall"
-- The proxy's own state lives under this key (its public fields are `name`,
-- `kind`, `pid` and `exposed`); a name remote methods are unlikely to have.
local ST = "__service"

local function fail(kind, msg, level)
  error(new_error(kind, msg), (level or 1) + 1)
end

local function argerr(fname, msg, level)
  error(("bad argument to '%s' (%s)"):format(fname, msg), (level or 2) + 1)
end

-- (In Lua, not core._callable: the serve function, which crosses to the
-- service's worker, closes over it, and a C function of the core cannot be
-- sent.)
local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

------------------------------------------------------------ the service side

--- The default exposed names: every callable reachable by a string key that
-- does not start with "_", in the object itself and along the chain of
-- __index tables of its metatables (a class), sorted.
local function default_exposed(obj)
  local seen, list = {}, {}
  local t = obj
  for _ = 1, 100 do
    if type(t) == "table" then
      for k in next, t do
        if type(k) == "string" and k:sub(1, 1) ~= "_" and not seen[k] then
          seen[k] = true
          if is_callable(obj[k]) then list[#list + 1] = k end
        end
      end
    end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(t) ~= "table" and type(t) ~= "userdata" then break end
  end
  sort(list)
  return list
end

-- A method's error as the caller raises it: kind `remote` with the original
-- error in `value` and the service's traceback, as a thread's join does.
local function remote_error(name, m, e, tb)
  if type(tb) == "string" then
    -- The service's own frames (from its xpcall down) say nothing to the caller.
    local cut = tb:find("\n\t%[C%]: in function 'xpcall'")
    if cut then tb = tb:sub(1, cut - 1) end
  end
  return new_error("remote", ("service '%s': method %s failed: %s"):format(name, m, tostring(e)),
    {value = e, traceback = tb})
end

--- Puts reply `rep` (a packed list) on the reply queue. A reply that cannot
-- cross (a result or error value that does not marshal) becomes that error.
local function answer(r, rep)
  local ok, e = pcall(r.put, r, rep)
  if ok then return end
  local re = rep[1] == false and rep[2]
  if type(re) == "table" and re.kind == "remote" and re.value ~= nil then
    -- An error value that cannot cross: the caller gets its text.
    re.value = nil
    if pcall(r.put, r, rep) then return end
  end
  pcall(r.put, r, {false, e, n = 2})
end


--- Runs in the service's worker: builds the object, reports the exposed
-- names on `ready`, then serves requests until the request queue is closed
-- and drained. Iterators a method returned are kept under an id until they
-- end, fail, or their caller drops them.
local function serve(factory, args, exposed, name, q, over, ready, alive)
  -- Held for the life of the worker: it comes free only when the worker's
  -- process is gone, which tells callers the service died even when the
  -- worker that started it (and watches it) died too.
  alive:acquire()
  local obj = factory(unpack(args, 1, args.n))
  local to = type(obj)
  if to ~= "table" and (to ~= "userdata" or getmetatable(obj) == nil) then
    error(("the factory of service '%s' returned a %s, not an object with methods"):format(name, to), 0)
  end
  exposed = exposed or default_exposed(obj)
  local set = {}
  for _, m in ipairs(exposed) do set[m] = true end
  ready:put(exposed)
  local iters, last_id = {}, 0
  -- The traceback of the last method error, taken by xpcall's handler (which
  -- leaves the error value itself as it was). Local to this function: a
  -- function sent to a worker gets copies of its upvalues, unshared.
  local last_tb
  local function keep_traceback(e)
    last_tb = traceback(nil, 2)
    return e
  end

  local function call(r)
    local m = r.m
    if not set[m] then
      return {false, new_error("usage", ("service '%s' does not expose method '%s' (exposed: %s)"):format(
        name, tostring(m), concat(exposed, ", "))), n = 2}
    end
    local f = obj[m]
    if not is_callable(f) then
      return {false, new_error("usage", ("service '%s' has no method '%s'"):format(name, m)), n = 2}
    end
    local args = r
    if r.a then
      local ok, a = pcall(r.a.get_nowait, r.a)
      if not ok then
        -- The decoder names the queue item ("value[1]: "), not the argument.
        local why = type(a) == "table" and a.message or a
        why = tostring(why):gsub("^value%[%d+%]: ", "")
        return {false, new_error("marshal", ("service '%s': method %s: its arguments cannot be decoded in "
          .. "the service's worker: %s"):format(name, m, why)), n = 2}
      end
      args = a
    end
    local res = pack(xpcall(f, keep_traceback, obj, unpack(args, 1, args.n)))
    if not res[1] then return {false, remote_error(name, m, res[2], last_tb), n = 2} end
    if type(res[2]) == "function" then
      -- An iterator: keep (f, state, control) here and give the caller its id.
      last_id = last_id + 1
      iters[last_id] = {res[2], res[3], res[4], m = m}
      return {true, iter = last_id, n = 1}
    end
    return res
  end

  local function step(r)
    local it = iters[r.id]
    if not it then
      return {false, new_error("usage", ("service '%s': iterator %s is gone"):format(name, tostring(r.id))), n = 2}
    end
    local res = pack(xpcall(it[1], keep_traceback, it[2], it[3]))
    if not res[1] then
      iters[r.id] = nil
      return {false, remote_error(name, it.m .. "'s iterator", res[2], last_tb), n = 2}
    end
    if res[2] == nil then
      iters[r.id] = nil
      return {true, n = 1}
    end
    it[3] = res[2]
    return res
  end

  while true do
    local ok, r = pcall(q.get, q)
    local op = ok and r.op
    if not ok then
      if is_error(r, "closed") then break end
      if not is_error(r, "marshal") then error(r, 0) end
      -- A request itself holds only what always decodes (its arguments
      -- that might not are apart, in `a`); should one fail all the same, it
      -- is lost with its reply queue: say so, and go on serving.
      io.stderr:write(("skein: service '%s' dropped a call it could not read: %s\n"):format(name, tostring(r)))
    elseif op == nil then
      answer(r.r, call(r))
    elseif op == "next" then
      answer(r.r, step(r))
    elseif op == "drop" then
      iters[r.id] = nil
    end
  end
  over:set()
end

------------------------------------------------------------- the proxy side

local methods = {}

local function state_of(self, fname)
  local s = type(self) == "table" and rawget(self, ST)
  if type(s) ~= "table" then
    error(("bad argument #1 to '%s' (service proxy expected, got %s; call it as svc:%s(...))"):format(
      fname, type(self), fname), 3)
  end
  return s
end

--- Puts a request on the service's queue; a closed queue means a closed (or
-- ended) service.
local function send(self, s, req, level)
  local ok, e = pcall(s.q.put, s.q, req)
  if ok then return end
  if is_error(e, "closed") then
    local why = s.info:get()
    if why then
      fail("worker_died", ("service '%s' died: %s"):format(self.name, why), level + 1)
    end
    fail("closed", ("service '%s' is closed"):format(self.name), level + 1)
  end
  error(e, level + 1)
end

--- After `alive` came free: the service's process is gone. The worker that
-- started it (when it lives) says why in `info` before it sets `over`.
local function died(self, s, level)
  s.alive:release()
  s.over:wait(1)
  fail("worker_died", ("service '%s' died: %s"):format(self.name,
    s.info:get() or "its process ended"), level + 1)
end

--- Waits for the reply on `r`, or the end of the worker. A reply that came
-- before the end wins (select tries the reply queue first).
local function receive(self, s, r)
  local i, rep = sk_select({r, s.over, s.alive})
  if i == 1 then return rep end
  if i == 3 then died(self, s, 2) end
  local why = s.info:get()
  if why then fail("worker_died", ("service '%s' died: %s"):format(self.name, why), 3) end
  fail("closed", ("service '%s' ended before it answered"):format(self.name), 3)
end

local make_iterator

-- The caller's side of a reply: the results, a remote iterator, or the error.
local function finish(self, s, rep)
  if not rep[1] then error(rep[2], 0) end
  if rep.iter then return make_iterator(self, s, rep.iter) end
  return unpack(rep, 2, rep.n)
end

local function round_trip(self, s, req)
  local r = queue(1)
  req.r = r
  send(self, s, req, 3)
  return receive(self, s, r)
end

--- A remote iterator's local end: the service's proxy state `s`, the
-- iterator's `id` there, and `finished` once the service no longer keeps it
-- (it ended, failed or was dropped). It is the fourth value of the iterator
-- (its `for` loop's closing value) and the step function closes over it, so
-- it is closed when a loop is left early (break, an error) and collected
-- when an iterator stepped by hand is let go: either drops the iterator in
-- the service, with a request nobody waits for.
local RemoteIter = {}

local function drop_remote(it)
  if it.finished then return end
  it.finished = true
  -- Never waits (the request queue is unbounded); a closed service has
  -- nothing left to drop.
  pcall(it.s.q.put, it.s.q, {op = "drop", id = it.id})
end
RemoteIter.__close = drop_remote
RemoteIter.__gc = drop_remote

--- A local iterator function over an iterator kept in the service: each step
-- is one request.
function make_iterator(self, s, id)
  local it = setmetatable({s = s, id = id, finished = false}, RemoteIter)
  local function step()
    if it.finished then return nil end
    local ok, rep = pcall(round_trip, self, s, {op = "next", id = id})
    if not ok then
      -- The step failed here (a timeout, a cancellation, the service's
      -- end): the service may still keep the iterator.
      drop_remote(it)
      error(rep, 0)
    end
    if not rep[1] then
      it.finished = true
      error(rep[2], 0)
    end
    if rep[2] == nil then it.finished = true end
    return unpack(rep, 2, rep.n)
  end
  return step, nil, nil, it
end

local function check_method(self, s, m, fname, level)
  if type(m) ~= "string" then
    argerr(fname, ("method name must be a string, got %s"):format(type(m)), level + 1)
  end
  if not s.set[m] then
    fail("usage", ("service '%s' does not expose method '%s' (exposed: %s)"):format(
      self.name, m, concat(self.exposed, ", ")), level + 1)
  end
end

--- The request for a call of method `m`: the arguments in it when each is
-- nil, a boolean, a number or a string (those always decode), else in a
-- one-slot queue of their own under `a`, which the service reads apart so
-- that arguments it cannot decode fail that call (kind marshal) instead of
-- losing the request. A value that cannot cross at all raises marshal here.
local function request(m, ...)
  local req = pack(...)
  for i = 1, req.n do
    local t = type(req[i])
    if t ~= "string" and t ~= "number" and t ~= "boolean" and t ~= "nil" then
      local a = queue(1)
      a:put(req)
      return {m = m, a = a}
    end
  end
  req.m = m
  return req
end

local function invoke(self, s, m, ...)
  return finish(self, s, round_trip(self, s, request(m, ...)))
end

--- svc:call(name, ...) -> the method's results; for a method whose name a
-- proxy field shadows (`close`, `call`, `async`, `name`, ...).
function methods.call(self, m, ...)
  local s = state_of(self, "call")
  check_method(self, s, m, "call", 2)
  return invoke(self, s, m, ...)
end

local Pending = {__name = PENDING_MT_NAME}
Pending.__index = Pending

--- svc:async(name, ...) -> a pending call: the request is queued now (so it
-- keeps its place among this task's calls); a local task waits for the
-- reply. It can be waited on like a future: get([timeout]), select, wait,
-- gather and as_completed; cancel() stops waiting (the call still runs).
function methods.async(self, m, ...)
  local s = state_of(self, "async")
  check_method(self, s, m, "async", 2)
  local req = request(m, ...)
  local r = queue(1)
  req.r = r
  send(self, s, req, 2)
  local t = spawn{daemon = true, name = ("service '%s': %s"):format(self.name, m), fn = function()
    return finish(self, s, receive(self, s, r))
  end}
  return setmetatable({task = t, method = m}, Pending)
end

function Pending:__waitable() return self.task end
function Pending:get(timeout) return self.task:join(timeout) end
function Pending:status() return self.task:status() end
function Pending:done() return self.task:done() end
function Pending:cancel() return self.task:cancel() end
function Pending:__tostring() return ("skein.service call '%s' (%s)"):format(self.method, self.task:status()) end

--- svc:close(): no new calls (they raise `closed`); the calls already queued
-- are still served, then the worker ends. Waits for that end. Idempotent.
function methods.close(self)
  local s = state_of(self, "close")
  s.q:close()
  if sk_select({s.over, s.alive}) == 2 then s.alive:release() end
end

local stubs = setmetatable({}, {__mode = "v"})

function Proxy.__index(self, k)
  local m = methods[k]
  if m then return m end
  if type(k) ~= "string" then return nil end
  local f = stubs[k]
  if not f then
    f = function(proxy, ...)
      local s = state_of(proxy, k)
      check_method(proxy, s, k, k, 2)
      return invoke(proxy, s, k, ...)
    end
    stubs[k] = f
  end
  return f
end

function Proxy.__tostring(self)
  return ("skein.service '%s' (%s%s)"):format(tostring(rawget(self, "name")), tostring(rawget(self, "kind")),
    rawget(self, "pid") and (" pid " .. rawget(self, "pid")) or "")
end

function Proxy.__close(self) methods.close(self) end

---------------------------------------------------------------- skein.service

local OPTIONS = {"fn", "args", "kind", "name", "exposed", "init", "init_args"}

local function default_name(fn)
  if type(fn) == "function" then
    local info = debug.getinfo(fn, "S")
    if info and info.what == "Lua" then return ("%s:%d"):format(info.short_src, info.linedefined) end
  end
  return "service"
end

--- skein.service(factory, ...) or skein.service{fn=, args=, kind=, name=,
-- exposed=, init=, init_args=} -> proxy. Waits until factory(...) has run in
-- the new worker; an error there is raised here.
local function service(a, ...)
  local opts
  if type(a) == "table" and not is_callable(a) then
    opts = a
    if select("#", ...) > 0 then argerr("service", "extra arguments after the options table") end
    for k in pairs(opts) do
      local known = false
      for _, o in ipairs(OPTIONS) do known = known or k == o end
      if not known then
        argerr("service", ("unknown option %s (options: %s)"):format(
          type(k) == "string" and ("'" .. k .. "'") or ("of type " .. type(k)), concat(OPTIONS, ", ")))
      end
    end
  else
    opts = {fn = a, args = pack(...)}
  end
  local fn = opts.fn
  if not is_callable(fn) then argerr("service", ("fn must be callable, got %s"):format(type(fn))) end
  local args = opts.args or {n = 0}
  if type(args) ~= "table" then argerr("service", ("args must be a list, got %s"):format(type(args))) end
  if args.n == nil then args = pack(unpack(args)) end
  local kind = opts.kind or "thread"
  if kind ~= "thread" and kind ~= "process" then
    argerr("service", ("kind must be \"thread\" or \"process\", got %s"):format(tostring(kind)))
  end
  local name = opts.name
  if name ~= nil and type(name) ~= "string" then argerr("service", ("name must be a string, got %s"):format(type(name))) end
  name = name or default_name(fn)
  local exposed = opts.exposed
  if exposed ~= nil then
    if type(exposed) ~= "table" then argerr("service", ("exposed must be a list of names, got %s"):format(type(exposed))) end
    local copy = {}
    for i, m in ipairs(exposed) do
      if type(m) ~= "string" then argerr("service", ("exposed[%d] must be a string, got %s"):format(i, type(m))) end
      copy[i] = m
    end
    exposed = copy
  end

  local q, over, info, ready, alive = queue(), event(), shared_value(), queue(1), skein.lock()
  local start = kind == "process" and skein.process or skein.thread
  local w = start{fn = serve, args = {fn, args, exposed, name, q, over, ready, alive}, daemon = true,
    name = "service " .. name, init = opts.init, init_args = opts.init_args}
  -- Whoever started the worker watches it: when it ends without closing
  -- (a crash, a signal, a factory that raised), `info` says why and `over`
  -- fails every pending and later call.
  local monitor = spawn{daemon = true, name = ("service '%s' monitor"):format(name), fn = function()
    local ok, e = pcall(w.join, w)
    if not ok then
      info:set(type(e) == "table" and e.message and tostring(e.message) or tostring(e))
      q:close()
    end
    over:set()
    return ok, e
  end}
  local ok, i, list, e = pcall(sk_select, {ready, monitor})
  if not ok then
    q:close()   -- cancelled or timed out while it started: stop it once built
    error(i, 0)
  end
  if i == 2 then
    if list then fail("closed", ("service '%s' ended before it started"):format(name), 2) end
    error(e, 2)
  end
  local set = {}
  for _, m in ipairs(list) do set[m] = true end
  return setmetatable({name = name, kind = kind, pid = kind == "process" and w.pid or nil, exposed = list,
    [ST] = {q = q, over = over, info = info, alive = alive, set = set}}, Proxy)
end

return service
