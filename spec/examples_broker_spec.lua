-- Runs examples/broker/taskmaster.lua as a user would: a redis-server
-- (started here on a free loopback port, AOF off, killed in teardown; a
-- missing redis-server fails the spec), two `skein worker` processes serving
-- examples/broker/tasks.lua, then the master, whose 10 results must be the
-- squares of the 10 tasks it put, computed by both workers. The workers then
-- drain on SIGTERM and exit 0. Then stock.lua sells a stock kept in that
-- Redis from a process pool. Every wait is bounded.
local skein = require "skein"
local cli = require "spec.support.cli"
local redis = require "spec.support.redis"

local q = cli.q
local here = os.getenv("PWD") or io.popen("pwd"):read("l")

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

local eventually = redis.eventually

local tmp, url, rpid
local started = {}   -- every worker pid, killed in teardown if still there

local function start_redis()
  local _
  _, url, rpid = redis.start(tmp)
end

-- `skein worker --broker URL --queue squares --tasks examples/broker/tasks.lua`
-- in the background, under `timeout`: returns {pid=, rcfile=, log=} once its
-- log says it serves the pool.
local function start_worker(n)
  local log, pidf, rcf = tmp .. "/w" .. n .. ".log", tmp .. "/w" .. n .. ".pid", tmp .. "/w" .. n .. ".rc"
  local cmd = table.concat({ q(cli.bin), "worker", "--broker", q(url), "--queue", "squares",
                             "--tasks", q(here .. "/examples/broker/tasks.lua") }, " ")
  os.execute(("sh -c %s >/dev/null 2>&1 &"):format(q(("timeout -k 2 60 %s >%s 2>&1 & echo $! >%s; wait $!; echo $? >%s")
    :format(cmd, q(log), q(pidf), q(rcf)))))
  assert(eventually(5, function() return tonumber(cli.read(pidf) or "") ~= nil end))
  -- The pid is timeout's: signals go to its child, the worker itself.
  local tpid = tonumber(cli.read(pidf))
  local pid
  assert(eventually(5, function()
    pid = tonumber(sh("pgrep -P " .. tpid):match("%d+"))
    return pid ~= nil
  end))
  started[#started + 1] = pid
  assert(eventually(10, function() return (cli.read(log) or ""):find("serving pool", 1, true) end),
    "the worker did not start: " .. (cli.read(log) or ""))
  return { pid = pid, rcfile = rcf, log = log }
end

local function wait_exit(w, secs)
  assert(eventually(secs, function() return (cli.read(w.rcfile) or "") ~= "" end),
    "the worker did not exit; its log:\n" .. (cli.read(w.log) or ""))
  return tonumber(cli.read(w.rcfile))
end

-- Checks one run of the master: 10 tasks put, then their 10 squares in
-- order, each from one of `workers`; returns how many distinct workers ran them.
local function check_run(r, workers)
  assert.equal(0, r.code, r.err)
  -- Nothing on stderr: closing the broker ends its result reader quietly.
  assert.equal("", r.err)
  local lines = cli.lines(r.out)
  assert.equal(22, #lines, r.out)
  local ns = {}
  for i = 1, 10 do ns[i] = tonumber(lines[i]:match("^Put task (%d+)$")) end
  assert.equal("Try get result...", lines[11])
  local pids, npids = {}, 0
  for i = 1, 10 do
    local a, b, sq, pid = lines[11 + i]:match("^Result: (%d+) %* (%d+) = (%d+) %(worker pid (%d+)%)$")
    assert.is_not_nil(a, lines[11 + i])
    assert.equal(ns[i], tonumber(a))
    assert.equal(ns[i], tonumber(b))
    assert.equal(ns[i] * ns[i], tonumber(sq))
    pid = tonumber(pid)
    assert.is_true(pid == workers[1].pid or pid == workers[2].pid, "a result from pid " .. pid)
    if not pids[pid] then pids[pid], npids = true, npids + 1 end
  end
  assert.equal("master exit.", lines[22])
  return npids
end

describe("examples/broker", function()
  setup(function()
    tmp = cli.tmpdir()
    start_redis()
  end)

  teardown(function()
    for _, pid in ipairs(started) do os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    if rpid then os.execute("kill -9 " .. rpid .. " 2>/dev/null") end
    cli.cleanup()
  end)

  it("taskmaster.lua: 10 tasks squared by two skein workers, which drain on SIGTERM", function()
    local workers = { start_worker(1), start_worker(2) }
    -- The URL as the argument: both workers take part.
    local r = cli.run({"examples/broker/taskmaster.lua", url}, {timeout = 30, env = {SKEIN_REDIS = false}})
    assert.equal(2, check_run(r, workers))
    -- The URL from $SKEIN_REDIS.
    r = cli.run({"examples/broker/taskmaster.lua"}, {timeout = 30, env = {SKEIN_REDIS = url}})
    check_run(r, workers)
    for _, w in ipairs(workers) do os.execute("kill -TERM " .. w.pid) end
    for _, w in ipairs(workers) do
      assert.equal(0, wait_exit(w, 15))
      assert.matches("drained", cli.read(w.log))
    end
  end)

  it("stock.lua: 10 buyers in a process pool sell a Redis stock of 100 under WATCH/MULTI/EXEC", function()
    local r = cli.run({"examples/broker/stock.lua", url}, {timeout = 60, env = {SKEIN_REDIS = false}})
    assert.equal(0, r.code, r.err)
    assert.equal("", r.err)
    local lines = cli.lines(r.out)
    assert.equal(2, #lines, r.out)
    assert.equal("sold 100 of 100, 0 left in Redis", lines[1])
    assert.matches("^%d+ transactions were retried after another buyer's sale$", lines[2])
  end)
end)
