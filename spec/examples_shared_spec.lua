-- The shared-state examples (examples/shared/) run as scripts and print
-- what their Python originals print. Each run is bounded by `timeout 30`.
local bin = os.getenv("SKEIN_BIN") or "build/bin/release/skein"

-- Runs an example; returns its output lines and the command's exit status.
local function run(name)
  local p = assert(io.popen(("timeout 30 %q examples/shared/%s 2>&1"):format(bin, name)))
  local out = require("spec.support.cli").unsanitized(p:read("a"))
  local _, _, code = p:close()
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines, code, out
end

local function range_list(first, last, step)
  local t = {}
  for i = first, last, step or 1 do t[#t + 1] = i end
  return "[" .. table.concat(t, ", ") .. "]"
end

describe("examples/shared", function()
  it("value_array.lua: the worker's changes reach the parent", function()
    local lines, code, out = run("value_array.lua")
    assert.equal(0, code, out)
    assert.same({
      "3.1415927",
      range_list(0, -9, -1),
      "hits = 4000, per slot = [1000, 1000, 1000, 1000]",
    }, lines)
  end)

  it("manager_list.lua: every item's result lands in the shared list once", function()
    local lines, code, out = run("manager_list.lua")
    assert.equal(0, code, out)
    assert.same({
      "40 items handled, 40 results",
      range_list(1, 40),
      "[[1, 4, 9], [9, 16, 25], [25, 36, 49], [49, 64, 81], [81, 100, 121]]",
    }, lines)
  end)

  it("manager_dict.lua: value, array, list and a dict updated by four workers", function()
    local lines, code, out = run("manager_dict.lua")
    assert.equal(0, code, out)
    assert.same({
      "3.14",
      "[5, 1, 2, 3, 4, 5, 6, 7, 8, 9]",
      "['Hello']",
      "brown=1 dog=2 fox=2 jumps=1 lazy=1 over=1 quick=1 runs=1 sleeps=1 the=4",
      "4 workers reported",
    }, lines)
  end)
end)
