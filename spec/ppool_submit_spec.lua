-- A process pool's submit and reply, as the parent handles them: a call of
-- plain values is encoded into a box the submit keeps (host/call.c), the job
-- copies its bytes (host/proc_pool.c), and a reply of a few bytes is kept
-- inside its future rather than in an allocation of its own (host/futures.c,
-- SK_FUT_SMALL). These check that each of those keeps its promise.
local skein = require "skein"
local caught = require("spec.support.errors").errof

describe("a process pool's submit", function()
  it("raises kind marshal naming a bad argument, and the next submits are served", function()
    local p <close> = skein.pool{kind = "process", size = 1}
    for _ = 1, 3 do
      -- A call of plain values that cannot be sent (a C function no
      -- module exports): raised by the boxed encoder, which loses its box.
      local e = caught(p.submit, p, string.gmatch("a", "a"))
      assert.is_true(skein.is_error(e, "marshal"))
      assert.matches("^fn: cannot send a C function", e.message)
      assert.equal(3, p:submit(function(a, b) return a + b end, 1, 2):get(10))
      -- Any other call goes through the protected encoder.
      e = caught(p.submit, p, function(a, b) return a end, skein.queue(), io.stdout)
      assert.is_true(skein.is_error(e, "marshal"))
      assert.equal("args[2]: cannot send userdata (a FILE*)", e.message)
      local k = 10
      assert.equal(11, p:submit(function() return k + 1 end):get(10))
    end
  end)

  -- Both pools copy the bytes at submit (the thread pool's job too), while
  -- the submit's box serves the next one.
  for _, kind in ipairs({"process", "thread"}) do
    it("copies each job's bytes: big and small jobs in a row keep their own arguments (" .. kind
       .. " pool)", function()
      local p <close> = skein.pool{kind = kind, size = 2}
      local fs = {}
      for i = 1, 30 do
        local s = (i % 5 == 0) and ("x"):rep(100000 + i) or tostring(i)
        if i % 3 == 0 then
          fs[i] = p:submit(function() return #s, s:sub(-3) end)        -- an upvalue
        elseif i % 7 == 0 then
          fs[i] = p:submit(function(t) return #t[1], t[1]:sub(-3) end, {s})   -- not plain
        else
          fs[i] = p:submit(function(v) return #v, v:sub(-3) end, s)
        end
      end
      for i = 1, 30 do
        local s = (i % 5 == 0) and ("x"):rep(100000 + i) or tostring(i)
        local n, tail = fs[i]:get(30)
        assert.equal(#s, n)
        assert.equal(s:sub(-3), tail)
      end
    end)
  end
end)

describe("a process pool's replies of every size around a future's inner room", function()
  it("give each value whole, twice, to select, and to a child the future is sent to", function()
    local p <close> = skein.pool{kind = "process", size = 2}
    local fs = {}
    for k = 0, 48 do
      fs[k] = p:submit(function(n) return ("v"):rep(n), n end, k)
    end
    fs[49] = p:submit(function() end)
    fs[50] = p:submit(function() return nil, false, 0.5, -7 end)
    for k = 0, 48 do
      local s, n = fs[k]:get(30)
      assert.equal(("v"):rep(k), s)
      assert.equal(k, n)
      assert.equal(s, (fs[k]:get(1)))                   -- read again
      local which, v = skein.select({fs[k]}, 1)
      assert.equal(1, which)
      assert.equal(s, v)
    end
    assert.equal(0, select("#", fs[49]:get(30)))
    local a, b, c, d = fs[50]:get(30)
    assert.is_nil(a)
    assert.is_false(b)
    assert.equal(0.5, c)
    assert.equal(-7, d)
    -- Finished futures move to the shared segment when a child gets them,
    -- their outcome with them.
    local list = {}
    for k = 0, 48 do list[k + 1] = fs[k] end
    local child = skein.process(function(futures)
      local out = {}
      for k = 0, 48 do
        local s, n = futures[k + 1]:get(10)
        out[k + 1] = (#s == k and n == k and s == ("v"):rep(k)) and "1" or "0"
      end
      return table.concat(out)
    end, list)
    assert.equal(("1"):rep(49), child:join(60))
  end)

  it("and a thread pool's, whose workers keep one results buffer from job to job", function()
    -- One worker, so every job after the first is encoded into storage the
    -- one before left: small results copied into their futures, bigger
    -- ones and those holding objects handed over, failures in between.
    local p <close> = skein.pool{kind = "thread", size = 1}
    local fs = {}
    for k = 0, 60 do
      if k % 7 == 3 then
        fs[k] = p:submit(function(n) error("e" .. n, 0) end, k)
      elseif k % 11 == 5 then
        fs[k] = p:submit(function(n) local q = skein.queue() q:put(n) return q, n end, k)
      else
        fs[k] = p:submit(function(n) return ("w"):rep(n), n end, k)
      end
    end
    for k = 0, 60 do
      if k % 7 == 3 then
        local ok, e = pcall(fs[k].get, fs[k], 30)
        assert.is_false(ok)
        assert.equal("e" .. k, e.message)
      elseif k % 11 == 5 then
        local q, n = fs[k]:get(30)
        assert.equal(k, n)
        assert.equal(k, q:get(1))
      else
        local s, n = fs[k]:get(30)
        assert.equal(("w"):rep(k), s)
        assert.equal(k, n)
        assert.equal(s, (fs[k]:get(1)))
      end
    end
  end)

  it("give a thread's and a process's results to a child that joins their handles", function()
    for _, k in ipairs({0, 5, 20, 23, 24, 25, 40, 1000}) do
      local th = skein.thread(function(n) return ("t"):rep(n), n end, k)
      local pr = skein.process(function(n) return ("p"):rep(n), n end, k)
      assert.equal(k, select(2, th:join(30)))
      assert.equal(k, select(2, pr:join(30)))
      local child = skein.process(function(t, q)
        local ts, tn = t:join(10)
        local ps, pn = q:join(10)
        return #ts, tn, #ps, pn, ts:sub(1, 1), ps:sub(1, 1)
      end, th, pr)
      local tl, tn, pl, pn, tc, pc = child:join(60)
      assert.same({k, k, k, k}, {tl, tn, pl, pn})
      if k > 0 then
        assert.equal("t", tc)
        assert.equal("p", pc)
      end
    end
  end)
end)

describe("the last function a worker sent", function()
  -- The encoder keeps the prototype it sent last (host/marshal_enc.c,
  -- push_dump), and the last plain function (no upvalue but _ENV) with its
  -- whole encoding (remember_plain). A function made by load, sent once and
  -- collected, leaves its prototype's memory to those made after it (with
  -- this build's allocator, at once: without push_dump's liveness check,
  -- nearly every closure below would run its predecessor's code). Each must
  -- travel with its own.
  for _, kind in ipairs({"thread", "process"}) do
    it("is never mistaken for a new function at its address (" .. kind .. " pool)", function()
      local p <close> = skein.pool{kind = kind, size = 1}
      local wrong = {}
      -- Closures with an upvalue of their own (found by prototype), then
      -- plain functions, the chunks themselves (found by their address),
      -- 300 of each.
      local makers = {
        function(i) return assert(load(("local y = 1000 return function(x) return x * y + %d end"):format(i)))() end,
        function(i) return assert(load(("local x = ... return x * 1000 + %d"):format(i))) end,
      }
      for m, make in ipairs(makers) do
        for i = 1, 300 do
          local f = make(i)
          local v = p:submit(f, 7):get(30)
          if v ~= 7000 + i then wrong[#wrong + 1] = ("%d.%d gave %s"):format(m, i, tostring(v)) end
          f = nil
          if i % 2 == 0 then collectgarbage() else collectgarbage("step", 0) end
          if i % 50 == 0 then
            -- A closure of one prototype, many times over.
            local g = assert(load(("local k = %d return function() return k end"):format(i)))
            for _ = 1, 3 do assert.equal(i, p:submit(g()):get(30)) end
          end
        end
      end
      assert.same({}, wrong)
    end)
  end

  it("never takes a new plain function for the collected one at its address", function()
    -- Two functions without upvalues, made one at a time and dropped
    -- between sends: a new closure may take the memory of the one just
    -- collected, so only a strong hold keeps the address meaning one
    -- function.
    local p <close> = skein.pool{kind = "thread", size = 1}
    local makers = {function() return function() return 1 end end,
                    function() return function() return 2 end end}
    local wrong = 0
    for i = 1, 200 do
      local k = i % 2 + 1
      local f = makers[k]()
      if p:submit(f):get(30) ~= k then wrong = wrong + 1 end
      f = nil
      collectgarbage()
    end
    assert.equal(0, wrong)
  end)

  it("keeps named functions apart when they alternate, repeat in one call or have their own _ENV", function()
    for _, kind in ipairs({"thread", "process"}) do
      local p <close> = skein.pool{kind = kind, size = 1}
      local function double(x) return 2 * x end
      local function square(x) return x * x end
      local function apply(f, g, x) return f(g(x)) end
      local fs = {}
      for i = 1, 60 do
        if i % 3 == 0 then fs[i] = p:submit(apply, double, double, i)      -- one function twice
        elseif i % 3 == 1 then fs[i] = p:submit(double, i)
        else fs[i] = p:submit(square, i) end
      end
      for i = 1, 60 do
        local want = i % 3 == 0 and 4 * i or (i % 3 == 1 and 2 * i or i * i)
        assert.equal(want, fs[i]:get(30))
      end
      -- With an _ENV of its own, a plain function still runs with the
      -- worker's globals (as it always did): _ENV travels by name.
      local where = load("return type(skein)", "=where", "t", {type = function() return "mine" end})
      assert.equal("mine", where())
      assert.equal("table", p:submit(where):get(30))
      assert.equal(8, p:submit(double, 4):get(30))
    end
  end)
end)

-- pool:submit is one C function for every pool (lua/pool.c, _submit_via):
-- it calls a thread or process pool's engine directly, remembering the
-- last kind of engine it met, and hands every other case to the Lua path.
describe("pool:submit across kinds of pools", function()
  it("reaches thread, process and coroutine pools in turn, with their own timeouts", function()
    local tp <close> = skein.pool{kind = "thread", size = 1}
    local pp <close> = skein.pool{kind = "process", size = 1}
    local cp <close> = skein.pool{kind = "coroutine", size = 2}
    local callable = setmetatable({}, {__call = function(_, x) return -x end})
    local pools, fs = {tp, pp, cp}, {}
    for i = 1, 90 do
      local p = pools[i % 3 + 1]
      if i % 9 == 0 then fs[i] = cp:submit(callable, i)           -- not a function: the Lua path
      elseif i % 2 == 0 then fs[i] = p:submit(function(x) return x + 1 end, i)
      else fs[i] = p.submit(p, function(a, b) return a * b end, i, 2) end
    end
    for i = 1, 90 do
      local want = i % 9 == 0 and -i or (i % 2 == 0 and i + 1 or 2 * i)
      assert.equal(want, fs[i]:get(30))
    end
    -- Each pool's own per-task timeout, read at every submit: the job is
    -- stopped by it (its message says so), long before get's own bound.
    local slow <close> = skein.pool{kind = "thread", size = 1, timeout = 0.2}
    local t0 = skein.now()
    local ok, e = pcall(function() return slow:submit(function() skein.sleep(30) end):get(20) end)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "timeout"), tostring(e))
    assert.matches("after 0.2", e.message, 1, true)
    assert.is_true(skein.now() - t0 < 10)
    assert.equal(3, tp:submit(function() skein.sleep(0.3) return 3 end):get(20))
  end)

  it("passes every argument, none and many, in order", function()
    for _, kind in ipairs({"thread", "process"}) do
      local p <close> = skein.pool{kind = kind, size = 1}
      assert.equal(0, p:submit(function(...) return select("#", ...) end):get(30))
      local args = {}
      for i = 1, 40 do args[i] = i end
      assert.equal(40 * 41 // 2, p:submit(function(...)
        local s = 0
        for i = 1, select("#", ...) do s = s + select(i, ...) * (select(i, ...) == i and 1 or 0) end
        return s
      end, table.unpack(args)):get(30))
      assert.same({n = 3, 1, nil, 3}, table.pack(p:submit(function(...) return ... end, 1, nil, 3):get(30)))
    end
  end)

  -- pool:submit encodes a thread pool's and a process pool's jobs in one
  -- buffer of its own (lua/pool.c, through each engine's submit hook): jobs
  -- of every size, around what the buffer keeps between submits, must each
  -- keep their own bytes whichever kind comes next.
  it("keeps each job's arguments whole when thread and process pools alternate", function()
    local tp <close> = skein.pool{kind = "thread", size = 1}
    local pp <close> = skein.pool{kind = "process", size = 1}
    local sizes = {3, 70000, 10, 65536, 200000, 65000, 1, 140000}
    local fs, want = {}, {}
    for i = 1, 48 do
      local n = sizes[i % #sizes + 1]
      local s = ("x"):rep(n - 1) .. string.char(65 + i % 26)
      local p = (i % 3 == 0) and tp or pp
      fs[i] = p:submit(function(v, k) return #v, v:sub(-1), k end, s, i)
      want[i] = {n, string.char(65 + i % 26), i}
    end
    for i = 1, 48 do assert.same(want[i], {fs[i]:get(30)}) end
  end)

  it("still raises a closed or terminated pool's error, and an odd timeout's", function()
    for _, kind in ipairs({"thread", "process"}) do
      local p = skein.pool{kind = kind, size = 1}
      assert.equal(2, p:submit(function() return 2 end):get(30))
      p:close()
      local ok, e = pcall(p.submit, p, function() return 1 end)
      assert.is_false(ok)
      assert.is_true(skein.is_error(e, "closed"), kind .. ": " .. tostring(e))
      p:join(30)
      local q = skein.pool{kind = kind, size = 1}
      q:terminate()
      ok, e = pcall(q.submit, q, function() return 1 end)
      assert.is_false(ok)
      assert.is_true(skein.is_error(e, "closed"), kind .. ": " .. tostring(e))
      q:join(30)
      -- A timeout that is not a number >= 0 goes the Lua way, to the
      -- engine's own check.
      local r <close> = skein.pool{kind = kind, size = 1}
      r.timeout = -1
      ok, e = pcall(r.submit, r, function() return 1 end)
      assert.is_false(ok)
      assert.matches("timeout must be a non%-negative number", tostring(e))
      r.timeout = "soon"
      ok, e = pcall(r.submit, r, function() return 1 end)
      assert.is_false(ok)
      assert.matches("number expected, got string", tostring(e))
      r.timeout = nil
      assert.equal(5, r:submit(function(x) return x end, 5):get(30))
    end
  end)
end)
