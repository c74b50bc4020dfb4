-- embed_spec.lua — the C embedding API (runtime/include/skein.h), tested
-- from the outside: the spec compiles C hosts against the static library of
-- the build under test, runs them, and checks their output and exit status.
--
-- The build is the one SKEIN_BIN names (build/bin/<cfg>/skein); for the asan
-- build the hosts are compiled with the same sanitizers, so a leak or a
-- memory error in the library fails these tests too.
--
-- Hosts: examples/embed/host.c and hostloop.c (the documented examples) and
-- spec/c/embed_probe.c, which runs one scenario per invocation and prints
-- each API call's result as "name: rc [message]".

local function dirname(p) return (p:match("^(.*)/[^/]*$") or ".") end

local function sh(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- The repository root, from this file's path.
local root
do
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  root = dirname(dirname(src))
  if root:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD") or io.popen("pwd"):read("l")
    root = root == "." and pwd or pwd .. "/" .. root
  end
end

-- The configuration under test, from SKEIN_BIN's path.
local bin = os.getenv("SKEIN_BIN") or (root .. "/build/bin/release/skein")
local cfg = bin:match("/build/bin/([^/]+)/skein$") or "release"
local sanflags = cfg == "asan" and "-fsanitize=address,undefined -fno-omit-frame-pointer" or ""
local cflags = "-std=gnu11 -g -O1 -Wall -Wextra " .. sanflags
local lualibs = "-llua5.4 -luv -lhiredis -lm -ldl -lpthread"

local tmp -- a fresh directory per run of this file

-- Runs a shell command with a time bound; returns stdout, stderr, exit code.
local function run(cmd, bound)
  local out, err = tmp .. "/stdout", tmp .. "/stderr"
  local full = ("timeout %d sh -c %s >%s 2>%s; echo $?"):format(bound or 60, sh(cmd), out, err)
  local p = io.popen(full)
  local rc = tonumber(p:read("a"):match("(%d+)%s*$"))
  p:close()
  return read(out) or "", read(err) or "", rc
end

-- Compiles C sources into tmp/<name> against this build's static library.
local function cc(name, sources, extra)
  local exe = tmp .. "/" .. name
  local cmd = ("gcc %s -I%s/runtime/include -I/usr/include/lua5.4 -o %s %s %s/build/lib/%s/libskein.a %s %s")
    :format(cflags, root, exe, sources, root, cfg, lualibs, extra or "")
  local _, err, rc = run(cmd, 120)
  assert(rc == 0, "compiling " .. name .. " failed:\n" .. err)
  return exe
end

-- Sanitizer and UBSan reports fail a test even when the exit status is 0.
local function assert_clean(err)
  assert.is_nil(err:find("AddressSanitizer", 1, true), err)
  assert.is_nil(err:find("LeakSanitizer", 1, true), err)
  assert.is_nil(err:find("runtime error:", 1, true), err)
end

local function has(s, what)
  assert(s:find(what, 1, true), ("expected to find %q in:\n%s"):format(what, s))
end

local function lacks(s, what)
  assert(not s:find(what, 1, true), ("expected no %q in:\n%s"):format(what, s))
end

local probe
-- Runs the probe host; returns stdout, stderr, exit code, after checking
-- that it exited 0 without a sanitizer report.
local function run_probe(mode, arg)
  local out, err, rc = run(probe .. " " .. mode .. (arg and " " .. sh(arg) or ""))
  assert_clean(err)
  assert(rc == 0, ("probe %s exited %s\nstdout:\n%s\nstderr:\n%s"):format(mode, rc, out, err))
  return out, err
end

describe("embedding", function()
  local host, hostloop

  lazy_setup(function()
    tmp = io.popen("mktemp -d"):read("l")
    assert(tmp and tmp ~= "", "mktemp -d failed")
    local lib = ("%s/build/lib/%s/libskein.a"):format(root, cfg)
    assert(read(lib), "missing " .. lib .. " (build with make CONFIG=" .. cfg .. ")")
    host = cc("host", root .. "/examples/embed/host.c")
    hostloop = cc("hostloop", root .. "/examples/embed/hostloop.c")
    probe = cc("embed_probe", root .. "/spec/c/embed_probe.c")
  end)

  lazy_teardown(function()
    if tmp and tmp:match("^/tmp/") then os.execute("rm -rf " .. sh(tmp)) end
  end)

  describe("the example host whose userdata cross workers", function()
    it("sends its vectors by clone to worker processes and its tally by reference to threads", function()
      local exe = cc("hosttype", root .. "/examples/embed/hosttype.c")
      local out, err, rc = run(("cd %s && %s hosttype.lua"):format(sh(root .. "/examples/embed"), exe), 120)
      assert_clean(err)
      assert.are.equal(0, rc, out .. err)
      has(out, "clone: |vec(1.0, 2.0, 2.0)| = 3 in a worker process, which sent back vec(2.0, 4.0, 4.0)")
      has(out, "reference: 100 jobs on 4 threads added up to 5050 in the host's tally")
      has(out, "reference to a process: refused (marshal)")
      has(out, "the tally's references once the workers are gone: 1")
      has(out, "hosttype: 0 tallies left after skein_close")
    end)
  end)

  describe("a host with a llhttp of its own", function()
    -- libskein.a carries llhttp (its HTTP server's parser) under the names
    -- sk_llhttp_* (tools/hide-llhttp.sh): a program that links a llhttp of
    -- its own, or Node's, must link, call its own, and leave skein's server
    -- parsing with skein's.
    it("links with libskein.a, calls its own llhttp_init, and skein's server still parses", function()
      local own = tmp .. "/own_llhttp.c"
      local f = assert(io.open(own, "w"))
      f:write([[
#include <stdio.h>
/* The host's own llhttp: the names libskein.a's copy had. */
int llhttp_init(void *parser, int type, const void *settings) {
  (void)parser; (void)type; (void)settings;
  puts("own llhttp_init");
  return 42;
}
int llhttp_execute(void *parser, const char *data, unsigned long len) {
  (void)parser; (void)data; (void)len;
  return -1;
}
const char *llhttp_errno_name(int err) { (void)err; return "own"; }
__attribute__((constructor)) static void call_own(void) {
  printf("llhttp_init -> %d\n", llhttp_init(0, 0, 0));
}
]])
      f:close()
      local exe = cc("probe_llhttp", root .. "/spec/c/embed_probe.c " .. own)
      local code = [[
        local srv = skein.http.serve{port = 0, handler = function(req)
          return 200, nil, "parsed " .. req.method .. " " .. req.path .. " " .. req.headers["x-k"]
        end}
        local s = skein.net.connect("127.0.0.1", srv:port(), {timeout = 10})
        s:write("GET /p HTTP/1.1\r\nHost: x\r\nX-K: v\r\nConnection: close\r\n\r\n")
        local reply = s:read("a", 10)
        s:close()
        srv:close()
        print(reply:match("\r\n\r\n(.*)$"))
      ]]
      local out, err, rc = run(exe .. " run " .. sh(code), 60)
      assert_clean(err)
      assert.are.equal(0, rc, out .. err)
      has(out, "own llhttp_init\nllhttp_init -> 42")
      has(out, "parsed GET /p v")
    end)

    it("leaves no global llhttp_ name in the archive", function()
      local lib = ("%s/build/lib/%s/libskein.a"):format(root, cfg)
      local out, _, rc = run("nm --defined-only " .. sh(lib) .. " | awk '$2 ~ /^[A-Z]$/ {print $3}'")
      assert.are.equal(0, rc)
      lacks("\n" .. out, "\nllhttp_")
      has(out, "sk_llhttp_init")
    end)
  end)

  describe("the step-driven example host", function()
    it("runs the script's tasks, which call its C functions, turn by turn", function()
      local out, err, rc = run(host .. " " .. sh(root .. "/examples/embed/script.lua"))
      assert_clean(err)
      assert.are.equal(0, rc, err)
      has(out, "script: main chunk done, 4 tasks spawned")
      for _, name in ipairs({ "ada", "grace", "barbara" }) do
        has(out, "task: hello, " .. name .. ", from the C host")
      end
      has(out, "task: results add up to 36")
      has(out, "host: step 1, host functions called")
      has(out, "host: closed cleanly")
      local steps = tonumber(out:match("host: no task left after (%d+) steps; 6 host calls"))
      assert(steps and steps >= 3, out)
      -- the main chunk returns before the host drives the first turn
      assert(out:find("script: main chunk", 1, true) < out:find("host: step 1,", 1, true))
      assert.are.equal("", err)
    end)

    it("exits 1 with the loader's message when the script is missing", function()
      local out, err, rc = run(host .. " " .. sh(tmp .. "/no-such-script.lua"))
      assert_clean(err)
      assert.are.equal(1, rc)
      has(err, "host: cannot open " .. tmp .. "/no-such-script.lua")
      lacks(out, "host: step")
    end)

    it("fails when a task fails and nobody joins it", function()
      local script = tmp .. "/failing.lua"
      write(script, "skein.spawn(function() skein.sleep(0.001) error('task went wrong') end)\n")
      local out, err, rc = run(host .. " " .. sh(script))
      assert_clean(err)
      assert.are.equal(1, rc)
      has(err, "task went wrong")
      has(out, "host: closed cleanly")
    end)
  end)

  describe("the host-loop example", function()
    it("runs skein's tasks from the host's uv_run and closes the loop clean", function()
      local out, err, rc = run(hostloop .. " " .. sh(root .. "/examples/embed/hostloop.lua"))
      assert_clean(err)
      assert.are.equal(0, rc, err)
      has(out, "hostloop.lua: loaded")
      has(out, 'host: recorded "script task"')
      for n = 1, 3 do
        has(out, ('host: recorded "tick task %d"'):format(n))
        has(out, ("host: recorded \"worker %d done"):format(n))
      end
      has(out, "hostloop: uv_run returned after 3 ticks, 7 host calls")
      has(out, "hostloop: uv_loop_close() == 0")
      assert.are.equal("", err)
    end)
  end)

  describe("errors", function()
    it("skein_dofile on a missing file returns -1 naming the file", function()
      local out = run_probe("file", tmp .. "/missing.lua")
      has(out, "dofile: -1 cannot open " .. tmp .. "/missing.lua")
      has(out, "close: 0")
    end)

    it("skein_dofile on a syntax error returns -1 with file, line and cause", function()
      local path = tmp .. "/syntax.lua"
      write(path, "local a = 1\nlocal x = = 2\n")
      local out = run_probe("file", path)
      has(out, "dofile: -1 " .. path .. ":2: unexpected symbol near '='")
      has(out, "close: 0")
    end)

    it("a script error returns -1 with the message and a traceback", function()
      local path = tmp .. "/raises.lua"
      write(path, "local function f() error('script failed here') end\nf()\n")
      local out = run_probe("file", path)
      has(out, "dofile: -1 " .. path .. ":1: script failed here")
      has(out, "stack traceback:")
      has(out, path .. ":2: in main chunk")
      has(out, "close: 0")
    end)

    it("an error object's __tostring becomes the message", function()
      local out = run_probe("run", "error(setmetatable({}, {__tostring = function() return 'custom error' end}))")
      has(out, "dostring: -1 custom error")
      out = run_probe("run", "error({})")
      has(out, "dostring: -1 (error object is a table value)")
      out = run_probe("run", "error(setmetatable({}, {__tostring = function() error('tostring fails too') end}))")
      has(out, "dostring: -1 ")
      has(out, "close: 0")
    end)

    it("skein_run reports a deadlock", function()
      local out = run_probe("run", "skein.spawn(function() skein.sleep(math.huge) end)")
      has(out, "dostring: 0")
      has(out, "run: -1 deadlock: 1 task(s) are blocked and nothing can wake them")
      has(out, "close: 0")
    end)

    it("skein_run(SKEIN_RUN_ONCE) reports a deadlock too", function()
      local out = run_probe("step", [[
        local a = skein.spawn(function() skein.sleep(math.huge) end)
        skein.spawn(function() a:join() end)]])
      has(out, "step: -1 deadlock: tasks are blocked and nothing can wake them")
      has(out, "close: 0")
    end)

    it("an interrupt stops the code that runs and is reported by skein_run", function()
      local out = run_probe("run", "probe.interrupt() while true do end")
      has(out, "dostring: -1 interrupted")
      has(out, "interrupted: 1")
      has(out, "run: 0") -- cleared, so the runtime runs again
      out = run_probe("run", [[
        skein.spawn(function() skein.sleep(5) end)
        skein.spawn(function() skein.sleep(0.01) probe.interrupt() end)]])
      has(out, "run: -1 interrupted")
      has(out, "interrupted: 1")
      has(out, "close: 0")
    end)

    it("an init hook that raises makes skein_add_init fail and is not kept", function()
      local out = run_probe("badinit")
      has(out, "init: -1 init hook refuses")
      has(out, "dostring: 0") -- the runtime is still usable
      has(out, "close: 0")
    end)

    it("a failed task unjoined is counted by skein_failures and reported", function()
      local out, err = run_probe("run", "skein.spawn(function() error('lonely failure') end)")
      has(out, "run: 0")
      has(out, "failures: 1")
      has(err, "lonely failure")
    end)
  end)

  describe("blocking from inside the loop", function()
    it("a blocking call from a host callback raises 'cannot block here'", function()
      local out = run_probe("host", "function tick(n) skein.sleep(0.01) return true end")
      has(out, "call 1: -1 usage: probe:1: cannot block here: the host is running the loop")
      lacks(out, "call 2:") -- the host stopped its timer after the error
      has(out, "after: 0")
      has(out, "close: 0")
      has(out, "loop_close: 0")
    end)

    it("joining a task from a host callback raises too", function()
      local out = run_probe("host", [[
        local t = skein.spawn(function() skein.sleep(0.05) return 1 end)
        function tick(n) return t:join() end]])
      has(out, "call 1: -1 usage: probe:2: cannot block here")
      has(out, "loop_close: 0")
    end)

    it("a task blocking across a C call in host-loop mode gets the same error", function()
      local out = run_probe("host", [[
        function tick(n)
          skein.spawn(function()
            local ok, err = pcall(probe.call, function() skein.sleep(0.001) end)
            print("task:", ok, err)
          end)
          return false
        end]])
      has(out, "call 1: 0")
      has(out, "task:\tfalse\tusage: probe:3: cannot block here")
      has(out, "failures: 0")
      has(out, "loop_close: 0")
    end)

    it("with its own loop, the same call just drives the loop", function()
      local out = run_probe("run", [[
        skein.spawn(function()
          print("nested", probe.call(function() skein.sleep(0.001) return "fine" end))
        end)]])
      has(out, "nested\tfine")
      has(out, "run: 0")
      has(out, "failures: 0")
    end)

    it("skein_run from inside the loop returns -1", function()
      local out = run_probe("host", [[
        function tick(n)
          local rc, msg = probe.run_once()
          print("run_once", rc, msg)
          return false
        end]])
      has(out, "run_once\t-1\tskein_run called from inside the loop")
      has(out, "loop_close: 0")
    end)

    it("tasks and sleeps run under the host's uv_run", function()
      local out = run_probe("host", [[
        local log = {}
        skein.spawn(function() skein.sleep(0.02) log[#log + 1] = "slept" end)
        function tick(n)
          skein.spawn(function() skein.sleep(0.001) log[#log + 1] = "tick" .. n end)
          if n == 3 then
            skein.spawn(function()
              skein.sleep(0.05)
              print(table.concat(log, " "))
            end)
          end
          return n < 3
        end]])
      has(out, "call 3: 0")
      lacks(out, "call 4:")
      has(out, "tick1 tick2 tick3")
      has(out, "slept")
      has(out, "after: 0")
      has(out, "loop_close: 0")
    end)
  end)

  describe("the runtime", function()
    it("skein_from_lua finds the runtime from the main state, coroutines and tasks", function()
      local out = run_probe("run", [[
        print("main", probe.same_runtime())
        print("coroutine", coroutine.wrap(probe.same_runtime)())
        skein.spawn(function() print("task", probe.same_runtime()) end)]])
      has(out, "main\ttrue")
      has(out, "coroutine\ttrue")
      has(out, "task\ttrue")
    end)

    it("closes clean with tasks still unfinished", function()
      local out = run_probe("load", [[
        for i = 1, 10 do skein.spawn(function() skein.sleep(i) end) end
        local w <close> = setmetatable({}, {__close = function() end})]])
      has(out, "dostring: 0")
      has(out, "close: 0")
    end)

    it("step mode runs everything to completion", function()
      local out = run_probe("step", [[
        local results = {}
        for i = 1, 20 do
          skein.spawn(function() skein.sleep(0.001 * (i % 5)) results[#results + 1] = i end)
        end
        skein.spawn(function()
          while #results < 20 do skein.sleep(0.001) end
          print("all", #results)
        end)]])
      has(out, "all\t20")
      has(out, "step: 0")
      has(out, "close: 0")
    end)
  end)

  -- Which executable a host's worker processes run (never a copy of the
  -- host unless it asks), and what they get of the host (skein.h, "Worker
  -- processes").
  describe("worker processes of a host", function()
    local workers, skeindir

    lazy_setup(function()
      workers = cc("embed_workers", root .. "/spec/c/embed_workers.c")
      skeindir = tmp .. "/skeinbin"
      os.execute("mkdir -p " .. sh(skeindir) .. " && ln -sf " .. sh(bin) .. " " .. sh(skeindir .. "/skein"))
    end)

    -- Runs the host with a PATH that has `skein` only when `with_skein`,
    -- and without SKEIN_WORKER_EXE unless `exe` is given.
    local function host_run(args, with_skein, exe)
      local path = (with_skein and skeindir .. ":" or "") .. "/usr/bin:/bin"
      local env = "env -u SKEIN_WORKER_EXE PATH=" .. sh(path) .. " "
      if args[1] == "self" then env = env .. "EMBED_WORKERS_SELF=1 " end
      if exe then env = env .. "SKEIN_WORKER_EXE=" .. sh(exe) .. " " end
      local parts = {}
      for i, a in ipairs(args) do parts[i] = sh(a) end
      local out, err, rc = run(env .. workers .. " " .. table.concat(parts, " "), 60)
      assert_clean(err)
      return out, err, rc
    end

    local function mains(out)
      local n = 0
      for _ in out:gmatch("host main %d+") do n = n + 1 end
      return n
    end

    local POOL = [[
      local p = skein.pool{kind = "process", size = 2}
      print("pool says", p:submit(function(a, b) return a + b end, 40, 2):get())
      print("hook in process worker", p:submit(function() return type(host_add), host_hook_runs end):get())
      p:close()
    ]]

    it("with no worker executable, fails at once with an error naming the fix", function()
      local out, _, rc = host_run({ "plain", [[
        local ok, e = pcall(skein.pool, {kind = "process", size = 2})
        print("pool", ok, e.kind, e.message)
        ok, e = pcall(skein.process, function() end)
        print("process", ok, e.kind)
      ]] })
      assert.are.equal(0, rc, out)
      assert.are.equal(1, mains(out))
      has(out, "pool\tfalse\tio\tcannot start a worker process: ")
      has(out, "is not a skein worker executable")
      has(out, "skein_worker_main")
      has(out, "$SKEIN_WORKER_EXE")
      has(out, "skein_options.worker_exe")
      has(out, "process\tfalse\tio")
      -- and no copy of the host was started, now or later
      local _, _, none = run("sleep 0.5; pgrep -x embed_workers")
      assert.are_not.equal(0, none)
    end)

    it("uses the skein command found on PATH, and never runs the host's main again", function()
      local out, err, rc = host_run({ "plain", POOL }, true)
      assert.are.equal(0, rc, out .. err)
      assert.are.equal(1, mains(out))
      has(out, "pool says\t42")
      -- what a process worker of a plain host gets: no host hooks
      has(out, "hook in process worker\tnil\tnil")
    end)

    it("uses skein_options.worker_exe", function()
      local out, err, rc = host_run({ "option", bin, POOL }, false)
      assert.are.equal(0, rc, out .. err)
      assert.are.equal(1, mains(out))
      has(out, "pool says\t42")
    end)

    it("a host named as its own worker without skein_worker_main refuses to run as one", function()
      local out, err = host_run({ "plain", [[
        local p = skein.process(function() return 1 end)
        local ok, e = pcall(p.join, p, 20)
        print("join", ok, e.kind)
      ]] }, false, workers)
      has(out, "join\tfalse\tworker_died")
      has(err, "started as a skein worker, but its main does not call skein_worker_main")
      -- the copy printed "host main" and stopped: it made no runtime and
      -- started no worker of its own
      assert.are.equal(2, mains(out))
      lacks(out, "skein_new: NULL\nhost main")
    end)

    it("a host whose main calls skein_worker_main is its own worker, and runs its init hook there", function()
      local out, err, rc = host_run({ "self", POOL .. [[
        local pr = skein.process(function() return host_add(1, 2), host_hook_runs end)
        print("skein.process", pr:join())
        local tp = skein.pool{kind = "thread", size = 1}
        print("thread pool", tp:submit(function() return host_add(3, 4), host_hook_runs end):get())
        tp:close()
      ]] }, false)
      assert.are.equal(0, rc, out .. err)
      assert.are.equal(1, mains(out))
      has(out, "pool says\t42")
      has(out, "hook in process worker\tfunction\t1")
      has(out, "skein.process\t3\t1")
      has(out, "thread pool\t7\t1")
    end)
  end)

  it("a C++ host compiles against skein.h and links", function()
    local _, _, have = run("command -v g++")
    if have ~= 0 then
      pending("g++ is not installed")
      return
    end
    local exe = tmp .. "/embed_cxx"
    local _, err, rc = run(("g++ -g -Wall -Wextra %s -I%s/runtime/include -I/usr/include/lua5.4 -o %s %s %s/build/lib/%s/libskein.a %s")
      :format(sanflags, root, exe, sh(root .. "/spec/c/embed_cxx.cc"), root, cfg, lualibs), 120)
    assert.are.equal(0, rc, err)
    local out
    out, err, rc = run(exe)
    assert_clean(err)
    assert.are.equal(0, rc, err)
    has(out, "c++ host ok, skein " .. skein.version)
  end)

  describe("make install", function()
    local prefix, pcpath

    lazy_setup(function()
      prefix = tmp .. "/inst"
      pcpath = "PKG_CONFIG_PATH=" .. sh(prefix .. "/lib/pkgconfig") .. " "
      local _, err, rc = run(("make -s -C %s install CONFIG=%s PREFIX=%s"):format(sh(root), cfg, sh(prefix)), 300)
      assert(rc == 0, "make install failed:\n" .. err)
    end)

    it("installs the binary, both libraries, the header and skein.pc", function()
      for _, f in ipairs({ "bin/skein", "lib/libskein.a", "lib/libskein.so",
                           "include/skein.h", "lib/pkgconfig/skein.pc" }) do
        assert(read(prefix .. "/" .. f), "not installed: " .. f)
      end
      assert.are.equal(read(root .. "/runtime/include/skein.h"), read(prefix .. "/include/skein.h"))
      local out, _, rc = run(sh(prefix .. "/bin/skein") .. " -v")
      assert.are.equal(0, rc)
      has(out, "skein " .. skein.version)
    end)

    it("pkg-config gives the flags and the version", function()
      local out, err, rc = run(pcpath .. "pkg-config --cflags --libs skein")
      assert.are.equal(0, rc, err)
      has(out, "-I" .. prefix .. "/include")
      has(out, "-I/usr/include/lua5.4")
      has(out, "-L" .. prefix .. "/lib")
      has(out, "-lskein")
      has(out, "-llua5.4")
      has(out, "-luv")
      out = run(pcpath .. "pkg-config --modversion skein")
      assert.are.equal(skein.version, (out:gsub("%s+$", "")))
      lacks(read(prefix .. "/lib/pkgconfig/skein.pc"), "@")
    end)

    it("a host built with pkg-config's flags links the shared library and runs", function()
      local exe = tmp .. "/host-shared"
      local _, err, rc = run(("gcc %s -o %s %s $(%spkg-config --cflags --libs skein)")
        :format(sanflags, exe, sh(root .. "/examples/embed/host.c"), pcpath), 120)
      assert.are.equal(0, rc, err)
      local out
      out, err, rc = run(("LD_LIBRARY_PATH=%s ldd %s"):format(sh(prefix .. "/lib"), exe))
      has(out, prefix .. "/lib/libskein.so")
      out, err, rc = run(("LD_LIBRARY_PATH=%s %s %s"):format(sh(prefix .. "/lib"), exe,
        sh(root .. "/examples/embed/script.lua")))
      assert_clean(err)
      assert.are.equal(0, rc, err)
      has(out, "task: results add up to 36")
      has(out, "host: closed cleanly")
    end)

    it("a host links the installed static library with --static flags", function()
      local exe = tmp .. "/hostloop-static"
      local _, err, rc = run(("gcc %s -o %s %s $(%spkg-config --cflags skein) %s $(%spkg-config --libs --static skein | sed 's/-lskein//')")
        :format(sanflags, exe, sh(root .. "/examples/embed/hostloop.c"), pcpath,
                sh(prefix .. "/lib/libskein.a"), pcpath), 120)
      assert.are.equal(0, rc, err)
      local out
      out, err, rc = run(exe .. " " .. sh(root .. "/examples/embed/hostloop.lua"))
      assert_clean(err)
      assert.are.equal(0, rc, err)
      has(out, "hostloop: uv_loop_close() == 0")
    end)

    it("the examples' Makefile builds against the installed skein", function()
      local out_dir = tmp .. "/mk"
      os.execute("mkdir -p " .. sh(out_dir))
      local _, err, rc = run(("%smake -s -C %s PKGCONFIG=1 CONFIG=%s O=%s"):format(
        pcpath, sh(root .. "/examples/embed"), cfg, sh(out_dir)), 120)
      assert.are.equal(0, rc, err)
      local out
      out, err, rc = run(("cd %s && LD_LIBRARY_PATH=%s %s/host"):format(
        sh(root .. "/examples/embed"), sh(prefix .. "/lib"), out_dir))
      assert_clean(err)
      assert.are.equal(0, rc, err)
      has(out, "host: closed cleanly")
    end)
  end)
end)
