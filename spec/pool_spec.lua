-- Pools of kind "coroutine" and "thread": futures, map and friends,
-- lifecycle, per-task timeouts, recycling, stats, bad input.
local skein = require "skein"

local caught = require("spec.support.errors").errof

for _, kind in ipairs({"coroutine", "thread", "process"}) do
  describe(kind .. " pool", function()
    it("submits and gets, and apply blocks for the result", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local f = p:submit(function(a, b) return a * b, "two" end, 6, 7)
      local x, y = f:get(10)
      assert.equal(42, x)
      assert.equal("two", y)
      assert.is_true(f:done())
      assert.equal("done", f:status())
      assert.equal("hi!", p:apply(function(s) return s .. "!" end, "hi"))
    end)

    it("maps in order, with and without chunking", function()
      local p <close> = skein.pool{kind = kind, size = 3}
      local xs = {}
      for i = 1, 1000 do xs[i] = i end
      local r = p:map(function(x) return x * 2 end, xs)
      assert.equal(1000, #r)
      for i = 1, 1000 do assert.equal(2 * i, r[i]) end
      local r2 = p:map(function(x) return x + 1 end, xs, {chunksize = 7})
      assert.equal(1001, r2[1000])
      assert.same({n = 0}, p:map(function(x) return x end, {}))
    end)

    it("keeps nil results in place", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local r = p:map(function(x) if x % 2 == 0 then return x end end, {1, 2, 3, 4})
      assert.equal(4, r.n)
      assert.same({nil, 2, nil, 4}, {r[1], r[2], r[3], r[4]})
    end)

    it("starmaps argument lists", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      assert.same({3, 7, n = 2}, p:starmap(function(a, b) return a + b end, {{1, 2}, {3, 4}}))
    end)

    it("maps values of every kind, shared sub-tables included, and names a bad one", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local shared = {1, 2, 3}
      local xs = {}
      for i = 1, 60 do
        xs[i] = i % 3 == 0 and shared or i % 3 == 1 and ("s" .. i) or i + 0.5
      end
      local r = p:map(function(x) return type(x) == "table" and #x or x end, xs, {chunksize = 8})
      for i = 1, 60 do
        assert.equal(i % 3 == 0 and 3 or i % 3 == 1 and ("s" .. i) or i + 0.5, r[i])
      end
      -- One table stays one table within a chunk.
      local same = p:map(function(pair) return pair[1] == pair[2] end, {{shared, shared}})
      assert.is_true(same[1])
      if kind ~= "coroutine" then  -- (a coroutine pool sends nothing)
        local bad = {1, 2, 3, 4, 5, coroutine.create(print), 7}
        local e = caught(p.map, p, function(x) return x end, bad, {chunksize = 3})
        assert.is_true(skein.is_error(e, "marshal"))
        assert.equal("items[6]: cannot send a coroutine", e.message)
      end
    end)

    it("imaps lazily: a 10 million item generator is not read up front", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local produced = 0
      local function gen()
        produced = produced + 1
        if produced <= 10000000 then return produced end
      end
      local seen = 0
      for i, v in p:imap(function(x) return x * 10 end, gen) do
        assert.equal(i * 10, v)
        seen = seen + 1
        if seen == 50 then break end
      end
      assert.equal(50, seen)
      assert.is_true(produced < 200, "read " .. produced .. " items ahead")
    end)

    it("imap_unordered yields (index, result) as tasks finish", function()
      local p <close> = skein.pool{kind = kind, size = 4}
      -- Every worker up first (a process takes a while to start on a busy
      -- machine), so the order below is the sleeps' alone.
      p:map(function() skein.sleep(0.05) end, {1, 2, 3, 4})
      local order = {}
      for i, v in p:imap_unordered(function(d) skein.sleep(d) return d end, {0.6, 0.01, 0.3}) do
        order[#order + 1] = i
        assert.is_number(v)
      end
      assert.same({2, 3, 1}, order)
    end)

    it("raises a failing task's error from get, as kind remote with a traceback", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local f = p:submit(function() error("task failed here", 0) end)
      local e = caught(f.get, f, 10)
      if kind ~= "coroutine" then
        assert.is_true(skein.is_error(e, "remote"))
        assert.equal("task failed here", e.message)
        assert.matches("stack traceback", e.traceback)
      else
        assert.equal("task failed here", e)
      end
      assert.equal("failed", f:status())
      assert.is_not_nil(f:error())
      assert.is_nil(p:submit(function() end):error())
    end)

    it("fails map at the first failing item", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local e = caught(p.map, p, function(x) if x == 5 then error("bad item") end return x end, {1, 2, 3, 4, 5, 6})
      assert.matches("bad item", tostring(e))
    end)

    it("waits, cancels queued futures and reports status", function()
      local p <close> = skein.pool{kind = kind, size = 1}
      local blocker = p:submit(function() skein.sleep(0.2) return "first" end)
      local queued = p:submit(function() return "never" end)
      assert.is_false(queued:wait(0.01))
      assert.is_true(queued:cancel())
      assert.equal("cancelled", queued:status())
      assert.is_true(skein.is_error(caught(queued.get, queued), "cancelled"))
      assert.is_true(blocker:wait(10))
      assert.is_false(blocker:cancel())
      assert.equal("first", blocker:get())
    end)

    it("times out get without stopping the task", function()
      local p <close> = skein.pool{kind = kind, size = 1}
      local f = p:submit(function() skein.sleep(0.2) return "eventually" end)
      assert.is_true(skein.is_error(caught(f.get, f, 0.01), "timeout"))
      assert.equal("eventually", f:get(10))
    end)

    it("runs on_done callbacks in the submitting worker", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local seen = {}
      local cb = p:submit(function() return 5 end):on_done(function(f) seen[#seen + 1] = f:get() end)
      cb:join(10)
      assert.same({5}, seen)
    end)

    it("selects over futures", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local slow = p:submit(function() skein.sleep(0.5) return "slow" end)
      local fast = p:submit(function() skein.sleep(0.01) return "fast" end)
      local i, v = skein.select({slow, fast}, 10)
      assert.equal(2, i)
      assert.equal("fast", v)
    end)

    it("stops a task that exceeds the pool's per-task timeout", function()
      -- A timeout that a quick task never reaches on a loaded machine (the
      -- apply below runs under it too), and a task that would run for a
      -- minute: it must end at the timeout, well before it would have.
      local p <close> = skein.pool{kind = kind, size = 1, timeout = 1}
      local t0 = skein.now()
      local f = p:submit(function() skein.sleep(60) return "not stopped" end)
      local e = caught(f.get, f, 45)
      local took = skein.now() - t0
      assert.is_true(skein.is_error(e, "timeout") or skein.is_error(e.value, "timeout"), tostring(e))
      assert.is_true(took >= 0.95, "stopped after " .. took .. " s, before the timeout")
      assert.is_true(took < 30, "stopped only after " .. took .. " s")
      assert.equal("still usable", p:apply(function() return "still usable" end))
    end)

    it("refuses submits after close, joins after close, and counts in stats", function()
      local p = skein.pool{kind = kind, size = 2}
      for i = 1, 10 do p:submit(function() return i end) end
      p:close()
      assert.is_true(skein.is_error(caught(p.submit, p, print), "closed"))
      p:join(10)
      local s = p:stats()
      assert.equal(10, s.done)
      assert.equal(0, s.failed)
      assert.equal(0, s.busy)
      assert.equal(0, s.queued)
      assert.equal(2, s.size)
    end)

    it("requires close before join; terminate cancels what is queued", function()
      local p = skein.pool{kind = kind, size = 1}
      assert.error_matches(function() p:join(1) end, "before pool:join")
      local running = p:submit(function() skein.sleep(5) end)
      local queued = p:submit(function() return 1 end)
      skein.sleep(0.05)
      p:terminate()
      p:join(10)
      assert.equal("cancelled", queued:status())
      assert.is_true(running:done())
    end)

    it("shuts down with wait and cancel_pending", function()
      local p = skein.pool{kind = kind, size = 1}
      p:submit(function() skein.sleep(0.05) end)
      local pending = p:submit(function() return 1 end)
      p:shutdown{wait = true, cancel_pending = true}
      assert.equal("cancelled", pending:status())
    end)
  end)
end

describe("process pools", function()
  it("count a task's timeout from the task's start, not from its worker's", function()
    -- Every worker (the first, and the one that replaces a worker the
    -- timeout killed) takes longer to start than the timeout.
    local p <close> = skein.pool{kind = "process", size = 1, timeout = 1,
                                 init = function() skein.sleep(1.5) end}
    assert.equal("first", p:apply(function() return "first" end))
    local f = p:submit(function() skein.sleep(60) end)
    assert.is_true(skein.is_error(caught(f.get, f, 45), "timeout"))
    assert.equal("after", p:apply(function() return "after" end))
  end)
end)

for _, kind in ipairs({"thread", "process"}) do
  describe(kind .. " pools", function()
    it("run tasks an init starts in the worker's background, never holding up a job", function()
      -- The init's task never ends; it (and a task it starts) runs while
      -- the worker's jobs wait. This hung: the first job waited for it.
      local p <close> = skein.pool{kind = kind, size = 1, init = function()
        local skein = require "skein"
        _G.beats, _G.child_beats = 0, 0
        skein.spawn(function()
          skein.spawn(function() while true do _G.child_beats = _G.child_beats + 1; skein.sleep(0.01) end end)
          while true do _G.beats = _G.beats + 1; skein.sleep(0.01) end
        end)
      end}
      local beats, child = p:apply(function()
        local skein = require "skein"
        skein.sleep(0.3)
        return _G.beats, _G.child_beats
      end)
      assert.is_true(beats >= 5, "beats: " .. beats)
      assert.is_true(child >= 5, "child beats: " .. child)
      -- A job's own tasks are still waited for before its worker goes on.
      local got = p:apply(function()
        local skein = require "skein"
        local n = 0
        for _ = 1, 3 do skein.spawn(function() skein.sleep(0.05); _G.done3 = (_G.done3 or 0) + 1 end) end
        return n
      end)
      assert.equal(0, got)
      assert.equal(3, p:apply(function() return _G.done3 end))
    end)
  end)
end

describe("thread pools", function()
  it("really stop a runaway pure-Lua loop and keep the worker", function()
    local p <close> = skein.pool{kind = "thread", size = 1, timeout = 0.1}
    local t0 = skein.now()
    local f = p:submit(function() local x = 0 while true do x = x + 1 end end)
    local e = caught(f.get, f, 10)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.matches("timed out after 0.1", e.message)
    assert.is_true(skein.now() - t0 < 3)
    assert.equal(7, p:apply(function() return 7 end))
    assert.equal(1, p:stats().failed)
  end)

  it("run init once per worker", function()
    local p <close> = skein.pool{kind = "thread", size = 2, init = function(prefix) _G.prefix = prefix end,
                                 init_args = {"w:"}}
    local r = p:map(function(x) return _G.prefix .. x end, {"a", "b", "c"})
    assert.same({"w:a", "w:b", "w:c", n = 3}, r)
  end)

  it("recycle workers after max_tasks without losing queued tasks", function()
    local p <close> = skein.pool{kind = "thread", size = 2, max_tasks = 3}
    local r = p:map(function(x)
      _G.count = (_G.count or 0) + 1
      return _G.count
    end, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, {chunksize = 1})
    assert.equal(20, r.n)
    for i = 1, 20 do assert.is_true(r[i] <= 3, "worker ran " .. r[i] .. " tasks") end
    assert.is_true(p:stats().restarted >= 4)
  end)

  it("report a result that cannot cross, naming its path", function()
    local p <close> = skein.pool{kind = "thread", size = 1}
    local f = p:submit(function() return {ok = 1, handle = io.stdout} end)
    local e = caught(f.get, f, 10)
    assert.matches("result%[1%]%.handle: cannot send userdata", e.message)
    assert.equal(1, p:apply(function() return 1 end))
  end)

  it("wake an idle worker at once for a lone submit", function()
    local p <close> = skein.pool{kind = "thread", size = 2}
    for _ = 1, 3 do
      skein.sleep(0.05)           -- the workers are past their spin, asleep
      local t0 = skein.now()
      assert.is_true(p:submit(function() return 1 end):wait(5))
      assert.is_true(skein.now() - t0 < 1, "a lone submit waited")
    end
  end)

  it("wake a sleeping worker for a job while another runs a long one", function()
    local p <close> = skein.pool{kind = "thread", size = 2}
    local long = p:submit(function() skein.sleep(3) return "long" end)
    skein.sleep(0.05)             -- the other worker is asleep now
    local t0 = skein.now()
    for i = 1, 3 do
      assert.equal(i, p:submit(function() return i end):get(2))
      skein.sleep(0.05)
    end
    assert.is_true(skein.now() - t0 < 2, "the quick jobs waited for the long one")
    assert.is_false(long:done())
    p:terminate()
  end)

  it("end a script that left results unread once its jobs are done (none kept back)", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
      P = skein.pool{kind = "thread", size = 2}
      for i = 1, 50 do P:submit(function() return i end) end
      skein.sleep(0.1)            -- done, and the workers asleep
      P:submit(function() io.write("last ran\n") end)
    ]])
    f:close()
    local t0 = skein.now()
    local cmd = ("timeout -k 2 10 %s %s 2>&1; echo \"exit=$?\""):format(os.getenv("SKEIN_BIN") or arg[-1], path)
    local proc = io.popen(cmd)
    local out = proc:read("a")
    proc:close()
    os.remove(path)
    assert.matches("last ran\nexit=0", out)
    assert.is_true(skein.now() - t0 < 5)
  end)

  it("raise kind marshal naming a bad argument, at submit or in the worker, and go on", function()
    local p <close> = skein.pool{kind = "thread", size = 1}
    for _ = 1, 3 do
      -- What the encoder wrote before the bad value (a queue's reference
      -- among it) is freed, not leaked (the asan build checks).
      local e = caught(p.submit, p, function(a, b) return a end, skein.queue(), io.stdout)
      assert.is_true(skein.is_error(e, "marshal"))
      assert.equal("args[2]: cannot send userdata (a FILE*)", e.message)
      local h = io.stdout
      e = caught(p.submit, p, function() return h end)
      assert.equal("fn (upvalue h): cannot send userdata (a FILE*)", e.message)
      assert.equal(3, p:submit(function(a, b) return a + b end, 1, 2):get(5))
    end
    -- A call of plain values that cannot be sent either (a C function no
    -- module exports): the same error, and the next submit is served.
    local e = caught(p.submit, p, string.gmatch("a", "a"))
    assert.is_true(skein.is_error(e, "marshal"))
    assert.matches("^fn: cannot send a C function", e.message)
    assert.equal(3, p:submit(function(a, b) return a + b end, 1, 2):get(5))
    local mt = {}
    skein.register_metatable("spec.pool.Point", mt)
    local f = p:submit(function(pt) return pt.x end, setmetatable({x = 1}, mt))
    e = caught(f.get, f, 5)
    assert.is_true(skein.is_error(e, "marshal"))
    assert.matches("^args%[1%]: metatable 'spec.pool.Point' is not registered in this worker", e.message)
    assert.equal(3, p:submit(function(a, b) return a + b end, 1, 2):get(5))
  end)

  it("run CPU-bound work in parallel", function()
    local p <close> = skein.pool{kind = "thread", size = 2}
    local function fib(n) return n < 2 and n or fib(n - 1) + fib(n - 2) end
    local r = p:map(function(n) return fib(n) end, {20, 21, 22, 23})
    assert.same({6765, 10946, 17711, 28657, n = 4}, r)
  end)
end)

describe("skein.pool options", function()
  it("rejects bad input with clear errors", function()
    assert.error_matches(function() skein.pool{kind = "fiber"} end, "kind must be")
    assert.error_matches(function() skein.pool{size = 0} end, "size must be a positive integer")
    assert.error_matches(function() skein.pool{size = 1.5} end, "size must be a positive integer")
    assert.error_matches(function() skein.pool{timeout = -1} end, "timeout must not be negative")
    assert.error_matches(function() skein.pool{max_tasks = 0} end, "max_tasks must be a positive integer")
    assert.error_matches(function() skein.pool{init = 5} end, "init must be a function")
    assert.error_matches(function() skein.pool(5) end, "options table expected")
    local p <close> = skein.pool{kind = "thread", size = 1}
    assert.error_matches(function() p:submit(5) end, "function expected")
    assert.error_matches(function() p:map(print, 5) end, "iterable must be a list or an iterator function")
    assert.error_matches(function() p:map(print, {}, {chunksize = 0}) end, "chunksize must be a positive integer")
    local e = caught(p.submit, p, function() end, coroutine.create(print))
    assert.is_true(skein.is_error(e, "marshal"))
    assert.equal("args[1]: cannot send a coroutine", e.message)
  end)
end)
