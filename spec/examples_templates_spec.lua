-- Examples ported from the seed templates that need no network: each runs
-- under the skein binary being tested, bounded in time, and its output is
-- checked line by line.
local root = debug.getinfo(1, "S").source:match("^@(.-)spec/[^/]*$") or ""
if root == "" then root = "./" end
local bin = os.getenv("SKEIN_BIN") or (root .. "build/bin/release/skein")

local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs an example with a 60 s bound; returns its output and exit status.
local function run(name)
  local p = assert(io.popen(("timeout 60 %s %s 2>&1"):format(sh(bin), sh(root .. "examples/" .. name))))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("seed templates", function()
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
end)
