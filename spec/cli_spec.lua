-- The `skein` command: what it shares with the standalone `lua` (options,
-- `arg`, LUA_INIT, stdin), how a script ends (tasks, daemons, failures,
-- deadlock), Ctrl-C, and running busted inside it. Every subprocess is
-- bounded by `timeout`, so a hang fails instead of stalling the suite.
local cli = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/cli.lua")
local run = cli.run

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
      assert.matches("^skein: .*module 'no_such_module_xyz' not found", r.err)
    end)

    it("-v prints the version and does not start a REPL", function()
      local r = ok_run({ "-v" })
      assert.matches("^skein %d+%.%d+%.%d+ %(Lua 5%.4[%.%d]*, libuv [%d%.]+%)\n$", r.out)
      assert.are.equal(skein.version, r.out:match("^skein (%S+)"))
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
      assert.matches("^skein: LUA_INIT:1: bad init", r.err)
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
      assert.matches("^skein: stdin:1: from stdin", r.err)
    end)

    it("-e or -v without a script does not read stdin", function()
      local r = ok_run({ "-e", "print(1)" }, { stdin = "print('stdin ran')" })
      assert.are.equal("1\n", r.out)
    end)

    it("-i after a script enters the REPL with the script's globals", function()
      cli.write(dir .. "/globals.lua", "greeting = 'hi from script'\nprint('script ran')\n")
      local r = ok_run({ "-i", dir .. "/globals.lua" }, { stdin = "print(greeting)\n" })
      assert.matches("^skein [%d%.]+ %b()\nscript ran\n", r.out)
      assert.matches("hi from script", r.out)
    end)

    for _, bad in ipairs({ "-x", "-ix", "-vv", "--x", "-Ex" }) do
      it("a bad option (" .. bad .. ") prints usage and exits 1", function()
        local r = fail_run({ bad, "-e", "print('not reached')" })
        assert.are.equal("", r.out)
        assert.matches("^skein: unrecognized option '" .. bad:gsub("%-", "%%-") .. "'\nusage: skein ", r.err)
        assert.matches("%-e stat", r.err)
      end)
    end

    it("-e and -l without their argument print usage and exit 1", function()
      local r = fail_run({ "-e" })
      assert.matches("^skein: '%-e' needs argument\nusage:", r.err)
      r = fail_run({ "-l", "-e", "x=1" })
      assert.matches("^skein: '%-l' needs argument\nusage:", r.err)
    end)
  end)

  describe("errors", function()
    it("a syntax error exits 1 with the message", function()
      local f = cli.write(dir .. "/syntax.lua", "local x = = 1\n")
      local r = fail_run({ f })
      assert.matches("^skein: " .. f:gsub("%p", "%%%0") .. ":1: unexpected symbol near '='\n$", r.err)
    end)

    it("a syntax error in -e exits 1", function()
      local r = fail_run({ "-e", "x =" })
      assert.matches("^skein: %(command line%):1: unexpected symbol near <eof>", r.err)
    end)

    it("a runtime error exits 1 with the message and a traceback", function()
      local f = cli.write(dir .. "/boom.lua", "local function f() error('boom') end\nf()\n")
      local r = fail_run({ f, "ignored" })
      assert.matches("^skein: [^\n]*boom.lua:1: boom\nstack traceback:\n", r.err)
      assert.matches("in main chunk", r.err)
    end)

    it("a non-string error object is described", function()
      local r = fail_run({ "-e", "error({})" })
      assert.matches("^skein: %(error object is a table value%)", r.err)
      r = fail_run({ "-e", "error(setmetatable({}, {__tostring = function() return 'custom' end}))" })
      assert.matches("^skein: custom", r.err)
    end)

    it("a missing script exits 1", function()
      local r = fail_run({ dir .. "/no_such_script.lua" })
      assert.matches("^skein: cannot open [^\n]*no_such_script.lua", r.err)
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

    it("main joining a task that waits forever reports a deadlock", function()
      local r = fail_run({ "-e", [[
        local t = skein.spawn(function() skein.sleep(math.huge) end)
        t:join()]] }, { timeout = 20 })
      assert.matches("^skein: [^\n]*deadlock", r.err)
      assert.is_true(r.secs < 5, "took " .. r.secs .. " s")
    end)

    it("tasks left waiting forever after the chunk report a deadlock", function()
      local r = fail_run({ "-e", "skein.spawn(function() skein.sleep(math.huge) end) print('chunk done')" },
                         { timeout = 20 })
      assert.are.equal("chunk done\n", r.out)
      assert.matches("^skein: [^\n]*deadlock", r.err)
      assert.is_true(r.secs < 5, "took " .. r.secs .. " s")
    end)
  end)

  describe("Ctrl-C (SIGINT)", function()
    local function interrupted(r)
      assert.are.equal(130, r.code, "exit status; stderr:\n" .. tostring(r.err))
      assert.matches("^skein: interrupted\n", r.err)
      assert.is_true(r.secs < 2, "took " .. r.secs .. " s")
    end

    it("ends a main chunk blocked in skein.sleep with 130", function()
      local r = cli.signal_after_ready({ "-e", "print('ready') io.stdout:flush() skein.sleep(100) print('woke')" },
                                       "ready", "INT", { env = clean })
      interrupted(r)
      assert.are.equal("skein: interrupted\n", r.err)
      assert.are.equal("ready\n", r.out)
    end)

    it("ends a main chunk in a busy loop with 130", function()
      local r = cli.signal_after_ready({ "-e", "print('ready') io.stdout:flush() while true do end" },
                                       "ready", "INT", { env = clean })
      interrupted(r)
      assert.are.equal("skein: interrupted\n", r.err)
    end)

    it("ends a script whose main chunk has returned and whose task sleeps", function()
      local r = cli.signal_after_ready({ "-e", "skein.spawn(function() skein.sleep(100) end) print('ready')" },
                                       "ready", "INT", { env = clean })
      interrupted(r)
      assert.are.equal("skein: interrupted\n", r.err)
    end)

    it("ends a script whose task is in a busy loop", function()
      local r = cli.signal_after_ready({ "-e", "skein.spawn(function() while true do end end) print('ready')" },
                                       "ready", "INT", { env = clean })
      interrupted(r)
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
