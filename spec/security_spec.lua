-- Hostile input and a hostile environment: forged marshal bytes, programs a
-- worker runs, process and memory limits. Each case runs skein as a
-- subprocess (bounded by `timeout`), so a crash fails the case instead of
-- the spec run.
local skein = require "skein"
local cli = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/cli.lua")

local function run_script(src, opts)
  local d = cli.tmpdir()
  local path = cli.write(d .. "/script.lua", src)
  opts = opts or {}
  opts.cwd = opts.cwd or d
  return cli.run({path}, opts), d
end

-- Helpers the scripts share: varints as the marshal format writes them.
local VARINT = [[
local function varint(v)
  local t = {}
  repeat
    local b = v % 128
    v = v // 128
    t[#t + 1] = string.char(v > 0 and b + 128 or b)
  until v == 0
  return table.concat(t)
end
local function read_varint(s, i)
  local v, shift = 0, 0
  while true do
    local b = s:byte(i)
    i = i + 1
    v = v | ((b & 127) << shift)
    shift = shift + 7
    if b < 128 then return v, i end
  end
end
]]

teardown(function() cli.cleanup() end)

describe("forged shared-object handles", function()
  it("cannot make a fake header planted in a shared string pass for an array", function()
    -- The attack: a shared value's string holds copies of a shared array's
    -- header claiming 2^34 elements (at every alignment); handles whose
    -- place field points anywhere near the value are decoded, and a hit
    -- would read and write 64 GiB past the string.
    local r = run_script(VARINT .. [[
local ARRAY, GEN = 9, 0x7ffffff0
local fake = string.pack("<I4I4I4i4I8I8I8", 0x736b6d6f ~ ARRAY, ARRAY, GEN, 1000000, 0, 0, 0)
  .. string.rep("\0", 48) .. string.pack("<i4I4I8", 1, 0, 1 << 34)
local keep = {}
for pad = 0, 7 do
  keep[#keep + 1] = skein.shared.value(string.rep("x", pad) .. string.rep(fake, 8))
end
local arr = skein.shared.array("integer", 4)    -- a real one, for its name
local enc = skein.encode(keep[1])
local i = 5                                      -- 'S', 2, count, tag
local nlen
nlen, i = read_varint(enc, i)
i = i + nlen
local _
_, i = read_varint(enc, i)
local place = read_varint(enc, i)
local name = "skein.shared.Array"
local hits, other = 0, 0
for cand = math.max(0, place - 65536) // 8 * 8, place + 65536, 8 do
  local forged = enc:sub(1, 3) .. string.char(enc:byte(4)) .. varint(#name) .. name
    .. varint(ARRAY) .. varint(cand) .. varint(GEN)
  local ok, a = pcall(skein.decode, forged)
  if ok then
    hits = hits + 1
    a[1 << 33] = 1
  elseif not skein.is_error(a, "marshal") then
    other = other + 1
  end
end
-- The real array still decodes from its own bytes.
assert(skein.decode(skein.encode(arr)) == arr)
print(hits, other)
]])
    assert.equal(0, r.code, r.err)
    assert.equal("0\t0\n", r.out)
  end)
end)

describe("what a worker process lets programs it runs see", function()
  it("keeps the marshal key out of the environment", function()
    local r = run_script([[
-- The worker's environment, as it was when it started (/proc/PID/environ)
-- and as a program it runs gets it.
local function look()
  local f = io.popen("tr '\\0' '\\n' < /proc/$PPID/environ; env")
  local seen = f:read("a")
  f:close()
  local g = io.popen("env")
  local inherited = g:read("a")
  g:close()
  return os.getenv("SKEIN_MARSHAL_KEY"), seen:find("SKEIN_MARSHAL_KEY", 1, true) ~= nil,
         (inherited:match("SKEIN_[SPW][%u_]+") or "none")
end
print(skein.process(look):join())
local pool = skein.pool{kind = "process", size = 1}
print(pool:submit(look):get())
pool:close()
-- Bytecode still authenticates in workers, and grandchildren.
print(skein.process(function()
  return skein.process(function(x) return x * 2 end, 21):join()
end):join())
]])
    assert.equal(0, r.code, r.err)
    assert.equal("nil\tfalse\tnone\nnil\tfalse\tnone\n42\n", r.out)
  end)

  it("keeps the worker's socket and the segment from programs it runs", function()
    local r = run_script([[
local function fds()
  local f = io.popen("ls -l /proc/$$/fd")
  local s = f:read("a")
  f:close()
  return (s:match("socket:") or s:match("memfd:") or "clean")
end
print(skein.process(fds):join())
local pool = skein.pool{kind = "process", size = 1}
print(pool:submit(fds):get())
pool:close()
]])
    assert.equal(0, r.code, r.err)
    assert.equal("clean\nclean\n", r.out)
  end)

  it("does not make join or close wait for a program a worker left running", function()
    local r = run_script([[
local t0 = skein.now()
skein.process(function() os.execute("sleep 3 &") return 1 end):join()
local t1 = skein.now()
local pool = skein.pool{kind = "process", size = 1}
pool:submit(function() os.execute("sleep 3 &") return 1 end):get()
pool:close()
local t2 = skein.now()
print(t1 - t0 < 2, t2 - t1 < 2)
]], {timeout = 30})
    assert.equal(0, r.code, r.err)
    assert.equal("true\ttrue\n", r.out)
  end)
end)

describe("the process limit", function()
  it("refuses to start a process past it, with kind io, and never runs one without a slot", function()
    local r = run_script([[
local go = skein.event()
local function hold(go) go:wait(20) return skein.self().pid end
local a = skein.process(hold, go)
local b = skein.process(hold, go)
local ok, e = pcall(skein.process, hold, go)
print(ok, skein.is_error(e, "io"), e.message)
go:set()
a:join()
b:join()
-- Slots come back when processes are reaped.
print(skein.process(function() return "again" end):join())
]], {env = {SKEIN_MAX_PROCS = "3"}})
    assert.equal(0, r.code, r.err)
    assert.equal("false\ttrue\tcannot start a worker process: resource temporarily unavailable "
      .. "(the process tree already has its limit of 3 live processes)\nagain\n", r.out)
  end)
end)

describe("the shared-memory segment", function()
  -- AddressSanitizer reserves terabytes of address space and cannot run
  -- under `ulimit -v`; for the asan pass this case runs the release build.
  local bin = cli.bin:gsub("/build/bin/asan/skein$", "/build/bin/release/skein")

  it("fits an address-space limit and names it when full", function()
    local d = cli.tmpdir()
    local script = cli.write(d .. "/limit.lua", [[
local l, e, v = skein.lock(), skein.event(), skein.shared.value(1)
local a = skein.shared.array("integer", 1000)
print(v:get(), #a, skein.process(function(l) return l:acquire(1) end, l):join())
local ok, err = pcall(skein.shared.array, "integer", 1e9)
print(ok, err.kind, err.message)
]])
    local p = io.popen(("ulimit -v 8000000; cd %s && timeout 30 %s %s 2>&1 </dev/null; echo $?")
      :format(cli.q(d), cli.q(bin), cli.q(script)))
    local out = p:read("a")
    p:close()
    assert.matches("^1\t1000\ttrue\nfalse\tmemory\tnot enough shared memory for a skein.shared.Array of "
      .. "8000000112 bytes %(the shared%-memory segment holds [%d.]+ GiB, sized to fit the "
      .. "address%-space limit %(ulimit %-v%) of 7.6 GiB%)\n0\n$", out)
  end)

  it("makes a big shared array at once, without touching its pages", function()
    local r = run_script([[
local t0 = skein.now()
local a = skein.shared.array("integer", 1e8)
local took = skein.now() - t0
a[1e8] = 3
local kb
for line in io.lines("/proc/self/status") do kb = kb or tonumber(line:match("^RssShmem:%s*(%d+)")) end
print(#a, a[1], a[1e8], kb < 100000, took < 1)
local ok, e = pcall(skein.shared.array, "integer", 1 << 34)
print(ok, e.kind, e.message:match("segment holds") ~= nil)
]])
    assert.equal(0, r.code, r.err)
    assert.equal("100000000\t0\t3\ttrue\ttrue\nfalse\tmemory\ttrue\n", r.out)
  end)
end)

describe("decoding module references", function()
  local EVIL = [[
local f = io.open("pwned", "w")
f:write("ran")
f:close()
return {x = print}
]]

  it("never loads a module on the word of bytes this process tree did not write", function()
    local d = cli.tmpdir()
    cli.write(d .. "/evilmod.lua", EVIL)
    local r = run_script(VARINT .. [[
local head = skein.encode(nil):sub(1, 2) .. "\1"
local tag = string.rep("\0", 8)
local function try(bytes)
  local ok, e = pcall(skein.decode, bytes)
  return ok, skein.is_error(e, "marshal"), type(e) == "table" and e.message or tostring(e)
end
-- A module reference (tag 14) is written only as a function's upvalue: take
-- a function closing over `string` and put another module name in its place.
local m = string
local fbytes = skein.encode(function() return m end)
local mark = "\14" .. varint(6) .. "string"
local at = assert(fbytes:find(mark, 1, true))
local function closing_over(name)
  return fbytes:sub(1, at - 1) .. "\14" .. varint(#name) .. name .. tag .. fbytes:sub(at + #mark + 8)
end
print(try(closing_over("evilmod")))
-- A C function of a module (tag 11).
print(try(head .. "\11" .. varint(9) .. "evilmod.x" .. tag))
print(io.open("pwned") == nil)
-- A module this worker already has resolves whatever the tag.
print(skein.decode(closing_over("string"))() == string)
-- require reads a name up to a NUL: such a name is refused.
print(try(closing_over("string\0x")))
-- A module reference as plain data is refused: it would not encode back.
print(try(head .. "\14" .. varint(6) .. "string" .. tag))
]], {cwd = d})
    assert.equal(0, r.code, r.err)
    local msg = "module 'evilmod' is not loaded in this worker (decoding loads no code from "
      .. "bytes this process tree did not write: require it first)"
    assert.equal(("false\ttrue\t%s\nfalse\ttrue\t%s\ntrue\ntrue\n"):format(msg, msg)
      .. "false\ttrue\tmalformed buffer: bad module name\n"
      .. "false\ttrue\tmalformed buffer: a module reference outside a function's upvalues\n", r.out)
  end)

  it("raises kind marshal when an authenticated module cannot be loaded", function()
    local r = run_script([[
package.loaded.nosuchmod = {answer = 42}
local m = package.loaded.nosuchmod
local s = skein.encode(function() return m.answer end)
package.loaded.nosuchmod = nil
local ok, e = pcall(skein.decode, s)
print(ok, skein.is_error(e, "marshal"), e.message:match("^module 'nosuchmod' cannot be loaded") ~= nil)
]])
    assert.equal(0, r.code, r.err)
    assert.equal("false\ttrue\ttrue\n", r.out)
  end)

  it("still loads, in a worker, a module a function sent to it closes over", function()
    local d = cli.tmpdir()
    cli.write(d .. "/mymod.lua", "return {twice = function(x) return 2 * x end, where = 'mymod'}")
    local r = run_script([[
local mymod = require "mymod"
local function f(x) return mymod.twice(x), package.loaded.mymod ~= nil end
print(skein.process(f, 4):join())
local pool = skein.pool{kind = "process", size = 1}
print(pool:submit(f, 5):get())
pool:close()
print(skein.thread(f, 6):join())
]], {cwd = d})
    assert.equal(0, r.code, r.err)
    assert.equal("8\ttrue\n10\ttrue\n12\ttrue\n", r.out)
  end)
end)
