-- The interactive prompt, driven on a pseudo-terminal by
-- support/pty_drive.py: printing values, multi-line input, tasks that run
-- while the prompt waits, Ctrl-C, Ctrl-D and history. Each step of a session
-- waits at most a few seconds, and the whole driver runs under `timeout`.
--
-- Patterns are Python regular expressions over the raw terminal output, in
-- which lines end in \r\n and readline adds escape sequences; a pattern that
-- must not match the echo of the typed line checks what follows the echo.
local cli = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/cli.lua")

local function session(steps, args, opts)
  local ok, transcript, home = cli.pty(steps, args, opts)
  assert(ok, "pty session failed:\n" .. transcript)
  return transcript, home
end

describe("skein REPL", function()
  teardown(cli.cleanup)

  it("shows the banner and a prompt, and prints an expression's value", function()
    session({
      "expect:^skein \\d+\\.\\d+\\.\\d+ \\(Lua 5\\.4",
      "expect:\n[^\n]*> $",
      "send:1+1\\r",
      "expect:1\\+1\r\n(\x1b\\[[^a-zA-Z]*[a-zA-Z])*\r?2\r\n",
      "send:'a', nil, 3\\r",
      "expect:\r?a\tnil\t3\r\n",
      "send:local x = 5\\r",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("reads a multi-line statement with the >> continuation prompt", function()
    session({
      "expect:> ",
      "send:for i = 1, 2 do\\r",
      "expect:>> ",
      "send:print('line', i)\\r",
      "expect:>> ",
      "send:end\\r",
      "expect:end\r\n(\x1b\\[[^a-zA-Z]*[a-zA-Z])*\r?line\t1\r\nline\t2\r\n",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("reports errors and keeps going", function()
    session({
      "expect:> ",
      "send:x = = 1\\r",
      "expect:skein: stdin:1: unexpected symbol near '='",
      "expect:> ",
      "send:error('oops')\\r",
      "expect:skein: stdin:1: oops\r\nstack traceback:",
      "expect:> ",
      "send:print(6*7)\\r",
      "expect:\r?42\r\n",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("runs a task spawned at the prompt while it waits for input", function()
    session({
      "expect:> ",
      "send:skein.spawn(function() skein.sleep(0.3) print('ti' .. 'ck') end)\\r",
      "expect:skein\\.task \\d+ \\(pending\\)",
      -- no further input: the task prints while the prompt waits
      "expect:tick\r\n",
      "expect:> ",
      "send:print('still' .. 'here')\\r",
      "expect:stillhere",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("keeps what the user was typing when a task prints", function()
    session({
      "expect:> ",
      "send:skein.spawn(function() skein.sleep(0.3) print('ti' .. 'ck') end)\\r",
      "expect:pending\\)",
      "expect:> ",
      "send:prin",
      "expect:prin",
      "expect:tick\r\n",
      "send:t(7*6)\\r",
      "expect:\r?42\r\n",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("Ctrl-C at the prompt cancels the line and gives a fresh prompt", function()
    local transcript = session({
      "expect:> ",
      "send:print('ne' .. 'ver')",
      "expect:'ver'\\)",
      "send:\\x03",
      "expect:\n[^\n]*> $",
      "send:print('a' .. 'fter')\\r",
      "expect:\r?after\r\n",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
    assert.not_matches("never", transcript)
  end)

  it("Ctrl-C cancels an unfinished multi-line statement", function()
    session({
      "expect:> ",
      "send:for i = 1, 3 do\\r",
      "expect:>> ",
      "send:\\x03",
      "expect:\n[^\n]*> $",
      "send:print('fr' .. 'esh')\\r",
      "expect:\r?fresh\r\n",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("Ctrl-C interrupts skein.sleep evaluated at the prompt", function()
    local transcript = session({
      "expect:> ",
      "send:skein.sleep(100) print('sl' .. 'ept')\\r",
      "expect:'ept'\\)\r\n",
      "sleep:0.3",
      "send:\\x03",
      "expect:skein: interrupted\r\n",
      "expect:> ",
      "send:print('back' .. 'again')\\r",
      "expect:backagain",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    }, nil, { timeout = 3 })
    assert.not_matches("slept", transcript)
  end)

  it("Ctrl-C interrupts a busy loop evaluated at the prompt", function()
    session({
      "expect:> ",
      "send:while true do end\\r",
      "expect:end\r\n",
      "sleep:0.3",
      "send:\\x03",
      "expect:skein: interrupted\r\n",
      "expect:> ",
      "send:print(1 + 2)\\r",
      "expect:\r?3\r\n",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    }, nil, { timeout = 3 })
  end)

  it("reports a top-level wait that can never end instead of hanging", function()
    session({
      "expect:> ",
      "send:skein.sleep(math.huge)\\r",
      "expect:deadlock",
      "expect:> ",
      "send:print('al' .. 'ive')\\r",
      "expect:alive",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    }, nil, { timeout = 3 })
  end)

  it("Ctrl-D exits with status 0 even when a task at the prompt failed", function()
    session({
      "expect:> ",
      "send:skein.spawn(function() error('task blew up') end)\\r",
      "expect:pending",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("honours _PROMPT and _PROMPT2", function()
    session({
      "expect:> ",
      "send:_PROMPT = 'sk$ ' _PROMPT2 = 'sk.. '\\r",
      "expect:sk\\$ ",
      "send:do\\r",
      "expect:sk\\.\\. ",
      "send:end\\r",
      "expect:sk\\$ ",
      "send:\\x04",
      "exit:0",
    })
  end)

  it("writes the history file named by SKEIN_HISTORY, and reads it back", function()
    local dir = cli.tmpdir()
    local hist = dir .. "/hist"
    session({
      "expect:> ",
      "send:for i = 1, 1 do\\r",
      "expect:>> ",
      "send:end\\r",
      "expect:\n[^\n]*> $",
      "send:print('remember ' .. 'me')\\r",
      "expect:remember me",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    }, nil, { env = { SKEIN_HISTORY = hist } })
    local text = cli.read(hist)
    assert.is_string(text, "no history file")
    assert.matches("print%('remember ' %.%. 'me'%)", text)
    assert.matches("for i = 1, 1 do", text)
    -- the previous session's lines come back with the Up arrow
    session({
      "expect:> ",
      "send:\\x1b[A",
      "expect:remember",
      "send:\\x1b[A",
      "expect:for i = 1, 1 do",
      "send:\\x03",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    }, nil, { env = { SKEIN_HISTORY = hist } })
  end)

  it("keeps history in ~/.skein_history by default", function()
    local _, home = session({
      "expect:> ",
      "send:x = 'in home'\\r",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    })
    assert.matches("x = 'in home'", cli.read(home .. "/.skein_history") or "")
  end)

  it("-i after a script enters the REPL with the script's globals", function()
    local dir = cli.tmpdir()
    cli.write(dir .. "/setup.lua", "answer = 41 + 1\nprint('script ran', ...)\n")
    session({
      "expect:script ran\targ1\r\n",
      "expect:> ",
      "send:answer\\r",
      "expect:\r?42\r\n",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    }, { "-i", dir .. "/setup.lua", "arg1" })
  end)

  it("-i lets tasks the script started keep running at the prompt", function()
    local dir = cli.tmpdir()
    cli.write(dir .. "/bg.lua", "skein.spawn(function() skein.sleep(0.3) print('bg' .. ' done') end)\n")
    session({
      "expect:> ",
      "expect:bg done\r\n",
      "expect:> ",
      "send:\\x04",
      "exit:0",
    }, { "-i", dir .. "/bg.lua" })
  end)
end)
