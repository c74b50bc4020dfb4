-- Errors and API behaviour against docs/api.md (issue 9, items 12-21, 24):
-- error kinds, unknown options, errors that blame the caller, futures in
-- wait/gather/as_completed, marshal paths, the init option of threads and
-- processes, imap's error modes and timeouts, deadlocks that only this
-- worker could end.
local skein = require "skein"
local cli = require "spec.support.cli"

local function errof(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return e
end

-- The error a call from this file raises, as a string (the position Lua
-- adds names the caller's line).
local function msgof(fn)
  return tostring(errof(fn))
end

local HERE = "api_errors_spec.lua:%d+:"

describe("error kinds (item 12)", function()
  it("re-acquiring a held lock raises kind deadlock", function()
    local lk = skein.lock()
    lk:acquire()
    local e = errof(lk.acquire, lk)
    assert.is_true(skein.is_error(e, "deadlock"), tostring(e))
    assert.matches("already holds the lock", e.message)
    lk:release()
  end)

  it("misuse of an object's state is kind usage", function()
    local lk = skein.lock()
    assert.is_true(skein.is_error(errof(lk.release, lk), "usage"))
    local s = skein.bounded_semaphore(1)
    assert.is_true(skein.is_error(errof(s.release, s), "usage"))
    local cv = skein.condition()
    assert.is_true(skein.is_error(errof(cv.notify, cv), "usage"))
    local q = skein.queue()
    assert.is_true(skein.is_error(errof(q.task_done, q), "usage"))
    local a, b = skein.pipe(false)
    assert.is_true(skein.is_error(errof(a.send, a, 1), "usage"))
    assert.is_true(skein.is_error(errof(b.recv, b), "usage"))
    local v = skein.shared.value("x")
    assert.is_true(skein.is_error(errof(v.add, v, 1), "usage"))
    local p = skein.pool{kind = "thread", size = 1}
    assert.is_true(skein.is_error(errof(p.join, p), "usage"))
    p:close()
    p:join()
    local c = skein.pool{kind = "coroutine", size = 1}
    assert.is_true(skein.is_error(errof(c.join, c), "usage"))
    local pp = skein.pool{kind = "process", size = 1}
    assert.is_true(skein.is_error(errof(pp.join, pp), "usage"))
    pp:close()
    pp:join(30)
  end)

  it("a task joining itself is kind deadlock", function()
    local t
    t = skein.spawn(function() return pcall(function() t:join() end) end)
    local ok, e = t:join()
    assert.is_false(ok)
    assert.is_true(skein.is_error(e, "deadlock"))
  end)

  it("a handle used after it was closed is kind closed", function()
    local q = skein.queue()
    q:close()
    local keep = skein.queue()
    getmetatable(keep).__close(keep)
    assert.is_true(skein.is_error(errof(keep.put, keep, 1), "closed"))
    local g = skein.group()
    g:wait()
    getmetatable(g).__close(g)
    assert.is_true(skein.is_error(errof(g.spawn, g, print), "closed"))
  end)
end)

describe("unknown options (item 16)", function()
  it("raise, naming the key, in every options table", function()
    local cases = {
      {"sise", function() skein.pool{kind = "thread", sise = 4} end},
      {"nmae", function() skein.spawn{fn = print, nmae = "x"} end},
      {"deamon", function() skein.thread{fn = print, deamon = true} end},
      {"deamon", function() skein.process{fn = print, deamon = true} end},
      {"ordre", function() skein.queue{maxsize = 1, ordre = "lifo"} end},
      {"tiemout", function() skein.wait({}, {tiemout = 1}) end},
    }
    for _, c in ipairs(cases) do
      local m = msgof(c[2])
      assert.matches("unknown option '" .. c[1] .. "'", m, 1, true)
      assert.matches(HERE, m)
    end
    local p <close> = skein.pool{kind = "coroutine", size = 2}
    assert.matches("unknown option 'chunk'", msgof(function() p:map(print, {1}, {chunk = 1}) end), 1, true)
    assert.matches("unknown option 'chunk'", msgof(function() p:imap(print, {1}, {chunk = 1}) end), 1, true)
    assert.matches("unknown option 'wiat'", msgof(function() p:shutdown{wiat = true} end), 1, true)
  end)

  it("a pool's size is still checked by its kind", function()
    local m = msgof(function() skein.pool{size = 5000} end)
    assert.matches(HERE .. " bad argument #1 to 'pool' %(size of a thread pool must be at most 4096", m)
  end)
end)

describe("errors blame the caller (item 17)", function()
  local p, c
  setup(function()
    p = skein.pool{kind = "thread", size = 2}
    c = skein.pool{kind = "coroutine", size = 2}
  end)
  teardown(function()
    p:close() p:join()
    c:close() c:join()
  end)

  local function gen()
    local i = 0
    return function() i = i + 1 if i < 3 then return i end end
  end

  it("points at the caller's line, never at the library", function()
    local cases = {
      {"starmap", "item 1 is a number, not a list of arguments", function() p:starmap(print, {1, 2}) end},
      {"starmap", "item 1 is a number, not a list of arguments", function() p:starmap(print, gen()) end},
      {"submit", "function expected, got number", function() p:submit(42) end},
      {"submit", "function expected, got number", function() c:submit(42) end},
      {"apply", "function expected", function() p:apply(42) end},
      {"pool", "timeout must not be negative", function() skein.pool{timeout = -1} end},
      {"map", "timeout must be a number or nil", function() p:map(print, {1}, {timeout = "x"}) end},
      {"imap", "chunksize must be a positive integer", function() for _ in p:imap(print, gen(), {chunksize = 0}) do end end},
      {"map", "iterable must be a list or an iterator function", function() p:map(print, 7) end},
      {"wait", "item 1 of the list is not a task or a future", function() skein.wait({42}) end},
      {"gather", "item 1 of the list is not a task or a future", function() skein.gather({42}) end},
      {"as_completed", "item 1 of the list is not a task or a future", function() skein.as_completed({42}) end},
      {"wait", "timeout must not be negative", function() skein.wait({}, {timeout = -1}) end},
      {"on_done", "function expected", function() p:submit(print):on_done(3) end},
      {"on_done", "function expected", function() c:submit(print):on_done(3) end},
      {"get", "timeout must not be negative", function() c:submit(print):get(-1) end},
    }
    for _, k in ipairs(cases) do
      local m = msgof(k[3])
      assert.matches(HERE, m)
      assert.matches("'" .. k[1] .. "'", m, 1, true)
      assert.matches(k[2], m, 1, true)
      assert.not_matches("pool.lua", m, 1, true)
      assert.not_matches("skein.lua", m, 1, true)
      assert.not_matches("'_", m, 1, true)
    end
  end)
end)

describe("futures where tasks go (item 18)", function()
  it("wait, gather and as_completed take tasks and futures of every pool kind", function()
    local tp <close> = skein.pool{kind = "thread", size = 2}
    local cp <close> = skein.pool{kind = "coroutine", size = 2}
    local list = {
      tp:submit(function() skein.sleep(0.1) return 1 end),
      cp:submit(function() skein.sleep(0.05) return 2 end),
      skein.spawn(function() return 3 end),
    }
    assert.same({1, 2, 3}, skein.gather(list, 5))
    local order = {}
    for f in skein.as_completed({tp:submit(function() skein.sleep(0.2) return "slow" end),
                                 tp:submit(function() return "fast" end)}, 5) do
      order[#order + 1] = f:get()
    end
    assert.same({"fast", "slow"}, order)
    local done, pending = skein.wait({tp:submit(function() skein.sleep(0.3) end),
                                      tp:submit(function() return 1 end)}, {mode = "first", timeout = 5})
    assert.equal(1, #done)
    assert.equal(1, #pending)
    local e = errof(skein.gather, {tp:submit(function() error("boom") end)}, 5)
    assert.is_true(skein.is_error(e, "remote"))
    done = skein.wait({tp:submit(function() error("x") end), tp:submit(function() skein.sleep(0.3) end)},
                      {mode = "first_error", timeout = 5})
    assert.equal("failed", done[1]:status())
  end)

  it("a process pool's futures too", function()
    local pp <close> = skein.pool{kind = "process", size = 1}
    assert.same({7}, skein.gather({pp:submit(function() return 7 end)}, 10))
  end)
end)

describe("marshal paths (items 14, 19)", function()
  it("a table nested too deep names its own path, shortened", function()
    local t = {}
    local c = t
    for _ = 1, 300 do c.next = {} c = c.next end
    local e = errof(skein.encode, t)
    assert.is_true(skein.is_error(e, "marshal"))
    assert.is_true(#e.message < 200, e.message)
    assert.not_matches("(a key)", e.message, 1, true)
    assert.matches("^value%[1%]%.next%.next%.next<%d+ more>%.next%.next%.next%.next: nesting too deep", e.message)
    assert.matches("200 levels", e.message)
    assert.equal(e.path, e.message:match("^(.-): "))
  end)

  it("a short path is written out whole", function()
    local e = errof(skein.encode, {a = {b = {c = coroutine.create(print)}}})
    assert.equal("value[1].a.b.c", e.path)
  end)

  it("an unregistered metatable names the value, the metatable and the fix", function()
    local mt = {__index = {}}
    skein.register_metatable("api_spec.Point", mt)
    local th = skein.thread(function(_, p) return p end, 1, setmetatable({}, mt))
    local e = errof(th.join, th)
    assert.is_true(skein.is_error(e, "marshal"), tostring(e))
    assert.equal("args[2]", e.path)
    assert.matches("metatable 'api_spec.Point' is not registered", e.message, 1, true)
    assert.matches("skein.register_metatable", e.message, 1, true)
    assert.not_matches("(null)", e.message, 1, true)
  end)
end)

describe("thread and process init (item 14)", function()
  local mt = {__index = {}}
  setup(function() skein.register_metatable("api_spec.P", mt) end)
  local function register(m) skein.register_metatable("api_spec.P", m) end

  it("skein.thread's init registers metatables before the arguments are decoded", function()
    local th = skein.thread{fn = function(p) return getmetatable(p) ~= nil, p.x end,
                            args = {setmetatable({x = 5}, mt)}, init = register, init_args = {mt}}
    assert.same({true, 5}, {th:join(5)})
  end)

  it("skein.process's init does the same", function()
    local pr = skein.process{fn = function(p) return getmetatable(p) ~= nil, p.x end,
                             args = {setmetatable({x = 6}, mt)}, init = register, init_args = {mt}}
    assert.same({true, 6}, {pr:join(10)})
  end)

  it("a failing init is the worker's failure", function()
    local th = skein.thread{fn = print, init = function() error("bad init") end}
    local e = errof(th.join, th, 5)
    assert.is_true(skein.is_error(e, "remote"))
    assert.matches("bad init", e.message)
    local pr = skein.process{fn = print, init = function() error("bad init") end}
    e = errof(pr.join, pr, 10)
    assert.is_true(skein.is_error(e, "remote"))
    assert.matches("bad init", e.message)
  end)
end)

describe("unsendable results (item 13)", function()
  it("reach join as kind marshal from threads and processes, as from pools", function()
    local th = skein.thread(function() return coroutine.create(print) end)
    local e = errof(th.join, th, 5)
    assert.is_true(skein.is_error(e, "marshal"), tostring(e))
    assert.equal("result[1]", e.path)
    local pr = skein.process(function() return coroutine.create(print) end)
    e = errof(pr.join, pr, 10)
    assert.is_true(skein.is_error(e, "marshal"), tostring(e))
    assert.equal("result[1]", e.path)
    local p <close> = skein.pool{kind = "thread", size = 1}
    local f = p:submit(function() return coroutine.create(print) end)
    e = errof(f.get, f, 5)
    assert.is_true(skein.is_error(e, "marshal"))
  end)
end)

describe("callable tables (item 20)", function()
  it("skein.thread(callable, args) is a call, not the options form", function()
    local mt = {__call = function(_, x) return x * 2 end}
    skein.register_metatable("api_spec.Callable", mt)
    local th = skein.thread{fn = setmetatable({}, mt), args = {21},
                            init = function(m) skein.register_metatable("api_spec.Callable", m) end,
                            init_args = {mt}}
    assert.equal(42, th:join(5))
    local th2 = skein.thread(setmetatable({}, mt), 1)
    -- Taken as a function with an argument (the options form would raise
    -- "no arguments after an options table" here).
    local ok, e = pcall(th2.join, th2, 5)
    assert.is_true(ok or not tostring(e):find("options table"), tostring(e))
  end)
end)

describe("deadlocks only this worker could end (items 15, 21)", function()
  teardown(function() cli.cleanup() end)
  it("a cancelled task's pending sleep does not keep the script alive", function()
    local r = cli.run({"-e", "local t=skein.spawn(function() skein.sleep(5) end); skein.sleep(0); t:cancel()"},
                      {timeout = 10})
    assert.equal(0, r.code, r.err)
    assert.is_true(r.secs < 2, tostring(r.secs))
  end)

  it("a wait at the root ended by a local task is not a deadlock", function()
    local r = cli.run({"-e", [[
      local q = skein.queue()
      skein.spawn(function() skein.sleep(0.05) q:put(1) end)
      local e = skein.event()
      skein.spawn(function() skein.sleep(0.05) e:set() end)
      io.write(q:get(), " ", tostring(e:wait()))
    ]]}, {timeout = 10})
    assert.equal(0, r.code, r.err)
    assert.equal("1 true", r.out)
  end)

  it("a thread waiting on an event nothing else holds raises deadlock", function()
    local th = skein.thread(function() local e = skein.event() e:wait() end)
    local e = errof(th.join, th, 5)
    assert.is_true(skein.is_error(e.value, "deadlock"), tostring(e))
    -- An event a task of the thread sets, or one the parent holds, still works.
    th = skein.thread(function()
      local ev = skein.event()
      skein.spawn(function() skein.sleep(0.05) ev:set() end)
      return ev:wait()
    end)
    assert.is_true(th:join(5))
    local ev = skein.event()
    th = skein.thread(function(x) return x:wait() end, ev)
    skein.sleep(0.05)
    ev:set()
    assert.is_true(th:join(5))
  end)
end)

describe("imap (item 24)", function()
  local p
  setup(function() p = skein.pool{kind = "thread", size = 2} end)
  teardown(function() p:close() p:join() end)
  local function two(x) if x == 2 then error("two") end return x end

  it("errors = 'yield' gives (i, nil, err) for a failed item and goes on", function()
    local seen = {}
    for i, r, e in p:imap(two, {1, 2, 3}, {errors = "yield"}) do
      seen[#seen + 1] = e and ("err" .. i) or r
    end
    assert.same({1, "err2", 3}, seen)
  end)

  it("errors = 'raise' raises at the item's turn and goes on at the next call", function()
    local it = p:imap(two, {1, 2, 3}, {errors = "raise"})
    assert.same({1, 1}, {it()})
    local e = errof(it)
    assert.is_true(skein.is_error(e, "remote"))
    assert.equal(2, e.index)
    assert.same({3, 3}, {it()})
    assert.is_nil(it())
  end)

  it("the default still stops at the first failure", function()
    local ok = pcall(function() for _ in p:imap(two, {1, 2, 3}) do end end)
    assert.is_false(ok)
  end)

  it("it:next(timeout) raises timeout and the iterator goes on", function()
    for _, name in ipairs({"imap", "imap_unordered"}) do
      local it = p[name](p, function(x) skein.sleep(x) return x end, {0.4, 0.2})
      local e = errof(it.next, it, 0.02)
      assert.is_true(skein.is_error(e, "timeout"), tostring(e))
      local got = {}
      for _ = 1, 2 do
        local i, r = it:next(5)
        got[i] = r
      end
      assert.same({0.4, 0.2}, got)
      assert.is_nil(it:next(1))
    end
  end)

  it("future:on_done returns a task", function()
    local t = p:submit(function() return 1 end):on_done(function() end)
    assert.matches("^skein.task", tostring(t))
    t:join(5)
    assert.equal("done", t:status())
  end)
end)
