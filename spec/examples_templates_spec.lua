-- Examples ported from the seed templates that need no network: each runs
-- under the skein binary being tested, bounded in time, and its output is
-- checked line by line.
local cli = require "spec.support.cli"
local lines, sh = cli.lines, cli.q

-- Runs an example with a 60 s bound; returns its output (stdout then
-- stderr) and exit status.
local function run(name)
  local r = cli.run({ "examples/" .. name }, { timeout = 60 })
  return (r.out or "") .. (r.err or ""), r.code
end

describe("seed templates", function()
  teardown(cli.cleanup)

  it("processes/stock.lua: ten buyers in four processes sell exactly the stock", function()
    local out, code = run("processes/stock.lua")
    assert.equal(0, code, out)
    assert.same({ "10 buyers bought 100 items; 0 left in stock", "no item sold twice, none lost" },
                lines(out))
  end)

  it("processes/daemon.lua: a daemon process is killed at exit, a non-daemon one waited for", function()
    local t0 = os.time()
    local out, code = run("processes/daemon.lua")
    assert.equal(0, code, out)
    local got = lines(out)
    -- The children's first lines may come in either order.
    local children = { got[1], got[2], got[3] }
    table.sort(children)
    assert.same({ "Exiting : non-daemon", "Starting: daemon", "Starting: non-daemon" }, children)
    assert.same({ "p1.join(1) ---> timeout", "p2:alive() ---> false", "p1:alive() ---> true", "main ends" },
                { got[4], got[5], got[6], got[7] })
    assert.equal(7, #got)                       -- no "Exiting : daemon", no daemon thread line
    assert.is_true(os.time() - t0 < 5)          -- neither daemon was waited for
  end)

  it("sync/semaphore_barrier.lua: at most 3 inside, all 8 meet at the barrier, on threads and processes", function()
    local out, code = run("sync/semaphore_barrier.lua")
    assert.equal(0, code, out)
    assert.same({
      "thread : 8 workers, at most 3 inside at once (limit 3); 8 passed the barrier, 0 before it opened",
      "process: 8 workers, at most 3 inside at once (limit 3); 8 passed the barrier, 0 before it opened",
    }, lines(out))
  end)

  it("pools/as_completed_cancel.lua: results as they finish; all of them without Ctrl-C", function()
    local out, code = run("pools/as_completed_cancel.lua")
    assert.equal(0, code, out)
    -- Every result once, then the summary. (They come in the order the
    -- tasks finish, which on a loaded machine a late worker start can
    -- change: task 5 starts on the first free worker, task 4 waits for its
    -- worker process to start.)
    local got = lines(out)
    local summary = table.remove(got)
    table.sort(got, function(a, b) return tonumber(a:match("%d+")) < tonumber(b:match("%d+")) end)
    assert.same({ "result 1", "result 4", "result 9", "result 16", "result 25", "result 36", "result 49",
                  "result 64" }, got)
    assert.equal("all 8 tasks finished", summary)
  end)

  it("pools/as_completed_cancel.lua: Ctrl-C cancels what is left and the script ends normally", function()
    -- SIGINT to the whole process group, as a terminal sends it, once the
    -- fourth result is out; a watchdog bounds the run.
    local d = cli.tmpdir()
    local script = ([[
setsid %s %s 30 >%s/out 2>&1 </dev/null &
pid=$!
( sleep 40; kill -KILL $pid ) >/dev/null 2>&1 &
dog=$!
i=0
until grep -q "result 16" %s/out 2>/dev/null; do
  i=$((i + 1)); if [ $i -gt 600 ]; then break; fi
  sleep 0.05
done
t0=$(date +%%s%%N)
kill -INT -- -$pid
wait $pid; rc=$?
kill $dog 2>/dev/null
echo "$rc $(( ($(date +%%s%%N) - t0) / 1000000 ))"
]]):format(sh(cli.bin), sh("examples/pools/as_completed_cancel.lua"), d, d)
    local p = io.popen("bash -c " .. sh(script))
    local rc, ms = p:read("a"):match("(%d+) (%d+)")
    p:close()
    local out = io.open(d .. "/out"):read("a")
    assert.equal("0", rc, out)
    assert.is_true(tonumber(ms) < 5000, "took " .. ms .. " ms after the signal")
    local finished, cancelled = out:match("\nTask has been canceled! (%d+) finished, (%d+) cancelled before they started\n$")
    assert.is_string(finished, out)
    assert.is_true(tonumber(finished) >= 4 and tonumber(finished) < 30, out)
    assert.is_true(tonumber(cancelled) >= 1, out)
    assert.not_matches("all %d+ tasks finished", out)
  end)
end)
