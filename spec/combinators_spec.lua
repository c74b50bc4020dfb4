-- skein.wait (all three modes), as_completed, gather and select over tasks.
local skein = require "skein"

local function after(delay, value, fail)
  return skein.spawn(function()
    skein.sleep(delay)
    if fail then error(fail, 0) end
    return value
  end)
end

local function ids(list)
  local out = {}
  for i, t in ipairs(list) do out[i] = t.id end
  return out
end

describe("skein.wait", function()
  it("waits for all by default and keeps list order in done", function()
    local a, b, c = after(0.03, "a"), after(0.01, "b"), after(0.02, "c")
    local done, pending = skein.wait({a, b, c})
    assert.same(ids({a, b, c}), ids(done))
    assert.same({}, pending)
    assert.is_true(a:done() and b:done() and c:done())
  end)

  it("mode first returns as soon as one finishes", function()
    local slow, fast = after(1, "slow"), after(0.01, "fast")
    local t0 = skein.now()
    local done, pending = skein.wait({slow, fast}, {mode = "first"})
    assert.is_true(skein.now() - t0 < 0.5)
    assert.same(ids({fast}), ids(done))
    assert.same(ids({slow}), ids(pending))
    slow:cancel()
  end)

  it("mode first_error returns at the first failure", function()
    local ok1 = after(0.01, 1)
    local bad = after(0.02, nil, "broken")
    local slow = after(1, 3)
    local t0 = skein.now()
    local done, pending = skein.wait({ok1, bad, slow}, {mode = "first_error"})
    assert.is_true(skein.now() - t0 < 0.5)
    assert.same(ids({ok1, bad}), ids(done))
    assert.same(ids({slow}), ids(pending))
    assert.equal("failed", bad:status())
    pcall(bad.join, bad)
    slow:cancel()
  end)

  it("mode first_error waits for all when nothing fails", function()
    local done, pending = skein.wait({after(0.01, 1), after(0.02, 2)}, {mode = "first_error"})
    assert.equal(2, #done)
    assert.equal(0, #pending)
  end)

  it("returns what finished by the timeout", function()
    local fast, slow = after(0.01, 1), after(1, 2)
    local done, pending = skein.wait({fast, slow}, {timeout = 0.1})
    assert.same(ids({fast}), ids(done))
    assert.same(ids({slow}), ids(pending))
    slow:cancel()
  end)

  it("handles an empty list and already finished tasks", function()
    local done, pending = skein.wait({})
    assert.same({}, done)
    assert.same({}, pending)
    local t = skein.spawn(function() return 1 end)
    t:join()
    done = skein.wait({t, t})
    assert.equal(2, #done)
  end)

  it("rejects bad input", function()
    assert.error_matches(function() skein.wait(nil) end, "list of tasks or futures expected")
    assert.error_matches(function() skein.wait({1}) end, "item 1 of the list is not a task")
    assert.error_matches(function() skein.wait({}, "all") end, "options table expected")
    assert.error_matches(function() skein.wait({}, {mode = "any"}) end, "mode must be")
    assert.error_matches(function() skein.wait({}, {timeout = -1}) end, "timeout must not be negative")
    assert.error_matches(function() skein.wait({}, {timeout = 0 / 0}) end, "timeout is NaN")
  end)
end)

describe("skein.as_completed", function()
  it("yields tasks in the order they finish", function()
    local list = {after(0.03, "c"), after(0.01, "a"), after(0.02, "b")}
    local seen = {}
    for t in skein.as_completed(list) do seen[#seen + 1] = t:join() end
    assert.same({"a", "b", "c"}, seen)
  end)

  it("raises timeout when the deadline passes first", function()
    local list = {after(0.01, 1), after(1, 2)}
    local got = {}
    local ok, e = pcall(function()
      for t in skein.as_completed(list, 0.1) do got[#got + 1] = t:join() end
    end)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "timeout"))
    assert.same({1}, got)
    list[2]:cancel()
  end)

  it("can be left early with break", function()
    local list = {after(0.01, 1), after(0.5, 2)}
    for t in skein.as_completed(list) do
      assert.equal(1, t:join())
      break
    end
    list[2]:cancel()
  end)

  it("works inside a task", function()
    local t = skein.spawn(function()
      local n = 0
      for _ in skein.as_completed({after(0.01), after(0.02)}) do n = n + 1 end
      return n
    end)
    assert.equal(2, t:join(1))
  end)
end)

describe("skein.gather", function()
  it("returns results in list order", function()
    assert.same({"x", "y", "z"}, skein.gather({after(0.03, "x"), after(0.01, "y"), after(0.02, "z")}))
  end)

  it("raises the first error to happen, without waiting for slower tasks", function()
    local slow = after(1, "slow")
    local t0 = skein.now()
    local second = after(0.02, nil, "second")
    local ok, e = pcall(skein.gather, {slow, second, after(0.01, nil, "first")})
    assert.is_false(ok)
    assert.equal("first", e)
    assert.is_true(skein.now() - t0 < 0.5)
    slow:cancel()
    assert.equal("second", select(2, pcall(second.join, second)))
  end)

  it("raises timeout", function()
    local slow = after(1)
    local ok, e = pcall(skein.gather, {slow}, 0.05)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "timeout"))
    slow:cancel()
  end)

  it("raises cancelled for a cancelled task", function()
    local t = after(1)
    t:cancel()
    local ok, e = pcall(skein.gather, {t})
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "cancelled"))
  end)
end)

describe("skein.select", function()
  it("returns the index and values of the first task to finish", function()
    local slow = after(1, "slow")
    local i, v = skein.select({slow, after(0.01, "fast")})
    assert.equal(2, i)
    assert.equal("fast", v)
    slow:cancel()
  end)

  it("returns nil on timeout", function()
    local slow = after(1)
    assert.is_nil(skein.select({slow}, 0.02))
    slow:cancel()
  end)

  it("raises the error of a failed task", function()
    local ok, e = pcall(skein.select, {after(0.01, nil, "select failure")})
    assert.is_false(ok)
    assert.equal("select failure", e)
  end)
end)
