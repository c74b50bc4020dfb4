/*
** error.c — skein's error objects: tables with `kind`, `message` and the
** optional `traceback` and `cause`, sharing one metatable whose __tostring
** gives "kind: message" (and the traceback when there is one).
*/
#include <stdarg.h>
#include <string.h>

#include "sk_lua.h"

#define ERROR_MT "skein.Error"

/* Pushes a new error object of `kind` whose message is fmt's text, then
** ": " and `suffix` when that is not NULL. */
static void push_error_v(lua_State *L, const char *kind, const char *suffix, const char *fmt,
                         va_list ap) {
  luaL_checkstack(L, 4, "error object");
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvfstring(L, fmt, ap);
  if (suffix) {
    lua_pushliteral(L, ": ");
    lua_pushstring(L, suffix);
    lua_concat(L, 3);
  }
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, ERROR_MT);
}

/* push_error_v, then the error's `code` (when code is not NULL) and its
** `field` = `value` (when both are not NULL). */
static void push_coded_v(lua_State *L, const char *kind, const char *suffix, const char *code,
                         const char *field, const char *value, const char *fmt, va_list ap) {
  push_error_v(L, kind, suffix, fmt, ap);
  if (code) {
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
  }
  if (field && value) {
    lua_pushstring(L, value);
    lua_setfield(L, -2, field);
  }
}

void sk_error_push(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_error_v(L, kind, NULL, fmt, ap);
  va_end(ap);
}

int sk_error_raise(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_error_v(L, kind, NULL, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

void sk_error_push_coded(lua_State *L, const char *kind, const char *code, const char *field,
                         const char *value, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_coded_v(L, kind, NULL, code, field, value, fmt, ap);
  va_end(ap);
}

int sk_io_error_raise(lua_State *L, int uv_err, const char *field, const char *value,
                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_coded_v(L, "io", uv_strerror(uv_err), uv_err_name(uv_err), field, value, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* 1 when the value at idx is a skein error (of `kind`, when not NULL). */
int sk_error_is(lua_State *L, int idx, const char *kind) {
  int ok = 0;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, ERROR_MT);
  if (lua_rawequal(L, -1, -2)) {
    ok = 1;
    if (kind) {
      lua_getfield(L, idx < 0 ? idx - 2 : idx, "kind");
      const char *k = lua_tostring(L, -1);
      ok = k != NULL && strcmp(k, kind) == 0;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 2);
  return ok;
}

/* __tostring: "kind: message", then the cause and traceback if present. */
static int l_error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "kind");
  luaL_addvalue(&b);
  luaL_addstring(&b, ": ");
  lua_getfield(L, 1, "message");
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  luaL_addvalue(&b);
  if (lua_getfield(L, 1, "cause") != LUA_TNIL) {
    luaL_addstring(&b, "\ncaused by: ");
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    luaL_addvalue(&b);
  } else {
    lua_pop(L, 1);
  }
  if (lua_getfield(L, 1, "traceback") == LUA_TSTRING) {
    luaL_addstring(&b, "\n");
    luaL_addvalue(&b);
  } else {
    lua_pop(L, 1);
  }
  luaL_pushresult(&b);
  return 1;
}

/* skein.error(kind, message [, fields]) -> a new error object (not raised).
** Lua code in the standard library raises its errors through this. */
static int l_error_new(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *msg = luaL_optstring(L, 2, kind);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  sk_error_push(L, kind, "%s", msg);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -4);
    }
  }
  return 1;
}

/* skein.is_error(e [, kind]) -> boolean */
static int l_error_is(lua_State *L) {
  const char *kind = luaL_optstring(L, 2, NULL);
  lua_pushboolean(L, sk_error_is(L, 1, kind));
  return 1;
}

void sk_error_open(lua_State *L) {
  static const sk_type type = {.name = ERROR_MT, .tostring = l_error_tostring};
  sk_type_register(L, &type);
  luaL_getmetatable(L, ERROR_MT);
  /* Error objects cross workers as errors: their metatable is registered
  ** by name (as skein.register_metatable does) in every worker. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.mt.byname");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, ERROR_MT);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.mt.names");
  lua_pushvalue(L, -3);
  lua_pushliteral(L, ERROR_MT);
  lua_rawset(L, -3);
  lua_pop(L, 3);
  lua_pushcfunction(L, l_error_new);
  lua_setfield(L, -2, "error");
  lua_pushcfunction(L, l_error_is);
  lua_setfield(L, -2, "is_error");
}
