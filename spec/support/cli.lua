--- Helpers for specs that run the `skein` command as a subprocess: run it
-- with arguments, standard input and environment, bounded by `timeout`;
-- drive it on a pseudo-terminal through pty_drive.py; make temporary files.
-- The binary under test is $SKEIN_BIN (the run script sets it), else the
-- release build.
local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local pwd = os.getenv("PWD") or io.popen("pwd"):read("l")
  return pwd .. "/" .. p
end

M.bin = abspath(os.getenv("SKEIN_BIN") or "build/bin/release/skein")
--- The command's messages start with its program name (argv[0], here the
-- path run gives it) and ": ", as lua's do; `prefix` is that, and `prefix_rx`
-- the same as a Lua pattern.
M.prefix = M.bin .. ": "
M.prefix_rx = M.prefix:gsub("%p", "%%%0")
M.pty_drive = abspath(here .. "/pty_drive.py")

--- Quotes a string for the POSIX shell.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local tmpdir
--- A fresh directory, removed when the spec process exits.
function M.tmpdir()
  local d = io.popen("mktemp -d /tmp/skein-spec.XXXXXX"):read("l")
  tmpdir = tmpdir or {}
  tmpdir[#tmpdir + 1] = d
  return d
end

--- Removes every directory made by tmpdir (call from teardown).
function M.cleanup()
  for _, d in ipairs(tmpdir or {}) do os.execute("rm -rf " .. M.q(d)) end
  tmpdir = nil
end

--- Writes `text` to `path` and returns the path.
--- `s` without LeakSanitizer's "Unable to get registers from thread N."
-- lines. In a sanitizer build, LSan checks a process for leaks as it exits,
-- and prints one for a thread that ends meanwhile (it then counts all of
-- that thread's stack as reachable): a race of its own, not a finding.
-- Anything else a sanitizer prints stays, and fails the spec that sees it.
function M.unsanitized(s)
  return (s:gsub("==%d+==Unable to get registers from thread %d+%.?\n", ""))
end

function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function env_prefix(env)
  local parts = {}
  for k, v in pairs(env or {}) do
    if v == false then
      parts[#parts + 1] = "-u " .. k
    else
      parts[#parts + 1] = k .. "=" .. M.q(v)
    end
  end
  table.sort(parts)
  return #parts > 0 and ("env " .. table.concat(parts, " ") .. " ") or ""
end

--- The lines of `s` (empty lines dropped), as a list.
function M.lines(s)
  local t = {}
  for l in (s or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

--- Runs skein with `args` (a list of strings). opts: stdin (a string; by
-- default standard input is /dev/null, so that skein never sees the
-- terminal busted may have), env (name -> value, or false to unset),
-- timeout (seconds, default 30). Returns {out=, err=, code=, secs=};
-- code is 124 when the time limit killed it.
function M.run(args, opts)
  opts = opts or {}
  local d = M.tmpdir()
  local cmd = { M.q(M.bin) }
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = M.q(a) end
  local stdin = "/dev/null"
  if opts.stdin then stdin = M.write(d .. "/stdin", opts.stdin) end
  local line = string.format(
    "cd %s && %stimeout -k 2 %d %s <%s >%s 2>%s; echo $?",
    M.q(opts.cwd or os.getenv("PWD") or "."), env_prefix(opts.env),
    opts.timeout or 30, table.concat(cmd, " "), M.q(stdin),
    M.q(d .. "/out"), M.q(d .. "/err"))
  local t0 = skein.now()
  local p = io.popen(line)
  local code = tonumber(p:read("a"):match("%d+"))
  p:close()
  return { out = M.read(d .. "/out"), err = M.read(d .. "/err"), code = code,
           secs = skein.now() - t0 }
end

--- Runs skein with `args` in the background, waits until its standard output
-- contains `ready` (a plain string), sends it `signal` and waits for it to
-- exit. (`timeout --foreground`, because plain `timeout` passes a signal on
-- twice, to the command and to its process group, and skein, like lua, dies
-- of a second SIGINT.) Returns {out=, err=, code=, secs=} where secs is the time from the
-- signal to the exit; code is "no-ready" when the marker never came.
function M.signal_after_ready(args, ready, signal, opts)
  opts = opts or {}
  local d = M.tmpdir()
  local cmd = { M.q(M.bin) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = M.q(a) end
  local script = string.format([[
out=%s; err=%s
%stimeout --foreground -k 2 %d %s </dev/null >"$out" 2>"$err" &
pid=$!
i=0
until grep -qF %s "$out" 2>/dev/null; do
  i=$((i + 1)); if [ $i -gt 600 ]; then kill -KILL $pid; echo no-ready; exit; fi
  sleep 0.05
done
sleep %s
t0=$(date +%%s%%N)
kill -%s $pid
wait $pid; rc=$?
t1=$(date +%%s%%N)
echo "$rc $(( (t1 - t0) / 1000000 ))"
]], M.q(d .. "/out"), M.q(d .. "/err"), env_prefix(opts.env), opts.timeout or 30,
    table.concat(cmd, " "), M.q(ready), opts.settle or "0.2", signal or "INT")
  local p = io.popen("bash -c " .. M.q(script))
  local res = p:read("a")
  p:close()
  local rc, ms = res:match("(%d+) (%d+)")
  return { out = M.read(d .. "/out"), err = M.read(d .. "/err"),
           code = tonumber(rc) or res:match("%S+"), secs = (tonumber(ms) or 1e9) / 1000 }
end

--- Runs skein (with `args`) on a pseudo-terminal and plays `steps` (see
-- pty_drive.py) against it. opts: env, timeout (per step, default 10).
-- Returns ok (boolean) and the driver's transcript.
function M.pty(steps, args, opts)
  opts = opts or {}
  local d = M.tmpdir()
  local env = { HOME = d, INPUTRC = "/dev/null", TERM = "xterm",
                SKEIN_HISTORY = false, LUA_INIT = false, LUA_INIT_5_4 = false }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local cmd = { "timeout -k 2 120 python3", M.q(M.pty_drive), "--timeout", tostring(opts.timeout or 10) }
  for _, s in ipairs(steps) do cmd[#cmd + 1] = M.q(s) end
  cmd[#cmd + 1] = "--"
  cmd[#cmd + 1] = M.q(M.bin)
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = M.q(a) end
  local p = io.popen("cd " .. M.q(opts.cwd or d) .. " && " .. env_prefix(env) ..
                     table.concat(cmd, " ") .. " 2>&1")
  local out = p:read("a")
  p:close()
  return out:find("pty_drive: ok\n", 1, true) ~= nil, out, d
end

return M
