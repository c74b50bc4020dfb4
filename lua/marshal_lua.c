/*
** marshal_lua.c — the Lua face of marshalling (lua/marshal.c): skein.encode,
** skein.decode and skein.register_metatable, and the registry tables the
** codec uses.
*/
#include "sk_lua.h"

/* skein.encode(...) -> string. Shared objects inside are referenced by
** handle and stay reachable only while something else holds them. */
static int l_encode(lua_State *L) {
  sk_buf b;
  if (sk_marshal_encode(L, 1, lua_gettop(L), &b, "value") != 0) return lua_error(L);
  lua_pushlstring(L, b.data, b.len);
  sk_buf_free(&b);
  return 1;
}

/* skein.decode(s) -> ... */
static int l_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int n = sk_marshal_decode(L, s, len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  if (n < 0) return lua_error(L);
  return n;
}

/* skein.register_metatable(name, mt): tables with `mt` cross workers with
** it; every worker must register the same name. */
static int l_register_metatable(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.mt.byname");
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_rawset(L, -3);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.mt.names");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 2);
  return 0;
}

void sk_marshal_open(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.mt.byname");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.mt.names");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.loaded");
  lua_newtable(L);                  /* function -> bytecode..tag, weak keys */
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.dumps");
  lua_pop(L, 3);
  static const luaL_Reg funcs[] = {{"encode", l_encode},
                                   {"decode", l_decode},
                                   {"register_metatable", l_register_metatable},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
