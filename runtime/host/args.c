/*
** args.c — what the bindings share to read their arguments and handles:
** option tables, the arguments of thread and process workers, callables,
** counts, and the handles of shared objects (userdata whose first member
** is the object, checked against the worker's cache of metatables).
*/
#include <string.h>

#include "sk_lua.h"

/* ------------------------------------------------------ worker options */

void sk_check_options(lua_State *L, int arg, const char *const *known) {
  int t = lua_absindex(L, arg);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int ok = 0;
    for (int i = 0; k && known[i]; i++) ok |= strcmp(k, known[i]) == 0;
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; known[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, known[i]);
      }
      luaL_pushresult(&b);
      const char *msg = k ? lua_pushfstring(L, "unknown option '%s' (options: %s)", k, lua_tostring(L, -1))
                          : lua_pushfstring(L, "unknown option of type %s (options: %s)",
                                            luaL_typename(L, -2), lua_tostring(L, -1));
      luaL_argerror(L, arg, msg);
    }
  }
}

/* A table is the options form unless it is callable (a table with __call
** is a function to run, with arguments after it). */
static int is_options(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

lua_Integer sk_check_count(lua_State *L, int arg, lua_Integer def, lua_Integer min,
                           const char *what) {
  if (lua_isnoneornil(L, arg) && def >= min) return def;
  int isint = 0;
  lua_Integer n = 0;
  if (lua_type(L, arg) == LUA_TNUMBER) n = lua_tointegerx(L, arg, &isint);
  if (!isint || n < min) {
    const char *got = lua_type(L, arg) == LUA_TNUMBER ? luaL_tolstring(L, arg, NULL)
                                                      : luaL_typename(L, arg);
    luaL_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", what, got));
  }
  return n;
}

void sk_check_callable(lua_State *L, int arg) {
  if (!sk_callable(L, arg)) luaL_typeerror(L, arg, "function");
}

int sk_callable(lua_State *L, int idx) {
  if (lua_isfunction(L, idx)) return 1;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

/* Pushes list t[1..n] (n honoured) and returns how many. */
static int push_list(lua_State *L, int t, const char *what) {
  lua_getfield(L, t, "n");
  lua_Integer n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (lua_Integer)lua_rawlen(L, t);
  lua_pop(L, 1);
  if (n < 0 || n >= 100000) luaL_argerror(L, 1, lua_pushfstring(L, "options.%s is too long", what));
  luaL_checkstack(L, (int)n + 8, "too many arguments");
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, t, i);
  return (int)n;
}

int sk_worker_args(lua_State *L, int *daemon, char **name, int *ninit) {
  static const char *const known[] = {"fn", "args", "name", "daemon", "init", "init_args", NULL};
  *daemon = 0;
  *name = NULL;
  *ninit = 0;
  if (!is_options(L, 1)) {
    luaL_argexpected(L, sk_callable(L, 1), 1, "function");
    return 0;
  }
  luaL_argcheck(L, lua_gettop(L) == 1, 2, "no arguments after an options table");
  sk_check_options(L, 1, known);
  lua_getfield(L, 1, "fn");                                     /* 2 */
  luaL_argcheck(L, sk_callable(L, 2), 1, "options.fn must be a function");
  lua_getfield(L, 1, "daemon");
  int is_daemon = lua_toboolean(L, -1);
  lua_pop(L, 1);
  int tn = lua_getfield(L, 1, "name");                          /* 3 */
  luaL_argcheck(L, tn == LUA_TNIL || tn == LUA_TSTRING, 1, "options.name must be a string");
  int ta = lua_getfield(L, 1, "args");                          /* 4 */
  luaL_argcheck(L, ta == LUA_TNIL || ta == LUA_TTABLE, 1, "options.args must be a table");
  int ti = lua_getfield(L, 1, "init");                          /* 5 */
  luaL_argcheck(L, ti == LUA_TNIL || sk_callable(L, 5), 1, "options.init must be a function");
  int tia = lua_getfield(L, 1, "init_args");                    /* 6 */
  luaL_argcheck(L, tia == LUA_TNIL || tia == LUA_TTABLE, 1, "options.init_args must be a table");
  luaL_argcheck(L, tia == LUA_TNIL || ti != LUA_TNIL, 1, "options.init_args without options.init");
  int base = lua_gettop(L);
  int ni = 0;
  if (ti != LUA_TNIL) {
    lua_pushvalue(L, 5);                                        /* init */
    ni = 1 + (tia == LUA_TTABLE ? push_list(L, 6, "init_args") : 0);
  }
  lua_pushvalue(L, 2);                                          /* fn */
  if (ta == LUA_TTABLE) push_list(L, 4, "args");
  /* Nothing can raise past this point: the name copy is the caller's. */
  *name = tn == LUA_TSTRING ? strdup(lua_tostring(L, 3)) : NULL;
  *daemon = is_daemon;
  *ninit = ni;
  lua_rotate(L, 1, -base);
  lua_pop(L, base);
  return 1;
}

/* ------------------------------------------------------------- handles */

/* The cache entry of metatable `mt` (a static name), filled on first use:
** checks and pushes then cost a pointer compare and a rawgeti instead of a
** registry lookup by string. */
static int mt_entry(lua_State *L, const char *mt) {
  sk_worker *w = sk_worker_of(L);
  for (int i = 0; i < w->nmts; i++) {
    if (w->mts[i].name == mt) return i;
  }
  if (luaL_getmetatable(L, mt) != LUA_TTABLE) luaL_error(L, "skein: unknown type %s", mt);
  if (w->nmts == (int)(sizeof w->mts / sizeof w->mts[0])) {
    lua_pop(L, 1);
    return -1;
  }
  int i = w->nmts++;
  w->mts[i].name = mt;
  w->mts[i].ptr = lua_topointer(L, -1);
  w->mts[i].ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return i;
}

sk_obj *sk_handle_check(lua_State *L, int idx, const char *mt) {
  sk_handle *h = lua_touserdata(L, idx);
  int i = mt_entry(L, mt);
  if (h == NULL || i < 0 || !lua_getmetatable(L, idx)) {
    h = luaL_checkudata(L, idx, mt);
  } else {
    const void *ptr = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (ptr != sk_worker_of(L)->mts[i].ptr) h = luaL_checkudata(L, idx, mt);
  }
  if (h->obj == NULL) sk_error_raise(L, "closed", "cannot use a %s after it was closed", mt);
  return h->obj;
}

void sk_handle_push(lua_State *L, sk_obj *o, const char *mt) {
  int i = mt_entry(L, mt);
  sk_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->obj = o;
  if (i < 0) {
    luaL_setmetatable(L, mt);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, sk_worker_of(L)->mts[i].ref);
    lua_setmetatable(L, -2);
  }
}

int sk_handle_release(lua_State *L) {
  sk_handle *h = lua_touserdata(L, 1);
  if (h && h->obj) {
    sk_obj_release(h->obj);
    h->obj = NULL;
  }
  return 0;
}

