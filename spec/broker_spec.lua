-- skein.broker on a real redis-server (started here on a free loopback port
-- with AOF, killed in teardown; a missing redis-server fails the spec):
-- the RESP client (pipelining, a refused command, ACL user AUTH, a wrong
-- password, Redis down, SELECT, a per-command timeout and the reconnect
-- after it), queues across two processes, pools served by `skein worker`
-- subprocesses (submit/map, SIGTERM drain, a worker SIGKILLed mid-task,
-- leases renewed while tasks outlast them, entries read ahead (--prefetch),
-- the end of a delivery as one
-- script by its digest, a poison task dead-lettered and requeued, a restart
-- under the same name),
-- and payloads that would carry code. Every wait is bounded.
local skein = require "skein"
local cli = require "spec.support.cli"
local redis = require "spec.support.redis"

local q = cli.q

local caught = require("spec.support.errors").errof

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

local free_port, eventually = redis.free_port, redis.eventually

local tmp, port, url, rpid
local started = {}   -- every worker pid, killed in teardown if still there
local nprefix = 0

-- A fresh key prefix per test, so tests share the server but not keys.
local function prefix()
  nprefix = nprefix + 1
  return "spec" .. nprefix
end

local function start_redis(again)
  port, url, rpid = redis.start(tmp, again, true)
end

-- A `skein worker` in the background: returns {pid=, rcfile=, log=}.
local function start_worker(args, ready)
  local id = tostring(skein.now()):gsub("%.", "")
  local log, pidf, rcf = tmp .. "/w" .. id .. ".log", tmp .. "/w" .. id .. ".pid", tmp .. "/w" .. id .. ".rc"
  local cmd = { q(cli.bin), "worker" }
  for _, a in ipairs(args) do cmd[#cmd + 1] = q(a) end
  os.execute(("sh -c %s >/dev/null 2>&1 &"):format(q(("timeout -k 2 60 %s >%s 2>&1 & echo $! >%s; wait $!; echo $? >%s")
    :format(table.concat(cmd, " "), q(log), q(pidf), q(rcf)))))
  assert(eventually(5, function() return cli.read(pidf) ~= nil and cli.read(pidf) ~= "" end))
  -- The pid is timeout's: signals go to its child, the worker itself.
  local tpid = tonumber(cli.read(pidf))
  local pid
  assert(eventually(5, function()
    pid = tonumber(sh("pgrep -P " .. tpid):match("%d+"))
    return pid ~= nil
  end))
  local w = { pid = pid, rcfile = rcf, log = log }
  started[#started + 1] = pid
  assert(eventually(10, function() return (cli.read(log) or ""):find(ready or "serving pool", 1, true) end),
    "the worker did not start: " .. (cli.read(log) or ""))
  return w
end

local function wait_exit(w, secs)
  assert(eventually(secs, function() return (cli.read(w.rcfile) or "") ~= "" end),
    "the worker did not exit; its log:\n" .. (cli.read(w.log) or ""))
  return tonumber(cli.read(w.rcfile))
end

local function kill(w, sig) os.execute(("kill -%s %d 2>/dev/null"):format(sig, w.pid)) end

local tasks_file

describe("skein.broker", function()
  setup(function()
    tmp = cli.tmpdir()
    start_redis()
    tasks_file = cli.write(tmp .. "/tasks.lua", [[
local marks = ...
return {
  square = function(x) return x * x end,
  add = function(a, b) return a + b, "sum" end,
  len = function(s) return #s, s:sub(-3) end,
  boom = function(msg) error(msg or "kaboom", 0) end,
  -- Appends a line to `path`, then sleeps: a run that can be seen.
  mark = function(path, secs)
    local f = assert(io.open(path, "a")); f:write("run\n"); f:close()
    skein.sleep(secs)
    return "ran"
  end,
}
]])
  end)

  teardown(function()
    for _, pid in ipairs(started) do os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    if rpid then os.execute("kill -9 " .. rpid .. " 2>/dev/null") end
    cli.cleanup()
  end)

  describe("client", function()
    it("pipelines commands from many tasks and reads every reply type", function()
      local c = skein.broker.redis{port = port}
      assert.equal("PONG", c:call("PING"))
      assert.equal("OK", c:call("SET", "spec:k", 42))
      assert.equal("42", c:call("GET", "spec:k"))
      assert.is_nil(c:call("GET", "spec:missing"))
      assert.same({"42", false}, c:call("MGET", "spec:k", "spec:missing"))
      c:call("DEL", "spec:n")
      local ts = {}
      for i = 1, 300 do ts[i] = skein.spawn(function() return c:call("INCR", "spec:n") end) end
      local seen = {}
      for i = 1, 300 do seen[ts[i]:join(10)] = true end
      for i = 1, 300 do assert.is_true(seen[i]) end
      local big = string.rep("x", 3 * 1024 * 1024)
      c:call("SET", "spec:big", big)
      assert.equal(big, c:call("GET", "spec:big"))
      c:close()
      local e = caught(c.call, c, "PING")
      assert.equal("closed", e.kind)
    end)

    it("raises kind broker with Redis's own text for a refused command", function()
      local c = skein.broker.redis{port = port}
      local e = caught(c.call, c, "NOSUCHCMD", "x")
      assert.equal("broker", e.kind)
      assert.equal("redis", e.code)
      assert.matches("unknown command", e.message)
      assert.equal("PONG", c:call("PING"))
      c:close()
    end)

    it("authenticates an ACL user, reports a wrong password and selects the db", function()
      local admin = skein.broker.redis{port = port}
      admin:call("ACL", "SETUSER", "alice", "on", ">s3cret", "~*", "&*", "+@all")
      local b = skein.broker("redis://alice:s3cret@127.0.0.1:" .. port .. "/3")
      b:call("SET", "spec:db", "three")
      assert.equal("three", b:call("GET", "spec:db"))
      assert.is_nil(admin:call("GET", "spec:db"))   -- db 0
      b:close()
      local bad = skein.broker("redis://alice:wrong@127.0.0.1:" .. port)
      local e = caught(bad.call, bad, "PING")
      assert.equal("broker", e.kind)
      assert.equal("auth", e.code)
      assert.equal("127.0.0.1:" .. port, e.address)
      assert.matches("refused the password", e.message)
      bad:close()
      admin:close()
    end)

    it("reports Redis down with its address, and tries again after a backoff", function()
      local dead = free_port()
      local b = skein.broker("redis://127.0.0.1:" .. dead, {timeout = 2})
      local e = caught(b.call, b, "PING")
      assert.equal("broker", e.kind)
      assert.equal("down", e.code)
      assert.equal("127.0.0.1:" .. dead, e.address)
      assert.matches("cannot connect to Redis at 127%.0%.0%.1:" .. dead, e.message)
      local e2 = caught(b.call, b, "PING")
      assert.equal("down", e2.code)
      b:close()
    end)

    it("times a command out, drops the stalled connection and reconnects", function()
      local c = skein.broker.redis{port = port}
      local t0 = skein.now()
      local e = caught(c.call_timeout, c, 0.3, "BLPOP", "spec:never", 0)
      assert.equal("timeout", e.kind)
      assert.is_true(skein.now() - t0 < 3)
      assert.equal("PONG", c:call("PING"))
      c:close()
    end)

    it("drops a connection whose replies cannot be read (kind broker, code protocol)", function()
      local replies = {
        ["!garbage\r\n"] = "reply type byte",
        ["*-5\r\n"] = "out of range",
        ["*2147483647\r\n"] = "more than 16777216 elements",
        ["$18446744073709551000\r\nabc"] = "length",
        [string.rep("*1\r\n", 12) .. ":1\r\n"] = "depth",
        [":notanumber\r\n"] = "integer",
      }
      for reply, why in pairs(replies) do
        local srv = skein.net.serve("127.0.0.1", 0, function(s)
          s:read("any", 5)
          s:write(reply)
          s:read("any", 5)
        end)
        local c = skein.broker.redis{port = srv:port(), timeout = 5}
        local e = caught(c.call, c, "PING")
        assert.equal("broker", e.kind)
        assert.equal("protocol", e.code)
        assert.truthy(e.message:find(why, 1, true), e.message)
        c:close()
        srv:close()
      end
    end)

    it("refuses a malformed URL", function()
      assert.has_error(function() skein.broker("http://x") end)
      assert.has_error(function() skein.broker("redis://h:99999") end)
    end)
  end)

  describe("queue", function()
    it("carries items from another process, in order, and closes", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local qu = b:queue("jobs")
      local r = cli.run({"-e", ([[
        local b = skein.broker(%q, {prefix = %q})
        local q = b:queue("jobs")
        for i = 1, 5 do q:put({i = i, s = ("x"):rep(i)}) end
        q:close()
      ]]):format(url, p)}, {timeout = 30})
      assert.equal(0, r.code, r.err)
      assert.equal(5, qu:size())
      for i = 1, 5 do
        local v = qu:get(5)
        assert.same({i = i, s = ("x"):rep(i)}, v)
      end
      assert.equal("closed", caught(qu.get, qu, 1).kind)
      assert.equal("closed", caught(qu.put, qu, 1).kind)
      b:close()
    end)

    it("waits in get until another process puts, and times out when nothing comes", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local qu = b:queue("w")
      local t0 = skein.now()
      assert.equal("timeout", caught(qu.get, qu, 0.3).kind)
      assert.is_true(skein.now() - t0 < 3)
      assert.is_false(qu:try_get())
      local plog = tmp .. "/late.log"
      os.execute(("(sleep 0.5; timeout 60 %s -e %s) >%s 2>&1 &"):format(q(cli.bin),
        q(("skein.broker(%q, {prefix = %q}):queue('w'):put('late')"):format(url, p)), q(plog)))
      local ok, v = pcall(qu.get, qu, 60)
      assert(ok, tostring(v) .. "; the putter said: " .. tostring(cli.read(plog)))
      assert.equal("late", v)
      b:close()
    end)

    it("gives an item whose getter died before acknowledging it to another getter", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local qu = b:queue("r", {reclaim = 0.3})
      assert.is_false(qu:try_get())
      qu:put("orphan")
      -- A getter that read it and died: the entry stays pending under its name.
      local r = b:call("XREADGROUP", "GROUP", "q", "ghost", "COUNT", 1, "STREAMS", p .. ":q:r", ">")
      assert.equal(1, #r[1][2])
      assert.is_false(qu:try_get())
      skein.sleep(0.4)
      qu._reclaimed = nil          -- look now rather than in 5 s
      assert.equal("orphan", qu:get(5))
      assert.equal(0, qu:size())
      b:close()
    end)
  end)

  describe("pool and skein worker", function()
    it("runs submit and map on a worker, keeps stats, and drains on SIGTERM", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local pool = b:pool("sq")
      local f = pool:submit("add", 2, 3)
      local w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "sq",
                              "--concurrency", "4"})
      assert.same({5, "sum"}, {f:get(15)})
      local xs = {}
      for i = 1, 500 do xs[i] = i end
      local r = pool:map("square", xs, 60)
      for i = 1, 500 do assert.equal(i * i, r[i]) end
      local st = b:stats("sq")
      assert.equal(501, st.done)
      assert.equal(0, st.queued)
      assert.equal(1, st.workers)
      -- SIGTERM while a task runs: it finishes, then the worker exits 0.
      local slow = pool:submit("mark", tmp .. "/drain.txt", 1)
      assert.is_true(eventually(10, function() return cli.read(tmp .. "/drain.txt") ~= nil end))
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 15))
      assert.is_not_nil((slow:get(5)))
      assert.matches("drained", cli.read(w.log))
      b:close()
    end)

    it("rejects bad arguments, and waits for a Redis that is down until SIGTERM", function()
      local r = cli.run({"worker", "--tasks", tasks_file}, {timeout = 10})
      assert.equal(2, r.code)
      assert.matches("%-%-broker URL is required", r.err)
      assert.matches("usage: skein worker", r.err)
      r = cli.run({"worker", "--broker", url, "--tasks", tmp .. "/missing.lua"}, {timeout = 10})
      assert.equal(1, r.code)
      assert.matches("must return a table of functions", r.err)
      local w = start_worker({"--broker", "redis://127.0.0.1:" .. free_port(), "--tasks", tasks_file},
                             "waiting for Redis")
      assert.matches("connection refused", cli.read(w.log))
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 10))
    end)

    for _, kind in ipairs({"thread", "process"}) do
      it("serves tasks from a --kind " .. kind .. " worker", function()
        local p = prefix()
        local b = skein.broker(url, {prefix = p})
        local pool = b:pool("k", {retries = 1})
        local w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "k",
                                "--kind", kind, "--concurrency", "2"})
        assert.same({1, 4, 9, 16}, pool:map("square", {1, 2, 3, 4}, 20))
        local f = pool:submit("boom", "in " .. kind)
        local e = caught(f.get, f, 20)
        assert.equal("remote", e.kind)
        assert.equal("in " .. kind, e.message)
        kill(w, "TERM")
        assert.equal(0, wait_exit(w, 15))
        b:close()
      end)
    end

    it("lets a script end while a future nobody waits for any more is pending", function()
      local p = prefix()
      local r = cli.run({"-e", ([[
        local b = skein.broker(%q, {prefix = %q})
        local f = b:pool("nobody"):submit("square", 2)
        assert(not f:done())
        local ok, e = pcall(f.get, f, 0.2)
        assert(not ok and e.kind == "timeout", tostring(e))
        print("left")
      ]]):format(url, p)}, {timeout = 20})
      assert.equal(0, r.code, r.err)
      assert.equal("left\n", r.out)
    end)

    it("runs the task of a SIGKILLed worker again elsewhere and keeps one result", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local pool = b:pool("k", {lease = 1, retries = 5})
      local marks = tmp .. "/kill.txt"
      local w1 = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "k",
                               "--name", "w1"})
      local f = pool:submit("mark", marks, 2)
      assert.is_true(eventually(10, function() return cli.read(marks) ~= nil end))
      kill(w1, "KILL")
      wait_exit(w1, 10)
      local w2 = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "k",
                               "--name", "w2"})
      assert.is_not_nil((f:get(20)))
      assert.equal("run\nrun\n", cli.read(marks))
      local st = b:stats("k")
      assert.equal(1, st.done)
      assert.equal(0, st.running)
      assert.equal(1, b:call("EXISTS", p .. ":r:" .. f.id))
      kill(w2, "TERM")
      assert.equal(0, wait_exit(w2, 15))
      b:close()
    end)

    it("renews the leases of tasks that outlast them, so no other worker takes them over", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local pool = b:pool("lease", {lease = 1, retries = 5})
      local marks = tmp .. "/lease.txt"
      local w1 = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "lease",
                               "--name", "w1", "--concurrency", "2"})
      -- Both run on w1 at once for 3 leases; w2, idle, looks for entries
      -- idle past their lease every half lease.
      local fs = {pool:submit("mark", marks, 3), pool:submit("mark", marks, 3)}
      assert.is_true(eventually(10, function() return cli.read(marks) == "run\nrun\n" end))
      local w2 = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "lease",
                               "--name", "w2"})
      for _, f in ipairs(fs) do assert.equal("ran", f:get(20)) end
      assert.equal("run\nrun\n", cli.read(marks))
      local st = b:stats("lease")
      assert.equal(2, st.done)
      assert.equal(0, st.failed)
      kill(w1, "TERM")
      kill(w2, "TERM")
      assert.equal(0, wait_exit(w1, 15))
      assert.equal(0, wait_exit(w2, 15))
      b:close()
    end)

    it("ends a first delivery with one script sent by its digest, and resends it after SCRIPT FLUSH", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local pool = b:pool("sha")
      local w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "sha",
                              "--concurrency", "4"})
      local function calls(cmd)
        local info = b:call("INFO", "commandstats")
        return tonumber(info:match("cmdstat_" .. cmd .. ":calls=(%d+)")) or 0
      end
      b:call("CONFIG", "RESETSTAT")
      local xs = {}
      for i = 1, 20 do xs[i] = i end
      local r = pool:map("square", xs, 30)
      for i = 1, 20 do assert.equal(i * i, r[i]) end
      -- No lookup of the result before a first run, no script body sent.
      assert.equal(20, calls("evalsha"))
      assert.equal(0, calls("exists"))
      assert.equal(0, calls("eval"))
      -- Redis forgot its scripts (as after a restart): NOSCRIPT, then the
      -- body, once; the task's result is stored once.
      b:call("SCRIPT", "FLUSH")
      assert.equal(441, pool:submit("square", 21):get(15))
      assert.equal(1, calls("eval"))
      assert.equal(21, b:stats("sha").done)
      assert.equal(16, pool:submit("square", 4):get(15))
      assert.equal(1, calls("eval"))
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 15))
      b:close()
    end)

    it("reads --prefetch entries ahead of its slots, renews their leases and runs them when draining", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local pool = b:pool("ahead", {lease = 1, retries = 5})
      local marks = tmp .. "/ahead.txt"
      local fs = {}
      for i = 1, 4 do fs[i] = pool:submit("mark", marks, 1) end
      local w1 = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "ahead",
                               "--name", "w1", "--concurrency", "1", "--prefetch", "2"})
      -- One runs, two wait on w1 (pending under its name), one is left.
      assert.is_true(eventually(10, function() return cli.read(marks) == "run\n" end))
      local function pending(name)
        local r = b:call("XPENDING", p .. ":p:ahead", "w", "-", "+", 10, name)
        return #r
      end
      assert.equal(3, pending("w1"))
      assert.equal(1, b:stats("ahead").queued)
      -- w2 (no read-ahead) takes the one left, and none of w1's: their
      -- leases (1 s) are renewed while they wait.
      local w2 = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "ahead",
                               "--name", "w2", "--prefetch", "0"})
      assert.is_true(eventually(10, function() return pending("w2") == 1 end))
      skein.sleep(1.5)
      assert.is_true(pending("w1") >= 1)
      -- SIGTERM: w1 runs what it read ahead, then exits.
      kill(w1, "TERM")
      kill(w2, "TERM")
      assert.equal(0, wait_exit(w1, 15))
      assert.equal(0, wait_exit(w2, 15))
      for _, f in ipairs(fs) do assert.equal("ran", f:get(5)) end
      assert.equal("run\nrun\nrun\nrun\n", cli.read(marks))
      assert.equal(4, b:stats("ahead").done)
      assert.equal(0, b:stats("ahead").failed)
      b:close()
    end)

    it("recovers its own pending task when restarted under the same name", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local pool = b:pool("r", {lease = 60})
      local marks = tmp .. "/restart.txt"
      local args = {"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "r", "--name", "same"}
      local w1 = start_worker(args)
      local f = pool:submit("mark", marks, 3)
      assert.is_true(eventually(10, function() return cli.read(marks) ~= nil end))
      kill(w1, "KILL")
      wait_exit(w1, 10)
      -- The lease is 60 s: only the same name takes it back this soon.
      local w2 = start_worker(args)
      assert.is_not_nil((f:get(20)))
      assert.matches("recovering 1 pending", cli.read(w2.log))
      kill(w2, "TERM")
      assert.equal(0, wait_exit(w2, 15))
      b:close()
    end)

    it("dead-letters a poison task after its retries, with the last error, and requeues it", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local pool = b:pool("poison", {retries = 3})
      local w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "poison"})
      local f = pool:submit("boom", "bad input")
      local e = caught(f.get, f, 20)
      assert.equal("remote", e.kind)
      assert.is_true(e.dead)
      assert.matches("bad input", e.message)
      local dead = b:dead("poison")
      assert.equal(1, #dead)
      assert.equal(f.id, dead[1].id)
      assert.equal("boom", dead[1].task)
      assert.equal(3, dead[1].deliveries)
      assert.matches("bad input", dead[1].error)
      local st = b:stats("poison")
      assert.equal(1, st.dead)
      assert.equal(3, st.failed)
      -- With no worker running, a second requeue of the same id finds
      -- nothing dead (a running worker could fail it three times again
      -- between the two calls and make the second one true, rightly).
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 15))
      assert.is_true(b:requeue(f.id))
      assert.is_false(b:requeue(f.id))
      assert.is_false(b:requeue("no-such-task"))
      assert.equal(0, b:stats("poison").dead)
      assert.equal(0, #b:dead("poison"))
      w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "poison"})
      assert.is_true(eventually(20, function() return b:stats("poison").dead == 1 and #b:dead("poison") == 1 end))
      assert.equal(6, b:stats("poison").failed)
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 15))
      b:close()
    end)

    it("survives redis-server killed and restarted from its AOF while a worker waits", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p, timeout = 5})
      local pool = b:pool("aof")
      local qu = b:queue("kept")
      qu:put("before")
      local w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "aof"})
      assert.equal(16, pool:submit("square", 4):get(15))
      -- A getter waiting through the restart gets what is put after it.
      local waiter = skein.spawn(function()
        local b2 = skein.broker(url, {prefix = p, timeout = 2})
        local v = b2:queue("wait"):get(30)
        b2:close()
        return v
      end)
      skein.sleep(0.3)
      os.execute("kill -9 " .. rpid)
      assert.is_true(eventually(5, function() return os.execute("kill -0 " .. rpid .. " 2>/dev/null") ~= true end))
      skein.sleep(1)
      start_redis(port)
      b:queue("wait"):put("after")
      assert.equal("after", waiter:join(30))
      -- The worker and this client reconnect; what Redis acknowledged is there.
      assert.equal(25, pool:submit("square", 5):get(20))
      assert.equal("before", qu:get(5))
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 15))
      b:close()
    end)

    it("carries a 24 MiB argument and result, through a queue and a pool", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p, timeout = 30})
      local big = string.rep("0123456789abcdef", 24 * 65536) .. "end"
      local qu = b:queue("big")
      qu:put(big)
      assert.equal(big, qu:get(30))
      local pool = b:pool("big")
      local w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "big",
                              "--timeout", "30"})
      assert.same({#big, "end"}, {pool:submit("len", big):get(30)})
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 15))
      b:close()
    end)

    it("rides out redis-server stopped (SIGSTOP) for longer than the timeouts", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p, timeout = 1})
      local pool = b:pool("stop")
      local w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "stop",
                              "--timeout", "1"})
      assert.equal(4, pool:submit("square", 2):get(15))
      os.execute("kill -STOP " .. rpid)
      local ok, e = pcall(function()
        local t0 = skein.now()
        -- Its own deadline (timeout), or another command's that came first
        -- dropped the connection (broker, lost).
        local e1 = caught(b.call, b, "PING")
        assert.is_true(e1.kind == "timeout" or (e1.kind == "broker" and e1.code == "lost"), tostring(e1))
        assert.is_true(skein.now() - t0 < 4)
        skein.sleep(2)           -- the worker's blocked read outlives its watchdog too
      end)
      os.execute("kill -CONT " .. rpid)
      assert(ok, e)
      assert.equal("PONG", b:call("PING"))
      assert.equal(9, pool:submit("square", 3):get(20))
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 15))
      b:close()
    end)

    it("never sends or loads code: functions are refused, a bytecode payload is rejected", function()
      local p = prefix()
      local b = skein.broker(url, {prefix = p})
      local pool = b:pool("code", {retries = 1})
      local e = caught(pool.submit, pool, "square", function() return 1 end)
      assert.equal("marshal", e.kind)
      assert.matches("only data", e.message)
      assert.equal("marshal", caught(pool.submit, pool, "square", {f = print}).kind)
      -- A peer that writes the stream itself with marshalled bytecode.
      local evil = skein.encode(function() os.exit(99) end)
      b:call("XADD", p .. ":p:code", "*", "id", "evil-1", "task", "square", "args", evil,
             "reply", "", "tries", 0)
      local w = start_worker({"--broker", url, "--prefix", p, "--tasks", tasks_file, "--queue", "code"})
      assert.is_true(eventually(15, function() return #b:dead("code") == 1 end))
      local d = b:dead("code")[1]
      assert.equal("evil-1", d.id)
      assert.matches("functions are not accepted", d.error)
      -- The worker lives on and serves the next task.
      assert.equal(49, pool:submit("square", 7):get(15))
      kill(w, "TERM")
      assert.equal(0, wait_exit(w, 15))
      b:close()
    end)
  end)
end)
