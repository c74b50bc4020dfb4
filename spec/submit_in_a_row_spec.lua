-- Pools while a script submits jobs in a row without waiting (so its loop
-- does not run). A process pool's workers are kept busy meanwhile
-- (host/proc_pool.c, pump): every few submits the submit itself reads the
-- answers already in and sends the jobs waiting, as the loop would. A
-- thread pool's finished jobs come back to the submitter meanwhile
-- (host/thread_pool.c, REAP_EVERY): its port delivers every few submits,
-- so they are freed and uncounted instead of piling up until it waits.
-- These check that work goes on and is accounted for during such a loop,
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

-- Waits (up to 10 s, letting the loop run) until the live work counted in
-- this worker is `n`; returns the last count seen.
local function settle_live(n)
  local deadline = skein.now() + 10
  while skein.stats().live ~= n and skein.now() < deadline do skein.sleep(0.01) end
  return skein.stats().live
end

describe("a thread pool while a script submits without waiting", function()
  it("takes back the jobs that finished, before the script first waits", function()
    local p <close> = skein.pool{kind = "thread", size = 2}
    p:apply(function() end)
    local live0 = skein.stats().live
    -- Submit until the count of live work is below what was submitted:
    -- finished jobs were uncounted while the loop went on.
    local fs, n, low = {}, 0, false
    local deadline = skein.now() + 20
    while not low and n < 200000 and skein.now() < deadline do
      n = n + 1
      fs[n] = p:submit(function(x) return x + 1 end, n)
      if n % 100 == 0 then low = skein.stats().live - live0 < n end
    end
    assert.is_true(low, "live work still counted every job after " .. n .. " submits")
    for i = 1, n do assert.equal(i + 1, fs[i]:get(30)) end
    assert.equal(live0, settle_live(live0))
    assert.equal(n + 1, p:stats().done)
  end)

  it("keeps a task's own live count right when its jobs come back during submits", function()
    local p <close> = skein.pool{kind = "thread", size = 2}
    local t = skein.spawn(function()
      local fs = {}
      for i = 1, 5000 do fs[i] = p:submit(function(x) return -x end, i) end
      local s = 0
      for i = 1, 5000 do s = s + fs[i]:get(30) end
      return s
    end)
    local live0 = skein.stats().live
    assert.equal(-5000 * 5001 // 2, t:join(60))
    assert.equal(live0 - 1, settle_live(live0 - 1))   -- the task itself was counted too
  end)

  it("gives a job whose memory served an earlier job only its own bytes", function()
    -- A submitter keeps finished jobs' blocks for its next submits
    -- (thread_pool.c, job_alloc): code of every length around what a kept
    -- block holds, in runs long enough that the blocks come back between
    -- submits, and each job must see exactly its own arguments.
    local p <close> = skein.pool{kind = "thread", size = 2}
    local function echo(s, n) return #s, s:sub(1, 1), s:sub(-1), n end
    for round = 1, 3 do
      local fs, want = {}, {}
      for i = 1, 600 do
        local len = (i * 37 + round) % 400
        local s = string.char(65 + i % 26):rep(len) .. string.char(97 + (i + round) % 26)
        want[i] = s
        if i % 2 == 0 then fs[i] = p:submit(echo, s, i)
        else fs[i] = p:submit(function() return echo(s, i) end) end
      end
      for i = 1, 600 do
        local n, first, last, k = fs[i]:get(30)
        assert.equal(#want[i], n)
        assert.equal(want[i]:sub(1, 1), first)
        assert.equal(want[i]:sub(-1), last)
        assert.equal(i, k)
      end
    end
  end)
end)
