--- skein.pool: pools of coroutines and threads with futures, map, imap,
-- imap_unordered, starmap and apply. The thread kind runs on the C engine
-- in lua/pool.c; the coroutine kind is written here over tasks.
local skein, core = ...

local type, error, pairs, select, setmetatable, tostring = type, error, pairs, select, setmetatable, tostring
local math_ceil, math_type = math.ceil, math.type
local pack, unpack = table.pack, table.unpack
local new_error, now = core.error, core.now

local function fail(kind, msg, level)
  error(new_error(kind, msg), (level or 1) + 1)
end

-- Errors blame the caller of the public function: `level` counts as in
-- error(), from the function that calls argerr (2: that function's caller).
local function argerr(fname, msg, level)
  error(("bad argument to '%s' (%s)"):format(fname, msg), (level or 2) + 1)
end

local function check_timeout(t, fname, level)
  if t == nil then return nil end
  level = (level or 2) + 1
  if type(t) ~= "number" then argerr(fname, ("timeout must be a number or nil, got %s"):format(type(t)), level) end
  if t ~= t then argerr(fname, "timeout is NaN", level) end
  if t < 0 then argerr(fname, "timeout must not be negative", level) end
  return t
end

-- Rejects keys of an options table that are not in `known` (a list).
local function check_keys(opts, known, fname, level)
  for k in pairs(opts) do
    local ok = false
    for _, n in ipairs(known) do
      if k == n then ok = true break end
    end
    if not ok then
      argerr(fname, ("unknown option %s (options: %s)"):format(
        type(k) == "string" and ("'" .. k .. "'") or ("of type " .. type(k)), table.concat(known, ", ")),
        (level or 2) + 1)
    end
  end
end

local is_callable = core._callable

------------------------------------------------------------------ progress

--- A one-line progress bar on stderr, drawn only when stderr is a terminal.
-- Redraws are throttled to one per 0.1 s, but finish() always draws the
-- final state and ends the line; it runs once (later calls do nothing), also
-- when the map stops early on an error or a `break`. Each redraw returns to
-- column 0 and erases to the end of the line (ESC [ K), so a shorter line
-- (a falling rate, an ETA going from 10s to 9s) leaves no stale characters.
local function progress_bar(total, label)
  if not core._isatty(2) then return nil end
  local done, started, last, finished = 0, now(), 0, false
  local bar = {}
  local function draw(final)
    local t = now()
    if not final and t - last < 0.1 then return end
    last = t
    local width = 30
    local frac = total and total > 0 and done / total or 0
    local filled = math.floor(frac * width)
    local rate = done / math.max(t - started, 1e-9)
    local eta = "?"
    if total then
      eta = ("%ds"):format(rate > 0 and math.floor((total - done) / rate + 0.5) or 0)
    end
    io.stderr:write(("\r%s [%s%s] %d/%s %5.1f/s ETA %s\27[K%s"):format(
      label, ("#"):rep(filled), ("."):rep(width - filled), done, total and tostring(total) or "?",
      rate, eta, final and "\n" or ""))
    io.stderr:flush()
  end
  function bar.step(n) done = done + (n or 1); draw(false) end
  function bar.finish()
    if finished then return end
    finished = true
    draw(true)
  end
  return bar
end

------------------------------------------------------------ iterables

--- Turns a table (list) or an iterator function into a pull function that
-- returns (true, item) or false when exhausted. Tables are read in order
-- with their length; functions are called until they return nil.
local function puller(iterable, fname, level)
  if type(iterable) == "table" then
    local i, n = 0, iterable.n or #iterable
    return function()
      if i >= n then return false end
      i = i + 1
      return true, iterable[i]
    end, n
  elseif type(iterable) == "function" then
    return function()
      local v = iterable()
      if v == nil then return false end
      return true, v
    end, nil
  end
  argerr(fname, ("iterable must be a list or an iterator function, got %s"):format(type(iterable)), level + 1)
end

-- Runs fn over items[1..n] into out (star: each item is an argument list).
local function run_items(fn, items, n, star, out)
  for i = 1, n do
    if star then
      local args = items[i]
      out[i] = fn(table.unpack(args, 1, args.n or #args))
    else
      out[i] = fn(items[i])
    end
  end
  return out
end

-- Runs fn over one chunk of items inside a worker.
local function run_chunk(fn, chunk, star)
  local out = run_items(fn, chunk, chunk.n, star, {})
  out.n = chunk.n
  return out
end

-- The same for map over a list on thread and process pools: the items come
-- as one string (skein._encode_range: no chunk table to build, copy or walk)
-- and the results go back as one, decoded straight into map's result list.
local function run_packed(fn, packed, star, xproc)
  local items, n = skein._decode_list(packed)
  return skein._encode_range(run_items(fn, items, n, star, skein._list(n)), 1, n, xproc)
end

-- An error of _encode_range names items from 1; make it the list's index.
local function shift_items_path(e, first)
  if skein.is_error(e) and type(e.path) == "string" then
    local k, rest = e.path:match("^items%[(%d+)%](.*)$")
    if k then
      local at = tonumber(k) + first - 1
      e.message = e.message:gsub("^items%[%d+%]", ("items[%d]"):format(at), 1)
      e.path = ("items[%d]%s"):format(at, rest)
    end
  end
  return e
end

------------------------------------------------------- coroutine pools

-- A future of a coroutine pool: a task behind a per-pool gate.
local CoFuture = {}
CoFuture.__index = CoFuture
CoFuture.__name = "skein.CoFuture"

function CoFuture:get(timeout) return self.task:join(check_timeout(timeout, "get")) end
function CoFuture:wait(timeout)
  local done = skein.wait({self.task}, {timeout = check_timeout(timeout, "wait")})
  return #done == 1
end
function CoFuture:done() return self.task:done() or (self.cancelled and not self.started) or false end
function CoFuture:status()
  local s = self.task:status()
  if s == "running" and not self.started then return self.cancelled and "cancelled" or "pending" end
  return s
end
function CoFuture:cancel()
  if self.task:done() or self.started then return false end
  self.cancelled = true
  return self.task:cancel()
end
function CoFuture:error()
  if not self.task:done() then return nil end
  return (self.task:error())
end
function CoFuture:on_done(fn) return skein._on_done(self, fn) end
function CoFuture:__tostring() return ("skein.future (coroutine, %s)"):format(self:status()) end
function CoFuture:__waitable() return self.task end

local CoPool = {}
CoPool.__index = CoPool

local function co_acquire(p)
  if p.free > 0 then
    p.free = p.free - 1
    return
  end
  local me = core._parker()
  p.waiters[#p.waiters + 1] = me
  while true do
    local ok, err = pcall(core._park)
    if p.granted[me] then
      p.granted[me] = nil
      if not ok then p:_release() error(err, 0) end
      return
    end
    if not ok then
      for i = #p.waiters, 1, -1 do
        if p.waiters[i] == me then table.remove(p.waiters, i) break end
      end
      error(err, 0)
    end
  end
end

function CoPool:_release()
  local w = table.remove(self.waiters, 1)
  if w then
    self.granted[w] = true
    core._unpark(w)
  else
    self.free = self.free + 1
  end
end

function CoPool:_submit(timeout, fn, ...)
  if self.closed then fail("closed", "the pool is closed: no more submits", 2) end
  if not is_callable(fn) then argerr("submit", "function expected") end
  local fut = setmetatable({started = false}, CoFuture)
  self.stats_.queued = self.stats_.queued + 1
  self.stats_.submitted = self.stats_.submitted + 1
  local pool = self
  fut.task = skein.spawn(function(...)
    local ok_gate, gate_err = pcall(co_acquire, pool)
    pool.stats_.queued = pool.stats_.queued - 1
    if not ok_gate then error(gate_err, 0) end
    fut.started = true
    pool.stats_.busy = pool.stats_.busy + 1
    local r = pack(pcall(function(...)
      if timeout then return skein.timeout(timeout, fn, ...) end
      return fn(...)
    end, ...))
    pool.stats_.busy = pool.stats_.busy - 1
    pool:_release()
    if r[1] then
      pool.stats_.done = pool.stats_.done + 1
      return unpack(r, 2, r.n)
    end
    pool.stats_.failed = pool.stats_.failed + 1
    error(r[2], 0)
  end, ...)
  self.tasks[fut.task] = true
  return fut
end

function CoPool:close() self.closed = true end
function CoPool:terminate()
  self.closed = true
  for t in pairs(self.tasks) do t:cancel() end
end
function CoPool:join(timeout)
  if not self.closed then fail("usage", "call pool:close() or pool:terminate() before pool:join()", 2) end
  local list = {}
  for t in pairs(self.tasks) do list[#list + 1] = t end
  local _, pending = skein.wait(list, {timeout = check_timeout(timeout, "join")})
  if #pending > 0 then fail("timeout", "pool join timed out", 2) end
  for _, t in ipairs(list) do
    if t:status() ~= "done" then t:error() end   -- observed through its future
  end
end
function CoPool:stats()
  local s = {}
  for k, v in pairs(self.stats_) do s[k] = v end
  s.size = self.size
  s.closed = self.closed
  return s
end

----------------------------------------------------------- common front

local Pool = {}
Pool.__index = Pool
Pool.__name = "skein.Pool"

----------------------------------------------------------- the door
-- A thread or process pool is a table that crosses to any worker of the
-- process tree (its metatable is registered by name). Its engine (`impl`,
-- a userdata) stays in the worker that made the pool, the *owner*, in
-- `owned` below; every other worker holding a copy reaches it through the
-- pool's *door*: a queue that a daemon task of the owner serves, each call
-- a request with a one-slot reply queue. Futures come back by reference
-- (they are shared objects), so a remote holder gets, selects and cancels
-- them directly. The owner holds `alive` for good (a lock comes free only
-- when its holder's process is gone) and the daemon sets `over` when it
-- ends; a remote call waits for its reply, `over` or `alive`. Copies keep
-- the pool alive: the daemon holds the engine, and when the owner drops its
-- table while copies exist anywhere (`over:_alone()` tells), the daemon
-- goes on until the last copy is gone (see serve_door). When the owner's
-- worker ends, remote calls raise kind `closed`.
local owned = setmetatable({}, {__mode = "k"})     -- owner's pool table -> impl
local doors = setmetatable({}, {__mode = "k"})     -- remote copy -> its door impl
local owner_refs = setmetatable({}, {__mode = "k"}) -- owner's table -> its daemon's ref

local function closed_error(name, why)
  return new_error("closed", ("pool %q %s"):format(name, why))
end

-- The owner's side: one request, its results packed for the reply.
local function perform(impl, op, args)
  if op == "submit" then return impl:_submit(unpack(args, 1, args.n)) end
  if op == "close" then return impl:close() end
  if op == "terminate" then return impl:terminate() end
  if op == "stats" then return impl:stats() end
  error(new_error("usage", "unknown pool request " .. tostring(op)), 0)
end

local function answer(reply, r)
  local ok, e = pcall(reply.put, reply, r)
  -- The results could not cross (say, a value that cannot be sent).
  if not ok then pcall(reply.put, reply, {false, e}) end
end

-- Serves the door until it is closed or, once the owner dropped its pool
-- table (`ref.orphan`), until no other worker holds a copy either: then it
-- closes the engine (queued jobs still run) and ends. The daemon holds the
-- engine, so copies elsewhere keep the pool alive after its owner let go.
local function serve_door(door, over, ref)
  -- However this task ends (the door closed, or its worker closing), remote
  -- callers stop waiting.
  local _ <close> = setmetatable({}, {__close = function() over:set() end})
  while true do
    local ok, req = pcall(door.get, door, ref.orphan and 1 or nil)
    if not ok then
      if not skein.is_error(req, "timeout") then break end   -- closed
      if over:_alone() then
        pcall(ref.impl.close, ref.impl)
        door:close()
        break
      end
    elseif req[1] ~= "orphan" then
      local op, reply, args = req[1], req[2], req[3]
      local impl = ref.impl
      if op == "join" then
        -- A join waits; it gets a task of its own so the door stays open.
        skein.spawn{daemon = true, fn = function(it, r, timeout)
          answer(r, pack(pcall(it.join, it, timeout)))
        end, args = {impl, reply, args[1]}}
      else
        answer(reply, pack(pcall(perform, impl, op, args)))
      end
      impl = nil
    end
    req = nil
  end
  ref.impl = nil
end

local Door = {}
Door.__index = Door

local function door_call(d, op, ...)
  local reply = skein.queue(1)
  local ok = pcall(d.door.put, d.door, {op, reply, pack(...)})
  if not ok then error(closed_error(d.name, "is gone (the worker that made it ended)"), 3) end
  local i, r = skein.select({reply, d.over, d.alive})
  if i == 3 then
    d.alive:release()
    fail("worker_died", ("pool %q: the worker that owns it ended"):format(d.name), 3)
  elseif i == 2 then
    error(closed_error(d.name, "is gone (the worker that made it ended)"), 3)
  end
  if not r[1] then error(r[2], 3) end
  return unpack(r, 2, r.n)
end

function Door:_submit(timeout, fn, ...) return door_call(self, "submit", timeout, fn, ...) end
function Door:close() return door_call(self, "close") end
function Door:terminate() return door_call(self, "terminate") end
function Door:stats() return door_call(self, "stats") end
function Door:join(timeout) return door_call(self, "join", timeout) end

local function impl_of(p)
  local impl = owned[p]
  if impl then return impl end
  impl = doors[p]
  if impl then return impl end
  if p.door == nil then
    fail("usage", ("%s pool %q is used only by the worker that made it"):format(p.kind, p.name), 3)
  end
  impl = setmetatable({door = p.door, over = p.over, alive = p.alive, name = p.name}, Door)
  doors[p] = impl
  return impl
end

-- When the owner drops its copy: with no other copy anywhere the door
-- closes (and the engine goes with its last reference, as any pool's);
-- otherwise the daemon keeps the engine for the copies, until the last
-- of them is gone. A remote copy's going changes nothing here.
function Pool:__gc()
  local ref = owner_refs[self]
  if not ref then return end
  if self.over:_alone() then
    pcall(ref.impl.close, ref.impl)   -- as a dropped engine did: its queue still runs
    self.door:close()
  else
    ref.orphan = true
    pcall(self.door.put, self.door, {"orphan"})
  end
end
skein.register_metatable("skein.Pool", Pool)

function Pool:__tostring()
  return ("skein.pool %q (%s, size %d)"):format(self.name, self.kind, self.size)
end

-- A thread or process pool runs a Lua function (it is marshalled); a
-- coroutine pool runs any callable.
local function check_fn(self, fn, fname, level)
  if type(fn) == "function" or (self.kind == "coroutine" and is_callable(fn)) then return end
  argerr(fname, ("function expected, got %s"):format(type(fn)), (level or 2) + 1)
end

--- pool:submit(fn, ...) -> future
-- A C function (lua/pool.c, skein._submit_via): a thread or process pool
-- this process owns is submitted to from there, with no Lua frame; every
-- other case comes here, called from that C function (hence level 3: the
-- caller of pool:submit is one frame further up).
local function submit_slow(self, fn, ...)
  if type(fn) ~= "function" then check_fn(self, fn, "submit", 3) end
  return (owned[self] or impl_of(self)):_submit(self.timeout, fn, ...)
end
Pool.submit = core._submit_via(owned, submit_slow)

--- pool:apply(fn, ...) -> fn's results (blocking)
function Pool:apply(fn, ...)
  check_fn(self, fn, "apply")
  return impl_of(self):_submit(self.timeout, fn, ...):get()
end

local MAP_OPTIONS = {"chunksize", "timeout", "progress"}
local IMAP_OPTIONS = {"chunksize", "timeout", "progress", "errors"}

-- Checks the options of map and its kin; returns chunksize (nil: the
-- caller's default), the per-task timeout and the errors mode. `level` as
-- in argerr, from the caller of check_map_opts.
local function check_map_opts(self, opts, fname, known, level)
  level = (level or 2) + 1
  if opts == nil then return nil, self.timeout, "stop" end
  if type(opts) ~= "table" then argerr(fname, ("options table expected, got %s"):format(type(opts)), level) end
  check_keys(opts, known, fname, level)
  local chunksize = opts.chunksize
  if chunksize ~= nil and (math_type(chunksize) ~= "integer" or chunksize < 1) then
    argerr(fname, "chunksize must be a positive integer", level)
  end
  local errors = opts.errors or "stop"
  if errors ~= "stop" and errors ~= "raise" and errors ~= "yield" then
    argerr(fname, ("errors must be \"stop\", \"raise\" or \"yield\", got %s"):format(tostring(errors)), level)
  end
  return chunksize, check_timeout(opts.timeout, fname, level) or self.timeout, errors
end

-- The iterator map's kin return: `for i, r in it do` calls it; `it:next(t)`
-- takes one step waiting at most t seconds (raising `timeout`, after which
-- the iterator can still be used).
local MapIter = {}
MapIter.__index = MapIter
MapIter.__name = "skein.MapIterator"
function MapIter:__call() return self.step(nil) end
function MapIter:next(timeout)
  return self.step(check_timeout(timeout, "next") or math.huge)
end
function MapIter:__tostring() return "skein.MapIterator" end

-- The shared engine of map/imap/imap_unordered/starmap: keeps at most
-- `window` chunks in flight, reading the iterable lazily. `level`: the
-- caller to blame for bad arguments, as in error(), counted from stream
-- (and from its step function, which runs at the same depth). `errors`: "stop" raises the first failure and cancels the
-- rest; "raise" raises a failure at its item's turn and goes on at the next
-- call; "yield" gives (index, nil, error) for it and goes on.
local function stream(self, fn, iterable, opts, fname, star, ordered, known, level)
  check_fn(self, fn, fname, level)
  local chunksize, timeout, errors = check_map_opts(self, opts, fname, known, level)
  local pull, total = puller(iterable, fname, level)
  if chunksize == nil then
    if total and self.kind ~= "coroutine" and errors == "stop" then
      chunksize = math.max(1, math_ceil(total / (self.size * 4)))
    else
      chunksize = 1
    end
  end
  local bar = opts and opts.progress and progress_bar(total, self.name) or nil
  local window = self.size * 2
  local inflight = {}            -- futures, in submission order
  local counts = {}              -- items per future (-1: a single unchunked item)
  local first = {}               -- index of each future's first item
  local exhausted, read = false, 0
  -- Finished chunks waiting to be handed out: {start, results, next
  -- position, error}.
  local ready, rhead, rtail = {}, 1, 0
  local function fill()
    while not exhausted and #inflight < window do
      local chunk = {n = 0}
      while chunk.n < chunksize do
        local ok, item = pull()
        if not ok then exhausted = true break end
        if star and type(item) ~= "table" then
          exhausted = true
          -- fill runs under the step function, which runs where stream was
          -- called from (the for loop of collect, or the caller's own).
          argerr(fname, ("item %d is a %s, not a list of arguments"):format(read + chunk.n + 1, type(item)), level + 1)
        end
        chunk.n = chunk.n + 1
        chunk[chunk.n] = item
      end
      if chunk.n == 0 then break end
      local start = read + 1
      read = read + chunk.n
      local fut
      if chunksize == 1 and not star then
        fut = impl_of(self):_submit(timeout, fn, chunk[1])
        counts[fut] = -1
      else
        fut = impl_of(self):_submit(timeout, run_chunk, fn, chunk, star or nil)
        counts[fut] = chunk.n
      end
      first[fut] = start
      inflight[#inflight + 1] = fut
    end
  end
  local function cancel_rest()
    for _, f in ipairs(inflight) do f:cancel() end
  end
  -- The results of a finished future as a chunk {n=, ...}, or nil and its
  -- error (under "stop", the rest is cancelled and the error raised).
  local function collect(fut)
    local r = pack(pcall(fut.get, fut))
    if not r[1] then
      if errors == "stop" then
        cancel_rest()
        if bar then bar.finish() end
        error(r[2], 0)
      end
      if bar then bar.step(counts[fut] == -1 and 1 or 0) end
      return nil, r[2]
    end
    if counts[fut] == -1 then
      if bar then bar.step(1) end
      return {n = 1, r[2]}
    end
    local out = r[2]
    if bar then bar.step(out.n) end
    return out
  end
  local function step(timeout_)
    local deadline = timeout_ and timeout_ ~= math.huge and now() + timeout_ or nil
    while true do
      local c = ready[rhead]
      if c then
        local pos = c[3]
        if c[4] ~= nil then
          -- A failed future: its first item carries the error (a chunk's
          -- other items have no results of their own).
          ready[rhead] = nil
          rhead = rhead + 1
          if errors == "yield" then return c[1], nil, c[4] end
          local e = c[4]
          if type(e) == "table" and rawget(e, "index") == nil and skein.is_error(e) then e.index = c[1] end
          error(e, 0)
        end
        if pos <= c[2].n then
          c[3] = pos + 1
          return c[1] + pos - 1, c[2][pos]
        end
        ready[rhead] = nil
        rhead = rhead + 1
        goto continue
      end
      fill()
      if #inflight == 0 then
        if bar then bar.finish() end
        return nil
      end
      do
        local k
        if ordered then
          if deadline and not inflight[1]:wait(math.max(0, deadline - now())) then
            fail("timeout", ("%s: no result within %g s"):format(fname, timeout_), 2)
          end
          k = 1
        else
          local ok, r = pcall(skein.select, inflight, deadline and math.max(0, deadline - now()) or nil)
          if not ok then
            -- select raises the failure of the first finished future it
            -- met, in list order; anything else (this task cancelled) goes on.
            for j, f in ipairs(inflight) do
              if f:done() then k = j break end
            end
            if not k then error(r, 0) end
          elseif not r then
            fail("timeout", ("%s: no result within %g s"):format(fname, timeout_), 2)
          else
            k = r
          end
        end
        local fut = table.remove(inflight, k)
        local out, err = collect(fut)
        rtail = rtail + 1
        ready[rtail] = {first[fut], out, 1, err}
        counts[fut], first[fut] = nil, nil
      end
      ::continue::
    end
  end
  local it = setmetatable({step = step}, MapIter)
  if not bar then return it end
  -- A generic for closes its fourth value when the loop ends by a break or
  -- an error, so the bar's line is ended then too.
  return it, nil, nil, setmetatable({}, {__close = function() bar.finish() end})
end

-- map and starmap over a list: whole chunks are cut and stored with
-- table.move (no per-item Lua work in this worker), and every chunk is
-- submitted at once (the list is in memory already).
local function map_list(self, fn, list, opts, fname, star, level)
  check_fn(self, fn, fname, level)
  local chunksize, timeout = check_map_opts(self, opts, fname, MAP_OPTIONS, level)
  local total = list.n or #list
  if star then
    for i = 1, total do
      if type(list[i]) ~= "table" then
        argerr(fname, ("item %d is a %s, not a list of arguments"):format(i, type(list[i])), level)
      end
    end
  end
  if chunksize == nil then
    -- Eight chunks per worker: the last ones are small, so the tail (the
    -- last results to wait for and decode) is short.
    chunksize = self.kind == "coroutine" and 1 or math.max(1, math_ceil(total / (self.size * 8)))
  end
  local bar = opts and opts.progress and progress_bar(total, self.name) or nil
  local packed = self.kind ~= "coroutine" and (chunksize > 1 or star)
  local xproc = self.kind == "process" or nil
  local futures, starts, sizes = {}, {}, {}
  for first = 1, total, chunksize do
    local last = math.min(first + chunksize - 1, total)
    local f
    if packed then
      local ok, items = pcall(skein._encode_range, list, first, last, xproc)
      if not ok then
        for _, g in ipairs(futures) do g:cancel() end
        if bar then bar.finish() end
        error(shift_items_path(items, first), 0)
      end
      f = impl_of(self):_submit(timeout, run_packed, fn, items, star or nil, xproc)
    elseif chunksize == 1 and not star then
      f = impl_of(self):_submit(timeout, fn, list[first])
    else
      local chunk = table.move(list, first, last, 1, {n = last - first + 1})
      f = impl_of(self):_submit(timeout, run_chunk, fn, chunk, star or nil)
    end
    futures[#futures + 1], starts[#futures + 1], sizes[#futures + 1] = f, first, last - first + 1
  end
  local out = skein._list(total)
  out.n = total
  for k, f in ipairs(futures) do
    local r = pack(pcall(f.get, f))
    if not r[1] then
      for j = k + 1, #futures do futures[j]:cancel() end
      if bar then bar.finish() end
      error(r[2], 0)
    end
    if packed then
      skein._decode_into(r[2], out, starts[k])
      if bar then bar.step(sizes[k]) end
    elseif chunksize == 1 and not star then
      out[starts[k]] = r[2]
      if bar then bar.step(1) end
    else
      table.move(r[2], 1, r[2].n, starts[k], out)
      if bar then bar.step(r[2].n) end
    end
  end
  if bar then bar.finish() end
  return out
end

-- map and starmap: lists go through map_list, iterators through stream.
-- `level`: the caller to blame, as in error(), counted from collect (the
-- helpers below take theirs counted from themselves).
local function collect(self, fn, iterable, opts, fname, star, level)
  if type(iterable) == "table" then return (map_list(self, fn, iterable, opts, fname, star, level + 1)) end
  local out, n = {}, 0
  for i, v in stream(self, fn, iterable, opts, fname, star, true, MAP_OPTIONS, level + 1) do
    out[i] = v
    n = i
  end
  out.n = n
  return out
end

--- pool:map(fn, iterable, [opts]) -> list of results, in order
function Pool:map(fn, iterable, opts)
  return (collect(self, fn, iterable, opts, "map", false, 3))
end

--- pool:starmap(fn, list_of_arg_lists, [opts]) -> list of results
function Pool:starmap(fn, iterable, opts)
  return (collect(self, fn, iterable, opts, "starmap", true, 3))
end

--- pool:imap(fn, iterable, [opts]) -> iterator of (index, result) in order:
-- `for i, r in pool:imap(f, xs) do ... end`. The iterable is read lazily:
-- at most 2 x size chunks are in flight, so memory stays bounded.
-- opts.errors: "stop" (default), "raise" or "yield" (see stream).
function Pool:imap(fn, iterable, opts)
  return stream(self, fn, iterable, opts, "imap", false, true, IMAP_OPTIONS, 2)
end

--- pool:imap_unordered(fn, iterable, [opts]) -> iterator of (index, result)
-- in completion order (index: the item's position in the iterable).
function Pool:imap_unordered(fn, iterable, opts)
  return stream(self, fn, iterable, opts, "imap_unordered", false, false, IMAP_OPTIONS, 2)
end

--- pool:shutdown{wait=true, cancel_pending=false}
function Pool:shutdown(opts)
  opts = opts or {}
  if type(opts) ~= "table" then argerr("shutdown", ("options table expected, got %s"):format(type(opts))) end
  check_keys(opts, {"wait", "cancel_pending"}, "shutdown")
  if opts.cancel_pending then impl_of(self):terminate() else impl_of(self):close() end
  if opts.wait ~= false then impl_of(self):join() end
end

function Pool:close() return impl_of(self):close() end
function Pool:join(timeout) return impl_of(self):join(timeout) end
function Pool:terminate() return impl_of(self):terminate() end
function Pool:stats() return impl_of(self):stats() end

-- Leaving a `<close>` scope closes the pool and waits for its queue. When
-- the scope is left by Ctrl-C (an `interrupted` error), the pool is
-- terminated instead: the user asked the work to stop, and waiting for it
-- would make Ctrl-C hang where Python's `with` executor does. (Past the
-- message handler of the program's top level, `err` is the traceback
-- string, so the worker is asked what it was.)
function Pool:__close(err)
  if err ~= nil and (skein.is_error(err, "interrupted") or core._interrupting()) then
    impl_of(self):terminate()
  elseif not impl_of(self):stats().closed then
    impl_of(self):close()
  end
  impl_of(self):join()
end

--- future:on_done(fn): runs fn(future) in this worker once the future has
-- finished (at once if it has). A callback that fails is reported like any
-- task that fails unjoined.
function skein._on_done(fut, fn)
  if not is_callable(fn) then error("bad argument #1 to 'on_done' (function expected)", 2) end
  return skein.spawn(function()
    fut:wait()
    fn(fut)
  end)
end
local future_methods = core._methods("skein.Future")
function future_methods.on_done(fut, fn) return skein._on_done(fut, fn) end

--- skein.pool{kind=, size=, init=, init_args=, max_tasks=, timeout=, retries=, name=}
return function(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("bad argument #1 to 'pool' (options table expected)", 2) end
  check_keys(opts, {"kind", "size", "init", "init_args", "max_tasks", "timeout", "retries", "name"}, "pool")
  local kind = opts.kind or "thread"
  if kind ~= "coroutine" and kind ~= "thread" and kind ~= "process" then
    error(("bad argument #1 to 'pool' (kind must be \"coroutine\", \"thread\" or \"process\", got %s)"):format(tostring(kind)), 2)
  end
  local size = opts.size or (kind == "coroutine" and 100 or core.cpu_count())
  if math_type(size) ~= "integer" or size < 1 then
    error("bad argument #1 to 'pool' (size must be a positive integer)", 2)
  end
  local most = kind == "thread" and 4096 or kind == "process" and 1024 or nil
  if most and size > most then
    error(("bad argument #1 to 'pool' (size of a %s pool must be at most %d, got %d)"):format(kind, most, size), 2)
  end
  local max_tasks = opts.max_tasks
  if max_tasks ~= nil and (math_type(max_tasks) ~= "integer" or max_tasks < 1) then
    error("bad argument #1 to 'pool' (max_tasks must be a positive integer)", 2)
  end
  local timeout = check_timeout(opts.timeout, "pool")
  if opts.init ~= nil and type(opts.init) ~= "function" then
    error("bad argument #1 to 'pool' (init must be a function)", 2)
  end
  if opts.init_args ~= nil and type(opts.init_args) ~= "table" then
    error("bad argument #1 to 'pool' (init_args must be a table)", 2)
  end
  local retries = opts.retries or 0
  if math_type(retries) ~= "integer" or retries < 0 then
    error("bad argument #1 to 'pool' (retries must be a non-negative integer)", 2)
  end
  local name = opts.name or (kind .. "-pool")
  if type(name) ~= "string" then error("bad argument #1 to 'pool' (name must be a string)", 2) end
  local impl
  if kind == "coroutine" then
    impl = setmetatable({size = size, free = size, waiters = {}, granted = {}, tasks = setmetatable({}, {__mode = "k"}),
                         closed = false, stats_ = {busy = 0, queued = 0, done = 0, failed = 0, restarted = 0, submitted = 0}}, CoPool)
    if opts.init then opts.init(unpack(opts.init_args or {})) end
  else
    local init_args = opts.init_args or {}
    local function ctor(...)
      if kind == "process" then return core._processpool(size, max_tasks, retries, name, ...) end
      return core._threadpool(size, max_tasks, name, ...)
    end
    if opts.init then
      impl = ctor(opts.init, unpack(init_args, 1, init_args.n or #init_args))
    else
      impl = ctor()
    end
  end
  local pool = {kind = kind, size = size, name = name, timeout = timeout, retries = retries}
  if kind ~= "coroutine" then
    local door, over, alive = skein.queue(), skein.event(), skein.lock()
    pool.door, pool.over, pool.alive = door, over, alive
    -- Taken for good: a lock is given back only when its holder's process
    -- is gone, which is what tells remote callers that the owner died.
    alive:acquire()
    local ref = {name = name, impl = impl}
    skein.spawn{daemon = true, fn = serve_door, args = {door, over, ref}}
    owner_refs[pool] = ref
  end
  owned[pool] = impl
  return setmetatable(pool, Pool)
end
