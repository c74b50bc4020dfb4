-- Shared state: skein.shared.value, array and table, alone and across
-- thread workers. Every wait is bounded (joins and skein.timeout).
local skein = require "skein"
local shared = skein.shared

-- Runs fn(...) in n threads and returns their results in order.
local function in_threads(n, fn, ...)
  local ths = {}
  for i = 1, n do ths[i] = skein.thread(fn, i, ...) end
  local results = {}
  for i = 1, n do results[i] = ths[i]:join(60) end
  return results
end

local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return e
end

describe("skein.shared.value", function()
  it("holds nil, booleans, integers, floats and binary strings", function()
    assert.is_nil(shared.value():get())
    assert.is_nil(shared.value(nil):get())
    assert.equal(false, shared.value(false):get())
    assert.equal(true, shared.value(true):get())
    assert.equal("integer", math.type(shared.value(3):get()))
    assert.equal("float", math.type(shared.value(3.0):get()))
    assert.equal(math.mininteger, shared.value(math.mininteger):get())
    local s = "a\0b\255" .. ("x"):rep(1000)
    assert.equal(s, shared.value(s):get())
  end)

  it("rejects tables, functions and userdata with a clear error", function()
    assert.matches("got table .*skein.shared.table", tostring(err_of(shared.value, {})))
    assert.matches("got function", tostring(err_of(shared.value, print)))
    local v = shared.value(1)
    assert.matches("got table", tostring(err_of(v.set, v, {})))
    assert.matches("got thread", tostring(err_of(v.set, v, coroutine.create(print))))
    assert.equal(1, v:get())
  end)

  it("set replaces the value and its type", function()
    local v = shared.value(1)
    v:set("one")
    assert.equal("one", v:get())
    v:set(2.5)
    assert.equal(2.5, v:get())
    v:set(nil)
    assert.is_nil(v:get())
    assert.has_error(function() v:set() end)
  end)

  it("add keeps Lua's arithmetic: integers stay integers, floats stay floats", function()
    local v = shared.value(40)
    local r = v:add(2)
    assert.equal(42, r)
    assert.equal("integer", math.type(r))
    assert.equal("integer", math.type(v:get()))
    local f = shared.value(1.5)
    assert.equal(2.5, f:add(1))
    assert.equal("float", math.type(f:get()))
    assert.equal(3.0, v:add(-39.0))
    assert.equal("float", math.type(v:get()))
    local w = shared.value(math.maxinteger)
    assert.equal(math.mininteger, w:add(1))
  end)

  it("add fails on a value that is not a number, and for a non-number amount", function()
    for _, init in ipairs({"7", true}) do
      local v = shared.value(init)
      assert.matches("not a number", tostring(err_of(v.add, v, 1)))
      assert.equal(init, v:get())
    end
    assert.matches("not a number", tostring(err_of(function() shared.value():add(1) end)))
    local v = shared.value(1)
    assert.matches("number expected", tostring(err_of(v.add, v, "1")))
    assert.matches("number expected", tostring(err_of(v.add, v)))
  end)

  it("cas compares by value (==) and swaps atomically", function()
    local v = shared.value(1)
    assert.is_false(v:cas(2, 10))
    assert.equal(1, v:get())
    assert.is_true(v:cas(1.0, "s"))
    assert.equal("s", v:get())
    assert.is_false(v:cas("t", 0))
    assert.is_true(v:cas("s", nil))
    assert.is_true(v:cas(nil, false))
    assert.is_true(v:cas(false, 0 / 0))
    assert.is_false(v:cas(0 / 0, 1))           -- NaN never equals itself
    assert.matches("expected value", tostring(err_of(v.cas, v, {}, 1)))
    assert.matches("got table", tostring(err_of(v.cas, v, 0 / 0, {})))
  end)

  it("prints its value", function()
    assert.equal("skein.shared.value(42)", tostring(shared.value(42)))
    assert.equal("skein.shared.value(0.5)", tostring(shared.value(0.5)))
    assert.equal("skein.shared.value(nil)", tostring(shared.value()))
    assert.equal("skein.shared.value(true)", tostring(shared.value(true)))
    assert.equal('skein.shared.value("hi")', tostring(shared.value("hi")))
    assert.matches('%.%.%."%)$', tostring(shared.value(("x"):rep(100))))
  end)

  it("crosses workers by reference", function()
    local v = shared.value(0)
    local back = skein.decode(skein.encode(v))
    assert.equal(v, back)
    back:set(5)
    assert.equal(5, v:get())
    local r = in_threads(1, function(_, w) w:set("from thread"); return w:get() end, v)
    assert.equal("from thread", r[1])
    assert.equal("from thread", v:get())
  end)
end)

describe("skein.shared.array", function()
  it("starts zeroed with the kind's number type", function()
    local a = shared.array("integer", 3)
    local b = shared.array("number", 2)
    assert.equal(3, #a)
    assert.equal(2, b:len())
    assert.equal(0, a[3])
    assert.equal("integer", math.type(a[1]))
    assert.equal("float", math.type(b[2]))
    assert.same({}, shared.array("number", 0):totable())
  end)

  it("starts from a table", function()
    local a = shared.array("integer", {1, 2, 3.0})
    assert.same({1, 2, 3}, a:totable())
    assert.equal("integer", math.type(a[3]))
    local b = shared.array("number", {1, 2.5})
    assert.same({1.0, 2.5}, b:totable())
    assert.equal("float", math.type(b[1]))
  end)

  it("rejects bad kinds, lengths and elements", function()
    assert.matches("invalid option 'float'", tostring(err_of(shared.array, "float", 3)))
    assert.matches("not be negative", tostring(err_of(shared.array, "number", -1)))
    assert.matches("length or table", tostring(err_of(shared.array, "number", "3")))
    assert.matches("element 2 must be an integer, got 1.5",
                   tostring(err_of(shared.array, "integer", {1, 1.5})))
    assert.matches("element 1 must be a number, got string",
                   tostring(err_of(shared.array, "number", {"1"})))
  end)

  it("reads and writes with a[i] (1-based) and checks the range", function()
    local a = shared.array("integer", 4)
    a[1] = 10
    a[4] = 2.0
    assert.equal(10, a[1])
    assert.equal(2, a:get(4))
    assert.equal("integer", math.type(a[4]))
    a:set(2, -3)
    assert.same({10, -3, 0, 2}, a:totable())
    for _, i in ipairs({0, 5, -1}) do
      assert.matches("index " .. (i < 0 and "%" or "") .. i .. " out of range %(1..4%)",
                     tostring(err_of(function() return a[i] end)))
      assert.matches("out of range", tostring(err_of(function() a[i] = 1 end)))
    end
    assert.matches("index must be an integer, got 1.5", tostring(err_of(function() return a[1.5] end)))
    assert.matches("cannot set field 'x'", tostring(err_of(function() a.x = 1 end)))
    assert.is_nil(a.nosuchmethod)
  end)

  it("rejects values of the wrong type", function()
    local a = shared.array("integer", 2)
    assert.matches("integer array element must be an integer, got 1.5",
                   tostring(err_of(function() a[1] = 1.5 end)))
    assert.matches("got string", tostring(err_of(function() a[1] = "1" end)))
    local b = shared.array("number", 2)
    assert.matches("must be a number, got string", tostring(err_of(function() b[1] = "x" end)))
    assert.matches("got boolean", tostring(err_of(b.fill, b, true)))
    assert.same({0, 0}, a:totable())
  end)

  it("add returns the new element and keeps the kind", function()
    local a = shared.array("integer", 2)
    assert.equal(5, a:add(1, 5))
    assert.equal(3, a:add(1, -2.0))
    assert.equal("integer", math.type(a[1]))
    assert.matches("must be an integer, got 0.5", tostring(err_of(a.add, a, 1, 0.5)))
    assert.matches("out of range", tostring(err_of(a.add, a, 3, 1)))
    a[2] = math.maxinteger
    assert.equal(math.mininteger, a:add(2, 1))
    local b = shared.array("number", 1)
    assert.equal(0.5, b:add(1, 0.5))
    assert.equal(1.5, b:add(1, 1))
  end)

  it("fills, converts to a table and prints", function()
    local a = shared.array("number", 3)
    a:fill(2)
    assert.same({2.0, 2.0, 2.0}, a:totable())
    assert.equal('skein.shared.array("number", {2.0, 2.0, 2.0})', tostring(a))
    local big = shared.array("integer", 100)
    assert.matches('^skein.shared.array%("integer", {0, 0, .*, %.%.%. %(100 elements%)}%)$', tostring(big))
  end)

  it("is shared by reference with threads", function()
    local a = shared.array("integer", {0, -1, -2})
    in_threads(1, function(_, arr)
      for i = 1, #arr do arr[i] = -arr[i] end
    end, a)
    assert.same({0, 1, 2}, a:totable())
  end)
end)

describe("skein.shared.table", function()
  it("starts empty or from a table, sequence first", function()
    local t = shared.table()
    assert.equal(0, #t)
    assert.same({}, t:totable())
    local u = shared.table{"a", "b", x = 1}
    assert.equal(2, #u)
    assert.equal("a", u[1])
    assert.equal(1, u.x)
    assert.same({1, 2, "x"}, u:keys())
    assert.same({"a", "b", x = 1}, u:totable())
    assert.matches("table or nil", tostring(err_of(shared.table, 5)))
  end)

  it("gets, sets and deletes with t.k, t[k], get and set", function()
    local t = shared.table()
    t.name = "skein"
    t[1] = {x = {1, 2}}
    t:set(true, 1.5)
    assert.equal("skein", t.name)
    assert.equal("skein", t:get("name"))
    assert.same({x = {1, 2}}, t[1])
    assert.equal(1.5, t[true])
    t.name = nil
    assert.is_nil(t.name)
    t:set(1, nil)
    assert.same({true}, t:keys())
    t:set("gone", nil)                                  -- deleting a missing key is fine
  end)

  it("returns copies: changing what get returned changes nothing", function()
    local t = shared.table{list = {1, 2}}
    local l = t.list
    l[3] = 3
    assert.same({1, 2}, t.list)
  end)

  it("normalises number keys like Lua and keeps key types apart", function()
    local t = shared.table()
    t[1.0] = "one"
    assert.equal("one", t[1])
    assert.equal("integer", math.type(t:keys()[1]))
    t[1.5] = "x"
    t["1"] = "string one"
    t[-0.0] = "zero"
    assert.equal("x", t[1.5])
    assert.equal("one", t[1])
    assert.equal("string one", t["1"])
    assert.equal("zero", t[0])
  end)

  it("rejects keys that cannot be keys", function()
    local t = shared.table()
    assert.matches("cannot be NaN", tostring(err_of(function() t[0 / 0] = 1 end)))
    assert.matches("strings, numbers or booleans %(got table%)", tostring(err_of(function() t[{}] = 1 end)))
    assert.matches("cannot be nil", tostring(err_of(t.get, t, nil)))
    assert.matches("got function", tostring(err_of(t.update, t, print, print)))
    assert.matches("strings, numbers or booleans", tostring(err_of(shared.table, {[{}] = 1})))
  end)

  it("names the path of a value that cannot cross (kind marshal)", function()
    local t = shared.table()
    local co = coroutine.create(print)
    local cases = {
      {function() t.x = {list = {1, co}} end, "t.x.list[2]"},
      {function() t:set("a b", co) end, 't["a b"]'},
      {function() t[3] = {f = io.stdout} end, "t[3].f"},
      {function() t:append({co}) end, "t[#t+1][1]"},
      {function() t:update("u", function() return {c = co} end) end, "t.u.c"},
      {function() shared.table{ok = 1, bad = {co}} end, "init.bad[1]"},
    }
    for _, c in ipairs(cases) do
      local e = err_of(c[1])
      assert.is_true(skein.is_error(e, "marshal"), tostring(e))
      assert.equal(c[2], e.path)
      assert.matches("^marshal: " .. c[2]:gsub("%p", "%%%0") .. ": cannot send", tostring(e))
    end
    assert.same({}, t:keys())
    skein.timeout(5, t.update, t, "u", function() return 1 end)   -- the failed update released u
    assert.equal(1, t.u)
  end)

  it("lets method names shadow keys for t.k, but get/set always work", function()
    local t = shared.table()
    t.get = "value"                                         -- writes go to the entry
    assert.is_function(t.get)
    assert.equal("value", t:get("get"))
    t:set("len", 3)
    assert.equal(3, t:get("len"))
    assert.equal(0, t:len())
  end)

  it("appends at #t + 1 and keeps the length a border", function()
    local t = shared.table()
    assert.equal(1, t:append("a"))
    assert.equal(2, t:append("b"))
    t[4] = "d"
    assert.equal(2, #t)
    t[3] = "c"
    assert.equal(4, #t)
    t[2] = nil
    assert.equal(1, #t)
    assert.equal(2, t:append("B"))
    assert.equal(4, t:len())
    assert.matches("cannot append nil", tostring(err_of(t.append, t, nil)))
  end)

  it("iterates over a snapshot in insertion order", function()
    local t = shared.table()
    t.c = 3; t.a = 1; t.b = 2
    local seen = {}
    for k, v in pairs(t) do
      seen[#seen + 1] = k .. "=" .. v
      t[k] = nil                                            -- does not disturb the walk
      t.z = 26
    end
    assert.same({"c=3", "a=1", "b=2"}, seen)
    assert.same({z = 26}, t:totable())
    local n = 0
    for _ in t:pairs() do n = n + 1 end
    assert.equal(1, n)
    t.c = 3
    t.z = nil
    t.z = 0
    assert.same({"c", "z"}, t:keys())                       -- re-added keys go last
  end)

  it("prints its size", function()
    local t = shared.table{1, 2, x = 3}
    assert.equal("skein.shared.table(3 entries, #t = 2)", tostring(t))
  end)

  it("holds other shared objects by reference", function()
    local v = shared.value(0)
    local t = shared.table{counter = v, ev = skein.event()}
    t.counter:add(5)
    assert.equal(5, v:get())
    assert.equal(v, t.counter)
    t.self = t                                           -- a table may even hold itself
    assert.equal(t, t.self)
    t.self = nil
  end)

  describe("update", function()
    it("stores fn(current) and returns it; nil deletes", function()
      local t = shared.table()
      assert.equal(1, t:update("n", function(v) assert.is_nil(v) return 1 end))
      assert.equal(11, t:update("n", function(v) return v + 10 end))
      assert.equal(11, t.n)
      assert.is_nil(t:update("n", function() return nil end))
      assert.same({}, t:keys())
      t:update("gone", function() return nil end)
      assert.same({}, t:keys())
      assert.equal(1, t:update(1, function() return "first" end) and #t)
      assert.matches("function expected", tostring(err_of(t.update, t, "n", 5)))
    end)

    it("releases the entry when fn raises", function()
      local t = shared.table{n = 1}
      assert.matches("boom", tostring(err_of(t.update, t, "n", function() error("boom") end)))
      assert.equal(1, t.n)
      skein.timeout(5, function() t.n = 2 end)          -- would wait if still claimed
      assert.equal(3, skein.timeout(5, t.update, t, "n", function(v) return v + 1 end))
    end)

    it("refuses writes and nested updates of the key from inside fn", function()
      local t = shared.table{n = 1}
      local e = err_of(t.update, t, "n", function(v) t.n = 5 return v end)
      assert.matches("t.n is being updated by this task", tostring(e))
      e = err_of(t.update, t, "n", function(v) return t:update("n", function(x) return x end) end)
      assert.matches("t.n is being updated by this task", tostring(e))
      assert.equal(2, t:update("n", function(v) t.other = v return v + 1 end))
      assert.equal(1, t.other)
    end)

    it("may yield: writers of the key wait, readers see the old value", function()
      local t = shared.table{n = 0}
      local log = {}
      skein.timeout(5, function()
        local a = skein.spawn(function()
          t:update("n", function(v)
            log[#log + 1] = "fn start"
            skein.sleep(0.05)
            log[#log + 1] = "fn end"
            return v + 1
          end)
        end)
        local b = skein.spawn(function()
          skein.sleep(0.01)
          log[#log + 1] = "read " .. t.n
          t.n = 100
          log[#log + 1] = "wrote " .. t.n
        end)
        a:join(); b:join()
      end)
      assert.same({"fn start", "read 0", "fn end", "wrote 100"}, log)
    end)

    it("releases the entry when its task is cancelled or its coroutine closed", function()
      local t = shared.table{n = 0}
      local task = skein.spawn(function() t:update("n", function() skein.sleep(10) return -1 end) end)
      skein.sleep(0.01)
      task:cancel()
      assert.is_true(skein.is_error(err_of(task.join, task, 5), "cancelled"))
      local co = coroutine.create(function() t:update("n", function() coroutine.yield() return -1 end) end)
      assert.is_true(coroutine.resume(co))
      assert.is_true(coroutine.close(co))
      skein.timeout(5, function() t.n = 7 end)
      assert.equal(7, t.n)
    end)

    it("makes an append wait when it would land on the claimed key", function()
      local t = shared.table()
      local holder = skein.spawn(function()
        t:update(1, function() skein.sleep(0.05) return "updated" end)
      end)
      skein.sleep(0.01)
      assert.equal(2, skein.timeout(5, t.append, t, "appended"))
      holder:join(5)
      assert.same({"updated", "appended"}, t:totable())
    end)

    it("gives up waiting when a skein.timeout scope ends", function()
      local t = shared.table()
      local holder = skein.spawn(function() t:update("k", function() skein.sleep(0.2) return 1 end) end)
      skein.sleep(0.01)
      local e = err_of(skein.timeout, 0.02, function() t.k = 2 end)
      assert.is_true(skein.is_error(e, "timeout"))
      holder:join(5)
      assert.equal(1, t.k)
    end)
  end)
end)

describe("shared state across threads", function()
  it("value:add from 4 threads x 10000 loses nothing", function()
    local v = shared.value(0)
    in_threads(4, function(_, c) for _ = 1, 10000 do c:add(1) end end, v)
    assert.equal(40000, v:get())
    assert.equal("integer", math.type(v:get()))
  end)

  it("cas loops from 4 threads build an exact total", function()
    local v = shared.value(0)
    in_threads(4, function(_, c)
      for _ = 1, 2000 do
        repeat local old = c:get() until c:cas(old, old + 1)
      end
    end, v)
    assert.equal(8000, v:get())
  end)

  it("array:add from 4 threads loses nothing", function()
    local a = shared.array("integer", 4)
    local f = shared.array("number", 1)
    in_threads(4, function(i, arr, fl)
      for j = 1, 5000 do
        arr:add(i, 1)
        arr:add(j % 4 + 1, 2)
        fl:add(1, 0.25)
      end
    end, a, f)
    assert.same({15000, 15000, 15000, 15000}, a:totable())
    assert.equal(5000.0, f[1])
  end)

  it("table:update from 4 threads x 1000 gives exactly 4000", function()
    local t = shared.table()
    in_threads(4, function(_, tbl)
      for _ = 1, 1000 do tbl:update("count", function(n) return (n or 0) + 1 end) end
    end, t)
    assert.equal(4000, t.count)
  end)

  it("table:update of structured values from threads stays consistent", function()
    local t = shared.table{stats = {n = 0, sum = 0}}
    in_threads(4, function(i, tbl)
      for j = 1, 250 do
        tbl:update("stats", function(s) s.n = s.n + 1; s.sum = s.sum + i * j; return s end)
      end
    end, t)
    assert.same({n = 1000, sum = 10 * (250 * 251 / 2)}, t.stats)
  end)

  it("append from 4 threads loses nothing", function()
    local t = shared.table()
    in_threads(4, function(i, tbl)
      for j = 1, 500 do tbl:append(i * 1000 + j) end
    end, t)
    assert.equal(2000, #t)
    local seen = {}
    for i = 1, #t do seen[t[i]] = (seen[t[i]] or 0) + 1 end
    for i = 1, 4 do
      for j = 1, 500 do assert.equal(1, seen[i * 1000 + j]) end
    end
  end)

  it("sets from threads all land, and a writer waits for an update in another thread", function()
    local t = shared.table()
    local started = skein.event()
    local holder = skein.thread(function(tbl, ev)
      local skein = require "skein"              -- not the spec's upvalue: modules do not cross
      tbl:update("k", function()
        ev:set()
        skein.sleep(0.1)
        return "from update"
      end)
    end, t, started)
    assert.is_true(started:wait(10))
    skein.timeout(10, function() t.k = "after" end)
    holder:join(10)
    assert.equal("after", t.k)
    in_threads(4, function(i, tbl) for j = 1, 100 do tbl[i .. ":" .. j] = j end end, t)
    assert.equal(401, #t:keys())
  end)

  it("objects inside a shared table reach threads by reference", function()
    local t = shared.table{hits = shared.value(0), arr = shared.array("number", 2)}
    in_threads(3, function(_, tbl)
      tbl.hits:add(1)
      tbl.arr:add(2, 1)
    end, t)
    assert.equal(3, t.hits:get())
    assert.same({0.0, 3.0}, t.arr:totable())
  end)
end)
