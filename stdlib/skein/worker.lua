--- `skein worker`: serves the named functions of a tasks file to a broker
-- pool (stdlib/skein/broker.lua has the keys). runtime/cli/main.c calls
-- require("skein.worker").run(args, terminating) with the command's arguments and a function that
-- says whether SIGTERM arrived.
--
-- Delivery is at least once. A task is read with XREADGROUP under a stable
-- consumer name (--name, or hostname:pid), so it stays pending under that
-- name until the worker acknowledges it; while it runs, its lease is
-- renewed (one task renews every running entry's lease each lease/3:
-- XCLAIM ... JUSTID resets their idle time). An entry idle for longer
-- than the lease belongs to a dead worker: any worker takes it over
-- (XAUTOCLAIM), which counts a delivery. A worker that starts takes back
-- its own pending entries first (a restart under the same name). A task
-- whose deliveries (Redis's count plus the failed runs it was requeued
-- after) reach `retries` goes to the dead-letter list with its last error.
-- The result is stored once per task id (SET NX): a second run of the same
-- task (its worker died after it finished) cannot replace it, and a task
-- whose result exists is acknowledged without running again (looked up on
-- a redelivery only: storing the result and acknowledging the entry are one
-- script, so an entry delivered for the first time has no result yet).
--
-- Per task, on the critical path: the XREADGROUP that brings it and the
-- script (EVALSHA) that stores its result and acknowledges it; one read
-- brings the free slots' entries and up to --prefetch more, which wait here
-- (pending under this worker's name, their leases renewed) and start as
-- slots free. A slot of --concurrency is free again as soon as the task's
-- function returns, so the next entry is read while the last one's script
-- is still in flight.
--
-- SIGTERM drains: the loop takes nothing new, running tasks and those read
-- ahead finish, and run returns 0.
local skein = require "skein"
local bk = skein.broker

local type, tostring, tonumber, pcall, xpcall, ipairs, pairs = type, tostring, tonumber, pcall, xpcall, ipairs, pairs
local spawn, sleep, now = skein.spawn, skein.sleep, skein.now
local encode, decode, fields = bk.encode, bk.decode, bk.fields

local M = {}

local usage = "usage: skein worker --broker URL --tasks tasks.lua [--queue NAME] [--concurrency N]"
  .. " [--prefetch N] [--kind coroutine|thread|process] [--name NAME] [--prefix P] [--timeout SECONDS]"

local function parse(args)
  local o = {queue = "default", concurrency = 1, kind = "coroutine"}
  local i = 1
  while i <= #args do
    local a = args[i]
    local k, v = a:match("^%-%-([%w_-]+)=(.*)$")
    if not k then
      k = a:match("^%-%-([%w_-]+)$")
      if not k then return nil, ("unexpected argument '%s'"):format(a) end
      v = args[i + 1]
      if v == nil then return nil, ("option --%s needs a value"):format(k) end
      i = i + 1
    end
    if k == "broker" or k == "tasks" or k == "queue" or k == "kind" or k == "name" or k == "prefix" then
      o[k] = v
    elseif k == "timeout" then
      o.timeout = tonumber(v)
      if not o.timeout or o.timeout <= 0 then return nil, "--timeout needs a positive number of seconds" end
    elseif k == "concurrency" then
      o.concurrency = tonumber(v)
      if not o.concurrency or o.concurrency < 1 or o.concurrency % 1 ~= 0 then
        return nil, "--concurrency needs a positive integer"
      end
    elseif k == "prefetch" then
      o.prefetch = tonumber(v)
      if not o.prefetch or o.prefetch < 0 or o.prefetch % 1 ~= 0 then
        return nil, "--prefetch needs a non-negative integer"
      end
    else
      return nil, ("unknown option --%s"):format(k)
    end
    i = i + 1
  end
  if not o.broker then return nil, "--broker URL is required" end
  o.prefetch = o.prefetch or 4 * o.concurrency
  if not o.tasks then return nil, "--tasks FILE is required" end
  if o.kind ~= "coroutine" and o.kind ~= "thread" and o.kind ~= "process" then
    return nil, "--kind must be coroutine, thread or process"
  end
  return o
end

local function log(o, fmt, ...)
  io.stderr:write(("skein worker %s: " .. fmt .. "\n"):format(o.name, ...))
end

-- An error as the text stored for it. A local pool's "remote" error
-- (kinds thread and process) is the task's own error inside.
local function errtext(e)
  if type(e) == "table" and e.kind == "remote" and e.value ~= nil then return errtext(e.value) end
  if type(e) == "table" and e.message then
    return (e.kind and (e.kind .. ": ") or "") .. tostring(e.message)
  end
  return tostring(e)
end

--- Runs the worker; returns the exit status.
function M.run(args, terminating)
  local o, why = parse(args)
  if not o then
    io.stderr:write("skein worker: " .. why .. "\n" .. usage .. "\n")
    return 2
  end
  local tasks_ok, tasks = pcall(dofile, o.tasks)
  if not tasks_ok or type(tasks) ~= "table" then
    io.stderr:write(("skein worker: %s must return a table of functions: %s\n"):format(
      o.tasks, tasks_ok and ("it returned a " .. type(tasks)) or errtext(tasks)))
    return 1
  end
  local b = bk(o.broker, {prefix = o.prefix, name = o.name, timeout = o.timeout})
  o.name = b.name
  local k = bk.keys.pool(b.prefix, o.queue)
  local c = b._conn
  -- running: tasks whose function runs (at most o.concurrency);
  -- inflight: tasks not yet acknowledged (running, or storing the result).
  local running, inflight, draining = 0, 0, false
  local cfg = {retries = 3, lease = 30, result_ttl = 86400}

  local function read_cfg()
    local h = c:call("HGETALL", k.cfg)
    for i = 1, #h, 2 do
      local v = tonumber(h[i + 1])
      if v and cfg[h[i]] then cfg[h[i]] = v end
    end
  end

  -- How a task's function runs: here, or in a local pool of threads or
  -- processes (the function is found by name there from the same file;
  -- local workers may share code, only the network never carries it).
  local runner
  if o.kind == "coroutine" then
    runner = function(name, ...) return tasks[name](...) end
  else
    local path = o.tasks
    local pool = skein.pool{kind = o.kind, size = o.concurrency}
    runner = function(name, ...)
      return pool:submit(function(p, n, ...)
        _G.__skein_worker_tasks = _G.__skein_worker_tasks or dofile(p)
        return _G.__skein_worker_tasks[n](...)
      end, path, name, ...):get()
    end
  end

  -- The end of a delivery, one Redis script (atomic: a client that
  -- sees the result also sees the counters, and a crash leaves either all
  -- of it or none). The client's notification carries the result kept
  -- ("<id>\n<result>"). KEYS: stream, result, stats, err, reply list (or
  -- ""), [dead task, dead list]; ARGV: entry id, task id, result, ttl,
  -- "done" | "dead", [dead record, failed count].
  local FINISH = [[
local set = redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[4])
local kept = ARGV[3]
if not set then kept = redis.call('GET', KEYS[2]) or ARGV[3] end
if KEYS[5] ~= '' then
  redis.call('RPUSH', KEYS[5], ARGV[2] .. '\n' .. kept)
  redis.call('EXPIRE', KEYS[5], ARGV[4])
end
redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
redis.call('HDEL', KEYS[4], ARGV[2])
if ARGV[5] == 'dead' then
  redis.call('SET', KEYS[6], ARGV[6])
  redis.call('LREM', KEYS[7], 0, ARGV[2])
  redis.call('RPUSH', KEYS[7], ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'failed', tonumber(ARGV[7]))
end
redis.call('XACK', KEYS[1], 'w', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if set then return 1 end
return 0
]]
  -- A failed run with tries left: back on the stream as a new entry.
  -- KEYS: stream, stats, err; ARGV: entry id, task id, error, then the
  -- new entry's fields.
  local RETRY = [[
redis.call('HINCRBY', KEYS[2], 'failed', 1)
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'task', ARGV[4], 'args', ARGV[5],
           'reply', ARGV[6], 'tries', ARGV[7])
redis.call('XACK', KEYS[1], 'w', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
]]

  local function ttl() return math.floor(cfg.result_ttl) end

  -- A script runs by its digest (EVALSHA, loaded once with SCRIPT LOAD); a
  -- Redis that lost its script cache (restarted) gets the body again with
  -- EVAL, which caches it anew. A NOSCRIPT reply means nothing ran, so
  -- sending the body then runs the script once.
  local digests = {}
  local function run_script(body, nkeys, ...)
    local sha = digests[body]
    if not sha then
      sha = c:call("SCRIPT", "LOAD", body)
      digests[body] = sha
    end
    local ok, r = pcall(c.call, c, "EVALSHA", sha, nkeys, ...)
    if ok then return r end
    if type(r) == "table" and r.code == "redis" and tostring(r.message):find("NOSCRIPT", 1, true) then
      return c:call("EVAL", body, nkeys, ...)
    end
    error(r, 0)
  end

  -- Done with entry `eid` without a new result (one is stored already).
  local function finish_entry(eid)
    c:call("XACK", k.stream, "w", eid)
    c:call("XDEL", k.stream, eid)
  end

  local function complete(eid, f, result)
    run_script(FINISH, 5, k.stream, bk.keys.result(b.prefix, f.id), k.stats, k.err, f.reply or "",
               eid, f.id, result, ttl(), "done")
  end

  -- `failed_now`: this delivery ran and failed (counted as failed too).
  local function dead_letter(eid, f, err, deliveries, failed_now)
    local rec = encode({pool = o.queue, task = f.task, args = f.args, reply = f.reply,
                        error = err, deliveries = deliveries})
    run_script(FINISH, 7, k.stream, bk.keys.result(b.prefix, f.id), k.stats, k.err, f.reply or "",
               bk.keys.deadtask(b.prefix, f.id), k.dead,
               eid, f.id, encode({ok = false, err = err, dead = true}), ttl(), "dead", rec,
               failed_now and 1 or 0)
    log(o, "task %s (%s) dead-lettered after %d deliveries: %s", f.id, tostring(f.task), deliveries, err)
  end

  -- Entries whose function runs now (entry id -> true), and how many: one
  -- task renews all their leases every lease/3 (XCLAIM ... JUSTID resets
  -- their idle time), so a task that runs longer than its lease is not
  -- presumed dead. It looks at least every half second, so a lease read
  -- later (the pool's options, read at start and every 2 s) applies at
  -- once. An entry joins when it is read (within a lease of its delivery)
  -- and leaves when its function returns.
  local held, nheld = {}, 0
  local function hold(eid)
    if not held[eid] then
      held[eid] = true
      nheld = nheld + 1
    end
  end
  local function unhold(eid)
    if held[eid] then
      held[eid] = nil
      nheld = nheld - 1
    end
  end
  local renewer = spawn{daemon = true, fn = function()
    local last = now()
    while true do
      sleep(math.min(cfg.lease / 3, 0.5))
      local t = now()
      if t - last >= cfg.lease / 3 and nheld > 0 then
        last = t
        local ids = {}
        for eid in pairs(held) do ids[#ids + 1] = eid end
        ids[#ids + 1] = "JUSTID"
        pcall(c.call, c, "XCLAIM", k.stream, "w", o.name, 0, table.unpack(ids))
      end
    end
  end}

  -- Set when a slot frees or a task is acknowledged: the loop waits on it
  -- while every slot is taken, and while draining.
  local freed = skein.event()

  -- Entries read ahead of a free slot (up to --prefetch of them), in the
  -- order read: {entry id, fields, deliveries}. They are this worker's
  -- (pending under its name, their leases renewed) and start as slots
  -- free; a drain runs them too.
  local ahead, ahead_head, ahead_tail = {}, 1, 0
  local pump

  -- A slot of --concurrency, given back once (when the task's function
  -- returned, or at the end of its entry, whichever comes first); the
  -- next entry read ahead starts at once.
  local function free_slot(slot)
    if slot.held then
      slot.held = false
      running = running - 1
      freed:set()
      pump()
    end
  end

  local function invoke(f)
    return table.pack(runner(f.task, decode(f.args)))
  end

  -- Runs one entry; `deliveries` is Redis's delivery count for it.
  local function handle(eid, f, deliveries, slot)
    local tries = tonumber(f.tries) or 0
    local total = tries + deliveries
    if total > 1 and c:call("EXISTS", bk.keys.result(b.prefix, f.id)) == 1 then
      -- It ran to the end before (its worker died before acknowledging).
      finish_entry(eid)
      return
    end
    if total > cfg.retries then
      local last = c:call("HGET", k.err, f.id) or "its worker died while running it"
      dead_letter(eid, f, last, total - 1, false)
      return
    end
    local fn = tasks[f.task]
    local ok, res
    if type(fn) ~= "function" then
      ok, res = false, ("no task named '%s' in %s"):format(tostring(f.task), o.tasks)
    else
      ok, res = pcall(invoke, f)
      unhold(eid)
      free_slot(slot)
      if ok then
        local eok, enc = pcall(encode, {ok = true, n = res.n, table.unpack(res, 1, res.n)})
        if eok then
          complete(eid, f, enc)
          return
        end
        ok, res = false, "its result cannot travel: " .. errtext(enc)
      else
        res = errtext(res)
      end
    end
    -- Failed: dead-letter, or back on the stream with one more try.
    if total >= cfg.retries then
      dead_letter(eid, f, res, total, true)
      return
    end
    run_script(RETRY, 3, k.stream, k.stats, k.err, eid, f.id, res, f.task, f.args, f.reply or "",
               tries + 1)
  end

  local function start(eid, f, deliveries)
    running = running + 1
    inflight = inflight + 1
    local slot = {held = true}
    spawn(function()
      local ok, e = pcall(handle, eid, f, deliveries, slot)
      if not ok then log(o, "task entry %s: %s", eid, errtext(e)) end
      unhold(eid)
      free_slot(slot)
      inflight = inflight - 1
      freed:set()
    end)
  end

  local function nahead() return ahead_tail - ahead_head + 1 end

  -- Starts entries read ahead while slots are free.
  pump = function()
    while running < o.concurrency and ahead_head <= ahead_tail do
      local a = ahead[ahead_head]
      ahead[ahead_head] = nil
      ahead_head = ahead_head + 1
      start(a[1], a[2], a[3])
    end
  end

  -- Entries as XCLAIM/XAUTOCLAIM/XREADGROUP give them: {id, fields} or a
  -- deleted entry (false fields), which is only acknowledged. They join
  -- the entries read ahead, and those start as slots allow.
  local function start_entries(entries, count_of)
    for _, e in ipairs(entries or {}) do
      local f = type(e) == "table" and fields(e)
      if f and f.id then
        hold(e[1])
        ahead_tail = ahead_tail + 1
        ahead[ahead_tail] = {e[1], f, count_of(e[1])}
      elseif type(e) == "table" and e[1] then
        pcall(c.call, c, "XACK", k.stream, "w", e[1])
      end
    end
    pump()
  end

  local function deliveries_of(eid)
    local r = c:call("XPENDING", k.stream, "w", eid, eid, 1)
    return r and r[1] and tonumber(r[1][4]) or 1
  end
  local function first_delivery() return 1 end

  -- Start: the group, the options, then this worker's own pending entries.
  -- A Redis that is not up yet is waited for (SIGTERM meanwhile: exit 0).
  while true do
    local ok, e = pcall(function()
      b:_ensure_group(k.stream, "w")
      read_cfg()
    end)
    if ok then break end
    if type(e) ~= "table" or (e.kind ~= "broker" and e.kind ~= "timeout") then error(e, 0) end
    log(o, "waiting for Redis: %s", errtext(e))
    for _ = 1, 20 do
      if terminating() then
        renewer:cancel()
        b:close()
        return 0
      end
      sleep(0.05)
    end
  end
  do
    local own = c:call("XPENDING", k.stream, "w", "-", "+", 1000, o.name)
    local ids = {}
    for _, row in ipairs(own or {}) do ids[#ids + 1] = row[1] end
    if #ids > 0 then
      local claimed = c:call("XCLAIM", k.stream, "w", o.name, 0, table.unpack(ids))
      log(o, "recovering %d pending task(s)", #ids)
      start_entries(claimed, deliveries_of)
    end
  end
  log(o, "serving pool '%s' (%s, concurrency %d, prefetch %d)", o.queue, o.kind, o.concurrency, o.prefetch)

  local last_beat, last_claim = -1e9, now()
  while true do
    if not draining and terminating() then
      draining = true
      log(o, "draining: %d task(s) running, %d read ahead", inflight, nahead())
    end
    if draining and inflight == 0 and nahead() == 0 then break end
    local t = now()
    if t - last_beat >= 2 then
      last_beat = t
      pcall(c.call, c, "ZADD", k.workers, os.time(), o.name)
      pcall(read_cfg)
    end
    pump()
    local free = o.concurrency - running
    -- Entries to read: the free slots plus --prefetch read ahead.
    local room = free + o.prefetch - nahead()
    if draining or room <= 0 then
      freed:clear()
      freed:wait(0.25)
    else
      local ok, e = pcall(function()
        if free > 0 and t - last_claim >= cfg.lease / 2 then
          last_claim = t
          local r = c:call("XAUTOCLAIM", k.stream, "w", o.name, math.floor(cfg.lease * 1000), "0-0",
                           "COUNT", room)
          if r and r[2] and #r[2] > 0 then
            start_entries(r[2], deliveries_of)
            return
          end
        end
        if free > 0 then
          -- Nothing read ahead (pump started it all): wait for entries.
          local r = b:_block_call(500, "XREADGROUP", "GROUP", "w", o.name, "COUNT", room, "BLOCK", 500,
                                  "STREAMS", k.stream, ">")
          if type(r) == "table" and r[1] then
            start_entries(r[1][2], first_delivery)
          end
          return
        end
        -- Every slot busy: read ahead what is there now, or wait for a slot.
        local r = c:call("XREADGROUP", "GROUP", "w", o.name, "COUNT", room, "STREAMS", k.stream, ">")
        if type(r) == "table" and r[1] and #r[1][2] > 0 then
          start_entries(r[1][2], first_delivery)
          return
        end
        freed:clear()
        freed:wait(0.25)
      end)
      if not ok then
        log(o, "%s", errtext(e))
        if type(e) == "table" and tostring(e.message):find("NOGROUP", 1, true) then
          b._groups[k.stream] = nil
          pcall(b._ensure_group, b, k.stream, "w")
        end
        sleep(0.5)
      end
    end
  end
  renewer:cancel()
  pcall(c.call, c, "ZREM", k.workers, o.name)
  log(o, "drained, exiting")
  b:close()
  return 0
end

return M
