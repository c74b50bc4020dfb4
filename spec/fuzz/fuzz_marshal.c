/*
** fuzz_marshal.c — libFuzzer target for the marshal decoder. Every input is
** decoded with all permissions; whatever decodes must encode again, and
** decoding that must give values structurally equal to the first ones
** (compared by a Lua function: tables deeply, with cycles; functions and
** userdata only by type, since copies are new objects).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lua/sk_lua.h"

static sk_worker *w;
static int same_ref;

static const char *same_src =
    "local function same(a, b, seen)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    return a == b or (a ~= a and b ~= b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then return type(a) ~= 'string' and type(a) ~= 'boolean' or a == b end\n"
    "  if seen[a] then return seen[a] == b end\n"
    "  seen[a] = b\n"
    "  local n = 0\n"
    "  for k, v in next, a do\n"
    "    n = n + 1\n"
    "    if type(k) ~= 'table' and type(k) ~= 'function' and type(k) ~= 'userdata' then\n"
    "      if not same(v, rawget(b, k), seen) then return false end\n"
    "    end\n"
    "  end\n"
    "  for _ in next, b do n = n - 1 end\n"
    "  return n == 0\n"
    "end\n"
    "return function(n, ...)\n"
    "  local args = table.pack(...)\n"
    "  local seen = {}\n"
    "  for i = 1, n do if not same(args[i], args[n + i], seen) then return false end end\n"
    "  return true\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *err;
  if (w == NULL) {
    w = sk_worker_new(NULL, &err);
    if (w == NULL) abort();
    if (luaL_dostring(w->L, same_src) != LUA_OK) abort();
    same_ref = luaL_ref(w->L, LUA_REGISTRYINDEX);
  }
  lua_State *L = w->L;
  int top = lua_gettop(L);
  int n = sk_marshal_decode(L, (const char *)data, size, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  if (n >= 0) {
    sk_buf a;
    if (sk_marshal_encode(L, top + 1, n, &a, "value") != 0) abort();
    int m = sk_marshal_decode(L, a.data, a.len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
    sk_buf_free(&a);
    if (m != n) abort();
    /* same(n, first values..., second values...) */
    lua_rawgeti(L, LUA_REGISTRYINDEX, same_ref);
    lua_insert(L, top + 1);
    lua_pushinteger(L, n);
    lua_insert(L, top + 2);
    if (lua_pcall(L, 2 * n + 1, 1, 0) != LUA_OK || !lua_toboolean(L, -1)) abort();
  }
  lua_settop(L, top);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
