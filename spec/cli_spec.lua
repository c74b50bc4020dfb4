-- The `skein` command: what it shares with the standalone `lua` (options,
-- `arg`, LUA_INIT, stdin), how a script ends (tasks, daemons, failures,
-- deadlock), Ctrl-C, and running busted inside it. Every subprocess is
-- bounded by `timeout`, so a hang fails instead of stalling the suite.
local cli = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/cli.lua")
local run = cli.run
local P = "^" .. cli.prefix_rx  -- a message's start: the program name and ": "

-- Environment that must not leak into these runs from the caller's.
local clean = { LUA_INIT = false, LUA_INIT_5_4 = false }

local function with(env)
  local e = {}
  for k, v in pairs(clean) do e[k] = v end
  for k, v in pairs(env or {}) do e[k] = v end
  return e
end

local function ok_run(args, opts)
  opts = opts or {}
  opts.env = with(opts.env)
  local r = run(args, opts)
  assert.are.equal(0, r.code, "exit status; stderr:\n" .. tostring(r.err))
  return r
end

local function fail_run(args, opts, code)
  opts = opts or {}
  opts.env = with(opts.env)
  local r = run(args, opts)
  assert.are.equal(code or 1, r.code, "exit status; stdout:\n" .. tostring(r.out) ..
                   "\nstderr:\n" .. tostring(r.err))
  return r
end

describe("skein command line", function()
  local dir

  setup(function()
    dir = cli.tmpdir()
    cli.write(dir .. "/args.lua", [[
      print("arg0=" .. tostring(arg[0]))
      for i = -3, #arg do io.write(i, "=", tostring(arg[i]), ";") end
      print()
      print("varargs", select("#", ...), ...)
    ]])
    cli.write(dir .. "/mymod.lua", [[
      MYMOD_LOADS = (MYMOD_LOADS or 0) + 1
      return { answer = 42 }
    ]])
  end)

  teardown(cli.cleanup)

  describe("options shared with lua", function()
    it("-e runs a statement, several run in order", function()
      local r = ok_run({ "-e", "x = 20", "-e", "print(x + 1)", "-eprint('glued')" })
      assert.are.equal("21\nglued\n", r.out)
    end)

    it("-l mod requires into the global of that name", function()
      local r = ok_run({ "-l", "mymod", "-e", "print(mymod.answer, MYMOD_LOADS)" },
                       { env = { LUA_PATH = dir .. "/?.lua" } })
      assert.are.equal("42\t1\n", r.out)
    end)

    it("-l g=mod requires into global g, and -lmod works glued", function()
      local r = ok_run({ "-l", "m=mymod", "-lstring", "-e", "print(m.answer, mymod, string.rep('a', 2))" },
                       { env = { LUA_PATH = dir .. "/?.lua" } })
      assert.are.equal("42\tnil\taa\n", r.out)
    end)

    it("-l of a missing module fails with status 1", function()
      local r = fail_run({ "-l", "no_such_module_xyz", "-e", "print('not reached')" })
      assert.are.equal("", r.out)
      assert.matches(P .. ".*module 'no_such_module_xyz' not found", r.err)
    end)

    it("-v prints skein's version, then Lua's copyright line, and starts no REPL", function()
      local r = ok_run({ "-v" })
      assert.matches("^skein %d+%.%d+%.%d+ %(Lua 5%.4[%.%d]*, libuv [%d%.]+%)\n" ..
                     "Lua 5%.4[%.%d]*  Copyright %(C%) [%d%-]+ Lua%.org, PUC%-Rio\n$", r.out)
      assert.are.equal(skein.version, r.out:match("^skein (%S+)"))
      -- lua's own test suite looks for the copyright line right before what
      -- -e prints
      r = ok_run({ "-v", "-e", "print'hello'" })
      assert.matches("PUC%-Rio\nhello\n$", r.out)
    end)

    it("-W turns warnings on; they are off without it", function()
      local r = ok_run({ "-W", "-e", "warn('careful')" })
      assert.matches("Lua warning: careful", r.err)
      r = ok_run({ "-e", "warn('careful')" })
      assert.are.equal("", r.err)
    end)

    it("runs LUA_INIT (a string or @file) before -e, LUA_INIT_5_4 first", function()
      local r = ok_run({ "-e", "print('main', INIT)" }, { env = { LUA_INIT = "INIT = 'str' print('init')" } })
      assert.are.equal("init\nmain\tstr\n", r.out)
      cli.write(dir .. "/init.lua", "INIT = 'file'")
      r = ok_run({ "-e", "print(INIT)" }, { env = { LUA_INIT = "@" .. dir .. "/init.lua" } })
      assert.are.equal("file\n", r.out)
      r = ok_run({ "-e", "print(INIT)" }, { env = { LUA_INIT = "INIT = 1", LUA_INIT_5_4 = "INIT = 54" } })
      assert.are.equal("54\n", r.out)
    end)

    it("an error in LUA_INIT exits with status 1", function()
      local r = fail_run({ "-e", "print('not reached')" }, { env = { LUA_INIT = "error('bad init')" } })
      assert.are.equal("", r.out)
      assert.matches(P .. "LUA_INIT:1: bad init", r.err)
    end)

    it("-E ignores LUA_INIT and LUA_PATH/LUA_CPATH", function()
      local env = { LUA_INIT = "print('init ran')", LUA_PATH = "/nowhere/?.lua",
                    LUA_CPATH = "/nowhere/?.so", LUA_PATH_5_4 = "/nowhere54/?.lua" }
      local r = ok_run({ "-E", "-e", "print(package.path) print(package.cpath)" }, { env = env })
      assert.not_matches("init ran", r.out)
      assert.not_matches("nowhere", r.out)
      assert.matches("%./%?%.lua", r.out)
      -- without -E both are honoured
      r = ok_run({ "-e", "print(package.path)" }, { env = env })
      assert.matches("^init ran\n/nowhere54/%?%.lua\n$", r.out)
      -- and -E still lets skein's own module load
      r = ok_run({ "-E", "-e", "print(require('skein') == skein)" }, { env = env })
      assert.are.equal("true\n", r.out)
    end)

    it("fills arg like lua: script at 0, options below, arguments above", function()
      local script = dir .. "/args.lua"
      local r = ok_run({ "-e", "x=1", script, "a", "b c" })
      assert.are.equal("arg0=" .. script .. "\n" ..
        "-3=" .. cli.bin .. ";-2=-e;-1=x=1;0=" .. script .. ";1=a;2=b c;\n" ..
        "varargs\t2\ta\tb c\n", r.out)
    end)

    it("-- stops handling options", function()
      local r = ok_run({ "--", dir .. "/args.lua", "-e", "-i" })
      assert.matches("1=%-e;2=%-i;", r.out)
      assert.matches("varargs\t2\t%-e\t%-i", r.out)
    end)

    it("- runs standard input as the script, with arguments", function()
      local r = ok_run({ "-", "p", "q" }, { stdin = "print('stdin says', arg[0], ...)" })
      assert.are.equal("stdin says\t-\tp\tq\n", r.out)
    end)

    it("with no script and a non-terminal stdin, runs stdin as a chunk", function()
      local r = ok_run({}, { stdin = "local t = {}\nfor i = 1, 3 do t[#t+1] = i end\nprint(table.concat(t, ','))\n" })
      assert.are.equal("1,2,3\n", r.out)
      r = ok_run({}, { stdin = "" })
      assert.are.equal("", r.out)
    end)

    it("an error in the stdin chunk exits 1", function()
      local r = fail_run({}, { stdin = "error('from stdin')" })
      assert.matches(P .. "stdin:1: from stdin", r.err)
    end)

    it("-e or -v without a script does not read stdin", function()
      local r = ok_run({ "-e", "print(1)" }, { stdin = "print('stdin ran')" })
      assert.are.equal("1\n", r.out)
    end)

    it("-i after a script enters the REPL with the script's globals", function()
      cli.write(dir .. "/globals.lua", "greeting = 'hi from script'\nprint('script ran')\n")
      local r = ok_run({ "-i", dir .. "/globals.lua" }, { stdin = "print(greeting)\n" })
      assert.matches("^skein [%d%.]+ %b()\nLua [^\n]*PUC%-Rio\nscript ran\n", r.out)
      assert.matches("hi from script", r.out)
    end)

    for _, bad in ipairs({ "-x", "-ix", "-vv", "--x", "-Ex" }) do
      it("a bad option (" .. bad .. ") prints usage and exits 1", function()
        local r = fail_run({ bad, "-e", "print('not reached')" })
        assert.are.equal("", r.out)
        assert.matches(P .. "unrecognized option '" .. bad:gsub("%-", "%%-") .. "'\nusage: " .. (cli.bin:gsub("%p", "%%%0")) .. " ", r.err)
        assert.matches("%-e stat", r.err)
      end)
    end

    it("-e and -l without their argument print usage and exit 1", function()
      local r = fail_run({ "-e" })
      assert.matches(P .. "'%-e' needs argument\nusage:", r.err)
      r = fail_run({ "-l", "-e", "x=1" })
      assert.matches(P .. "'%-l' needs argument\nusage:", r.err)
    end)
  end)

  describe("errors", function()
    it("a syntax error exits 1 with the message", function()
      local f = cli.write(dir .. "/syntax.lua", "local x = = 1\n")
      local r = fail_run({ f })
      assert.matches(P .. "" .. f:gsub("%p", "%%%0") .. ":1: unexpected symbol near '='\n$", r.err)
    end)

    it("a syntax error in -e exits 1", function()
      local r = fail_run({ "-e", "x =" })
      assert.matches(P .. "%(command line%):1: unexpected symbol near <eof>", r.err)
    end)

    it("a runtime error exits 1 with the message and a traceback", function()
      local f = cli.write(dir .. "/boom.lua", "local function f() error('boom') end\nf()\n")
      local r = fail_run({ f, "ignored" })
      assert.matches(P .. "[^\n]*boom.lua:1: boom\nstack traceback:\n", r.err)
      assert.matches("in main chunk", r.err)
    end)

    it("a non-string error object is described", function()
      local r = fail_run({ "-e", "error({})" })
      assert.matches(P .. "%(error object is a table value%)", r.err)
      r = fail_run({ "-e", "error(setmetatable({}, {__tostring = function() return 'custom' end}))" })
      assert.matches(P .. "custom", r.err)
    end)

    it("a missing script exits 1", function()
      local r = fail_run({ dir .. "/no_such_script.lua" })
      assert.matches(P .. "cannot open [^\n]*no_such_script.lua", r.err)
    end)

    it("an error in -e stops before the script", function()
      local r = fail_run({ "-e", "error('first')", dir .. "/args.lua" })
      assert.are.equal("", r.out)
      assert.matches("first", r.err)
    end)
  end)

  describe("when a script ends", function()
    it("a task spawned at the end of the chunk still runs", function()
      local r = ok_run({ "-e", "skein.spawn(function() skein.sleep(0.05) print('late task') end) print('chunk done')" })
      assert.are.equal("chunk done\nlate task\n", r.out)
    end)

    it("waits for tasks spawned by tasks", function()
      local r = ok_run({ "-e", [[
        skein.spawn(function()
          skein.sleep(0.02)
          skein.spawn(function() skein.sleep(0.02) print('grandchild') end)
        end)]] })
      assert.are.equal("grandchild\n", r.out)
    end)

    it("a daemon task does not keep the process alive", function()
      local r = ok_run({ "-e", [[
        skein.spawn{fn = function() skein.sleep(100) print('daemon woke') end, daemon = true}
        print('main done')]] }, { timeout = 20 })
      assert.are.equal("main done\n", r.out)
      assert.is_true(r.secs < 5, "took " .. r.secs .. " s")
    end)

    it("a daemon runs while non-daemon tasks do", function()
      local r = ok_run({ "-e", [[
        skein.spawn{fn = function() while true do skein.sleep(0.01) n = (n or 0) + 1 end end, daemon = true}
        skein.spawn(function() skein.sleep(0.1) print(n > 0) end)]] }, { timeout = 20 })
      assert.are.equal("true\n", r.out)
    end)

    it("a task that fails unjoined is reported and the status is 1", function()
      local r = fail_run({ "-e", [[
        local function inner() error('kaboom') end
        skein.spawn(function() skein.sleep(0.01) inner() end)
        print('main done')]] })
      assert.are.equal("main done\n", r.out)
      -- the library's own report, which names skein whatever the command's name
      assert.matches("^skein: task %d+ failed and was never joined:\n", r.err)
      assert.matches("kaboom", r.err)
      assert.matches("stack traceback:", r.err)
      assert.matches("in %a* ?%a* ?'?inner'?", r.err)
    end)

    it("a failed task that is joined and handled is not reported", function()
      local r = ok_run({ "-e", [[
        local t = skein.spawn(function() skein.sleep(0.01) error('kaboom') end)
        local ok, err = pcall(t.join, t)
        print(ok, (tostring(err):match('kaboom')))]] })
      assert.are.equal("false\tkaboom\n", r.out)
      assert.are.equal("", r.err)
    end)

    it("a failure of a task that finished before the chunk is reported too", function()
      local r = fail_run({ "-e", "skein.spawn(function() error('early') end) skein.sleep(0.02)" })
      assert.matches("task %d+ failed and was never joined:.*early", r.err)
    end)

    -- Python's executors finish their queue at exit; so does a pool still
    -- open, and one collected while open (its queue is not dropped).
    for _, kind in ipairs({ "coroutine", "thread", "process" }) do
      it("a " .. kind .. " pool still open, or collected while open, finishes its queue", function()
        local r = ok_run({ "-e", ([[
          local p = skein.pool{kind = %q, size = 1}
          for i = 1, 2 do p:submit(function(i) skein.sleep(0.2) print('job ' .. i) end, i) end
          do
            local q = skein.pool{kind = %q, size = 1}
            q:submit(function() skein.sleep(0.8) print('orphaned job') end)   -- outlives p's queue
          end
          collectgarbage() collectgarbage()
          print('chunk done')]]):format(kind, kind) }, { timeout = 30 })
        assert.matches("^chunk done\n", r.out)
        for _, line in ipairs({ "job 1", "job 2", "orphaned job" }) do
          assert.matches("\n" .. line .. "\n", r.out)
        end
        assert.are.equal("", r.err)
      end)
    end

    it("a thread waits for the pool jobs it submitted before it ends", function()
      local r = ok_run({ "-e", [[
        local th = skein.thread(function()
          for _, kind in ipairs({ "thread", "process" }) do
            local p = skein.pool{kind = kind, size = 1}
            p:submit(function(kind) skein.sleep(0.2) print(kind .. ' pool job') end, kind)
          end
          return 'thread done'
        end)
        print(th:join())]] }, { timeout = 30 })
      assert.matches("thread pool job\n", r.out)
      assert.matches("process pool job\n", r.out)
      assert.matches("thread done\n$", r.out)
    end)

    it("main joining a task that waits forever reports a deadlock", function()
      local r = fail_run({ "-e", [[
        local t = skein.spawn(function() skein.sleep(math.huge) end)
        t:join()]] }, { timeout = 20 })
      assert.matches(P .. "[^\n]*deadlock", r.err)
      assert.is_true(r.secs < 5, "took " .. r.secs .. " s")
    end)

    it("tasks left waiting forever after the chunk report a deadlock", function()
      local r = fail_run({ "-e", "skein.spawn(function() skein.sleep(math.huge) end) print('chunk done')" },
                         { timeout = 20 })
      assert.are.equal("chunk done\n", r.out)
      assert.matches(P .. "[^\n]*deadlock", r.err)
      assert.is_true(r.secs < 5, "took " .. r.secs .. " s")
    end)
  end)

  -- What lua 5.4's own test suite (testes/main.lua) checks of `lua`, with
  -- skein reached through a symlink named lua.
  describe("as a drop-in for lua", function()
    local luadir
    setup(function()
      luadir = cli.tmpdir()
      os.execute("ln -s " .. cli.q(cli.bin) .. " " .. cli.q(luadir .. "/lua"))
    end)

    -- Runs the shell line `line` with the `lua` symlink first on PATH;
    -- returns stdout, stderr and the exit status.
    local function lua_sh(line, stdin)
      local d = cli.tmpdir()
      cli.write(d .. "/in", stdin or "")
      local p = io.popen(string.format(
        "cd %s && env -u LUA_INIT -u LUA_INIT_5_4 PATH=%s:\"$PATH\" timeout -k 2 20 sh -c %s <in >out 2>err; echo $?",
        cli.q(d), cli.q(luadir), cli.q(line)))
      local code = tonumber(p:read("a"):match("%d+"))
      p:close()
      return cli.read(d .. "/out"), cli.read(d .. "/err"), code
    end

    it("reports a script's 'arg' that is not a table instead of panicking", function()
      for _, stat in ipairs({ "arg = 1", "arg = nil" }) do
        local out, err, code = lua_sh('echo "" | lua -e "' .. stat .. '" -')
        assert.are.equal(1, code, err)
        assert.are.equal("", out)
        assert.are.equal("lua: 'arg' is not a table\n", err)
      end
      -- a script with arguments, and arg replaced by a table whose length
      -- fails: reported the same way
      local _, err, code = lua_sh([[lua -e "arg = setmetatable({}, {__len = function() error('no len') end})" - a]])
      assert.are.equal(1, code, err)
      assert.matches("^lua: [^\n]*no len", err)
    end)

    it("reports a failing print in interactive mode as 'error calling print'", function()
      local _, err, code = lua_sh('echo 10 | lua -e "print=nil" -i')
      assert.are.equal(0, code, err)
      assert.are.equal("lua: error calling 'print' (attempt to call a nil value)\n", err)
    end)

    it("takes =expr for 'return expr' at the prompt", function()
      local out, err, code = lua_sh([[lua -e"_PROMPT='' _PROMPT2=''" -i]], "a = [[b\nc]]\n=a\n= 6 *\n7\n")
      assert.are.equal(0, code, err)
      assert.matches("\nb\nc\n", out)
      assert.matches("\n42\n", out)
      assert.are.equal("", err)
    end)

    it("converts a non-string _PROMPT with its __tostring, once per prompt", function()
      local prompt = "local C = 0; _PROMPT = setmetatable({}, {__tostring = function() C = C + 1; return C end})"
      local out, err, code = lua_sh('lua -e "' .. prompt .. '" -i', " --\na = 2\n")
      assert.are.equal(0, code, err)
      assert.truthy(out:find("1 --\n2a = 2\n3\n", 1, true), out)
      -- a __tostring that fails is reported and the default prompt is used
      out, err, code = lua_sh([[lua -e "_PROMPT = setmetatable({}, {__tostring = function() error('bad prompt') end})" -i]],
                              "x = 1\n")
      assert.are.equal(0, code, err)
      assert.matches("bad prompt", err)
      assert.matches("> x = 1\n", out)
    end)

    it("starts its messages with the program name, as lua does", function()
      local _, err, code = lua_sh([[lua -e "error('boom', 0)"]])
      assert.are.equal(1, code)
      assert.matches("^lua: boom\n", err)
      _, err, code = lua_sh([[lua -x]])
      assert.are.equal(1, code)
      assert.matches("^lua: unrecognized option '%-x'\nusage: lua %[options%]", err)
      -- reached by a path, the path is the name
      _, err = lua_sh(cli.q(luadir .. "/lua") .. [[ -e "error({})"]])
      assert.are.equal(luadir .. "/lua: (error object is a table value)\n",
                       err:match("^[^\n]*\n"))
      -- an error object's __tostring, as lua's test of error objects has it
      _, err = lua_sh([[lua -e "error(setmetatable({}, {__tostring = function() return 'six' end}))"]])
      assert.matches("^lua: six\n", err)
    end)
  end)

  describe("-i with standard input that is not a terminal", function()
    -- A pipe that stays open a while, so the REPL waits at its prompt with
    -- the loop running, as it does for a terminal.
    local function piped(lines, hold)
      local d = cli.tmpdir()
      cli.write(d .. "/in", lines)
      local p = io.popen(string.format(
        "cd %s && { cat in; sleep %s; } | env -u LUA_INIT -u LUA_INIT_5_4 timeout -k 2 20 %s -i >out 2>err; echo $?",
        cli.q(d), hold or "0", cli.q(cli.bin)))
      local code = tonumber(p:read("a"):match("%d+"))
      p:close()
      return cli.read(d .. "/out"), cli.read(d .. "/err"), code
    end

    it("never writes terminal control sequences", function()
      local out, err, code = piped("skein.spawn(function() skein.sleep(0.1) print('ti' .. 'ck') end)\n", "0.5")
      assert.are.equal(0, code, err)
      assert.matches("tick\n", out)
      assert.is_nil(out:find("\27", 1, true), out)
    end)

    it("waits at end of input for tasks still running, as a script does", function()
      local out, err, code = piped("skein.spawn(function() skein.sleep(0.3) print('la' .. 'te') end)\n")
      assert.are.equal(0, code, err)
      assert.matches("\nlate\n$", out)
      -- a thread and a worker process too
      out, err, code = piped("th = skein.thread(function() skein.sleep(0.3) print('from ' .. 'thread') end)\n" ..
                             "pr = skein.process(function() skein.sleep(0.3) print('from ' .. 'process') end)\n")
      assert.are.equal(0, code, err)
      assert.matches("from thread\n", out)
      assert.matches("from process\n", out)
    end)
  end)

  describe("Ctrl-C (SIGINT)", function()
    local function interrupted(r)
      assert.are.equal(130, r.code, "exit status; stderr:\n" .. tostring(r.err))
      assert.matches(P .. "interrupted\n", r.err)
      assert.is_true(r.secs < 2, "took " .. r.secs .. " s")
    end

    it("ends a main chunk blocked in skein.sleep with 130", function()
      local r = cli.signal_after_ready({ "-e", "print('ready') io.stdout:flush() skein.sleep(100) print('woke')" },
                                       "ready", "INT", { env = clean })
      interrupted(r)
      assert.are.equal(cli.prefix .. "interrupted\n", r.err)
      assert.are.equal("ready\n", r.out)
    end)

    it("ends a main chunk in a busy loop with 130", function()
      local r = cli.signal_after_ready({ "-e", "print('ready') io.stdout:flush() while true do end" },
                                       "ready", "INT", { env = clean })
      interrupted(r)
      assert.are.equal(cli.prefix .. "interrupted\n", r.err)
    end)

    it("ends a script whose main chunk has returned and whose task sleeps", function()
      local r = cli.signal_after_ready({ "-e", "skein.spawn(function() skein.sleep(100) end) print('ready')" },
                                       "ready", "INT", { env = clean })
      interrupted(r)
      assert.are.equal(cli.prefix .. "interrupted\n", r.err)
    end)

    it("ends a script whose task is in a busy loop", function()
      local r = cli.signal_after_ready({ "-e", "skein.spawn(function() while true do end end) print('ready')" },
                                       "ready", "INT", { env = clean })
      interrupted(r)
    end)

    it("ends a script whose main chunk has returned and whose pool jobs run, without waiting for them", function()
      for _, kind in ipairs({ "thread", "process" }) do
        local r = cli.signal_after_ready({ "-e", ([[
          local p = skein.pool{kind = %q, size = 1}
          p:submit(function() skein.sleep(100) print('job done') end)
          p:submit(function() print('never') end)
          print('ready')]]):format(kind) }, "ready", "INT", { env = clean })
        interrupted(r)
        assert.are.equal("ready\n", r.out)
      end
    end)

    it("ends a main chunk joining a task", function()
      local r = cli.signal_after_ready({ "-e", [[
        local t = skein.spawn(function() while true do skein.sleep(0.01) end end)
        print('ready') io.stdout:flush()
        t:join()]] }, "ready", "INT", { env = clean })
      interrupted(r)
    end)
  end)

  describe("busted --lua=skein", function()
    it("runs specs inside skein and reports their results", function()
      local d = cli.tmpdir()
      cli.write(d .. "/tiny_spec.lua", [[
        describe("tiny", function()
          it("passes inside skein", function()
            assert.is_table(skein)
            local t = skein.spawn(function(a) skein.sleep(0.01) return a * 2 end, 21)
            assert.are.equal(42, t:join())
          end)
          it("fails", function() assert.are.equal(1, 2) end)
        end)
      ]])
      local p = io.popen(string.format("cd %s && env -u LUA_INIT -u LUA_INIT_5_4 timeout -k 2 120 busted --lua=%s -o TAP tiny_spec.lua 2>&1; echo \"status=$?\"",
                                       cli.q(d), cli.q(cli.bin)))
      local out = p:read("a")
      p:close()
      assert.matches("\nok 1 %- tiny passes inside skein\n", "\n" .. out)
      assert.matches("\nnot ok 2 %- tiny fails\n", out)
      assert.matches("1%.%.2\n", out)
      assert.matches("status=1\n$", out)
    end)
  end)
end)
