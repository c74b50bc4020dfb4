-- The interactive prompt, driven on a pseudo-terminal by
-- support/pty_drive.py: printing values, multi-line input, tasks that run
-- while the prompt waits, Ctrl-C, Ctrl-D and history. Each step of a session
-- waits at most a few seconds, and the whole driver runs under `timeout`.
--
-- Patterns are Python regular expressions over the raw terminal output, in
-- which lines end in \r\n and readline adds escape sequences. Readline
-- echoes what is typed, so every expected output is built so that the echo
-- cannot match it ('ti' .. 'ck' prints "tick"), and `line` waits for the end
-- of a line's echo before the next step looks for a prompt. Ctrl-D is sent
-- only at a prompt: typed while a line is evaluated it is not an EOF.
local cli = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/cli.lua")

local ESC = "(?:\x1b\\[[?0-9;]*[a-zA-Z])*"   -- any escape sequences
local PROMPT = "expect:(?<!>)> $"  -- a primary prompt with nothing after it (yet)
local CONT = "expect:>> $"         -- the continuation prompt

-- Python's re.escape for the characters Lua code uses.
local function rx(s)
  return (s:gsub("[%.%^%$%*%+%?%{%}%[%]\\|%(%)]", "\\%0"))
end

-- Types a line and waits until its echo (and the newline) came back.
local function line(text)
  return { "send:" .. text .. "\\r", "expect:" .. rx(text) .. "\r\n" }
end

-- Output line `text` printed at column 0 (after the echo's escapes).
local function out(text)
  return "expect:" .. ESC .. "\r?" .. text .. "\r\n"
end

local EOF = { PROMPT, "send:\\x04", "exit:0" }

local function flatten(steps, acc)
  acc = acc or {}
  for _, s in ipairs(steps) do
    if type(s) == "table" then flatten(s, acc) else acc[#acc + 1] = s end
  end
  return acc
end

local function session(steps, args, opts)
  local ok, transcript, home = cli.pty(flatten(steps), args, opts)
  assert(ok, "pty session failed:\n" .. transcript)
  return transcript, home
end

describe("skein REPL", function()
  teardown(cli.cleanup)

  it("shows the banner and a prompt, and prints an expression's value", function()
    session({
      "expect:^skein \\d+\\.\\d+\\.\\d+ \\(Lua 5\\.4[.\\d]*, libuv [.\\d]+\\)\r\n",
      PROMPT,
      line("1+1"), out("2"),
      PROMPT,
      line("'a' .. 'b', nil, 3"), out("ab\tnil\t3"),
      PROMPT,
      line("local x = 5"),
      EOF,
    })
  end)

  it("reads a multi-line statement with the >> continuation prompt", function()
    session({
      PROMPT,
      line("for i = 1, 2 do"), CONT,
      line("print('li' .. 'ne', i)"), CONT,
      line("end"), out("line\t1"), out("line\t2"),
      EOF,
    })
  end)

  it("reports errors and keeps going", function()
    session({
      PROMPT,
      line("x = = 1"), "expect:skein: stdin:1: unexpected symbol near '='\r\n",
      PROMPT,
      line("error('oo' .. 'ps')"), "expect:skein: stdin:1: oops\r\nstack traceback:",
      PROMPT,
      line("print(6*7)"), out("42"),
      EOF,
    })
  end)

  it("runs a task spawned at the prompt while it waits for input", function()
    session({
      PROMPT,
      line("skein.spawn(function() skein.sleep(0.3) print('ti' .. 'ck') end)"),
      out("skein\\.task \\d+ \\(pending\\)"),
      PROMPT,
      -- no further input: the task prints while the prompt waits, and the
      -- prompt comes back under what it printed
      "expect:tick\r\n",
      PROMPT,
      line("print('still' .. 'here')"), out("stillhere"),
      EOF,
    })
  end)

  it("keeps what the user was typing when a task prints", function()
    session({
      PROMPT,
      line("skein.spawn(function() skein.sleep(0.3) print('ti' .. 'ck') end)"),
      PROMPT,
      "send:prin",
      "expect:prin",
      "expect:tick\r\n",
      "expect:> prin$",
      line("t(7*6)"), out("42"),
      EOF,
    })
  end)

  it("redraws prompt and typed text around what a thread worker prints", function()
    session({
      PROMPT,
      line("th = skein.thread(function() skein.sleep(0.5) print('from ' .. 'thread') end)"),
      PROMPT,
      "send:abc",
      "expect:abc",
      -- the prompt line is cleared, the output written at column 0, and the
      -- prompt drawn again with what was typed
      "expect:\r\x1b\\[Kfrom thread\r\n",
      "expect:> abc$",
      "send:\\x03",
      PROMPT,
      line("th:join()"),
      EOF,
    })
  end)

  it("redraws prompt and typed text around what a pool's worker process prints", function()
    session({
      PROMPT,
      line("pp = skein.pool{kind = 'process', size = 1}"),
      PROMPT,
      line("f = pp:submit(function() skein.sleep(0.5) print('from ' .. 'process') end)"),
      PROMPT,
      "send:xyz",
      "expect:xyz",
      "expect:\r\x1b\\[Kfrom process\r\n",
      "expect:> xyz$",
      "send:\\x03",
      PROMPT,
      line("f:get() pp:close()"),
      EOF,
    })
  end)

  it("Ctrl-D with a task running says so, and a second Ctrl-D waits for it", function()
    local transcript = session({
      PROMPT,
      line("skein.spawn(function() skein.sleep(1) print('fin' .. 'ished') end)"),
      out("skein\\.task \\d+ \\(pending\\)"),
      PROMPT,
      "send:\\x04",
      "expect:1 task or worker still running: Ctrl-D again waits for it",
      PROMPT,
      "send:\\x04",
      "expect:waiting for 1 task or worker to finish",
      "expect:finished\r\n",
      "exit:0",
    })
    assert.not_matches("finished.*still running", transcript)
  end)

  it("Ctrl-D counts pool jobs still queued or running, and a second Ctrl-D waits for them", function()
    session({
      PROMPT,
      line("tp = skein.pool{kind = 'thread', size = 1} pp = skein.pool{kind = 'process', size = 1}"),
      PROMPT,
      line("f = tp:submit(function() skein.sleep(1) print('thread ' .. 'job') end)"),
      PROMPT,
      line("g = pp:submit(function() skein.sleep(1.5) print('process ' .. 'job') end)"),
      PROMPT,
      "send:\\x04",
      "expect:2 tasks or workers still running: Ctrl-D again waits for them",
      PROMPT,
      "send:\\x04",
      "expect:waiting for 2 tasks or workers to finish",
      "expect:thread job\r\n",
      "expect:process job\r\n",
      "exit:0",
    })
  end)

  it("a line typed after the first Ctrl-D starts over; Ctrl-D exits at once when nothing runs", function()
    session({
      PROMPT,
      line("th = skein.thread(function() skein.sleep(0.6) end)"),
      PROMPT,
      "send:\\x04",
      "expect:still running",
      PROMPT,
      line("x = 1"),
      PROMPT,
      "send:\\x04",
      "expect:still running",
      PROMPT,
      line("th:join()"),
      EOF,
    })
  end)

  it("Ctrl-C while waiting after Ctrl-D stops the tasks and exits 130", function()
    session({
      PROMPT,
      line("skein.spawn(function() skein.sleep(100) print('ne' .. 'ver') end)"),
      PROMPT,
      "send:\\x04",
      "expect:still running",
      PROMPT,
      "send:\\x04",
      "expect:waiting for",
      "sleep:0.2",
      "send:\\x03",
      "expect:interrupted",
      "exit:130",
    }, nil, { timeout = 5 })
  end)

  it("os.exit at the prompt still shows what was printed just before", function()
    session({
      PROMPT,
      "send:for i = 1, 200 do print('line ' .. i) end print('by' .. 'e') os.exit(3)\\r",
      "expect:line 200\r\nbye\r\n",
      "exit:3",
    })
  end)

  it("Ctrl-C at the prompt cancels the line and gives a fresh prompt", function()
    local transcript = session({
      PROMPT,
      "send:print('ne' .. 'ver')",
      "expect:'ver'\\)",
      "send:\\x03",
      PROMPT,
      line("print('a' .. 'fter')"), out("after"),
      EOF,
    })
    assert.not_matches("never", transcript)
  end)

  it("Ctrl-C cancels an unfinished multi-line statement", function()
    session({
      PROMPT,
      line("for i = 1, 3 do"), CONT,
      "send:\\x03",
      PROMPT,
      line("print('fr' .. 'esh')"), out("fresh"),
      EOF,
    })
  end)

  it("Ctrl-C interrupts skein.sleep evaluated at the prompt", function()
    local transcript = session({
      PROMPT,
      line("skein.sleep(100) print('sl' .. 'ept')"),
      "sleep:0.3",
      "send:\\x03",
      "expect:skein: interrupted\r\n",
      PROMPT,
      line("print('back' .. 'again')"), out("backagain"),
      EOF,
    }, nil, { timeout = 3 })
    assert.not_matches("slept", transcript)
  end)

  it("Ctrl-C interrupts a busy loop evaluated at the prompt", function()
    session({
      PROMPT,
      line("while true do end"),
      "sleep:0.3",
      "send:\\x03",
      "expect:skein: interrupted\r\n",
      PROMPT,
      line("print(1 + 2)"), out("3"),
      EOF,
    }, nil, { timeout = 3 })
  end)

  it("Ctrl-C stops a task that keeps the CPU from the prompt", function()
    session({
      PROMPT,
      line("skein.spawn(function() while true do end end)"),
      out("skein\\.task \\d+ \\(pending\\)"),
      "sleep:0.3",
      "send:\\x03",
      PROMPT,
      line("print(20 + 22)"), out("42"),
      EOF,
    }, nil, { timeout = 3 })
  end)

  it("reports a top-level wait that can never end instead of hanging", function()
    session({
      PROMPT,
      line("skein.sleep(math.huge)"),
      "expect:skein: [^\r\n]*deadlock",
      PROMPT,
      line("print('al' .. 'ive')"), out("alive"),
      EOF,
    }, nil, { timeout = 3 })
  end)

  it("Ctrl-D exits with status 0 even when a task at the prompt failed", function()
    session({
      PROMPT,
      line("skein.spawn(function() error('task blew up') end)"),
      out("skein\\.task \\d+ \\(pending\\)"),
      EOF,
    })
  end)

  it("honours _PROMPT and _PROMPT2", function()
    session({
      PROMPT,
      line("_PROMPT = 'sk' .. '$ ' _PROMPT2 = 'sk' .. '.. '"),
      "expect:" .. "sk\\$ $",
      line("do"),
      "expect:" .. "sk\\.\\. $",
      line("end"),
      "expect:" .. "sk\\$ $",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("writes the history file named by SKEIN_HISTORY, and reads it back", function()
    local dir = cli.tmpdir()
    local hist = dir .. "/hist"
    session({
      PROMPT,
      line("for i = 1, 1 do"), CONT,
      line("end"), PROMPT,
      -- during the session a multi-line statement is one entry
      "send:\\x1b[A",
      "expect:for i = 1, 1 do\r\n\r?end",
      "send:\\x03",
      PROMPT,
      line("print('remember ' .. 'me')"), out("remember me"),
      EOF,
    }, nil, { env = { SKEIN_HISTORY = hist } })
    local text = cli.read(hist)
    assert.is_string(text, "no history file")
    assert.matches("print%('remember ' %.%. 'me'%)", text)
    assert.matches("for i = 1, 1 do\nend\n", text)
    -- readline's time stamps ("#1796450290") are not written
    assert.is_nil(text:find("#%d"), text)
    assert.are.equal("for i = 1, 1 do\nend\nprint('remember ' .. 'me')\n", text)
    -- the previous session's lines come back with the Up arrow, the
    -- multi-line statement line by line
    session({
      PROMPT,
      "send:\\x1b[A",
      "expect:remember",
      "send:\\x1b[A",
      "expect:end",
      "send:\\x1b[A",
      "expect:for i = 1, 1 do",
      "send:\\x03",
      EOF,
    }, nil, { env = { SKEIN_HISTORY = hist } })
  end)

  it("reads a history file with old time stamps as entries without them", function()
    local dir = cli.tmpdir()
    local hist = cli.write(dir .. "/hist", "#1796450290\nx = 'old'\n")
    session({
      PROMPT,
      "send:\\x1b[A",
      "expect:x = 'old'",
      "send:\\x1b[A",
      -- let readline take the whole key sequence before Ctrl-C comes
      "sleep:0.3",
      "absent:#1796",
      "send:\\x03",
      PROMPT,
      line("y = 'new'"),
      EOF,
    }, nil, { env = { SKEIN_HISTORY = hist } })
    assert.are.equal("x = 'old'\ny = 'new'\n", cli.read(hist))
  end)

  it("keeps history in ~/.skein_history by default", function()
    local _, home = session({
      PROMPT,
      line("x = 'in home'"),
      EOF,
    })
    assert.matches("x = 'in home'", cli.read(home .. "/.skein_history") or "")
  end)

  it("SKEIN_HISTORY='' keeps history for the session only", function()
    local _, home = session({
      PROMPT,
      line("x = 'not ' .. 'saved'"),
      PROMPT,
      "send:\\x1b[A",
      "expect:x = 'not ' \\.\\. 'saved'",
      "send:\\x03",
      EOF,
    }, nil, { env = { SKEIN_HISTORY = "" } })
    assert.is_nil(cli.read(home .. "/.skein_history"))
  end)

  it("-i after a script enters the REPL with the script's globals", function()
    local dir = cli.tmpdir()
    cli.write(dir .. "/setup.lua", "answer = 41 + 1\nprint('script ran', ...)\n")
    session({
      "expect:script ran\targ1\r\n",
      PROMPT,
      line("answer"), out("42"),
      EOF,
    }, { "-i", dir .. "/setup.lua", "arg1" })
  end)

  it("-i lets tasks the script started keep running at the prompt", function()
    local dir = cli.tmpdir()
    cli.write(dir .. "/bg.lua", "skein.spawn(function() skein.sleep(0.3) print('bg' .. ' done') end)\n")
    session({
      PROMPT,
      "expect:bg done\r\n",
      EOF,
    }, { "-i", dir .. "/bg.lua" })
  end)
end)
