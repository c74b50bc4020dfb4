-- Runs the queue and pipe examples as a user would and checks what they
-- print. Each run is bounded by `timeout 30`.
local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]

local function run(path)
  local p = io.popen(("timeout 30 %s %s 2>&1; echo \"exit=$?\""):format(SKEIN, path))
  local out = require("spec.support.cli").unsanitized(p:read("a"))
  p:close()
  local body, status = out:match("^(.-)exit=(%d+)%s*$")
  return body, tonumber(status)
end

describe("examples/queues", function()
  it("poison_pills.lua: consumers stop at their pills after every job", function()
    local out, status = run("examples/queues/poison_pills.lua")
    assert.equal(0, status)
    local expected = {"creating 4 consumers"}
    for i = 0, 9 do expected[#expected + 1] = ("result ---> %d * %d = %d"):format(i, i, i * i) end
    expected[#expected + 1] = "4 consumers exited after 10 jobs"
    assert.equal(table.concat(expected, "\n") .. "\n", out)
  end)

  it("producer_consumers.lua: three consumer threads share 100 numbers", function()
    local out, status = run("examples/queues/producer_consumers.lua")
    assert.equal(0, status)
    assert.equal("3 consumers took 100 numbers\neach of 0..99 exactly once: true\n", out)
  end)

  it("lifo_priority.lua: last in first out, then by priority", function()
    local out, status = run("examples/queues/lifo_priority.lua")
    assert.equal(0, status)
    assert.equal("lifo:     5 4 3 2 1\n" ..
                 "priority: 1:fix the outage, 1:restart the server, 2:answer email, 3:write report\n" ..
                 "level 1: job2\nlevel 2: job4\nlevel 3: job5\nlevel 4: job3\nlevel 5: job1\n", out)
  end)

  it("pipes.lua: a duplex greeting, then a one-way pipe to its end", function()
    local out, status = run("examples/queues/pipes.lua")
    assert.equal(0, status)
    assert.equal("proc2 rec: hello\nproc1 rec: hello, too\n" ..
                 "rev: aa0\nrev: aa1\nrev: aa2\nrev: aa3\nrev: aa4\nreader: closed\n", out)
  end)
end)
