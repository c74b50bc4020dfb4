-- skein.service: an object in a worker of its own whose methods proxies call
-- from any worker, one call at a time (Python's BaseManager.register).
-- Every wait here is bounded (select timeouts, skein.timeout, `timeout` on
-- the example's command).
local skein = require "skein"

local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]

-- The object every service here serves; the class is built inside the
-- factory, which runs in the service's worker.
local function make_obj(start)
  local Obj = {}
  Obj.__index = Obj
  function Obj:add(a, b) return a + b, "sum" end
  function Obj:echo(...) return select("#", ...), ... end
  function Obj:incr()
    local v = self.n
    skein.sleep(0.001)        -- a caller running alongside would lose this update
    self.n = v + 1
    return self.n
  end
  function Obj:count() return self.n end
  function Obj:log(i) self.seen[#self.seen + 1] = i end
  function Obj:seen_list() return self.seen end
  function Obj:nap(t) skein.sleep(t) self.napped = (self.napped or 0) + 1 return "slept" end
  function Obj:naps() return self.napped or 0 end
  function Obj:squares(n)
    local i = 0
    return function()
      i = i + 1
      if i <= n then return i * i end
    end
  end
  function Obj:items() return next, {a = 1, b = 2, c = 3}, nil end
  function Obj:broken_iter()
    local i = 0
    return function()
      i = i + 1
      if i == 3 then error("iterator broke") end
      return i
    end
  end
  function Obj:boom() error({code = 42}) end
  function Obj:bad_result() return coroutine.create(print) end
  function Obj:bad_error() error(coroutine.create(print)) end
  function Obj:_secret() return "secret" end
  -- An iterator whose guard counts in `freed` once the service let it go.
  function Obj:_tracked(n, nap)
    local guard = setmetatable({}, {__gc = function() self.freed = (self.freed or 0) + 1 end})
    local i = 0
    return function()
      if nap then skein.sleep(nap) end
      i = i + 1
      if guard and i <= n then return i end
    end
  end
  function Obj:_freed()
    collectgarbage()
    collectgarbage()
    return self.freed or 0
  end
  function Obj:where() return skein.self().pid, skein.self().kind end
  return setmetatable({n = start or 0, seen = {}}, Obj)
end

local function errkind(ok, e)
  assert.is_false(ok)
  assert.is_true(skein.is_error(e), tostring(e))
  return e.kind, e.message
end

for _, kind in ipairs{"thread", "process"} do
  describe("skein.service (" .. kind .. " kind)", function()
    local svc
    before_each(function()
      svc = skein.service{fn = make_obj, args = {10}, kind = kind, name = "obj"}
    end)
    after_each(function()
      svc:close()
    end)

    it("calls a method with arguments and returns every result", function()
      assert.same({3, "sum"}, {svc:add(1, 2)})
      assert.same({4, "a", nil, {x = {1, 2}}, nil}, {svc:echo("a", nil, {x = {1, 2}}, nil)})
      assert.equal(11, svc:incr())
      assert.equal("obj", svc.name)
      assert.equal(kind, svc.kind)
      local pid, wkind = svc:where()
      assert.equal(kind, wkind)
      if kind == "process" then
        assert.equal(svc.pid, pid)
        assert.are_not.equal(skein.self().pid, pid)
      else
        assert.equal(skein.self().pid, pid)
      end
      assert.matches("skein.service 'obj' %(" .. kind, tostring(svc))
    end)

    it("exposes the methods not starting with _ by default and refuses the rest", function()
      assert.same({"add", "bad_error", "bad_result", "boom", "broken_iter", "count", "echo", "incr", "items", "log",
        "nap", "naps", "seen_list", "squares", "where"}, svc.exposed)
      local k, msg = errkind(pcall(svc._secret, svc))
      assert.equal("usage", k)
      assert.equal("service 'obj' does not expose method '_secret' (exposed: add, bad_error, bad_result, boom, broken_iter, count, "
        .. "echo, incr, items, log, nap, naps, seen_list, squares, where)", msg)
      k, msg = errkind(pcall(svc.nosuch, svc))
      assert.equal("usage", k)
      assert.matches("does not expose method 'nosuch'", msg)
      k, msg = errkind(pcall(svc.call, svc, "_secret"))
      assert.equal("usage", k)
      -- A method called with a dot instead of a colon says how to call it.
      assert.has_error(function() svc.add(1, 2) end,
        "bad argument #1 to 'add' (service proxy expected, got number; call it as svc:add(...))")
    end)

    it("serves exactly the exposed list when one is given", function()
      local s <close> = skein.service{fn = make_obj, kind = kind, name = "two", exposed = {"add", "_secret"}}
      assert.same({"add", "_secret"}, s.exposed)
      assert.equal("secret", s:_secret())
      assert.equal(5, (s:add(2, 3)))
      local k, msg = errkind(pcall(s.incr, s))
      assert.equal("usage", k)
      assert.equal("service 'two' does not expose method 'incr' (exposed: add, _secret)", msg)
      -- An exposed name the object lacks fails in the service.
      local s2 <close> = skein.service{fn = make_obj, kind = kind, name = "three", exposed = {"missing"}}
      k, msg = errkind(pcall(s2.missing, s2))
      assert.equal("usage", k)
      assert.equal("service 'three' has no method 'missing'", msg)
    end)

    it("gives a remote iterator for a method that returns an iterator function", function()
      local got = {}
      for v in svc:squares(5) do got[#got + 1] = v end
      assert.same({1, 4, 9, 16, 25}, got)
      -- A pairs-style triple (next, table, nil) stays in the service too.
      local t = {}
      for k, v in svc:items() do t[k] = v end
      assert.same({a = 1, b = 2, c = 3}, t)
      -- Leaving a loop early drops the iterator in the service; the service goes on.
      for v in svc:squares(1000) do if v > 10 then break end end
      assert.equal(11, svc:incr())
      -- An iterator that raises ends with kind remote.
      local seen = {}
      local ok, e = pcall(function() for v in svc:broken_iter() do seen[#seen + 1] = v end end)
      assert.same({1, 2}, seen)
      assert.equal("remote", (errkind(ok, e)))
      assert.matches("iterator broke", e.message)
    end)

    it("drops a remote iterator stepped by hand once its caller lets it go", function()
      local s <close> = skein.service{fn = make_obj, kind = kind, name = "iters", exposed = {"_tracked", "_freed"}}
      local step = s:_tracked(1000)
      assert.same({1, 2}, {step(), step()})
      step = nil                                      -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      -- The drop went on the request queue before this call.
      assert.equal(1, skein.timeout(10, s._freed, s))
      -- An iterator that ended, or a loop left early, is dropped once only.
      for _ in s:_tracked(2) do end
      for v in s:_tracked(100) do if v == 3 then break end end
      collectgarbage()
      collectgarbage()
      assert.equal(3, skein.timeout(10, s._freed, s))
      -- A worker that ends holding one it stepped by hand drops it too.
      assert.equal(1, skein.thread(function(p)
        HELD = p:_tracked(10)
        return HELD()
      end, s):join(30))
      assert.equal(4, skein.timeout(10, s._freed, s))
      -- A step that times out here drops it (the step itself still runs there).
      local slow = s:_tracked(10, 0.3)
      assert.equal("timeout", (errkind(pcall(skein.timeout, 0.05, slow))))
      assert.equal(5, skein.timeout(10, s._freed, s))
      assert.is_nil(slow())
    end)

    it("answers a call whose arguments its worker cannot decode with kind marshal", function()
      -- A metatable registered here, not in the service's worker.
      local P = {__index = {}}
      skein.register_metatable("service_spec.unknown", P)
      local ok, e = pcall(skein.timeout, 10, svc.echo, svc, 1, setmetatable({}, P))
      assert.equal("marshal", (errkind(ok, e)))
      assert.matches("^service 'obj': method echo: its arguments cannot be decoded in the service's worker: "
        .. "metatable 'service_spec.unknown' is not registered", e.message)
      -- A function closing over a module the service's worker cannot load.
      package.preload.service_spec_mod = function() return {} end
      local mod = require "service_spec_mod"
      ok, e = pcall(skein.timeout, 10, svc.echo, svc, function() return mod end)
      package.loaded.service_spec_mod, package.preload.service_spec_mod = nil, nil
      assert.equal("marshal", (errkind(ok, e)))
      assert.matches("^service 'obj': method echo: .*module 'service_spec_mod' cannot be loaded", e.message)
      -- A pending call fails the same way; the service goes on.
      local p = svc:async("echo", {setmetatable({}, P)})
      assert.equal("marshal", (errkind(pcall(p.get, p, 10))))
      assert.same({2, "a", {1}}, {svc:echo("a", {1})})
      assert.equal(11, svc:incr())
    end)

    it("raises a method's error as kind remote with the original value", function()
      local ok, e = pcall(svc.boom, svc)
      assert.equal("remote", (errkind(ok, e)))
      assert.same({code = 42}, e.value)
      assert.matches("^service 'obj': method boom failed", e.message)
      assert.matches("^stack traceback:\n\t%[C%]: in function 'error'\n\tspec/service_spec.lua:%d+:", e.traceback)
      -- A result that cannot cross raises marshal; an error value that
      -- cannot cross reaches the caller as its text.
      ok, e = pcall(svc.bad_result, svc)
      assert.equal("marshal", (errkind(ok, e)))
      assert.matches("cannot send a coroutine", e.message)
      ok, e = pcall(svc.bad_error, svc)
      assert.equal("remote", (errkind(ok, e)))
      assert.matches("^service 'obj': method bad_error failed: thread: ", e.message)
      assert.is_nil(e.value)
      assert.equal(11, svc:incr())      -- the service goes on
    end)

    it("close serves the calls already queued, then later calls raise closed", function()
      local p1, p2 = svc:async("nap", 0.05), svc:async("incr")
      svc:close()
      assert.equal("slept", p1:get(10))
      assert.equal(11, p2:get(10))
      local k, msg = errkind(pcall(svc.incr, svc))
      assert.equal("closed", k)
      assert.equal("service 'obj' is closed", msg)
      svc:close()                        -- idempotent
      do
        local s <close> = skein.service{fn = make_obj, kind = kind}
        assert.matches("service_spec.lua:%d+$", s.name)
        svc = s
      end
      assert.equal("closed", (errkind(pcall(svc.incr, svc))))
    end)
  end)
end

describe("skein.service calls", function()
  it("are served one at a time in arrival order (an actor)", function()
    local svc <close> = skein.service(make_obj, 0)
    local ts = {}
    for i = 1, 4 do
      ts[i] = skein.thread(function(s)
        for _ = 1, 25 do s:incr() end
      end, svc)
    end
    local tasks = {}
    for i = 1, 4 do
      tasks[i] = skein.spawn(function() for _ = 1, 10 do svc:incr() end end)
    end
    for i = 1, 4 do ts[i]:join(30) end
    skein.gather(tasks, 30)
    assert.equal(140, svc:count())
    -- One task's calls keep their order, also when it does not wait for them.
    local pending = {}
    for i = 1, 50 do pending[i] = svc:async("log", i) end
    local want = {}
    for i = 1, 50 do want[i] = i end
    assert.same(want, svc:seen_list())
    skein.gather(pending, 10)
  end)

  it("cross to threads, processes, grandchildren and pool tasks (either kind of service)", function()
    for _, kind in ipairs{"thread", "process"} do
      local svc <close> = skein.service{fn = make_obj, args = {0}, kind = kind}
      assert.equal(1, skein.thread(function(s) return s:incr() end, svc):join(30))
      assert.equal(2, skein.process(function(s) return s:incr() end, svc):join(30))
      assert.equal(3, skein.process(function(s)
        return skein.process(function(s2) return s2:incr() end, s):join(30)
      end, svc):join(30))
      -- Through a queue, and inside another table.
      local q = skein.queue()
      q:put({svc = svc})
      assert.equal(4, skein.process(function(qq) return qq:get().svc:incr() end, q):join(30))
      for _, pk in ipairs{"thread", "process", "coroutine"} do
        local pool <close> = skein.pool{kind = pk, size = 2}
        local fs = {}
        for i = 1, 4 do fs[i] = pool:submit(function(s, x) return (s:add(x, x)) end, svc, i) end
        for i = 1, 4 do assert.equal(2 * i, fs[i]:get(30)) end
        local r = pool:map(function(x) return (svc:add(x, x)) end, {1, 2, 3})
        assert.same({2, 4, 6}, {r[1], r[2], r[3]})
      end
      assert.equal(5, svc:incr())
      -- A remote iterator used from a child process.
      assert.same({1, 4, 9}, skein.process(function(s)
        local t = {}
        for v in s:squares(3) do t[#t + 1] = v end
        return t
      end, svc):join(30))
    end
  end)

  it("can be pending: select, wait, gather and get take a call made with async", function()
    local svc <close> = skein.service(make_obj, 0)
    local q = skein.queue()
    local p = svc:async("nap", 0.3)
    q:put("first")
    assert.same({2, "first"}, {skein.select({p, q}, 10)})
    assert.is_nil(skein.select({p}, 0.01))         -- still pending: select times out
    assert.equal("running", p:status())
    assert.same({1, "slept"}, {skein.select({p}, 10)})
    assert.is_true(p:done())
    assert.equal("slept", p:get())
    -- get with a timeout, and the combinators.
    local slow = svc:async("nap", 0.3)
    assert.equal("timeout", (errkind(pcall(slow.get, slow, 0.01))))
    assert.equal("slept", slow:get(10))
    local ps = {svc:async("add", 1, 1), svc:async("add", 2, 2)}
    assert.same({2, 4}, skein.gather(ps, 10))
    local done = skein.wait({svc:async("incr")}, {timeout = 10})
    assert.equal(1, #done)
    -- A failing pending call raises from select.
    local bad = svc:async("boom")
    assert.equal("remote", (errkind(pcall(skein.select, {bad}, 10))))
    assert.equal("usage", (errkind(pcall(svc.async, svc, "_secret"))))
  end)

  it("honour skein.timeout and cancellation: the caller stops waiting, the call still runs", function()
    for _, kind in ipairs{"thread", "process"} do
      local svc <close> = skein.service{fn = make_obj, kind = kind}
      local ok, e = pcall(skein.timeout, 0.05, function() return svc:nap(0.3) end)
      assert.equal("timeout", (errkind(ok, e)))
      -- The next call waits for the one still running and gets its own reply.
      assert.equal(3, (svc:add(1, 2)))
      assert.equal(1, svc:naps())
      local t = skein.spawn(function() return svc:nap(0.3) end)
      skein.sleep(0.05)
      assert.is_true(t:cancel())
      assert.equal("cancelled", (errkind(pcall(t.join, t, 10))))
      assert.equal(7, (svc:add(3, 4)))
      assert.equal(2, svc:naps())
      -- A cancelled pending call.
      local p = svc:async("nap", 0.1)
      p:cancel()
      assert.equal("cancelled", (errkind(pcall(p.get, p, 10))))
      assert.equal(3, svc:naps())
    end
  end)

  it("raise worker_died, pending and later ones, once the service's process is killed", function()
    local svc = skein.service{fn = make_obj, kind = "process", name = "victim"}
    assert.equal(1, svc:incr())
    local running = svc:async("nap", 30)
    local queued = svc:async("incr")
    local waiter = skein.process(function(s)
      local ok, e = pcall(s.incr, s)
      return ok, e.kind
    end, svc)
    skein.sleep(0.2)
    os.execute("kill -KILL " .. svc.pid)
    local k, msg = errkind(pcall(running.get, running, 10))
    assert.equal("worker_died", k)
    assert.matches("^service 'victim' died: .*signal 9", msg)
    assert.equal("worker_died", (errkind(pcall(queued.get, queued, 10))))
    assert.same({false, "worker_died"}, {waiter:join(30)})
    assert.equal("worker_died", (errkind(pcall(svc.incr, svc))))
    assert.same({false, "worker_died"}, {skein.thread(function(s)
      local ok, e = pcall(s.incr, s)
      return ok, e.kind
    end, svc):join(10)})
    svc:close()                                    -- returns at once: it is over
  end)

  it("raise worker_died when the process that started the service ended and took it along", function()
    local svc = skein.process(function(f)
      local s = skein.service{fn = f, kind = "process", name = "orphan"}
      assert(s:incr() == 1)
      return s
    end, make_obj):join(30)
    local k, msg = errkind(pcall(skein.timeout, 10, function() return svc:incr() end))
    assert.equal("worker_died", k)
    -- Its starter usually ends before it can say why: "its process ended".
    assert.matches("^service 'orphan' died: ", msg)
    skein.timeout(10, function() svc:close() end)
  end)

  it("raise the factory's error from skein.service", function()
    for _, kind in ipairs{"thread", "process"} do
      local ok, e = pcall(skein.service, {kind = kind, fn = function() error("no object today") end})
      assert.equal("remote", (errkind(ok, e)))
      assert.matches("no object today", e.message)
      ok, e = pcall(skein.service, {kind = kind, fn = function() return 42 end, name = "num"})
      assert.equal("remote", (errkind(ok, e)))
      assert.matches("the factory of service 'num' returned a number", e.message)
    end
  end)

  it("run init first in the worker (metatables the arguments need)", function()
    local P = {__index = {hello = function(self) return "hi " .. self.who end}}
    skein.register_metatable("service_spec.P", P)
    for _, kind in ipairs{"thread", "process"} do
      local s <close> = skein.service{kind = kind, fn = function(p) return {greet = function() return p:hello() end} end,
        args = {setmetatable({who = "there"}, P)}, init = function(mt) skein.register_metatable("service_spec.P", mt) end,
        init_args = {P}}
      assert.equal("hi there", s:greet())
    end
  end)

  it("check their arguments", function()
    assert.has_error(function() skein.service(42) end, "bad argument to 'service' (fn must be callable, got number)")
    assert.has_error(function() skein.service{fn = make_obj, kind = "fork"} end,
      "bad argument to 'service' (kind must be \"thread\" or \"process\", got fork)")
    assert.has_error(function() skein.service{fn = make_obj, size = 1} end,
      "bad argument to 'service' (unknown option 'size' (options: fn, args, kind, name, exposed, init, init_args))")
    assert.has_error(function() skein.service{fn = make_obj, exposed = {1}} end,
      "bad argument to 'service' (exposed[1] must be a string, got number)")
  end)
end)

describe("examples/processes/custom_manager.lua", function()
  it("prints what the seed's custom manager prints", function()
    local p = assert(io.popen(("timeout 60 %s examples/processes/custom_manager.lua 2>&1; echo \"exit=$?\""):format(SKEIN)))
    local out = require("spec.support.cli").unsanitized(p:read("a"))
    p:close()
    local rule = ("-"):rep(20)
    assert.equal(table.concat({
      rule, "you called Foo.f()", "you called Foo.g()",
      rule, "you called Foo.g()", "you called Foo._h()",
      rule, "<0> <1> <4> <9> <16> <25> <36> <49> <64> <81>",
      rule, "op.add(23, 45) = 68", "op.pow(2, 94) = 19807040628566084398385987584",
      "op.exposed = add, concat, eq, floordiv, le, lt, mod, mul, neg, pow, sub, truediv",
      "exit=0", ""}, "\n"), out)
  end)
end)
