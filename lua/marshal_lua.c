/*
** marshal_lua.c — the Lua face of marshalling (runtime/host/marshal.c): skein.encode,
** skein.decode and skein.register_metatable, and the registry tables the
** codec uses.
*/
#include "sk_bind.h"

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

/* skein._encode_range(list, i, j, [xproc]) -> string: list[i..j] as j-i+1
** marshalled values, with no table around them (a pool's map sends its
** chunks so: no copy of the list, and no walk of a table's other keys).
** Errors name the values "items[k]", k counted from i. `xproc`: the bytes
** go to another process (objects move to the shared segment); in a worker
** process's main worker they are results for its parent. */
static int l_encode_range(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer i = luaL_checkinteger(L, 2), j = luaL_checkinteger(L, 3);
  int xproc = lua_toboolean(L, 4);
  luaL_argcheck(L, i >= 1 && j >= i - 1 && j - i < INT32_MAX, 3, "bad range");
  int was = sk_marshal_xproc;
  if (xproc) sk_marshal_xproc = sk_worker_of(L)->results_to_parent ? SK_XPROC_TO_PARENT : 1;
  sk_buf b;
  int rc = sk_marshal_encode_list(L, 1, i, j, &b, "items");
  sk_marshal_xproc = was;
  if (rc != 0) return lua_error(L);
  lua_pushlstring(L, b.data, b.len);
  sk_buf_free(&b);
  return 1;
}

/* skein._decode_into(s, t, i) -> n: decodes the values of s (made by
** _encode_range) into t[i], t[i+1], ... (raw sets; a nil leaves its place
** alone). */
static int l_decode_into(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer at = luaL_checkinteger(L, 3);
  int n = sk_marshal_decode_into(L, s, len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS, 2, at);
  if (n < 0) return lua_error(L);
  lua_pushinteger(L, n);
  return 1;
}

/* skein._list(n) -> a table with room for n list items (and n). */
static int l_list(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n < INT32_MAX, 1, "bad size");
  lua_createtable(L, (int)n, 1);
  return 1;
}

/* skein._decode_list(s) -> t, n: the values of s (made by _encode_range)
** in a new list sized for them. */
static int l_decode_list(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  /* The count follows the 2-byte header as a varint; a wrong guess only
  ** costs a resize, as decoding checks everything itself. */
  uint64_t guess = 0;
  for (size_t i = 2, shift = 0; i < len && i < 12; i++, shift += 7) {
    guess |= (uint64_t)((unsigned char)s[i] & 0x7f) << shift;
    if (!((unsigned char)s[i] & 0x80)) break;
  }
  lua_createtable(L, guess <= len ? (int)guess : 0, 0);
  int n = sk_marshal_decode_into(L, s, len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS, -1, 1);
  if (n < 0) return lua_error(L);
  lua_pushinteger(L, n);
  return 2;
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
  lua_newtable(L);                  /* prototype -> one closure of it, weak values */
  lua_newtable(L);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.protos");
  lua_pop(L, 3);
  static const luaL_Reg funcs[] = {{"encode", l_encode},
                                   {"decode", l_decode},
                                   {"register_metatable", l_register_metatable},
                                   {"_encode_range", l_encode_range},
                                   {"_decode_into", l_decode_into},
                                   {"_decode_list", l_decode_list},
                                   {"_list", l_list},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
