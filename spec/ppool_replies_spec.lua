-- A process-pool worker holds the replies of jobs that were sent ahead and
-- writes them together (runtime/host/proc_child.c). These are the rules
-- that keep a held reply from waiting on the jobs after it.
local skein = require "skein"

local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]
local SLOW = SKEIN:match("asan") ~= nil      -- sanitizer builds start slower

-- On a 1-process pool: a job that keeps the worker busy for `busy`
-- seconds, then a quick job `a`, then `b` (with its arguments), then quick
-- fillers. While the first runs, the pool sends `a` and `b` ahead; the
-- worker reads them together, so that `a`'s reply is held while `b` runs.
local function behind(p, busy, b, ...)
  local first = p:submit(function(s) skein.sleep(s) return "first" end, busy)
  local a = p:submit(function() return "a" end)
  local fb = p:submit(b, ...)
  local fillers = {}
  for i = 1, 6 do fillers[i] = p:submit(function(x) return x end, i) end
  return first, a, fb, fillers
end

local function spin(s)
  local t = os.clock() + s
  while os.clock() < t do end
  return "b"
end

describe("a process-pool worker holding replies", function()
  it("delivers a held reply while the job after it runs (CPU-bound)", function()
    local p <close> = skein.pool{kind = "process", size = 1}
    p:apply(function() end)
    local t0 = skein.now()
    local first, a, fb, fillers = behind(p, SLOW and 0.6 or 0.3, spin, 3)
    assert.equal("a", a:get(30))
    local at = skein.now() - t0
    assert.is_false(fb:done())        -- delivered while b still runs
    assert.is_true(at < 2.5, ("a's reply came after %.2f s"):format(at))
    assert.equal("first", first:get(30))
    assert.equal("b", fb:get(30))
    for i = 1, 6 do assert.equal(i, fillers[i]:get(30)) end
  end)

  it("delivers a held reply while the job after it blocks in C", function()
    local p <close> = skein.pool{kind = "process", size = 1}
    p:apply(function() end)
    local t0 = skein.now()
    local _, a, fb = behind(p, SLOW and 0.6 or 0.3, function() os.execute("sleep 3") return "b" end)
    assert.equal("a", a:get(30))
    local at = skein.now() - t0
    assert.is_false(fb:done())
    assert.is_true(at < 2.5, ("a's reply came after %.2f s"):format(at))
    assert.equal("b", fb:get(30))
  end)

  it("lets a job's call into the parent wait on a held reply's result", function()
    -- b's queue:get waits in the parent, which puts only once a is done.
    local p <close> = skein.pool{kind = "process", size = 1}
    p:apply(function() end)
    local q = skein.queue()
    local t0 = skein.now()
    local _, a, fb = behind(p, SLOW and 0.6 or 0.3, function(queue) return queue:get(20) end, q)
    assert.equal("a", a:get(30))
    q:put("after a")
    assert.equal("after a", fb:get(30))
    assert.is_true(skein.now() - t0 < 10)
  end)

  it("loses no held reply when the job after it calls os.exit", function()
    local p <close> = skein.pool{kind = "process", size = 1}
    p:apply(function() end)
    local _, a, fb, fillers = behind(p, SLOW and 0.6 or 0.3, function() os.exit(7) end)
    assert.equal("a", a:get(30))
    local ok, e = pcall(fb.get, fb, 30)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "worker_died"))
    assert.equal(7, e.exit_code)
    for i = 1, 6 do assert.equal(i, fillers[i]:get(30)) end
  end)

  it("answers a task with a timeout at once, without holding", function()
    -- a has a timeout: its clock runs from the reply before it, so neither
    -- may wait on b. Under holding a would be killed at its timeout.
    local p <close> = skein.pool{kind = "process", size = 1, timeout = 1}
    p:apply(function() end)
    local _, a, fb = behind(p, SLOW and 0.6 or 0.3, spin, 2.5)
    assert.equal("a", a:get(30))
    local ok, e = pcall(fb.get, fb, 30)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "timeout"))
  end)

  it("keeps every result in order under a stream of small tasks", function()
    local p <close> = skein.pool{kind = "process", size = 2}
    local futures = {}
    for i = 1, 5000 do futures[i] = p:submit(function(x) return x * 2 end, i) end
    for i = 1, 5000 do assert.equal(2 * i, futures[i]:get(30)) end
    local r = p:map(function(x) return x + 1 end, (function()
      local t = {}
      for i = 1, 20000 do t[i] = i end
      return t
    end)())
    for i = 1, 20000 do assert.equal(i + 1, r[i]) end
  end)
end)

describe("a process pool's writes to its workers", function()
  it("keep frames whole and in order when the socket takes only part of a write", function()
    -- A 6 MB argument is more than a socket takes at once: the rest of that
    -- write is queued, and the small jobs after it must queue behind it.
    local p <close> = skein.pool{kind = "process", size = 2}
    local big = string.rep("0123456789abcdef", 6 * 65536)
    local futures = {}
    for round = 1, 3 do
      futures[#futures + 1] = p:submit(function(s) return #s, s:sub(-16) end, big)
      for i = 1, 200 do futures[#futures + 1] = p:submit(function(x) return x end, round * 1000 + i) end
    end
    local k = 0
    for round = 1, 3 do
      k = k + 1
      local n, tail = futures[k]:get(60)
      assert.equal(#big, n)
      assert.equal("0123456789abcdef", tail)
      for i = 1, 200 do
        k = k + 1
        assert.equal(round * 1000 + i, futures[k]:get(60))
      end
    end
  end)
end)
