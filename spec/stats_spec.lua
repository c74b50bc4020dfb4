-- Live statistics: pool:stats() per worker (time spent running jobs, jobs
-- run) and the queue wait's median and 99th percentile, for thread and
-- process pools; skein.stats() for the worker, the process and the tree.
local skein = require "skein"

local SLOW = (os.getenv("SKEIN_BIN") or ""):match("asan") ~= nil

local function check_workers(st, size, jobs, min_busy)
  assert.equal(size, #st.workers)
  local total_jobs, total_busy = 0, 0
  for _, w in ipairs(st.workers) do
    assert.is_number(w.busy)
    assert.is_true(w.busy >= 0)
    total_jobs = total_jobs + w.jobs
    total_busy = total_busy + w.busy
  end
  assert.equal(jobs, total_jobs)
  assert.is_true(total_busy >= min_busy, ("busy %g < %g"):format(total_busy, min_busy))
  assert.is_true(total_busy < 30)
end

describe("pool:stats()", function()
  it("a thread pool reports each worker's busy time and the queue wait", function()
    local pool <close> = skein.pool{kind = "thread", size = 2}
    local st = pool:stats()
    assert.equal(0, st.queue_wait_p50)
    assert.equal(0, st.queue_wait_p99)
    check_workers(st, 2, 0, 0)
    -- 8 jobs of 20 ms on 2 workers: the last ones wait for ~60 ms
    local fs = {}
    for i = 1, 8 do fs[i] = pool:submit(function() skein.sleep(0.02) return i end) end
    for i = 1, 8 do assert.equal(i, fs[i]:get()) end
    pool:close() pool:join()
    st = pool:stats()
    check_workers(st, 2, 8, 8 * 0.02 * 0.9)
    assert.is_true(st.queue_wait_p50 > 0.01, "p50 " .. st.queue_wait_p50)
    assert.is_true(st.queue_wait_p99 >= st.queue_wait_p50)
    assert.is_true(st.queue_wait_p99 > 0.04 and st.queue_wait_p99 < (SLOW and 5 or 1),
                   "p99 " .. st.queue_wait_p99)
  end)

  it("a process pool reports them too", function()
    local pool <close> = skein.pool{kind = "process", size = 2}
    local fs = {}
    for i = 1, 6 do
      fs[i] = pool:submit(function() require("skein").sleep(0.02) return i end)
    end
    for i = 1, 6 do assert.equal(i, fs[i]:get()) end
    local st = pool:stats()
    check_workers(st, 2, 6, 6 * 0.02 * 0.9)
    assert.is_true(st.queue_wait_p99 > 0.02, "p99 " .. st.queue_wait_p99)
    assert.is_true(st.queue_wait_p50 <= st.queue_wait_p99)
  end)

  it("a crashed worker's job counts as busy time, not as a job run", function()
    local pool <close> = skein.pool{kind = "process", size = 1}
    local f = pool:submit(function() require("skein").sleep(0.05) os.exit(3) end)
    assert.is_false(pcall(f.get, f))
    assert.equal(5, pool:submit(function() return 5 end):get())
    local st = pool:stats()
    check_workers(st, 1, 1, 0.04)
  end)
end)

describe("skein.stats()", function()
  it("counts this worker's live work, the process's workers, the tree's processes", function()
    local s0 = skein.stats()
    assert.is_number(s0.live)
    local t = skein.spawn(function() skein.sleep(0.05) end)
    local th = skein.thread(function() require("skein").sleep(0.2) end)
    local s1 = skein.stats()
    assert.equal(s0.live + 2, s1.live)
    assert.equal(s0.workers + 1, s1.workers)
    local pool <close> = skein.pool{kind = "process", size = 2}
    pool:submit(function() end):get()
    local s2 = skein.stats()
    assert.is_true(s2.processes >= 3, "processes " .. s2.processes)
    assert.is_true(s2.shm_used > 0 and s2.shm_used <= s2.shm_size)
    t:join() th:join()
    pool:close() pool:join()
    local s3 = skein.stats()
    assert.equal(s0.live, s3.live)
    assert.equal(s2.processes - 2, s3.processes)
  end)
end)
