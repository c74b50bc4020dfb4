-- subprocess_fanout.lua — runs a batch of shell commands on a pool of four
-- coroutines: at most four children at a time, each task suspended (not
-- the program) while its child runs. Every child's output and exit status
-- is collected with skein.exec.run; one command is too slow for its
-- timeout and is killed, one fails, one writes to stderr. The results are
-- printed in the order of the commands, then whether the batch overlapped
-- (run one after another, the commands would take over 2.9 s).
local commands = {}
for i = 1, 8 do                              -- eight jobs of 0.3 s each
  commands[#commands + 1] = {"sh", {"-c", "sleep 0.3; echo job " .. i .. " done"}}
end
commands[#commands + 1] = {"sh", {"-c", "echo oops >&2; exit 3"}}
commands[#commands + 1] = {"sleep", {"30"}, {timeout = 0.5}}
commands[#commands + 1] = {"wc", {"-l"}, {stdin = "one\ntwo\nthree\n"}}

local function run(cmd)
  local r = skein.exec.run(cmd[1], cmd[2], cmd[3])
  local out = (r.stdout or ""):gsub("%s+$", "")
  local err = (r.stderr or ""):gsub("%s+$", "")
  if r.signal then
    return ("killed by %s%s"):format(r.signal, r.timed_out and " (timeout)" or "")
  end
  return ("exit %d%s%s"):format(r.code, out ~= "" and ": " .. out or "",
                                err ~= "" and " [stderr: " .. err .. "]" or "")
end

local t0 = skein.now()
local pool <close> = skein.pool{kind = "coroutine", size = 4}
local jobs = {}
for i, cmd in ipairs(commands) do jobs[i] = pool:submit(run, cmd) end
for i, job in ipairs(jobs) do
  print(("%2d  %-6s %s"):format(i, commands[i][1], job:get(30)))
end
local took = skein.now() - t0
-- Eight jobs of 0.3 s four at a time: two rounds, not eight.
print(("11 commands, 4 at a time: %s"):format(took < 2.5 and "overlapped" or "serial?!"))
