-- A process pool's workers are kept busy while a script submits jobs in a
-- row without waiting (host/proc_pool.c, pump): every few submits the
-- submit itself reads the answers already in and sends the jobs waiting,
-- as the loop would. These check that work goes on during such a loop,
-- that a submit never waits for a busy worker, and that nothing is lost or
-- reordered when a worker dies in the middle of one.
local skein = require "skein"

-- Submits jobs without ever yielding until one of their futures is done,
-- or `limit` seconds or 200 000 submits pass; returns the futures and how
-- many are done.
local function submit_until_done(p, fn, limit)
  local fs, done = {}, 0
  local deadline = skein.now() + limit
  local i = 0
  while done == 0 and i < 200000 and skein.now() < deadline do
    i = i + 1
    fs[i] = p:submit(fn, i)
    -- Looking at every future would make this loop quadratic: the oldest
    -- ones are the first to finish.
    for k = 1, math.min(i, 64) do
      if fs[k]:done() then done = done + 1 end
    end
  end
  return fs, done
end

describe("a process pool while a script submits without waiting", function()
  it("runs jobs and finishes their futures before the script first waits", function()
    local p <close> = skein.pool{kind = "process", size = 2}
    p:apply(function() end)                  -- the workers are up
    local fs, done = submit_until_done(p, function(x) return x * 2 end, 20)
    assert.is_true(done > 0, "no future finished during " .. #fs .. " submits")
    for i = 1, #fs do assert.equal(2 * i, fs[i]:get(30)) end
    local st = p:stats()
    assert.equal(#fs + 1, st.done)
    assert.equal(0, st.failed)
  end)

  it("does the same for a closure per submit and for a pool of one", function()
    local p <close> = skein.pool{kind = "process", size = 1}
    p:apply(function() end)
    local fs, done = {}, 0
    local deadline = skein.now() + 20
    local i = 0
    while done == 0 and i < 200000 and skein.now() < deadline do
      i = i + 1
      local k = i
      fs[i] = p:submit(function() return k + 1 end)
      if fs[1]:done() then done = 1 end
    end
    assert.is_true(done > 0, "no future finished during " .. #fs .. " submits")
    for j = 1, #fs do assert.equal(j + 1, fs[j]:get(30)) end
  end)

  it("never waits in a submit for a worker that is busy", function()
    local p <close> = skein.pool{kind = "process", size = 1}
    p:apply(function() end)
    -- The worker sleeps for two seconds; the submits behind it must all
    -- return while it still sleeps.
    local slow = p:submit(function() skein.sleep(2) return "slept" end)
    local fs = {}
    for i = 1, 500 do fs[i] = p:submit(function(x) return x end, i) end
    assert.is_false(slow:done())
    assert.equal("slept", slow:get(30))
    for i = 1, 500 do assert.equal(i, fs[i]:get(30)) end
  end)

  it("loses nothing when a worker dies in the middle of a run of submits", function()
    local p <close> = skein.pool{kind = "process", size = 2}
    p:apply(function() end)
    local fs = {}
    for i = 1, 3000 do
      if i == 700 then
        fs[i] = p:submit(function() os.exit(3) end)
      else
        fs[i] = p:submit(function(x) return x end, i)
      end
    end
    for i = 1, 3000 do
      if i == 700 then
        local ok, e = pcall(fs[i].get, fs[i], 30)
        assert.is_false(ok)
        assert.is_true(skein.is_error(e, "worker_died"))
      else
        assert.equal(i, fs[i]:get(30))
      end
    end
    local st = p:stats()
    assert.equal(2999 + 1, st.done)
    assert.equal(1, st.failed)
  end)
end)
