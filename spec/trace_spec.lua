-- Tracing: `skein --trace FILE`, $SKEIN_TRACE and skein.trace.start/stop
-- write one Chrome trace-event JSON file (what Perfetto opens) for a whole
-- process tree. The traces here are read back with a small JSON reader and
-- checked: one pid per process and one named tid per worker, balanced
-- spans, flows from each pool submit to the worker that ran the job (across
-- threads and processes, children of children too), failures and process
-- exits recorded, a valid file after a SIGKILLed worker and after Ctrl-C.
local skein = require "skein"
local cli = require "spec.support.cli"

-- ------------------------------------------------------------ JSON reader

local decode
do
  local esc = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                r = "\r", t = "\t" }
  local function ws(s, i) return s:find("[^ \t\r\n]", i) or #s + 1 end
  local value
  local function str(s, i)        -- s:sub(i, i) == '"'
    local out, j = {}, i + 1
    while true do
      local c = s:sub(j, j)
      if c == "" then error("unterminated string at " .. i) end
      if c == '"' then return table.concat(out), j + 1 end
      if c == "\\" then
        local e = s:sub(j + 1, j + 1)
        if e == "u" then
          out[#out + 1] = utf8.char(tonumber(s:sub(j + 2, j + 5), 16))
          j = j + 6
        else
          out[#out + 1] = assert(esc[e], "bad escape")
          j = j + 2
        end
      else
        out[#out + 1] = c
        j = j + 1
      end
    end
  end
  function value(s, i)
    i = ws(s, i)
    local c = s:sub(i, i)
    if c == "{" then
      local t = {}
      i = ws(s, i + 1)
      if s:sub(i, i) == "}" then return t, i + 1 end
      while true do
        local k
        k, i = str(s, ws(s, i))
        i = ws(s, i)
        assert(s:sub(i, i) == ":", "':' expected at " .. i)
        t[k], i = value(s, i + 1)
        i = ws(s, i)
        local d = s:sub(i, i)
        if d == "}" then return t, i + 1 end
        assert(d == ",", "',' expected at " .. i)
        i = i + 1
      end
    elseif c == "[" then
      local t = {}
      i = ws(s, i + 1)
      if s:sub(i, i) == "]" then return t, i + 1 end
      while true do
        t[#t + 1], i = value(s, i)
        i = ws(s, i)
        local d = s:sub(i, i)
        if d == "]" then return t, i + 1 end
        assert(d == ",", "',' expected at " .. i)
        i = i + 1
      end
    elseif c == '"' then
      return str(s, i)
    elseif s:sub(i, i + 3) == "true" then
      return true, i + 4
    elseif s:sub(i, i + 4) == "false" then
      return false, i + 5
    elseif s:sub(i, i + 3) == "null" then
      return nil, i + 4
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    assert(num and #num > 0, "value expected at " .. i)
    return tonumber(num), i + #num
  end
  -- Strict: the whole text is one JSON value.
  function decode(s)
    local v, i = value(s, 1)
    assert(ws(s, i) > #s, "trailing text at " .. i)
    return v
  end
end

-- The events of a trace file. `strict`: the file must be a complete JSON
-- array; otherwise a missing closing bracket is supplied, as trace viewers do
-- (a process tree whose root was killed).
local function events(path, strict)
  local text = assert(cli.read(path), "no trace file " .. path)
  if not strict and not text:match("%]%s*$") then
    text = text:gsub(",%s*$", "") .. "]"
  end
  local ok, evs = pcall(decode, text)
  assert(ok, "the trace is not valid JSON: " .. tostring(evs))
  return evs
end

-- Checks what every trace must satisfy and returns an index of it.
local function check(evs)
  local t = { pnames = {}, tnames = {}, flows_s = {}, flows_f = {}, by = {} }
  local open = {}
  for _, e in ipairs(evs) do
    assert.is_number(e.pid)
    assert.is_string(e.ph)
    t.by[e.name] = t.by[e.name] or {}
    table.insert(t.by[e.name], e)
    if e.ph == "M" and e.name == "process_name" then
      assert.is_nil(t.pnames[e.pid], "process " .. e.pid .. " named twice")
      t.pnames[e.pid] = e.args.name
    elseif e.ph == "M" and e.name == "thread_name" then
      t.tnames[e.pid .. "/" .. e.tid] = e.args.name
    elseif e.ph == "X" then
      assert.is_true(e.dur >= 0 and e.ts > 0)
    elseif e.ph == "b" then
      local k = e.pid .. "/" .. e.id .. "/" .. e.name
      open[k] = (open[k] or 0) + 1
    elseif e.ph == "e" then
      local k = e.pid .. "/" .. e.id .. "/" .. e.name
      assert.is_true((open[k] or 0) > 0, "an end without a begin: " .. k)
      open[k] = open[k] - 1
    elseif e.ph == "s" then
      assert.is_nil(t.flows_s[e.id], "flow " .. e.id .. " started twice")
      t.flows_s[e.id] = e
    elseif e.ph == "f" then
      assert.is_nil(t.flows_f[e.id], "flow " .. e.id .. " finished twice")
      t.flows_f[e.id] = e
    end
  end
  for k, n in pairs(open) do assert.equal(0, n, "unbalanced wait span " .. k) end
  -- Every worker that recorded is named, and so is its process.
  for _, e in ipairs(evs) do
    if e.ph ~= "M" then
      assert.is_string(t.pnames[e.pid], "process " .. e.pid .. " has no name")
      assert.is_string(t.tnames[e.pid .. "/" .. e.tid],
                       "worker " .. e.pid .. "/" .. tostring(e.tid) .. " has no name")
    end
  end
  -- Every finished flow was started by a submit (inside its span).
  for id, f in pairs(t.flows_f) do
    local s = t.flows_s[id]
    assert.is_table(s, "flow " .. id .. " has no start")
    assert.is_true(s.ts <= f.ts + 1, "flow " .. id .. " ends before it starts")
  end
  t.count = function(name, pred)
    local n = 0
    for _, e in ipairs(t.by[name] or {}) do
      if pred == nil or pred(e) then n = n + 1 end
    end
    return n
  end
  t.pids = {}
  for pid in pairs(t.pnames) do t.pids[#t.pids + 1] = pid end
  return t
end

-- ----------------------------------------------------------------- scripts

local WORKLOAD = [[
local skein = require "skein"
-- tasks and waits
local q = skein.queue()
local a = skein.spawn(function() for i = 1, 3 do q:put(i) skein.sleep(0.005) end end)
local b = skein.spawn(function() for _ = 1, 3 do q:get() end end)
a:join() b:join()
-- a thread pool
local tp = skein.pool{kind = "thread", size = 2, name = "tp"}
local fs = {}
for i = 1, 6 do fs[i] = tp:submit(function(x) skein.sleep(0.002) return x * 2 end, i) end
for i = 1, 6 do assert(fs[i]:get() == i * 2) end
tp:close() tp:join()
-- a process pool, whose first job runs a nested process pool
local pp = skein.pool{kind = "process", size = 2, name = "outer"}
local nested = pp:submit(function()
  local skein = require "skein"
  local inner = skein.pool{kind = "process", size = 1, name = "inner"}
  local r = inner:submit(function(x) return x * 3 end, 7):get()
  inner:close() inner:join()
  return r
end)
assert(nested:get() == 21)
for i = 1, 4 do assert(pp:submit(function(x) return x + 1 end, i):get() == i + 1) end
-- a crash: the worker running this job dies
local crash = pp:submit(function() os.exit(3) end)
assert(not pcall(crash.get, crash))
-- a task that fails
local bad = skein.spawn(function() error("task boom") end)
assert(not pcall(bad.join, bad))
pp:close() pp:join()
print("done")
]]

local function pid_set(t, pred)
  local s = {}
  for _, e in ipairs(t.by.job or {}) do
    if e.ph == "f" and (pred == nil or pred(e)) then s[e.pid] = true end
  end
  return s
end

local function check_workload(t, main_pid)
  -- Processes: the script, the outer pool's workers that ran jobs, the
  -- inner pool's worker (a worker that never ran anything records nothing).
  assert.is_true(#t.pids >= 3, "expected at least 3 processes, got " .. #t.pids)
  local kinds = {}
  for pid, name in pairs(t.pnames) do
    if pid ~= main_pid then kinds[name:match("worker (%a+)%-") or name] = true end
  end
  assert.is_true(kinds.outer and kinds.inner, "worker processes are named by their pool")
  local tname = {}
  for k, v in pairs(t.tnames) do tname[v] = k end
  assert.is_truthy(tname.main)
  assert.is_truthy(tname["pool tp-0 (thread #0)"] or tname["pool tp-1 (thread #1)"])
  -- Task runs and waits on the main worker.
  assert.is_true(t.count("task", function(e) return e.pid == main_pid end) >= 6)
  assert.is_true(t.count("queue get") >= 2 and t.count("sleep") >= 2)
  assert.is_true(t.count("join") >= 2 and t.count("future get") >= 2)
  -- Thread-pool jobs: submitted on the main thread, run on pool threads of
  -- the same process, each linked by a flow.
  local tp_jobs = 0
  for id, f in pairs(t.flows_f) do
    local s = t.flows_s[id]
    if f.pid == main_pid then
      assert.equal(main_pid, s.pid)
      assert.are_not.equal(s.tid, f.tid)
      tp_jobs = tp_jobs + 1
    end
  end
  assert.equal(6, tp_jobs)
  -- Process-pool jobs: submitted by the script, run in a worker process;
  -- the nested job submitted by a worker and run by the inner worker.
  local xproc, nested = 0, 0
  for id, f in pairs(t.flows_f) do
    local s = t.flows_s[id]
    if f.pid ~= main_pid then
      assert.are_not.equal(s.pid, f.pid)
      if s.pid == main_pid then xproc = xproc + 1 else nested = nested + 1 end
    end
  end
  assert.equal(5, xproc)             -- the crashed job never finished
  assert.equal(1, nested)
  -- Each job span is on the worker where its flow ends.
  assert.equal(t.count("job", function(e) return e.ph == "X" end),
               t.count("job", function(e) return e.ph == "f" end))
  -- The crash: the worker's exit with its code, the job's failure.
  assert.is_true(t.count("process exit", function(e) return e.args.code == 3 end) == 1)
  assert.equal(1, t.count("job failed", function(e)
    return e.args.error:match("exited with code 3") ~= nil
  end))
  assert.equal(1, t.count("task failed", function(e)
    return e.args.error:match("task boom") ~= nil
  end))
  assert.is_true(t.count("process start") >= 4)
  -- Counters: the pools' queue and busy workers, live tasks per worker.
  assert.is_true(t.count("tp", function(e)
    return e.ph == "C" and e.args.queued ~= nil and e.args.busy ~= nil
  end) > 0)
  assert.is_true(t.count("outer", function(e) return e.ph == "C" end) > 0)
  assert.is_true(t.count("live tasks", function(e) return e.ph == "C" end) > 0)
end

local function check_events(path)
  local evs = events(path, true)
  check(evs)
  return evs
end

local function main_pid_of(t)
  for pid, name in pairs(t.pnames) do
    if not name:match(" worker ") then return pid end
  end
end

describe("skein --trace", function()
  teardown(cli.cleanup)

  it("records tasks, waits, pools, nested processes and a crash in one file", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/w.lua", WORKLOAD)
    local r = cli.run({ "--trace", d .. "/t.json", script }, { timeout = 60 })
    assert.equal(0, r.code, r.err)
    assert.equal("done\n", r.out)
    local text = cli.read(d .. "/t.json")
    assert.is_truthy(text:match("^%[\n"))
    assert.is_truthy(text:match("%]\n$"), "the parent closes the array")
    local t = check(events(d .. "/t.json", true))
    check_workload(t, main_pid_of(t))
  end)

  it("names the I/O waits: socket read, accept, connect, process wait", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/io.lua", [[
local skein = require "skein"
local srv = skein.net.serve("127.0.0.1", 0, function(s) s:write(s:read("l"), "\n") end)
local t = skein.spawn(function()
  local c = skein.net.connect("127.0.0.1", srv:port())
  skein.sleep(0.05)
  c:write("hi\n")
  local r = c:read("l")
  c:close()
  skein.exec("sleep", {"0.05"}):wait()
  return r
end)
print(t:join())
srv:close()
]])
    local r = cli.run({ "--trace", d .. "/t.json", script }, { timeout = 30 })
    assert.equal(0, r.code, r.err)
    assert.equal("hi\n", r.out)
    local names = {}
    for _, e in ipairs(check_events(d .. "/t.json")) do
      if e.ph == "b" and e.cat == "wait" then names[e.name] = true end
    end
    for _, w in ipairs{"socket read", "accept", "connect", "process wait"} do
      assert.is_true(names[w] == true, "no wait named " .. w)
    end
  end)

  it("is strict JSON for python's json module too", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/w.lua", WORKLOAD)
    local r = cli.run({ "--trace", d .. "/t.json", script }, { timeout = 60 })
    assert.equal(0, r.code, r.err)
    local p = io.popen("timeout 30 python3 -c " .. cli.q(
      "import json,sys; d=json.load(open(sys.argv[1])); print(len(d))") .. " " ..
      cli.q(d .. "/t.json") .. " 2>&1")
    local out = p:read("a")
    p:close()
    if out:match("No such file") or out:match("not found") then return end   -- no python3
    assert.is_truthy(tonumber(out:match("^(%d+)")), out)
  end)

  it("follows $SKEIN_TRACE into worker processes, relative paths too", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/w.lua", WORKLOAD)
    local r = cli.run({ script }, { timeout = 60, cwd = d, env = { SKEIN_TRACE = "rel.json",
                                                                   SKEIN_TRACE_APPEND = false } })
    assert.equal(0, r.code, r.err)
    local t = check(events(d .. "/rel.json", true))
    check_workload(t, main_pid_of(t))
  end)

  it("reaches programs the script starts: another skein appends to the file", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/o.lua", ([[
      local skein = require "skein"
      skein.spawn(function() end):join()
      assert(os.execute(%q))
      skein.spawn(function() end):join()
    ]]):format(cli.q(cli.bin) .. " -e " .. cli.q("skein.spawn(function() end):join() print('inner')")))
    local r = cli.run({ "--trace", d .. "/o.json", script }, { timeout = 60 })
    assert.equal(0, r.code, r.err)
    assert.equal("inner\n", r.out)
    local t = check(events(d .. "/o.json", true))
    assert.equal(2, #t.pids)
    assert.equal(3, t.count("task"))
    local text = cli.read(d .. "/o.json")
    assert.equal(1, select(2, text:gsub("%]\n", "")), "one closing bracket, the root's")
  end)

  it("needs its argument", function()
    local r = cli.run({ "--trace" })
    assert.equal(1, r.code)
    assert.is_truthy(r.err:match("'%-%-trace' needs argument"), r.err)
  end)

  it("refuses a file it cannot write, naming it", function()
    local r = cli.run({ "--trace", "/nonexistent-dir/t.json", "-e", "print(1)" })
    assert.equal(1, r.code)
    assert.is_truthy(r.err:match("cannot trace to '/nonexistent%-dir/t.json'"))
  end)
end)

describe("skein.trace", function()
  teardown(cli.cleanup)

  it("starts and stops from Lua; file() names the trace", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/s.lua", [[
      local skein = require "skein"
      assert(skein.trace.file() == nil)
      skein.spawn(function() end):join()          -- not traced
      skein.trace.start("lua.json")
      assert(skein.trace.file():match("^/.*/lua%.json$"))
      for _ = 1, 3 do skein.spawn(function() skein.sleep(0.001) end):join() end
      local pp = skein.pool{kind = "process", size = 1, name = "lp"}
      assert(pp:submit(function() return 1 end):get() == 1)
      pp:close() pp:join()
      skein.trace.stop()
      assert(skein.trace.file() == nil)
      for _ = 1, 5 do skein.spawn(function() end):join() end   -- not traced
      local ok, e = pcall(skein.trace.start, "/nonexistent-dir/x.json")
      assert(not ok and skein.is_error(e, "io") and e.code == "ENOENT", tostring(e))
      print("ok")
    ]])
    local r = cli.run({ script }, { cwd = d, timeout = 60 })
    assert.equal(0, r.code, r.err)
    assert.equal("ok\n", r.out)
    local t = check(events(d .. "/lua.json", true))
    -- the three traced tasks (ids 2..4) ran, at least once each, and the
    -- pool's door (5: the daemon that serves other workers' calls), nothing else
    local ids = {}
    for _, e in ipairs(t.by.task or {}) do ids[e.args.task] = true end
    assert.same({ [2] = true, [3] = true, [4] = true, [5] = true }, ids)
    assert.equal(2, #t.pids)             -- the worker process recorded too
    assert.equal(1, t.count("job", function(e) return e.ph == "f" end))
  end)
end)

describe("a traced tree that is killed", function()
  teardown(cli.cleanup)

  it("keeps a valid file when a worker is SIGKILLed: only its unwritten events go", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/k.lua", [[
      local skein = require "skein"
      local pp = skein.pool{kind = "process", size = 1, name = "victim", retries = 1}
      local pid = pp:submit(function()
        return require("skein").self().pid
      end):get()
      skein.sleep(0.1)                 -- the worker is idle: it wrote what it had
      os.execute("kill -KILL " .. pid)
      -- a replacement runs the next job (again, if it went to the victim)
      assert(pp:submit(function() return 2 end):get() == 2)
      pp:close() pp:join()
      print(pid)
    ]])
    local r = cli.run({ "--trace", d .. "/k.json", script }, { timeout = 60 })
    assert.equal(0, r.code, r.err)
    local victim = tonumber(r.out:match("(%d+)"))
    local t = check(events(d .. "/k.json", true))
    assert.is_string(t.pnames[victim])
    assert.equal(1, t.count("job", function(e) return e.ph == "X" and e.pid == victim end))
    assert.equal(1, t.count("process exit", function(e)
      return e.args.pid == victim and e.args.signal == 9
    end))
  end)

  it("writes a complete file after Ctrl-C", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/c.lua", [[
      local skein = require "skein"
      local tp = skein.pool{kind = "thread", size = 2, name = "cc"}
      tp:submit(function() return 1 end):get()
      local pp = skein.pool{kind = "process", size = 1, name = "cp"}
      pp:submit(function() return 1 end):get()
      print("ready") io.stdout:flush()
      skein.sleep(30)
    ]])
    local r = cli.signal_after_ready({ "--trace", d .. "/c.json", script }, "ready", "INT")
    assert.equal(130, r.code, r.err)
    local text = cli.read(d .. "/c.json")
    assert.is_truthy(text:match("%]\n$"), "the array is closed")
    local t = check(events(d .. "/c.json", true))
    assert.equal(2, #t.pids)
    assert.equal(2, t.count("job", function(e) return e.ph == "f" end))
  end)

  it("leaves a readable file (no closing bracket) when the root is SIGKILLed", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/r.lua", [[
      local skein = require "skein"
      local pp = skein.pool{kind = "process", size = 1, name = "rp"}
      pp:submit(function() return 1 end):get()
      for _ = 1, 3 do skein.spawn(function() end):join() end
      skein.sleep(0.05)                -- idle long enough to write
      skein.spawn(function() end):join()
      print("ready") io.stdout:flush()
      skein.sleep(30)
    ]])
    -- skein itself is the shell's child here (not under `timeout`), so the
    -- KILL reaches it; its worker dies with it (PR_SET_PDEATHSIG).
    local sh = string.format([[
%s --trace %s %s </dev/null >%s 2>&1 &
pid=$!
i=0
until grep -q ready %s 2>/dev/null; do
  i=$((i + 1)); if [ $i -gt 600 ]; then kill -KILL $pid; echo no-ready; exit; fi
  sleep 0.05
done
kill -KILL $pid
wait $pid 2>/dev/null
echo "rc=$?"
]], cli.q(cli.bin), cli.q(d .. "/r.json"), cli.q(script), cli.q(d .. "/out"), cli.q(d .. "/out"))
    local p = io.popen("timeout 60 bash -c " .. cli.q(sh) .. " 2>/dev/null")
    local res = p:read("a")
    p:close()
    assert.equal("rc=137", res:match("rc=%d+"), res)
    local text = cli.read(d .. "/r.json")
    assert.is_falsy(text:match("%]\n$"))
    assert.is_truthy(text:match("},\n$"), "only whole lines")
    local t = check(events(d .. "/r.json", false))
    assert.equal(1, t.count("job", function(e) return e.ph == "f" end))
  end)
end)

describe("examples/trace/pipeline.lua", function()
  teardown(cli.cleanup)

  it("runs traced and leaves a trace with every kind of worker in it", function()
    local d = cli.tmpdir()
    local r = cli.run({ "--trace", d .. "/p.json", "examples/trace/pipeline.lua" }, { timeout = 60 })
    assert.equal(0, r.code, r.err)
    assert.equal("12 hashes, checksum 17; the crashed job: worker_died\n", r.out)
    local t = check(events(d .. "/p.json", true))
    assert.is_true(#t.pids >= 3)
    assert.equal(12, t.count("job", function(e) return e.ph == "f" and e.args == nil and
      t.flows_s[e.id].pid == e.pid end))
    assert.equal(1, t.count("job failed"))
  end)
end)
