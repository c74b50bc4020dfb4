-- Runs examples/io/subprocess_fanout.lua as a user would and checks exactly
-- what it prints (results in the order of the commands, whatever order the
-- children finish in) and that it exits with status 0.
local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]

local function run(name)
  local p = io.popen(("timeout 60 %s examples/io/%s 2>&1; echo \"exit=$?\""):format(SKEIN, name))
  local out = require("spec.support.cli").unsanitized(p:read("a"))
  p:close()
  local body, status = out:match("^(.-)exit=(%d+)%s*$")
  return body, tonumber(status)
end

describe("examples/io", function()
  it("subprocess_fanout.lua: a pool of 4 coroutines runs 11 commands and collects their output", function()
    local out, status = run("subprocess_fanout.lua")
    assert.equal([[
 1  sh     exit 0: job 1 done
 2  sh     exit 0: job 2 done
 3  sh     exit 0: job 3 done
 4  sh     exit 0: job 4 done
 5  sh     exit 0: job 5 done
 6  sh     exit 0: job 6 done
 7  sh     exit 0: job 7 done
 8  sh     exit 0: job 8 done
 9  sh     exit 3 [stderr: oops]
10  sleep  killed by SIGTERM (timeout)
11  wc     exit 0: 3
11 commands, 4 at a time: overlapped
]], out)
    assert.equal(0, status)
  end)
end)
