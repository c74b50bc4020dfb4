-- Marshalling: what crosses workers, and how the decoder treats bad input.
local skein = require "skein"

local function rt(...) return skein.decode(skein.encode(...)) end

-- Deep structural equality that also checks integer/float subtypes.
local function same(a, b, seen)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false end
    if a ~= a then return b ~= b end
    return a == b and (a ~= 0 or 1 / a == 1 / b)
  end
  if type(a) ~= "table" then return a == b end
  seen = seen or {}
  if seen[a] then return seen[a] == b end
  seen[a] = b
  for k, v in pairs(a) do
    if type(k) == "table" then goto continue end
    if not same(v, b[k], seen) then return false end
    ::continue::
  end
  for k in pairs(b) do if type(k) ~= "table" and a[k] == nil then return false end end
  return true
end

-- A seeded generator of random plain values.
local function generator(seed)
  local state = seed
  local function rnd(n)
    state = (state * 1103515245 + 12345) % 2147483648
    return state % n + 1
  end
  local gen
  gen = function(depth)
    local k = rnd(depth > 3 and 6 or 8)
    if k == 1 then return rnd(2) == 1
    elseif k == 2 then return rnd(1000000) - 500000
    elseif k == 3 then return ({math.maxinteger, math.mininteger, 0, -1})[rnd(4)]
    elseif k == 4 then return ({0.5, -0.0, 1 / 0, -1 / 0, 1e308, 5e-324, 2.0})[rnd(7)]
    elseif k == 5 then
      local bytes = {}
      for i = 1, rnd(40) - 1 do bytes[i] = string.char(rnd(256) - 1) end
      return table.concat(bytes)
    elseif k == 6 then return "s" .. rnd(100)
    else
      local t = {}
      for i = 1, rnd(6) - 1 do t[i] = gen(depth + 1) end
      for _ = 1, rnd(4) - 1 do t["k" .. rnd(50)] = gen(depth + 1) end
      if rnd(3) == 1 then t[rnd(100) + 0.5] = gen(depth + 1) end
      return t
    end
  end
  return gen
end

describe("marshal round trips", function()
  it("keep every plain value and its integer/float subtype (500 random values)", function()
    local gen = generator(42)
    for i = 1, 500 do
      local v = gen(0)
      local back = rt(v)
      assert.is_true(same(v, back), "value " .. i .. " changed in transit")
    end
  end)

  it("keep nil in the middle of several values and the count", function()
    local r = table.pack(rt(1, nil, 3, nil))
    assert.equal(4, r.n)
    assert.same({1, nil, 3, nil}, {r[1], r[2], r[3], r[4]})
    assert.equal(0, select("#", rt()))
  end)

  it("keep lists of only nil, booleans and numbers of every size (the decoder's short path)", function()
    local pick = {nil, true, false, 0, -1, 1, 63, 64, -64, -65, 2^53, -0.0, 0.5, 1 / 0, -1 / 0,
                  0 / 0, math.maxinteger, math.mininteger, math.maxinteger // 2, 1 << 62, -(1 << 62)}
    local npick = 21
    for count = 0, 10 do              -- the short path takes up to 8 values
      for start = 1, npick do
        local vals = {}
        for i = 1, count do vals[i] = pick[(start + i * 7) % npick + 1] end
        local back = table.pack(rt(table.unpack(vals, 1, count)))
        assert.equal(count, back.n)
        for i = 1, count do
          assert.is_true(same(vals[i], back[i]), ("value %d of %d changed"):format(i, count))
        end
      end
    end
    -- and through a thread pool's futures, which decode results the same way
    local pool <close> = skein.pool{kind = "thread", size = 1}
    local r = table.pack(pool:submit(function()
      return nil, true, math.mininteger, -0.0, 0 / 0, 7
    end):get(10))
    assert.equal(6, r.n)
    assert.is_nil(r[1])
    assert.is_true(r[2])
    assert.equal(math.mininteger, r[3])
    assert.is_true(same(-0.0, r[4]))
    assert.is_true(r[5] ~= r[5])
    assert.equal(7, r[6])
  end)

  it("keep binary strings exactly", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    local s = table.concat(all):rep(100)
    assert.equal(s, rt(s))
  end)

  it("keep shared sub-tables shared and cycles cyclic", function()
    local shared = {x = 1}
    local t = {a = shared, b = shared, list = {shared}}
    t.me = t
    local c = rt(t)
    assert.equal(c.a, c.b)
    assert.equal(c.a, c.list[1])
    assert.equal(c, c.me)
    assert.not_equal(t, c)
  end)

  it("keep a cycle through the only table or function sent (a reference to the first value)", function()
    local t = {1, 2}
    t.me, t.again = t, t
    local c = rt(t)
    assert.equal(c, c.me)
    assert.equal(c, c.again)
    assert.same({1, 2}, {c[1], c[2]})
    local p <close> = skein.pool{kind = "thread", size = 1}
    local function countdown(n) return n < 1 and "done" or countdown(n - 1) end
    assert.equal("done", p:submit(countdown, 5):get(5))
    assert.is_true(p:submit(function(x) return x.me == x and x.again == x end, t):get(5))
  end)

  it("keep every key of a list whose tail lives in the hash part", function()
    -- A table found by the fuzzer: its border key sits in the hash part.
    local f = assert(io.open("spec/fuzz/corpus/regress-hash-tail", "rb"))
    local t = skein.decode(f:read("a"))
    f:close()
    local c = rt(t)
    local n = 0
    for k, v in pairs(t) do
      n = n + 1
      if v == v then assert.equal(v, c[k], "key " .. tostring(k)) end
    end
    for _ in pairs(c) do n = n - 1 end
    assert.equal(0, n)
  end)

  it("allow tables as keys", function()
    local k = {1}
    local c = rt({[k] = "v", k = k})
    assert.equal("v", c[c.k])
  end)

  it("drop unregistered metatables and keep registered ones by name", function()
    local plain = setmetatable({1}, {__index = function() return "x" end})
    assert.is_nil(getmetatable(rt(plain)))
    local Point = {__index = {norm = function(p) return p.x * p.x + p.y * p.y end}}
    skein.register_metatable("spec.Point", Point)
    local p = rt(setmetatable({x = 3, y = 4}, Point))
    assert.equal(Point, getmetatable(p))
    assert.equal(25, p:norm())
  end)

  it("copy functions with their upvalues by value", function()
    local n = 10
    local function add(x) return x + n end
    local copy = rt(add)
    assert.equal(15, copy(5))
    n = 100
    assert.equal(15, copy(5))
    assert.equal(105, add(5))
  end)

  it("keep recursive functions and functions that share upvalue tables", function()
    local function fib(k) return k < 2 and k or fib(k - 1) + fib(k - 2) end
    assert.equal(55, rt(fib)(10))
    local cfg = {scale = 2}
    local f, g = rt(function(x) return x * cfg.scale end, function() return cfg end)
    assert.equal(6, f(3))
    assert.equal(2, g().scale)
  end)

  it("send each closure of one prototype with its own upvalues, and tell prototypes apart", function()
    -- The encoder finds bytecode again by prototype: closures made by one
    -- function expression share it, closures of other expressions (even on
    -- the same line, with the same shape) must not.
    local fs = {}
    for i = 1, 200 do fs[i] = function() return i * 2 end end
    for i = 1, 200 do assert.equal(i * 2, rt(fs[i])()) end
    local a, b = function(x) return x + 1 end, function(x) return x - 1 end
    for _ = 1, 3 do
      assert.equal(11, rt(a)(10))
      assert.equal(9, rt(b)(10))
    end
    local function mk(k) return function(x) return x * k end end
    for k = 1, 50 do
      assert.equal(3 * k, rt(mk(k))(3))
      if k % 10 == 0 then collectgarbage() end  -- representatives come and go
    end
  end)

  it("give each decoded copy of one closure its own upvalues, source, lines, constants and inner functions", function()
    -- From the second copy on, a worker makes the closure from the prototype
    -- it loaded for the first (marshal.c, protofactory.c): each copy must
    -- still be a closure of its own, behaving exactly like a loaded one.
    local count, label = 0, "n"
    local function f(...)
      count = count + select("#", ...)
      local inner = function(x) return x .. label .. 2.5 .. math.maxinteger end
      return count, inner(label), debug.getinfo(1, "S").short_src, debug.getinfo(1, "l").currentline
    end
    local line = debug.getinfo(f, "S").linedefined + 3
    local copies = {}
    for i = 1, 5 do copies[i] = rt(f) end
    assert.equal(2, (copies[1](1, 2)))
    assert.equal(5, (copies[1](1, 2, 3)))
    for i = 2, 5 do
      local c, s, src, l = copies[i](1)
      assert.equal(1, c)                    -- untouched by copies[1]'s calls
      assert.equal("nn2.5" .. math.maxinteger, s)
      assert.matches("marshal_spec.lua", src, 1, true)
      assert.equal(line, l)
    end
    -- Many upvalues, and a failure that names its line.
    local u = {}
    for i = 1, 60 do u[i] = i end
    local src = {"local u = ...; local "}
    for i = 1, 60 do src[#src + 1] = (i > 1 and "," or "") .. "a" .. i end
    src[#src + 1] = " = table.unpack(u); return function(k) if k == 0 then error('stop') end return "
    for i = 1, 60 do src[#src + 1] = (i > 1 and "+" or "") .. "a" .. i end
    src[#src + 1] = " + k end"
    local g = load(table.concat(src), "=many")(u)
    for _ = 1, 3 do
      local h = rt(g)
      assert.equal(1830 + 1, h(1))
      local ok, e = pcall(h, 0)
      assert.is_false(ok)
      assert.matches("^many:1: stop", e)
    end
  end)

  it("rebind _ENV to the receiving worker's globals", function()
    local f = rt(function() return type(print), string.rep("a", 2) end)
    assert.equal("function", (f()))
    assert.equal("aa", select(2, f()))
    local env = {value = 7}
    local g = rt(load("return value, print", "chunk", "t", env))
    local v, p = g()
    assert.is_nil(v)
    assert.equal(print, p)
  end)

  it("send loaded modules a function closes over by name, not by copy", function()
    local str, sk = require "string", require "skein"
    local f = rt(function(s) return str.upper(s), sk.now ~= nil end)
    local up, has_now = f("ab")
    assert.equal("AB", up)
    assert.is_true(has_now)
    local name, value = debug.getupvalue(f, 1)
    assert.equal("str", name)
    assert.equal(string, value)
  end)

  it("send standard C functions by name", function()
    local p, f, c = rt(print, string.format, coroutine.create)
    assert.equal(print, p)
    assert.equal(string.format, f)
    assert.equal(coroutine.create, c)
    local t = rt({f = print, nested = {g = math.sqrt, list = {string.rep, os.time}}})
    assert.equal(print, t.f)
    assert.equal(math.sqrt, t.nested.g)
    assert.same({string.rep, os.time}, t.nested.list)
    local shared = {}
    local u = rt({print, shared, print, shared})
    assert.equal(print, u[3])
    assert.equal(u[2], u[4])
  end)
end)

describe("marshal errors", function()
  local function err(...)
    local ok, e = pcall(skein.encode, ...)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "marshal"), tostring(e))
    return e
  end

  it("name the path of what cannot be sent", function()
    assert.equal("value[2].conn: cannot send userdata (a FILE*)", err(1, {conn = io.stdout}).message)
    assert.equal("value[1][3]: cannot send a coroutine", err({1, 2, coroutine.create(print)}).message)
    assert.equal('value[1]["a key"]: cannot send a coroutine', err({["a key"] = coroutine.running()}).message)
    local out = io.stdout
    local e = err({h = function() return out end})
    assert.equal("value[1].h (upvalue out): cannot send userdata (a FILE*)", e.message)
  end)

  it("reject C closures no module exports", function()
    local iter = ("abc"):gmatch(".")
    assert.matches("cannot send a C function", err(iter).message)
  end)

  it("reject structures nested too deeply", function()
    local t = {}
    local cur = t
    for _ = 1, 300 do cur.next = {}; cur = cur.next end
    assert.matches("nesting too deep", err(t).message)
  end)
end)

describe("the decoder", function()
  local function bad(s)
    local ok, e = pcall(skein.decode, s)
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "marshal"), tostring(e))
    return e.message
  end

  it("rejects what is not a skein buffer", function()
    assert.matches("truncated", bad(""))
    assert.matches("not a skein buffer", bad("hello"))
  end)

  it("rejects every truncation of a valid buffer", function()
    local s = skein.encode({1, 2.5, "three", {four = true}}, function(x) return x end)
    for i = 0, #s - 1 do bad(s:sub(1, i)) end
    bad(s .. "\0")
    -- a buffer of numbers and booleans only (the decoder's short path)
    s = skein.encode(1, math.maxinteger, -0.5, true, nil, math.mininteger)
    for i = 0, #s - 1 do bad(s:sub(1, i)) end
    bad(s .. "\0")
  end)

  it("never crashes on random corruption (2000 mutants)", function()
    local s = skein.encode({1, 2.5, "three", {four = true, [5] = {6}}}, "tail")
    local state = 7
    for _ = 1, 2000 do
      state = (state * 1103515245 + 12345) % 2147483648
      local pos = state % #s + 1
      local byte = (state // 256) % 256
      local m = s:sub(1, pos - 1) .. string.char(byte) .. s:sub(pos + 1)
      pcall(skein.decode, m)
    end
  end)

  it("refuses bytecode that was not produced by this process", function()
    local s = skein.encode(function() return 1 end)
    local pos = #s - 12
    local forged = s:sub(1, pos - 1) .. string.char((s:byte(pos) + 1) % 256) .. s:sub(pos + 1)
    assert.matches("authentication", bad(forged))
  end)

  it("rejects references to values not yet decoded and unknown tags", function()
    assert.matches("unknown value", bad("S\3\1\9\5"))
    assert.matches("unknown tag", bad("S\3\1\200"))
    assert.matches("nil table key", bad("S\3\1\6\0\0\3\2\8"))
    assert.matches("list longer than the buffer", bad("S\3\1\6\200\1\1"))
    assert.matches("not a skein buffer", bad("S\1\1\0"))
    assert.matches("not a skein buffer", bad("S\2\1\0"))
  end)
end)
