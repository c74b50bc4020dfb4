-- Time: skein.now, skein.sleep, skein.yield and skein.timeout scopes.
local skein = require "skein"

local caught = require("spec.support.errors").errof

describe("skein.now", function()
  it("is monotonic seconds", function()
    local a = skein.now()
    skein.sleep(0.02)
    local b = skein.now()
    assert.is_number(a)
    assert.is_true(b - a >= 0.02 and b - a < 0.5)
  end)
end)

describe("skein.sleep", function()
  it("sleeps at least the requested time, at the root and in tasks", function()
    local t0 = skein.now()
    skein.sleep(0.05)
    local dt = skein.now() - t0
    assert.is_true(dt >= 0.05 and dt < 0.5, "slept " .. dt)
    local t = skein.spawn(function() local s = skein.now(); skein.sleep(0.03); return skein.now() - s end)
    local inner = t:join(1)
    assert.is_true(inner >= 0.03 and inner < 0.5)
  end)

  it("suspends only its own task: many sleeps overlap", function()
    local t0 = skein.now()
    local ts = {}
    for i = 1, 2000 do ts[i] = skein.spawn(function() skein.sleep(0.1) end) end
    for i = 1, #ts do ts[i]:join(5) end
    local dt = skein.now() - t0
    assert.is_true(dt >= 0.1 and dt < 1.0, "took " .. dt)
  end)

  it("wakes sleepers in deadline order", function()
    local order = {}
    local ts = {}
    for _, d in ipairs({0.04, 0.01, 0.03, 0.02}) do
      ts[#ts + 1] = skein.spawn(function() skein.sleep(d) order[#order + 1] = d end)
    end
    skein.gather(ts, 2)
    assert.same({0.01, 0.02, 0.03, 0.04}, order)
  end)

  it("sleep(0) lets other tasks run", function()
    local ran = false
    local t = skein.spawn(function() ran = true end)
    local s = skein.spawn(function() skein.sleep(0) return ran end)
    assert.is_true(s:join(1))
    t:join(1)
  end)

  -- A root sleep whose deadline has passed by the time libuv runs is woken
  -- by a timer early in the loop pass; the pass must not then block in the
  -- poll while another handle (here a pool worker's pipe) keeps the loop
  -- alive. Run as a script: the hang is at the top level of a program.
  it("at the top level returns when its deadline passed before the loop ran", function()
    local cli = require "spec.support.cli"
    local d = cli.tmpdir()
    local script = cli.write(d .. "/sleep.lua", [[
      local pool = skein.pool{kind = "process", size = 1}
      assert(pool:submit(function() return 1 end):get() == 1)
      skein.sleep(0)
      io.write("a ")
      skein.spawn(function() local x = os.clock() while os.clock() - x < 0.05 do end end)
      skein.sleep(0.01)
      io.write("b ")
      local p = skein.process(function() skein.sleep(1) end)
      local t0 = skein.now()
      skein.sleep(0.01)
      io.write(string.format("c %.2f", skein.now() - t0))
      p:join()
      pool:close()
    ]])
    local r = cli.run({ script }, { timeout = 10 })
    cli.cleanup()
    assert.are.equal(0, r.code, r.err)
    local secs = tonumber(r.out:match("^a b c (%S+)$"))
    assert.is_number(secs, r.out)
    assert.is_true(secs < 0.5, "a 0.01 s sleep took " .. tostring(secs))
  end)

  it("rejects bad durations clearly", function()
    assert.matches("timeout must not be negative", caught(skein.sleep, -1))
    assert.matches("timeout is NaN", caught(skein.sleep, 0 / 0))
    assert.matches("number expected, got string", caught(skein.sleep, "1"))
    assert.matches("number expected, got no value", caught(skein.sleep))
  end)
end)

describe("skein.yield", function()
  it("works at the root by running one turn of the loop", function()
    local ran = false
    local t = skein.spawn(function() ran = true end)
    skein.yield()
    assert.is_true(ran)
    t:join(1)
  end)
end)

describe("skein.timeout", function()
  it("returns the function's results when it finishes in time", function()
    local a, b = skein.timeout(1, function(x) skein.sleep(0.01) return x, "ok" end, 5)
    assert.equal(5, a)
    assert.equal("ok", b)
  end)

  it("raises kind timeout when the deadline passes", function()
    local t0 = skein.now()
    local e = caught(skein.timeout, 0.05, function() skein.sleep(5) end)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.equal("timed out after 0.05 s", e.message)
    assert.is_true(skein.now() - t0 < 1)
  end)

  it("works inside tasks and leaves other tasks alone", function()
    local bystander = skein.spawn(function() skein.sleep(0.1) return "unharmed" end)
    local t = skein.spawn(function()
      return pcall(skein.timeout, 0.02, skein.sleep, 1)
    end)
    local ok, e = t:join(1)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.equal("unharmed", bystander:join(1))
  end)

  it("lets the earliest of nested deadlines win, and only that scope catches it", function()
    local inner_saw
    local e = caught(skein.timeout, 0.03, function()
      local ok, ie = pcall(skein.timeout, 5, function() skein.sleep(1) end)
      inner_saw = ie
      error(ie, 0)
    end)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.equal("timed out after 0.03 s", e.message)
    assert.is_true(skein.is_error(inner_saw, "timeout"))
    -- An inner, shorter scope raises and the outer one carries on.
    local r = skein.timeout(5, function()
      local ok = pcall(skein.timeout, 0.01, skein.sleep, 1)
      return ok and "inner finished" or "inner timed out"
    end)
    assert.equal("inner timed out", r)
  end)

  it("is sticky: a swallowed expiry comes back at the next suspension", function()
    local seen = 0
    local e = caught(skein.timeout, 0.02, function()
      pcall(skein.sleep, 1)
      seen = seen + 1
      skein.sleep(0.001)
      seen = seen + 1
    end)
    assert.equal(1, seen)
    assert.is_true(skein.is_error(e, "timeout"))
  end)

  it("does not confuse a join timeout inside the scope with its own", function()
    local slow = skein.spawn(function() skein.sleep(1) end)
    local r = skein.timeout(5, function()
      local ok, e = pcall(slow.join, slow, 0.01)
      return skein.is_error(e, "timeout") and "join timed out"
    end)
    assert.equal("join timed out", r)
    slow:cancel()
  end)

  it("passes other errors through untouched", function()
    local obj = {}
    local ok, e = pcall(skein.timeout, 1, function() error(obj) end)
    assert.is_false(ok)
    assert.equal(obj, e)
  end)

  it("rejects bad arguments clearly", function()
    assert.matches("timeout must not be negative", caught(skein.timeout, -1, print))
    assert.matches("timeout is NaN", caught(skein.timeout, 0 / 0, print))
    assert.matches("function expected", caught(skein.timeout, 1, 42))
    assert.matches("number expected", caught(skein.timeout, nil, print))
  end)
end)
