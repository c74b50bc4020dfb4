-- Waits that nothing can ever end are reported as deadlocks, not hangs —
-- also on shared objects, as long as no other worker could end them.
local skein = require "skein"

local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]

local function kind_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return skein.is_error(e) and e.kind or tostring(e)
end

-- Runs `src` as a script of its own (bounded by `timeout`): a wait there
-- that hangs fails the case instead of the suite. Returns its output.
local function run_script(src, secs)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local p = io.popen(("timeout -k 5 %d %s %s 2>&1; echo \"exit=$?\""):format(secs, SKEIN, path))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return out
end

describe("deadlock detection", function()
  it("catches a get on a queue no other worker holds", function()
    local q = skein.queue()
    assert.equal("deadlock", kind_of(q.get, q))
  end)

  it("catches a wait on an event nobody can set", function()
    local ev = skein.event()
    assert.equal("deadlock", kind_of(ev.wait, ev))
  end)

  it("catches a condition wait nothing can notify, which holds its lock again", function()
    -- Before the deadlock is reported the wait is woken once to look
    -- again (once per loop turn, so in a script of its own); that wake is
    -- no notification.
    local out = run_script([[
      local cv = skein.condition()
      cv:acquire()
      local ok, e = pcall(cv.wait, cv)
      print(ok, skein.is_error(e) and e.kind or tostring(e), (pcall(cv.release, cv)))
    ]], 60)
    assert.equal("false\tdeadlock\ttrue\nexit=0\n", out)
  end)

  it("catches a task joined while it waits on such a queue", function()
    local q = skein.queue()
    local t = skein.spawn(function() return q:get() end)
    assert.equal("deadlock", kind_of(t.join, t))
    t:cancel()
  end)

  it("does not fire while another worker may still end the wait", function()
    local q = skein.queue()
    skein.thread(function(queue) skein.sleep(0.2) queue:put("late") end, q)
    assert.equal("late", q:get(10))
    local p = skein.process(function(queue) skein.sleep(0.2) queue:put("from a process") end, q)
    assert.equal("from a process", q:get(30))
    p:join(30)
  end)

  it("fires once the only process that could end the wait is gone", function()
    -- The wait begins while the child (which shares the queue) is alive,
    -- and must not hang after it exits.
    local q = skein.queue()
    local p = skein.process(function(queue) skein.sleep(0.3) end, q)
    local t0 = skein.now()
    assert.equal("deadlock", kind_of(q.get, q))
    assert.is_true(skein.now() - t0 < 20)
    p:join(30)
    local ev = skein.event()
    p = skein.process(function(e) skein.sleep(0.3) end, ev)
    assert.equal("deadlock", kind_of(ev.wait, ev))
    p:join(30)
  end)

  it("does not lose a wake sent by a process just before it exits", function()
    -- No timeout on recv: an armed timer would keep the loop alive and
    -- hide a false deadlock. The script runs under `timeout` instead.
    local out = run_script([[
      for i = 1, 100 do
        local here, there = skein.pipe()
        local p = skein.process(function(conn) conn:send("bye") conn:close() end, there)
        assert(here:recv() == "bye")
        p:join()
      end
      print("ok")
    ]], 120)
    assert.equal("ok\nexit=0\n", out)
  end)

  it("does not report a wait that a process started after it began ends", function()
    -- Each wait begins while no other process is alive (so it does not
    -- hold the loop); a task then starts the process that ends it, which is
    -- often reaped before its wake has crossed this process's wake thread.
    -- The wait must look again before anything is reported. Without that,
    -- most runs of this script end in a false deadlock within a few
    -- hundred rounds.
    local out = run_script([[
      local t0 = skein.now()
      local q = skein.queue()
      local here, there = skein.pipe()
      skein.process(function() end, q, there):join()   -- both live in the segment now
      local function later(fn, ...)
        local args = table.pack(...)
        return skein.spawn(function() skein.process(fn, table.unpack(args, 1, args.n)):join() end)
      end
      local function check(what, i, ok, v)
        if not ok then
          print(("%s, round %d: %s"):format(what, i, tostring(v)))
          os.exit(1)
        end
        assert(v == i, what)
      end
      for i = 1, 600 do
        if skein.now() - t0 > 25 then break end
        local t = later(function(qq, v) qq:put(v) end, q, i)
        check("queue get", i, pcall(q.get, q))
        t:join()
        t = later(function(conn, v) conn:send(v) end, there, i)
        check("pipe recv", i, pcall(here.recv, here))
        t:join()
        t = later(function(qq, v) qq:put(v) end, q, i)
        local getter = skein.spawn(function() return q:get() end)
        check("get in a task", i, pcall(getter.join, getter))
        t:join()
      end
      print("ok")
    ]], 120)
    assert.equal("ok\nexit=0\n", out)
  end)

  it("a wait that raised as it began leaves nothing behind for the next wait", function()
    -- An event only this worker holds lets its wait go without the port
    -- hold; the expired scope raises before that wait starts, and the
    -- child's next wait (on a queue its parent fills later) must hold
    -- again, or it is reported as a deadlock at once.
    local q = skein.queue()
    local p = skein.process(function(queue)
      local ev = skein.event()
      local ok, e = pcall(skein.timeout, 0, function() return ev:wait() end)
      assert(not ok and skein.is_error(e, "timeout"), tostring(e))
      return queue:get()
    end, q)
    skein.sleep(0.3)
    q:put("late")
    assert.equal("late", p:join(30))
  end)

  it("still honours timeouts", function()
    local q = skein.queue()
    assert.equal("timeout", kind_of(q.get, q, 0.05))
  end)
end)
