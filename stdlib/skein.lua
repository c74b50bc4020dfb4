--- skein: the public module. The C core (lua/skein.c) passes its table in;
-- this file adds the combinators written in Lua and returns the module.
local core = ...

local M = {}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" then M[k] = v end
end

local waitset, now, new_error = core._waitset, core.now, core.error
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

local function check_list(list, fname)
  if type(list) ~= "table" then
    error(("bad argument #1 to '%s' (list of tasks expected, got %s)"):format(fname, type(list)), 3)
  end
end

--- skein.wait(list, {timeout=, mode="all"|"first"|"first_error"}) -> done, pending
-- Waits for the tasks in `list`; `done` and `pending` keep the list's order.
function M.wait(list, opts)
  check_list(list, "wait")
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'wait' (options table expected)", 2)
  end
  opts = opts or {}
  local mode = opts.mode or "all"
  if mode ~= "all" and mode ~= "first" and mode ~= "first_error" then
    error(("bad argument #2 to 'wait' (mode must be \"all\", \"first\" or \"first_error\", got %s)"):format(tostring(mode)), 2)
  end
  local deadline = deadline_of(opts.timeout, "wait")
  local ws <close> = waitset(list)
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
-- results[i] is the first value returned by list[i]. Raises the first error
-- (in the order the tasks finish), or `timeout`.
function M.gather(list, timeout)
  check_list(list, "gather")
  local deadline = deadline_of(timeout, "gather")
  local ws <close> = waitset(list)
  for _ = 1, #list do
    local i = ws:next(left(deadline))
    if not i then fail("timeout", ("gather timed out after %g s"):format(timeout)) end
    if list[i]:status() ~= "done" then list[i]:join() end
  end
  local results = {}
  for i = 1, #list do results[i] = (list[i]:join()) end
  return results
end

--- skein.as_completed(list, [timeout]) -> iterator over tasks as they finish
-- Raises `timeout` from the loop when the deadline passes first.
function M.as_completed(list, timeout)
  check_list(list, "as_completed")
  local deadline = deadline_of(timeout, "as_completed")
  local ws = waitset(list)
  local function iter()
    local i, why = ws:next(left(deadline))
    if i then return list[i] end
    ws:close()
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

return M
