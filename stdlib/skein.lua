--- skein: the public module. The C core (runtime/embed/module.c) passes its table in;
-- this file adds the combinators written in Lua and returns the module.
local core = ...

local M = {}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" then M[k] = v end
end

local waitset, now, new_error, spawn, is_task = core._waitset, core.now, core.error, core.spawn, core._is_task
local type, error = type, error

local function fail(kind, msg, level)
  error(new_error(kind, msg), level and level + 1 or 2)
end

--- Checks the `timeout` argument the way the C core does and returns the
-- absolute deadline (nil for none).
local function deadline_of(timeout, fname)
  if timeout == nil then return nil end
  if type(timeout) ~= "number" then
    error(("bad argument to '%s' (timeout must be a number or nil, got %s)"):format(fname, type(timeout)), 3)
  end
  if timeout ~= timeout then error(("bad argument to '%s' (timeout is NaN)"):format(fname), 3) end
  if timeout < 0 then error(("bad argument to '%s' (timeout must not be negative)"):format(fname), 3) end
  if timeout == math.huge then return nil end
  return now() + timeout
end

local function left(deadline)
  if not deadline then return nil end
  local r = deadline - now()
  return r > 0 and r or 0
end

local FUTURE_MT_NAME = "skein.Future"

--- Checks `list` (tasks and futures) and returns a wait set over tasks
-- that finish with them, and what to close when done. A future of a
-- coroutine pool is its task (__waitable); a thread or process pool's
-- future gets a daemon helper task that waits for it. `level`: the caller
-- to blame, as in error(), counted from the function calling this one.
local function waitables(list, fname, level)
  level = level + 1
  if type(list) ~= "table" then
    error(("bad argument #1 to '%s' (list of tasks or futures expected, got %s)"):format(fname, type(list)), level)
  end
  local tasks, helpers = nil, nil
  for i = 1, #list do
    local v = list[i]
    if not is_task(v) then
      local mt = getmetatable(v)
      local w = type(mt) == "table" and mt.__waitable or nil
      local t
      if w then
        t = w(v)
      elseif type(mt) == "table" and mt.__name == FUTURE_MT_NAME then
        t = spawn{fn = function() v:wait() end, daemon = true, name = "skein.wait helper"}
        helpers = helpers or {}
        helpers[#helpers + 1] = t
      else
        error(("bad argument #1 to '%s' (item %d of the list is not a task or a future, got %s)"):format(
          fname, i, type(v)), level)
      end
      if not tasks then tasks = table.move(list, 1, i - 1, 1, {}) end
      tasks[i] = t
    elseif tasks then
      tasks[i] = v
    end
  end
  local ws = waitset(tasks or list)
  if not helpers then return ws end
  -- Closing the set also ends its helpers, so none outlives the wait.
  return setmetatable({}, {
    __index = {next = function(_, t) return ws:next(t) end},
    __close = function()
      ws:close()
      for _, h in ipairs(helpers) do h:cancel() end
    end,
  })
end

-- The results of a finished task or future (raising its error).
local function results_of(v)
  if is_task(v) then return v:join() end
  return v:get()
end

local function close(ws)
  local mt = getmetatable(ws)
  if mt and mt.__close and type(ws) == "table" then mt.__close(ws) else ws:close() end
end

local WAIT_OPTIONS = {timeout = true, mode = true}

--- skein.wait(list, {timeout=, mode="all"|"first"|"first_error"}) -> done, pending
-- Waits for the tasks and futures in `list`; `done` and `pending` keep the
-- list's order.
function M.wait(list, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to 'wait' (options table expected, got %s)"):format(type(opts)), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not WAIT_OPTIONS[k] then
      error(("bad argument #2 to 'wait' (unknown option %s (options: timeout, mode))"):format(
        type(k) == "string" and ("'" .. k .. "'") or ("of type " .. type(k))), 2)
    end
  end
  local mode = opts.mode or "all"
  if mode ~= "all" and mode ~= "first" and mode ~= "first_error" then
    error(("bad argument #2 to 'wait' (mode must be \"all\", \"first\" or \"first_error\", got %s)"):format(tostring(mode)), 2)
  end
  local deadline = deadline_of(opts.timeout, "wait")
  local ws <close> = waitables(list, "wait", 2)
  local finished = {}
  while true do
    local i = ws:next(left(deadline))
    if not i then break end
    finished[i] = true
    local st = list[i]:status()
    if mode == "first" or (mode == "first_error" and (st == "failed" or st == "cancelled")) then
      -- Also take whatever finished at the same moment, without waiting.
      while true do
        local j = ws:next(0)
        if not j then break end
        finished[j] = true
      end
      break
    end
  end
  local done, pending = {}, {}
  for i = 1, #list do
    local t = list[i]
    if finished[i] then done[#done + 1] = t else pending[#pending + 1] = t end
  end
  return done, pending
end

--- skein.gather(list, [timeout]) -> results
-- results[i] is the first value returned by list[i] (a task or a future).
-- Raises the first error (in the order they finish), or `timeout`.
function M.gather(list, timeout)
  local deadline = deadline_of(timeout, "gather")
  local ws <close> = waitables(list, "gather", 2)
  for _ = 1, #list do
    local i = ws:next(left(deadline))
    if not i then fail("timeout", ("gather timed out after %g s"):format(timeout)) end
    if list[i]:status() ~= "done" then results_of(list[i]) end
  end
  local results = {}
  for i = 1, #list do results[i] = (results_of(list[i])) end
  return results
end

--- skein.as_completed(list, [timeout]) -> iterator over the tasks and
-- futures of `list` as they finish. Raises `timeout` from the loop when the
-- deadline passes first.
function M.as_completed(list, timeout)
  local deadline = deadline_of(timeout, "as_completed")
  local ws = waitables(list, "as_completed", 2)
  local function iter()
    local i, why = ws:next(left(deadline))
    if i then return list[i] end
    close(ws)
    if why == "timeout" then fail("timeout", ("as_completed timed out after %g s"):format(timeout)) end
    return nil
  end
  return iter, nil, nil, ws
end

-- For pools' map in every worker (stdlib/skein/pool.lua's run_packed).
M._encode_range, M._decode_into = core._encode_range, core._decode_into
M._decode_list, M._list = core._decode_list, core._list

--- skein.pool{kind=, size=, ...} -> pool (stdlib/skein/pool.lua)
M.pool = core._module("skein.pool")(M, core)
core._module("skein.rpc")(M, core)
core._module("skein.net")(M, core)
core._module("skein.httpc")(M, core)
core._module("skein.httpd")(M, core)
--- skein.service(factory, ...) -> proxy (stdlib/skein/service.lua), loaded on
-- first use. The proxy's metatable is registered in every worker now, so a
-- proxy crosses to any worker; its metamethods load the module when first
-- used there, which replaces them with its own.
local service_mt, service_fn = {__name = "skein.Service"}, nil
local function service_module()
  if not service_fn then service_fn = core._module("skein.service")(M, core, service_mt) end
  return service_fn
end
for _, ev in ipairs{"__index", "__tostring", "__close"} do
  service_mt[ev] = function(...)
    service_module()
    return service_mt[ev](...)
  end
end
M.register_metatable("skein.Service", service_mt)
function M.service(...) return service_module()(...) end

--- skein.broker(url, [opts]) (stdlib/skein/broker.lua), loaded on first use.
local broker_mod
local function broker_module()
  if not broker_mod then broker_mod = core._module("skein.broker")(M, core) end
  return broker_mod
end
M.broker = setmetatable({}, {
  __call = function(_, ...) return broker_module().open(...) end,
  __index = function(_, k) return broker_module()[k] end,
})

return M
