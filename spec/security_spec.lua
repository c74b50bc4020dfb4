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
  local forged = "S\2\1" .. string.char(enc:byte(4)) .. varint(#name) .. name
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
