-- Runs the coroutine and pool examples as a user would and checks what
-- they print.
local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]

local function run(path)
  local p = io.popen(("timeout 60 %s %s 2>&1; echo \"exit=$?\""):format(SKEIN, path))
  local out = require("spec.support.cli").unsanitized(p:read("a"))
  p:close()
  local body, status = out:match("^(.-)exit=(%d+)%s*$")
  return body, tonumber(status)
end

describe("examples", function()
  it("hello.lua runs three sleeps concurrently", function()
    local out, status = run("examples/hello.lua")
    assert.equal(0, status)
    assert.equal("task 2 slept 0.1 s\ntask 3 slept 0.2 s\ntask 1 slept 0.3 s\nall done in 0.3 s\n", out)
  end)

  it("pools/thread_pool.lua collects 40 results in order", function()
    local out, status = run("examples/pools/thread_pool.lua")
    assert.equal(0, status)
    local expected = {}
    for d = 0, 39 do expected[#expected + 1] = tostring(d + 1) end
    assert.equal(table.concat(expected, " ") .. "\n40 results from 5 threads\n", out)
  end)

  it("pools/worker_heartbeat.lua: the workers' heartbeats go on while the pool is idle", function()
    local out, status = run("examples/pools/worker_heartbeat.lua")
    assert.equal(0, status, out)
    assert.equal("squares: 1 4 9 16 25 36 49 64 81 100\n" ..
                 "heartbeats while idle: every worker, several times\n", out)
  end)

  it("pools/coroutine_pool_deadline.lua cuts the slow job at the deadline", function()
    local out, status = run("examples/pools/coroutine_pool_deadline.lua")
    assert.equal(0, status)
    assert.matches("^%[%-%] Time out%.%.%.%.\ttrue\n", out)
    assert.matches("\n1 2 3 .- 38 39\n39 of 40 jobs finished before the deadline\n$", out)
  end)

  it("pools/crawler_callbacks.lua fetches pages from its local server and parses them in arrival order", function()
    local out, status = run("examples/pools/crawler_callbacks.lua")
    assert.equal(0, status)
    assert.equal('parsed /page/b: 200 "Page B" (300 bytes)\n' ..
                 'parsed /page/c: 200 "Page C" (4500 bytes)\n' ..
                 'parsed /page/a: 200 "Page A" (1200 bytes)\n' ..
                 "3 pages, handled in the order they arrived\n", out)
  end)

  it("io/fs_walk.lua walks a tree with one task per directory", function()
    local out, status = run("examples/io/fs_walk.lua")
    assert.equal(0, status)
    assert.equal("4 files, 604 bytes\n", out)
  end)

  it("coroutines/producer_consumer.lua alternates producer and consumer", function()
    local out, status = run("examples/coroutines/producer_consumer.lua")
    assert.equal(0, status)
    local expected = {}
    for n = 1, 5 do
      expected[#expected + 1] = ("[PRODUCER] Producing %d...\n[CONSUMER] Consuming %d...\n" ..
                                 "[PRODUCER] Consumer return: 200 OK\n"):format(n, n)
    end
    assert.equal(table.concat(expected), out)
  end)
end)
