-- skein.fs: whole-file and directory calls on libuv's thread pool; errors
-- (kind "io" with code and path), binary data, concurrency, cancellation
-- and skein.timeout while a job is in flight, threads and process pools.
local skein = require "skein"
local cli = require "spec.support.cli"
local fs = skein.fs

local caught = require("spec.support.errors").errof

local function io_error(code, path, fn, ...)
  local e = caught(fn, ...)
  assert.equal("io", e.kind)
  assert.equal(code, e.code)
  assert.equal(path, e.path)
  return e
end

describe("skein.fs", function()
  local d
  before_each(function() d = cli.tmpdir() end)
  teardown(function() cli.cleanup() end)

  it("writes, appends and reads back binary data", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local data = table.concat(bytes):rep(1000)
    assert.is_nil(fs.write(d .. "/b", data))
    assert.equal(data, fs.read(d .. "/b"))
    fs.append(d .. "/b", "\0tail")
    assert.equal(data .. "\0tail", fs.read(d .. "/b"))
    fs.write(d .. "/b", "")
    assert.equal("", fs.read(d .. "/b"))
    fs.append(d .. "/new", "x")
    assert.equal("x", fs.read(d .. "/new"))
  end)

  it("stats files, directories and links", function()
    fs.write(d .. "/f", "12345")
    local st = fs.stat(d .. "/f")
    assert.equal(5, st.size)
    assert.equal("file", st.type)
    assert.is_number(st.mode)
    assert.is_true(math.abs(st.mtime - os.time()) < 60)
    assert.equal("directory", fs.stat(d).type)
    os.execute("ln -s f " .. cli.q(d .. "/l"))
    assert.equal("link", fs.stat(d .. "/l").type)
    assert.equal("other", fs.stat("/dev/null").type)
  end)

  it("tells whether a path exists", function()
    fs.write(d .. "/f", "")
    assert.is_true(fs.exists(d .. "/f"))
    assert.is_true(fs.exists(d))
    assert.is_false(fs.exists(d .. "/nope"))
    assert.is_false(fs.exists(d .. "/f/under-a-file"))
  end)

  it("lists a directory sorted, and makes and removes trees", function()
    for _, n in ipairs({"c", "a", "b"}) do fs.write(d .. "/" .. n, n) end
    fs.mkdir(d .. "/z")
    assert.same({"a", "b", "c", "z"}, fs.list(d))
    fs.mkdir(d .. "/p/q/r", {parents = true})
    fs.mkdir(d .. "/p/q/r", {parents = true})     -- already there: fine
    fs.write(d .. "/p/q/r/f", "x")
    assert.same({"r"}, fs.list(d .. "/p/q"))
    io_error("ENOTEMPTY", d .. "/p", fs.remove, d .. "/p")
    fs.remove(d .. "/p", {recursive = true})
    assert.is_false(fs.exists(d .. "/p"))
    fs.remove(d .. "/a")
    fs.remove(d .. "/z")
    assert.same({"b", "c"}, fs.list(d))
  end)

  it("renames", function()
    fs.write(d .. "/a", "A")
    fs.rename(d .. "/a", d .. "/b")
    assert.is_false(fs.exists(d .. "/a"))
    assert.equal("A", fs.read(d .. "/b"))
    local e = io_error("ENOENT", d .. "/a", fs.rename, d .. "/a", d .. "/c")
    assert.matches("cannot rename", e.message)
  end)

  it("reports errors as kind io with code and path", function()
    local p = d .. "/missing"
    local e = io_error("ENOENT", p, fs.read, p)
    assert.equal("cannot read '" .. p .. "': no such file or directory", e.message)
    io_error("ENOENT", p, fs.stat, p)
    io_error("ENOENT", p, fs.list, p)
    io_error("ENOENT", p, fs.remove, p)
    io_error("ENOENT", p .. "/x", fs.write, p .. "/x", "data")
    io_error("ENOENT", p .. "/x", fs.mkdir, p .. "/x")
    fs.mkdir(d .. "/dir")
    io_error("EEXIST", d .. "/dir", fs.mkdir, d .. "/dir")
    io_error("EISDIR", d .. "/dir", fs.read, d .. "/dir")
    fs.write(d .. "/f", "x")
    io_error("ENOTDIR", d .. "/f", fs.list, d .. "/f")
    io_error("ENOTDIR", d .. "/f/y", fs.read, d .. "/f/y")
    io_error("EEXIST", d .. "/f", fs.mkdir, d .. "/f", {parents = true})
    -- Refused even to root: a read-only sysctl (EACCES; EROFS where /proc/sys
    -- is mounted read-only, as in containers).
    local v = "/proc/sys/kernel/version"
    local pe = caught(fs.write, v, "x")
    assert.equal("io", pe.kind)
    assert.equal(v, pe.path)
    assert.is_truthy(pe.code == "EACCES" or pe.code == "EROFS", pe.code)
    assert.error_matches(function() fs.read() end, "bad argument")
    assert.error_matches(function() fs.mkdir(d, 5) end, "bad argument")
  end)

  it("lets many tasks read at once, each suspending only itself", function()
    fs.write(d .. "/f", ("x"):rep(100000))
    local ticks = 0
    local ticker = skein.spawn(function()
      while true do ticks = ticks + 1; skein.yield() end
    end)
    local ts = {}
    for i = 1, 50 do
      ts[i] = skein.spawn(function() return #fs.read(d .. "/f") + #fs.list(d) end)
    end
    for i = 1, 50 do assert.equal(100001, ts[i]:join(10)) end
    assert.is_true(ticks > 0)
    ticker:cancel()
  end)

  it("honours skein.timeout and cancel while a job is in flight", function()
    local big = d .. "/big"
    fs.write(big, ("y"):rep(32 * 1024 * 1024))
    for _ = 1, 5 do
      local e = caught(skein.timeout, 1e-6, fs.read, big)
      assert.equal("timeout", e.kind)
      local t = skein.spawn(fs.read, big)
      skein.yield()
      t:cancel()
      assert.equal("cancelled", caught(t.join, t, 10).kind)
    end
    collectgarbage()
    -- The orphans finish on their own; the worker goes on working.
    assert.equal(32 * 1024 * 1024, #fs.read(big))
    fs.remove(big)
  end)

  it("ends a script cleanly with cancelled jobs still in flight", function()
    local big = d .. "/big"
    fs.write(big, ("z"):rep(16 * 1024 * 1024))
    local script = cli.write(d .. "/orphans.lua", [[
      local ts = {}
      for i = 1, 8 do ts[i] = skein.spawn(skein.fs.read, ...) end
      skein.yield()
      for i = 1, 8 do ts[i]:cancel() end
      pcall(skein.timeout, 1e-6, skein.fs.read, ...)
      local f = skein.fs.open(...)
      local r = skein.spawn(f.read, f, "a")
      skein.yield()
      r:cancel()
      skein.spawn(skein.fs.open, ...):cancel()
      local o = skein.spawn(skein.fs.open, ...)
      skein.yield()
      o:cancel()
      io.write("left")
    ]])
    local r = cli.run({script, big}, {timeout = 20})
    assert.equal(0, r.code, r.err)
    assert.equal("left", r.out)
    assert.equal("", r.err)
  end)

  it("opens files: read formats, write, seek, append, r+", function()
    local f <close> = fs.open(d .. "/t", "w")
    assert.equal(f, f:write("line1\n", "line2\n", 42, "\nlast"))
    f:close()
    assert.equal("closed", caught(f.read, f).kind)
    local g <close> = fs.open(d .. "/t")
    assert.equal("lin", g:read(3))
    assert.equal("e1\n", g:read("L"))
    assert.equal("line2", g:read("l"))
    assert.equal("42", g:read())
    assert.equal("last", g:read("a"))
    assert.equal("", g:read("a"))
    assert.is_nil(g:read("l"))
    assert.is_nil(g:read(1))
    assert.equal(2, g:seek("set", 2))
    assert.equal("ne1\n", g:read(4))
    assert.equal(6, g:seek())
    assert.equal(19, g:seek("end"))
    assert.equal("usage", caught(g.write, g, "x").kind)
    local h <close> = fs.open(d .. "/t", "r+")
    assert.equal("li", h:read(2))
    h:write("XX")
    h:seek("set")
    assert.equal("liXX1", h:read("l"))
    local a <close> = fs.open(d .. "/t", "a")
    a:write("++")
    a:close()
    assert.equal("liXX1\nline2\n42\nlast++", fs.read(d .. "/t"))
    local e = io_error("ENOENT", d .. "/nope", fs.open, d .. "/nope")
    assert.matches("cannot open", e.message)
    io_error("EISDIR", d, fs.open, d, "w")
    assert.error_matches(function() fs.open(d .. "/t", "x") end, "invalid mode")
    assert.error_matches(function() g:read("z") end, "invalid format")
  end)

  it("streams lines and n-byte reads through a buffer, binary-safe", function()
    local lines = {}
    for i = 1, 20000 do lines[i] = ("row %d \0 %s"):format(i, ("x"):rep(i % 50)) end
    fs.write(d .. "/l", table.concat(lines, "\n") .. "\n")
    local n = 0
    for l in fs.lines(d .. "/l") do
      n = n + 1
      assert.equal(lines[n], l)
    end
    assert.equal(20000, n)
    local f <close> = fs.open(d .. "/l")
    local parts = {}
    repeat
      local s = f:read(777)
      parts[#parts + 1] = s
    until s == nil
    assert.equal(table.concat(lines, "\n") .. "\n", table.concat(parts))
  end)

  it("keeps a file usable after a read is cancelled or timed out", function()
    local big = d .. "/big"
    fs.write(big, "head" .. ("y"):rep(16 * 1024 * 1024))
    local f <close> = fs.open(big)
    local t = skein.spawn(f.read, f, "a")
    skein.yield()
    assert.equal("usage", caught(f.close, f).kind)    -- another task waits on it
    t:cancel()
    assert.equal("cancelled", caught(t.join, t, 10).kind)
    assert.equal("head", f:read(4))
    assert.equal("timeout", caught(skein.timeout, 1e-6, f.read, f, "a").kind)
    assert.equal("yyy", f:read(3))
    assert.equal(16 * 1024 * 1024 - 3, #f:read("a"))
    -- A write timed out while its job runs: the job finishes, the next write
    -- still writes.
    local w <close> = fs.open(d .. "/w", "w")
    local e = caught(skein.timeout, 1e-6, w.write, w, ("w"):rep(16 * 1024 * 1024))
    assert.equal("timeout", e.kind)
    w:write("end")
    w:close()
    local got = fs.read(d .. "/w")
    assert.equal("end", got:sub(-3))
    assert.equal(16 * 1024 * 1024 + 3, #got)
    -- A file cannot cross workers.
    local e = caught(skein.thread, function() end, f)
    assert.equal("marshal", e.kind)
  end)

  it("works in a thread worker", function()
    fs.write(d .. "/f", "from main")
    local t = skein.thread(function(dir)
      local fs = require("skein").fs
      fs.write(dir .. "/g", fs.read(dir .. "/f") .. " and thread")
      for l in fs.lines(dir .. "/g") do assert(l == "from main and thread") end
      local ok, e = pcall(fs.read, dir .. "/none")
      return fs.read(dir .. "/g"), e.code
    end, d)
    local s, code = t:join(10)
    assert.equal("from main and thread", s)
    assert.equal("ENOENT", code)
  end)

  it("works in a process pool worker, from tasks there too", function()
    fs.write(d .. "/f", "abc")
    local p <close> = skein.pool{kind = "process", size = 2}
    local f = p:submit(function(dir)
      local skein = require "skein"
      local ts = {}
      for i = 1, 4 do ts[i] = skein.spawn(function() return skein.fs.read(dir .. "/f") end) end
      local out = {}
      for i = 1, 4 do out[i] = ts[i]:join() end
      skein.fs.write(dir .. "/g", table.concat(out))
      return skein.fs.stat(dir .. "/g").size
    end, d)
    assert.equal(12, f:get(20))
    assert.equal("abcabcabcabc", fs.read(d .. "/g"))
  end)
end)
