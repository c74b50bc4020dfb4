-- Writes the seeds of spec/fuzz/corpus that hold functions, modules and
-- shared handles (the others are plain data, written by hand or found by
-- the fuzzer): skein spec/fuzz/seeds.lua spec/fuzz/corpus
-- Their tags are made with this run's key, so the fuzz target's first pass
-- refuses them and its second pass (which makes tags valid) accepts them.
local dir = assert(arg[1], "usage: skein spec/fuzz/seeds.lua DIR")
local function put(name, s)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(s)
  f:close()
end
-- First, while no C function has been named yet: one only a module that the
-- target never loaded ("fuzzmod") exports.
local upvalueid, debuglib = debug.upvalueid, package.loaded.debug
package.loaded.debug = nil
package.loaded.fuzzmod = {f = upvalueid}
put("cfunc_unloaded", skein.encode(upvalueid))
package.loaded.debug = debuglib
package.loaded.fuzzmod = {}
-- Functions are made from the sources spec/fuzz/fuzz_marshal.c knows (its
-- known_src, chunk name "=fuzz"): pass 2 vouches for those dumps only.
local function make(src, ...) return assert(load(src, "=fuzz"))(...) end
put("module_unloaded", skein.encode(make("local fm = ... return function() return fm end",
                                         package.loaded.fuzzmod)))
put("cfunc", skein.encode(string.format, math.sqrt))
put("cfunc_in_table", skein.encode({f = print, g = {math.sqrt, string.rep}}, 3))
put("func", skein.encode(make("return function(a, b) return a + b end")))
local up = {1, 2}
put("closure", skein.encode(make("local up = ... return function() return up[1] + #up end", up), up))
put("module", skein.encode(make("local str = ... return function(s) return str.upper(s) end", string)))
put("upvalues", skein.encode(make("local a, b = ... return function() return a, b end",
                                  {1, "two", {3}}, print)))
-- Shared objects: their handles name the first entries of a fresh
-- segment's object index, which the target's planted objects hold.
local v = skein.shared.value("x")
local a = skein.shared.array("integer", 4)
local l = skein.lock()
put("shm_handles", skein.encode(v, a, l, {a, v}))
