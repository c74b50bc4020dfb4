-- opts.progress on map, imap, imap_unordered and starmap: a one-line bar on
-- stderr, drawn only when stderr is a terminal. Scripts run as `skein`
-- subprocesses: on a pseudo-terminal driven by support/pty_drive.py (the
-- bar shows), and with stderr sent to a file (nothing is written there).
-- Every subprocess runs under `timeout` (cli.run, cli.pty and the shell
-- lines below).
--
-- The driver prints the terminal output as Python string reprs, one per
-- line; `raw` turns them back into the bytes skein wrote (after the
-- terminal's \n -> \r\n), and `screen` plays those bytes the way a terminal
-- shows them (\r back to column 0, ESC [ K erases to the end of the line),
-- so a redraw that leaves stale characters behind is seen as it would be.
local cli = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/cli.lua")

-- Decodes one line of the driver's transcript (a Python str repr).
local function unrepr(line)
  local body = line:match("^'(.*)'$") or line:match('^"(.*)"$')
  if not body then return nil end
  local out, i = {}, 1
  while i <= #body do
    local c = body:sub(i, i)
    if c == "\\" then
      local e = body:sub(i + 1, i + 1)
      if e == "x" then
        out[#out + 1] = string.char(tonumber(body:sub(i + 2, i + 3), 16))
        i = i + 4
      else
        out[#out + 1] = ({ n = "\n", r = "\r", t = "\t" })[e] or e
        i = i + 2
      end
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

-- The bytes the command wrote to the terminal, from the driver's transcript.
local function raw(transcript)
  local parts = {}
  for line in transcript:gmatch("[^\n]+") do
    local s = unrepr(line)
    if s then parts[#parts + 1] = s end
  end
  return table.concat(parts, "\n")
end

-- The lines a terminal shows after `bytes`.
local function screen(bytes)
  local lines, cur, col, i = {}, {}, 0, 1
  while i <= #bytes do
    local c = bytes:sub(i, i)
    if c == "\27" then
      local seq = bytes:match("^\27%[[%d;?]*%a", i)
      if seq == "\27[K" then
        for k = #cur, col + 1, -1 do cur[k] = nil end
      end
      i = i + (seq and #seq or 1)
    else
      if c == "\r" then
        col = 0
      elseif c == "\n" then
        lines[#lines + 1] = table.concat(cur)
        cur, col = {}, 0
      else
        col = col + 1
        cur[col] = c
      end
      i = i + 1
    end
  end
  if #cur > 0 then lines[#lines + 1] = table.concat(cur) end
  return lines
end

local function script(text)
  return cli.write(cli.tmpdir() .. "/script.lua", text)
end

-- Runs `path` on a pseudo-terminal until it exits with `code` (default 0);
-- returns the raw bytes and the screen lines.
local function on_pty(path, args, code)
  local argv = { path }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local ok, transcript = cli.pty({ "exit:" .. (code or 0) }, argv, { timeout = 60 })
  assert(ok, "pty session failed:\n" .. transcript)
  local bytes = raw(transcript)
  return bytes, screen(bytes), transcript
end

-- Runs the shell line `sh` on a pseudo-terminal until it exits with 0 (for
-- redirections cli.pty cannot make); returns the screen lines.
local function pty_sh(sh)
  local p = io.popen(string.format("timeout -k 2 120 python3 %s --timeout 60 exit:0 -- sh -c %s 2>&1",
                                   cli.q(cli.pty_drive), cli.q(sh)))
  local transcript = p:read("a")
  p:close()
  assert(transcript:find("pty_drive: ok\n", 1, true), "pty session failed:\n" .. transcript)
  return screen(raw(transcript))
end

local function find_line(lines, pattern)
  for _, l in ipairs(lines) do
    if l:find(pattern) then return l end
  end
  return nil
end

local function count_lines(lines, pattern)
  local n = 0
  for _, l in ipairs(lines) do
    if l:find(pattern) then n = n + 1 end
  end
  return n
end

local function dump(lines) return table.concat(lines, "\n") end

-- A final bar line: label, a full (or, for an unknown total, empty) bar of
-- 30 cells, the count, a rate, the ETA, and nothing after it.
local RATE = " +%d+%.%d/s"
local function full_bar(label, n)
  return "^" .. label:gsub("%-", "%%-") .. " %[" .. ("#"):rep(30) .. "%] " .. n .. "/" .. n
         .. RATE .. " ETA 0s$"
end
local function open_bar(label, n)
  return "^" .. label:gsub("%-", "%%-") .. " %[" .. ("%."):rep(30) .. "%] " .. n .. "/%?"
         .. RATE .. " ETA %?$"
end

-- map over a list of 50 with a sleep in each item, results checked.
local MAP50 = [[
local p = skein.pool{kind = arg[1], size = 2}
local xs = {}
for i = 1, 50 do xs[i] = i end
local r = p:map(function(x) skein.sleep(0.01) return x * 2 end, xs, {progress = true, chunksize = 1})
local ok = r.n == 50
for i = 1, 50 do ok = ok and r[i] == 2 * i end
print(ok and "RESULT ok" or "RESULT bad")
p:shutdown()
]]

-- Every entry point, with lists (total known) and iterator functions
-- (total unknown); each checks its results.
local ALL = [[
local p = skein.pool{kind = arg[1], size = 2}
local function f(x) skein.sleep(0.002) return x * 2 end
local function gen(n)
  local i = 0
  return function() i = i + 1 if i <= n then return i end end
end
local xs = {}
for i = 1, 40 do xs[i] = i end
local function check(name, ok) print(name .. (ok and " ok" or " bad")) end

local r = p:map(f, xs, {progress = true})
local ok = r.n == 40
for i = 1, 40 do ok = ok and r[i] == 2 * i end
check("map-list", ok)

r = p:map(f, gen(30), {progress = true})
ok = r.n == 30
for i = 1, 30 do ok = ok and r[i] == 2 * i end
check("map-iter", ok)

local args = {}
for i = 1, 40 do args[i] = {i, 3} end
r = p:starmap(function(a, b) return a * b end, args, {progress = true})
ok = r.n == 40
for i = 1, 40 do ok = ok and r[i] == 3 * i end
check("starmap", ok)

local n, want = 0, 1
ok = true
for i, v in p:imap(f, gen(25), {progress = true}) do
  n = n + 1
  ok = ok and i == want and v == 2 * i
  want = want + 1
end
check("imap", ok and n == 25)

local seen = {}
n, ok = 0, true
for i, v in p:imap_unordered(f, gen(35), {progress = true, chunksize = 2}) do
  n = n + 1
  ok = ok and not seen[i] and v == 2 * i
  seen[i] = true
end
check("imap_unordered", ok and n == 35)
p:shutdown()
]]

local KINDS = { "thread", "coroutine", "process" }

describe("pool progress bar", function()
  teardown(cli.cleanup)

  describe("on a terminal", function()
    for _, kind in ipairs(KINDS) do
      it("map draws the bar for a " .. kind .. " pool and ends its line", function()
        local bytes, lines = on_pty(script(MAP50), { kind })
        local label = kind .. "-pool"
        -- the drawing itself: bar, count, rate, and the final state ended
        -- by a newline (the terminal turns \n into \r\n)
        assert.truthy(bytes:find("\r" .. label .. " [", 1, true), bytes)
        assert.truthy(bytes:find("%] 50/50" .. RATE .. " ETA 0s\27%[K\r\n"), bytes)
        -- what the terminal shows: the finished bar on a line of its own,
        -- then the script's own output on the next line
        local bar = find_line(lines, full_bar(label, 50))
        assert.truthy(bar, dump(lines))
        assert.are.equal(1, count_lines(lines, "50/50"), dump(lines))
        assert.truthy(find_line(lines, "^RESULT ok$"), dump(lines))
        assert.is_nil(find_line(lines, "RESULT bad"), dump(lines))
      end)

      it("map, starmap, imap and imap_unordered each draw a bar for a " .. kind .. " pool", function()
        local _, lines = on_pty(script(ALL), { kind })
        local label = kind .. "-pool"
        assert.truthy(find_line(lines, full_bar(label, 40)), dump(lines))   -- map, starmap
        assert.are.equal(2, count_lines(lines, full_bar(label, 40)), dump(lines))
        assert.truthy(find_line(lines, open_bar(label, 30)), dump(lines))   -- map over an iterator
        assert.truthy(find_line(lines, open_bar(label, 25)), dump(lines))   -- imap
        assert.truthy(find_line(lines, open_bar(label, 35)), dump(lines))   -- imap_unordered
        for _, name in ipairs({ "map-list", "map-iter", "starmap", "imap", "imap_unordered" }) do
          assert.truthy(find_line(lines, "^" .. name:gsub("%-", "%%-") .. " ok$"), dump(lines))
        end
      end)
    end

    it("imap over an iterator function shows ? for the unknown total", function()
      local bytes, lines = on_pty(script([[
local p = skein.pool{kind = "thread", size = 2}
local i = 0
local function gen() i = i + 1 if i <= 50 then return i end end
local n = 0
for k, v in p:imap(function(x) skein.sleep(0.01) return x end, gen, {progress = true, chunksize = 1}) do
  assert(k == v)
  n = n + 1
end
print("COUNT " .. n)
p:shutdown()
]]))
      assert.truthy(bytes:find("%] 50/%?" .. RATE .. " ETA %?\27%[K\r\n"), bytes)
      assert.truthy(find_line(lines, open_bar("thread-pool", 50)), dump(lines))
      assert.truthy(find_line(lines, "^COUNT 50$"), dump(lines))
    end)

    it("a redraw shorter than the last one leaves no stale characters", function()
      -- 300 instant items and then 10 slow ones: the rate falls from
      -- thousands per second to about 300, so each redraw is shorter than
      -- the one before it
      local _, lines = on_pty(script([[
local p = skein.pool{kind = "coroutine", size = 1}
local i = 0
local function gen() i = i + 1 if i <= 310 then return i end end
local n = 0
for _ in p:imap(function(x) if x > 300 then skein.sleep(0.05) end return x end, gen, {progress = true}) do
  n = n + 1
end
print("COUNT " .. n)
]]))
      assert.truthy(find_line(lines, open_bar("coroutine-pool", 310)), dump(lines))
      assert.truthy(find_line(lines, "^COUNT 310$"), dump(lines))
    end)

    it("ends the bar's line before the error when an item fails", function()
      local _, lines = on_pty(script([[
local p = skein.pool{kind = "thread", size = 1}
local xs = {}
for i = 1, 20 do xs[i] = i end
p:map(function(x) skein.sleep(0.01) if x == 10 then error("bo" .. "om") end return x end,
      xs, {progress = true, chunksize = 1})
]]), nil, 1)
      assert.truthy(find_line(lines, "^thread%-pool %[#*%.+%] 9/20" .. RATE .. " ETA %d+s$"), dump(lines))
      assert.truthy(find_line(lines, "^" .. cli.prefix_rx .. ".*boom$"), dump(lines))
    end)

    it("ends the bar's line when a loop over imap breaks, and draws it once", function()
      local _, lines = on_pty(script([[
local p = skein.pool{kind = "coroutine", size = 2}
for i in p:imap(function(x) return x end, {1, 2, 3, 4, 5, 6}, {progress = true}) do
  if i == 3 then break end
end
print("AFTER")
local it = p:imap(function(x) return x end, {1, 2, 3}, {progress = true})
while it() do end
assert(it() == nil)   -- asked again once exhausted: no second bar
print("DONE")
]]))
      assert.truthy(find_line(lines, "^AFTER$"), dump(lines))
      assert.truthy(find_line(lines, "^coroutine%-pool %[#+%.+%] [345]/6" .. RATE .. " ETA %d+s$"), dump(lines))
      assert.are.equal(1, count_lines(lines, full_bar("coroutine-pool", 3)), dump(lines))
      assert.truthy(find_line(lines, "^DONE$"), dump(lines))
    end)

    it("draws on stderr: shown when only stdout is redirected", function()
      local d = cli.tmpdir()
      local path = script(MAP50)
      -- stdout to a file, stderr left on the terminal
      local lines = pty_sh(string.format("exec %s %s thread >%s",
                                         cli.q(cli.bin), cli.q(path), cli.q(d .. "/out")))
      assert.truthy(find_line(lines, full_bar("thread-pool", 50)), dump(lines))
      assert.are.equal("RESULT ok\n", cli.read(d .. "/out"))
    end)
  end)

  describe("off a terminal", function()
    for _, kind in ipairs(KINDS) do
      it("writes nothing to stderr and returns the right results (" .. kind .. " pool)", function()
        local r = cli.run({ script(MAP50), kind }, { timeout = 60 })
        assert.are.equal(0, r.code, r.err)
        assert.are.equal("", r.err)
        assert.are.equal("RESULT ok\n", r.out)
        r = cli.run({ script(ALL), kind }, { timeout = 60 })
        assert.are.equal(0, r.code, r.err)
        assert.are.equal("", r.err)
        assert.are.equal("map-list ok\nmap-iter ok\nstarmap ok\nimap ok\nimap_unordered ok\n", r.out)
      end)
    end

    it("writes nothing to stderr when only stderr is redirected (stdout on a terminal)", function()
      local d = cli.tmpdir()
      local path = script(MAP50)
      local lines = pty_sh(string.format("exec %s %s thread 2>%s",
                                         cli.q(cli.bin), cli.q(path), cli.q(d .. "/err")))
      assert.truthy(find_line(lines, "^RESULT ok$"), dump(lines))
      assert.is_nil(find_line(lines, "%-pool %["), dump(lines))
      assert.are.equal("", cli.read(d .. "/err"))
    end)
  end)
end)
