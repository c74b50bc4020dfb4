--- skein.broker: durable queues and pools on Redis streams with consumer
-- groups (Redis 7). The connections are lua/broker.c's (skein._redis, over
-- runtime/core/resp.c); everything else is here. `skein worker` runs
-- stdlib/skein/worker.lua on the same keys.
--
-- Keys (under opts.prefix, "skein" by default):
--   <p>:q:<name>            a queue's stream (group "q"); <p>:q:<name>:closed
--   <p>:p:<name>            a pool's task stream (group "w"), entries
--                           {id, task, args, reply, tries}
--   <p>:cfg:<name>          the pool's options (retries, lease, result_ttl)
--   <p>:r:<id>              a task's result, set once (SET NX)
--   <p>:n:<client>          where workers push "<id>\n<result>" for a client
--   <p>:stats:<name>        counters done / failed / dead
--   <p>:dead:<name>         the dead-letter list (ids); <p>:d:<id> its task
--   <p>:err:<name>          the last error of each task id still retried
--   <p>:workers:<name>      workers by the time they were last seen
--
-- Payloads (queue items, task arguments, results) are skein's marshal
-- format holding data only: skein._broker_encode refuses functions and
-- shared objects, and skein._broker_decode never loads bytecode, so no
-- peer on the network can make another run code it did not already have.
local skein, core = ...

local type, error, tostring, tonumber, pairs, ipairs, select = type, error, tostring, tonumber, pairs, ipairs, select
local setmetatable, pcall, math_type = setmetatable, pcall, math.type
local redis, encode, decode = core._redis, core._broker_encode, core._broker_decode
local new_error, now, spawn, sleep = skein.error, skein.now, skein.spawn, skein.sleep

local M = {}
M.redis = redis
M.encode, M.decode = encode, decode

local function fail(kind, msg, fields, level)
  error(new_error(kind, msg, fields), (level or 1) + 1)
end

local function argerr(fname, msg, level)
  error(("bad argument to '%s' (%s)"):format(fname, msg), (level or 2) + 1)
end

local function is_kind(e, kind)
  return type(e) == "table" and e.kind == kind
end

--- Whether error `e` says Redis is not there for now (down, the connection
-- lost, still loading after a restart, or not answering in time): a call
-- that waits anyway tries again.
function M.transient(e)
  if is_kind(e, "timeout") then return true end
  return is_kind(e, "broker") and (e.code == "down" or e.code == "lost" or e.code == "loading")
end

--- Parses redis://[user:password@]host:port[/db] into connection options.
function M.parse_url(url)
  if type(url) ~= "string" then return nil, "a redis:// URL expected" end
  local rest = url:match("^redis://(.*)$")
  if not rest then return nil, "the URL must start with redis://" end
  local o = {}
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if auth then
    local u, p = auth:match("^([^:]*):(.*)$")
    if u then
      o.user = u ~= "" and u or nil
      o.password = p
    else
      o.password = auth
    end
    rest = hostpart
  end
  local hp, db = rest:match("^([^/]*)/?(.*)$")
  local host, port
  if hp:sub(1, 1) == "[" then
    host, port = hp:match("^%[([^%]]*)%]:?(%d*)$")
  else
    host, port = hp:match("^([^:]*):?(%d*)$")
  end
  if not host then return nil, "cannot read host:port in the URL" end
  o.host = host ~= "" and host or "127.0.0.1"
  o.port = port ~= "" and tonumber(port) or 6379
  if o.port < 1 or o.port > 65535 then return nil, "port out of range" end
  if db ~= "" then
    o.db = tonumber(db)
    if not o.db or math_type(o.db) ~= "integer" or o.db < 0 then return nil, "bad database number" end
  end
  return o
end

-- Random hex for client ids.
local function random_hex(n)
  local f = io.open("/dev/urandom", "rb")
  local s = f and f:read(n)
  if f then f:close() end
  if not s or #s < n then
    s = tostring(now()) .. tostring({})
  end
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)):sub(1, 2 * n)
end

-- Fields of an XREADGROUP/XRANGE entry ({id, {k, v, k, v}}) as a table.
local function fields(entry)
  local t = {}
  local kv = entry[2]
  if type(kv) ~= "table" then return nil end
  for i = 1, #kv, 2 do t[kv[i]] = kv[i + 1] end
  return t
end
M.fields = fields

-------------------------------------------------------------------- broker

local Broker = {}
Broker.__index = Broker
Broker.__name = "skein.Broker"

--- skein.broker(url, [opts]) -> broker. opts: timeout (per command,
-- seconds, default 10), prefix (key namespace, default "skein"), name (this
-- client's consumer name for queues, default hostname:pid).
function M.open(url, opts)
  local o, why = M.parse_url(url)
  if not o then argerr("skein.broker", why) end
  if opts ~= nil and type(opts) ~= "table" then argerr("skein.broker", "options table expected") end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "timeout" and k ~= "prefix" and k ~= "name" then
      argerr("skein.broker", ("unknown option '%s'"):format(tostring(k)))
    end
  end
  if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout < 0) then
    argerr("skein.broker", "timeout must be a non-negative number")
  end
  o.timeout = opts.timeout or 10
  local self = setmetatable({
    _opts = o,
    _url = url,
    prefix = opts.prefix or "skein",
    name = opts.name or core._broker_ident(),
    _client = random_hex(8),
    _free = {},          -- idle blocking connections
    _groups = {},        -- stream keys whose group exists
    _pools = {},
  }, Broker)
  self._conn = redis(o)
  return self
end

function Broker:__tostring()
  return ("skein.broker (%s)"):format(self._conn:address())
end

--- The command connection (pipelined): every call that does not block.
function Broker:call(...)
  return self._conn:call(...)
end

-- A connection for one blocking read, from the idle list or new; give it
-- back with release_blocking. Blocking reads never share a connection, so
-- two tasks waiting on two queues do not wait behind each other.
function Broker:_blocking()
  local c = table.remove(self._free)
  if c then return c end
  local o = {}
  for k, v in pairs(self._opts) do o[k] = v end
  return redis(o)
end

function Broker:_release_blocking(c)
  if #self._free < 4 then self._free[#self._free + 1] = c else c:close() end
end

-- A blocking read on a connection of its own: `block` ms; the command's
-- own timeout is that plus the connection's (the watchdog of a stalled
-- Redis).
function Broker:_block_call(block_ms, ...)
  local c = self:_blocking()
  local ok, r = pcall(c.call_timeout, c, block_ms / 1000 + self._opts.timeout, ...)
  if ok then
    self:_release_blocking(c)
    return r
  end
  c:close()
  error(r, 0)
end

function Broker:_ensure_group(key, group)
  if self._groups[key] then return end
  local ok, e = pcall(self._conn.call, self._conn, "XGROUP", "CREATE", key, group, "0", "MKSTREAM")
  if not ok and not (type(e) == "table" and tostring(e.message):find("BUSYGROUP", 1, true)) then
    error(e, 0)
  end
  self._groups[key] = true
end

function Broker:close()
  if self._closed then return end
  self._closed = true
  for _, c in ipairs(self._free) do c:close() end
  self._free = {}
  self._conn:close()
end
Broker.__close = Broker.close

--------------------------------------------------------------------- queue

local Queue = {}
Queue.__index = Queue
Queue.__name = "skein.broker.Queue"

--- broker:queue(name, [opts]) -> a durable queue on the Redis stream
-- <p>:q:<name>. opts: reclaim (seconds after which an item a getter read
-- but never acknowledged — it died — goes to another getter; default 60).
function Broker:queue(name, opts)
  if type(name) ~= "string" or name == "" then argerr("queue", "a queue name expected") end
  if opts ~= nil and type(opts) ~= "table" then argerr("queue", "options table expected") end
  local reclaim = opts and opts.reclaim or 60
  for k in pairs(opts or {}) do
    if k ~= "reclaim" then argerr("queue", ("unknown option '%s'"):format(tostring(k))) end
  end
  if type(reclaim) ~= "number" or reclaim < 0 then argerr("queue", "reclaim must be a non-negative number") end
  return setmetatable({_b = self, name = name, _reclaim = reclaim, _key = self.prefix .. ":q:" .. name,
                       _closed_key = self.prefix .. ":q:" .. name .. ":closed"}, Queue)
end

function Queue:__tostring()
  return ("skein.broker queue '%s'"):format(self.name)
end

function Queue:_is_closed()
  return self._b._conn:call("EXISTS", self._closed_key) == 1
end

function Queue:put(v, timeout)
  local b = self._b
  if self:_is_closed() then fail("closed", ("put on queue '%s': it is closed"):format(self.name), nil, 2) end
  b._conn:call("XADD", self._key, "*", "v", encode(v))
  return true
end
Queue.try_put = Queue.put

-- Takes entry `e` for good: acknowledged and deleted, then decoded.
function Queue:_take(e)
  local c = self._b._conn
  c:call("XACK", self._key, "q", e[1])
  c:call("XDEL", self._key, e[1])
  local f = fields(e)
  if not f or f.v == nil then return nil end
  return (decode(f.v))
end

-- A getter that died between reading an item and acknowledging it (a
-- moment) leaves it pending under its name: after QUEUE_RECLAIM seconds
-- any getter takes it over (looked for at most every 5 s per queue).

-- One XREADGROUP: an entry or nil. block_ms nil: no BLOCK.
function Queue:_read(block_ms)
  local b = self._b
  b:_ensure_group(self._key, "q")
  local t = now()
  if not self._reclaimed or t - self._reclaimed >= 5 then
    self._reclaimed = t
    local r = b._conn:call("XAUTOCLAIM", self._key, "q", b.name, math.floor(self._reclaim * 1000), "0-0",
                           "COUNT", 1)
    local e = type(r) == "table" and type(r[2]) == "table" and r[2][1]
    if e and type(e[2]) == "table" then return e end
  end
  local r
  if block_ms then
    r = b:_block_call(block_ms, "XREADGROUP", "GROUP", "q", b.name, "COUNT", 1, "BLOCK", block_ms,
                      "STREAMS", self._key, ">")
  else
    r = b._conn:call("XREADGROUP", "GROUP", "q", b.name, "COUNT", 1, "STREAMS", self._key, ">")
  end
  if type(r) ~= "table" or not r[1] then return nil end
  local entries = r[1][2]
  return entries and entries[1] or nil
end

--- q:get([timeout]) -> item; raises timeout, or closed once closed and drained.
function Queue:get(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout) then
    argerr("get", "timeout must be a non-negative number or nil")
  end
  local deadline = timeout and timeout ~= math.huge and now() + timeout or nil
  while true do
    local left = deadline and deadline - now() or 1
    local block = math.max(1, math.floor(math.min(left, 0.5) * 1000))
    -- A Redis that is down, restarting or stalled is waited for (until the
    -- deadline): the getter reconnects.
    local ok, e = pcall(self._read, self, block)
    if ok and e then return self:_take(e) end
    if not ok then
      if not M.transient(e) then
        error(e, 2)
      end
      if deadline and now() >= deadline then error(e, 2) end
      sleep(0.1)
    elseif self:_is_closed() then
      fail("closed", ("get on queue '%s': it is closed and drained"):format(self.name), nil, 2)
    end
    if deadline and now() >= deadline then
      fail("timeout", ("get on queue '%s' timed out"):format(self.name), nil, 2)
    end
  end
end

--- q:try_get() -> true, item | false
function Queue:try_get()
  local e = self:_read(nil)
  if e then return true, self:_take(e) end
  if self:_is_closed() then
    fail("closed", ("get on queue '%s': it is closed and drained"):format(self.name), nil, 2)
  end
  return false
end

function Queue:size()
  return self._b._conn:call("XLEN", self._key)
end

function Queue:empty() return self:size() == 0 end

function Queue:close()
  self._b._conn:call("SET", self._closed_key, "1")
end

function Queue:closed() return self:_is_closed() end

function Queue:iter()
  return function()
    local ok, v = pcall(self.get, self)
    if ok then return v end
    if is_kind(v, "closed") then return nil end
    error(v, 0)
  end
end

---------------------------------------------------------------------- pool

local Pool = {}
Pool.__index = Pool
Pool.__name = "skein.broker.Pool"

local Future = {}
Future.__index = Future
Future.__name = "skein.broker.Future"

M.keys = {}
function M.keys.pool(prefix, name)
  return {
    stream = prefix .. ":p:" .. name,
    cfg = prefix .. ":cfg:" .. name,
    stats = prefix .. ":stats:" .. name,
    dead = prefix .. ":dead:" .. name,
    err = prefix .. ":err:" .. name,
    workers = prefix .. ":workers:" .. name,
  }
end
function M.keys.result(prefix, id) return prefix .. ":r:" .. id end
function M.keys.deadtask(prefix, id) return prefix .. ":d:" .. id end

--- broker:pool(name, [opts]) -> pool. opts: retries (deliveries before
-- dead-letter, default 3), lease (seconds, default 30), result_ttl
-- (seconds, default 86400). The options are stored in Redis for the
-- workers (<p>:cfg:<name>).
function Broker:pool(name, opts)
  if type(name) ~= "string" or name == "" then argerr("pool", "a pool name expected") end
  if opts ~= nil and type(opts) ~= "table" then argerr("pool", "options table expected") end
  opts = opts or {}
  for k, v in pairs(opts) do
    if k ~= "retries" and k ~= "lease" and k ~= "result_ttl" then
      argerr("pool", ("unknown option '%s'"):format(tostring(k)))
    end
    if type(v) ~= "number" or v <= 0 then argerr("pool", ("option '%s' must be a positive number"):format(k)) end
  end
  local k = M.keys.pool(self.prefix, name)
  local p = setmetatable({_b = self, name = name, _k = k, _n = 0, _waiting = {}, _nwaiting = 0,
                          _notify = self.prefix .. ":n:" .. self._client}, Pool)
  self:_ensure_group(k.stream, "w")
  local set = {}
  for _, key in ipairs({"retries", "lease", "result_ttl"}) do
    if opts[key] then set[#set + 1] = key; set[#set + 1] = opts[key] end
  end
  if #set > 0 then self._conn:call("HSET", k.cfg, table.unpack(set)) end
  return p
end

function Pool:__tostring()
  return ("skein.broker pool '%s'"):format(self.name)
end

--- pool:submit(task_name, ...) -> future
function Pool:submit(task, ...)
  if type(task) ~= "string" or task == "" then
    argerr("submit", "a task name expected (tasks travel by name, never as code)")
  end
  local args = encode(...)
  self._n = self._n + 1
  local id = self._b._client .. "-" .. self._n
  self._b._conn:call("XADD", self._k.stream, "*", "id", id, "task", task, "args", args,
                     "reply", self._notify, "tries", 0)
  return setmetatable({_pool = self, id = id, _state = "pending"}, Future)
end

--- pool:map(task_name, list, [timeout]) -> list of results (the first of each)
function Pool:map(task, list, timeout)
  if type(list) ~= "table" then argerr("map", "a list expected") end
  local fs, n, nexti = {}, #list, 1
  -- Up to 32 tasks submit at once, so the XADDs are pipelined.
  local function feed()
    while nexti <= n do
      local i = nexti
      nexti = i + 1
      fs[i] = self:submit(task, list[i])
    end
  end
  local feeders = {}
  for j = 1, math.min(32, n) do feeders[j] = spawn(feed) end
  for j = 1, #feeders do feeders[j]:join() end
  local deadline = timeout and now() + timeout
  local out = {}
  for i = 1, #fs do
    out[i] = fs[i]:get(deadline and math.max(0, deadline - now()))
  end
  return out
end

-- Resolves future `f` from its stored result (a string), once.
local function settle(f, raw)
  local ok, t = pcall(decode, raw)
  if not ok or type(t) ~= "table" then
    f._state, f._err = "failed", new_error("broker", "the result of task " .. f.id .. " cannot be read")
  elseif t.ok then
    f._state, f._values = "done", t
  else
    f._state = "failed"
    f._err = new_error("remote", tostring(t.err), {dead = t.dead or nil, task_id = f.id})
  end
  if f._ev then f._ev:set() end
end

-- The reader of this client's notification list: runs while futures
-- wait. A notification is "<id>\n<result>" (the result kept for the id);
-- after one BLPOP it takes whatever else is there with one LPOP. Every few
-- quiet rounds it looks up the results of what still waits, in case a
-- notification was lost. A Redis that is down or stalled only makes it
-- wait and try again.
function Pool:_reader()
  local b = self._b
  local quiet = 0
  local function settle_id(id, raw)
    local f = self._waiting[id]
    if f then
      self._waiting[id] = nil
      self._nwaiting = self._nwaiting - 1
      settle(f, raw)
    end
  end
  local function got(item)
    local id, raw = item:match("^([^\n]*)\n(.*)$")
    if id then settle_id(id, raw) end
  end
  local function round()
    local r = b:_block_call(500, "BLPOP", self._notify, 0.5)
    if type(r) == "table" then
      quiet = 0
      got(r[2])
      local more = b._conn:call("LPOP", self._notify, 512)
      for _, item in ipairs(type(more) == "table" and more or {}) do got(item) end
      return
    end
    quiet = quiet + 1
    if quiet % 4 == 0 then
      local ids = {}
      for id in pairs(self._waiting) do ids[#ids + 1] = id end
      for _, id in ipairs(ids) do
        local raw = b._conn:call("GET", M.keys.result(b.prefix, id))
        if raw then settle_id(id, raw) end
      end
    end
  end
  -- A broker closed while a command of this reader was in flight (the
  -- script took its last result and closed the broker) ends the reader
  -- quietly: its connection's error is no failure of the script.
  while self._nwaiting > 0 and not b._closed do
    local ok, e = pcall(round)
    if not ok and b._closed then break end
    if not ok then
      if not (is_kind(e, "broker") or is_kind(e, "timeout")) then
        self._reading = nil
        error(e, 0)
      end
      quiet = quiet + 1
      sleep(0.1)
    end
  end
  self._reading = nil
end

function Future:_wait(timeout)
  if self._state ~= "pending" then return true end
  local p, b = self._pool, self._pool._b
  local raw = b._conn:call("GET", M.keys.result(b.prefix, self.id))
  if raw then
    settle(self, raw)
    return true
  end
  if not self._ev then
    self._ev = skein.event()
    p._waiting[self.id] = self
    p._nwaiting = p._nwaiting + 1
  end
  if not p._reading then
    -- A daemon: a future nobody waits for any more keeps no script alive.
    p._reading = spawn{fn = function() p:_reader() end, daemon = true}
  end
  return self._ev:wait(timeout)
end

--- future:get([timeout]) -> the task's results; raises remote (the task's
-- error; `dead` set when it was dead-lettered), timeout.
function Future:get(timeout)
  if not self:_wait(timeout) then
    fail("timeout", ("task %s: no result in time"):format(self.id), nil, 2)
  end
  if self._state == "failed" then error(self._err, 2) end
  return table.unpack(self._values, 1, self._values.n or #self._values)
end

function Future:wait(timeout) return self:_wait(timeout) end
function Future:done() return self._state ~= "pending" or self:_wait(0) end
function Future:status() return self._state end
function Future:error() self:_wait(0); return self._err end

----------------------------------------------------------- stats and dead

--- broker:stats(name) -> {queued=, running=, done=, failed=, dead=, workers=}
function Broker:stats(name)
  local k = M.keys.pool(self.prefix, name)
  local c = self._conn
  self:_ensure_group(k.stream, "w")
  local len = c:call("XLEN", k.stream)
  local pend = c:call("XPENDING", k.stream, "w")
  local running = type(pend) == "table" and tonumber(pend[1]) or 0
  local h = c:call("HGETALL", k.stats)
  local st = {}
  for i = 1, #h, 2 do st[h[i]] = tonumber(h[i + 1]) end
  local t = os.time()
  local workers = c:call("ZCOUNT", k.workers, t - 15, "+inf")
  return {queued = math.max(0, len - running), running = running, done = st.done or 0,
          failed = st.failed or 0, dead = st.dead or 0, workers = workers}
end

--- broker:dead(name) -> list of {id=, task=, error=, deliveries=, args=}
function Broker:dead(name)
  local k = M.keys.pool(self.prefix, name)
  local ids = self._conn:call("LRANGE", k.dead, 0, -1)
  local out = {}
  for _, id in ipairs(ids) do
    local raw = self._conn:call("GET", M.keys.deadtask(self.prefix, id))
    if raw then
      local ok, t = pcall(decode, raw)
      if ok and type(t) == "table" then
        out[#out + 1] = {id = id, task = t.task, error = t.error, deliveries = t.deliveries,
                         pool = t.pool}
      end
    end
  end
  return out
end

--- broker:requeue(id) -> true | false: puts a dead-lettered task back on
-- its pool's stream (its deliveries counted from zero again).
function Broker:requeue(id)
  if type(id) ~= "string" then argerr("requeue", "a task id expected") end
  local dkey = M.keys.deadtask(self.prefix, id)
  local raw = self._conn:call("GET", dkey)
  if not raw then return false end
  local t = decode(raw)
  local k = M.keys.pool(self.prefix, t.pool)
  -- LREM is the claim: of two callers requeueing one id, only one removes
  -- it. Everything about the old death is cleared before XADD, because from
  -- XADD on a worker may run the task, fail it again and dead-letter it anew;
  -- that new record must not be deleted here.
  if self._conn:call("LREM", k.dead, 0, id) == 0 then return false end
  self._conn:call("DEL", dkey)
  self._conn:call("HINCRBY", k.stats, "dead", -1)
  self._conn:call("DEL", M.keys.result(self.prefix, id))
  self._conn:call("HDEL", k.err, id)
  self._conn:call("XADD", k.stream, "*", "id", id, "task", t.task, "args", t.args,
                  "reply", t.reply or "", "tries", 0)
  return true
end

return M
