-- The thread examples in examples/threads/ (ports of the Python templates):
-- each runs under the skein binary being tested and prints the same lines
-- on every run.
local root = debug.getinfo(1, "S").source:match("^@(.-)spec/[^/]*$") or ""
if root == "" then root = "./" end
local bin = os.getenv("SKEIN_BIN") or (root .. "build/bin/release/skein")

local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs an example with a 30 s bound; returns its output and exit status.
local function run(name)
  local p = assert(io.popen(("timeout 30 %s %s 2>&1"):format(sh(bin), sh(root .. "examples/threads/" .. name))))
  local out = require("spec.support.cli").unsanitized(p:read("a"))
  local ok, how, code = p:close()
  return out, ok and 0 or code, how
end

local lines = require("spec.support.cli").lines

describe("examples/threads", function()
  it("rlock_counter.lua: two threads count to 5 under a re-entered RLock", function()
    local out, code = run("rlock_counter.lua")
    assert.equal(0, code, out)
    local want = {"MainThread is running..."}
    for n = 0, 4 do
      want[#want + 1] = ("locked, Number: %d"):format(n)
      want[#want + 1] = ("released, Number: %d"):format(n + 1)
    end
    for _ = 1, 2 do
      want[#want + 1] = "locked, Number: 5"
      want[#want + 1] = "released, Number: 5"
    end
    want[#want + 1] = "Thread_1 and Thread_2 ended after 5 increments in all"
    want[#want + 1] = "MainThread ended, lock is free"
    assert.same(want, lines(out))
  end)

  it("event_gate.lua: an Event holds three threads until it is set", function()
    local out, code = run("event_gate.lua")
    assert.equal(0, code, out)
    assert.same({
      "Thread-1: start",
      "Thread-2: start",
      "Thread-3: start",
      "main: 3 threads wait at the gate (closed)",
      "main: opening the gate",
      "Thread-1: execute",
      "Thread-2: execute",
      "Thread-3: execute",
      "main: done",
    }, lines(out))
  end)

  it("condition.lua: notify_all wakes both consumer threads", function()
    local out, code = run("condition.lua")
    assert.equal(0, code, out)
    assert.same({
      "c1: consumer before wait",
      "c2: consumer before wait",
      "p: producer before notify_all",
      "p: producer after notify_all",
      "c1: consumer after wait (notified)",
      "c2: consumer after wait (notified)",
    }, lines(out))
  end)
end)
