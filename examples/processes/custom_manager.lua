-- custom_manager.lua — replaces the custom-manager template of seed 004:
-- objects that live in a server process of their own and that other code
-- calls through proxies (BaseManager.register).
--
--   class MyManager(BaseManager): pass
--   MyManager.register('Foo1', Foo)                            # f and g exposed
--   MyManager.register('Foo2', Foo, exposed=('g', '_h'))
--   MyManager.register('baz', baz, proxytype=GeneratorProxy)   # a generator
--   MyManager.register('operator', get_operator_module)
--
-- Each registration becomes a skein.service: the factory runs in a worker
-- process of its own and the proxy calls its methods there, one at a time.
-- Methods print from the service's process, so they flush before returning.

local function say(s)
  print(s)
  io.stdout:flush()
end

local Foo = {}
Foo.__index = Foo
function Foo:f() say("you called Foo.f()") end
function Foo:g() say("you called Foo.g()") end
function Foo:_h() say("you called Foo._h()") end
local function new_foo() return setmetatable({}, Foo) end   -- Foo(): not a method

-- A generator: a method that returns an iterator gives the caller a remote
-- iterator (GeneratorProxy); each step runs in the service.
local function baz()
  local i = -1
  return function()
    i = i + 1
    if i < 10 then return i * i end
  end
end

-- Lua has no operator module: this table of its functions stands in for it.
-- A service method gets the object first, so each ignores it.
local function get_operator_module()
  local operator = {}
  local ops = {
    add = function(a, b) return a + b end, sub = function(a, b) return a - b end,
    mul = function(a, b) return a * b end, truediv = function(a, b) return a / b end,
    floordiv = function(a, b) return a // b end, mod = function(a, b) return a % b end,
    pow = function(a, b) return a ^ b end, neg = function(a) return -a end,
    eq = function(a, b) return a == b end, lt = function(a, b) return a < b end,
    le = function(a, b) return a <= b end, concat = function(a, b) return a .. b end,
  }
  for name, fn in pairs(ops) do
    operator[name] = function(_, ...) return fn(...) end
  end
  return operator
end

local function sorted(list)
  local t = table.move(list, 1, #list, 1, {})
  table.sort(t)
  return t
end

local function same(a, b) return table.concat(sorted(a), ",") == table.concat(sorted(b), ",") end

say(("-"):rep(20))

local f1 <close> = skein.service{fn = new_foo, kind = "process", name = "Foo1"}
f1:f()
f1:g()
assert(not pcall(f1._h, f1))                 -- not exposed: raises kind "usage"
assert(same(f1.exposed, {"f", "g"}))

say(("-"):rep(20))

local f2 <close> = skein.service{fn = new_foo, kind = "process", name = "Foo2", exposed = {"g", "_h"}}
f2:g()
f2:_h()
assert(not pcall(f2.f, f2))
assert(same(f2.exposed, {"g", "_h"}))

say(("-"):rep(20))

local gen <close> = skein.service{fn = function() return {baz = baz} end, kind = "process", name = "baz"}
local out = {}
for i in gen:baz() do out[#out + 1] = ("<%d>"):format(i) end
say(table.concat(out, " "))

say(("-"):rep(20))

local op <close> = skein.service{fn = get_operator_module, kind = "process", name = "operator"}
say(("op.add(23, 45) = %d"):format(op:add(23, 45)))
say(("op.pow(2, 94) = %.0f"):format(op:pow(2, 94)))
say("op.exposed = " .. table.concat(op.exposed, ", "))
