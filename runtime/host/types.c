/*
** types.c — one way to register an object family's Lua type: its
** metatable (methods, __index, __gc, __close, __tostring, other
** metamethods) in the calling worker's state, and its process-wide hooks:
** sending by reference (the marshaller's type table) and taking part in
** skein.select (the select table below, which the select binding reads
** through sk_type_select; the host never calls it).
**
** The select table is process-wide and written when each worker opens the
** module, hence its mutex. Entries are descriptors with static storage.
*/
#include <string.h>

#include <uv.h>

#include "sk_lua.h"

#define MAX_SELECT 32

static const sk_type *selectable[MAX_SELECT];
static int nselectable;
static uv_mutex_t select_lock;
static uv_once_t select_once = UV_ONCE_INIT;

static void select_init(void) { uv_mutex_init(&select_lock); }

/* Records t's select hook once (by descriptor). */
static void select_record(const sk_type *t) {
  uv_once(&select_once, select_init);
  uv_mutex_lock(&select_lock);
  int i;
  for (i = 0; i < nselectable && selectable[i] != t; i++) {}
  if (i == nselectable && nselectable < MAX_SELECT) selectable[nselectable++] = t;
  uv_mutex_unlock(&select_lock);
}

const void *sk_type_select(lua_State *L, int idx) {
  const void *found = NULL;
  if (luaL_getmetafield(L, idx, "__name") != LUA_TSTRING) return NULL;
  const char *name = lua_tostring(L, -1);
  uv_once(&select_once, select_init);
  uv_mutex_lock(&select_lock);
  for (int i = 0; i < nselectable; i++) {
    if (strcmp(selectable[i]->name, name) == 0) found = selectable[i]->select;
  }
  uv_mutex_unlock(&select_lock);
  lua_pop(L, 1);
  return found;
}

/* Sets field `k` of the table at the top to the C function f, if any. */
static void set_fn(lua_State *L, const char *k, lua_CFunction f) {
  if (!f) return;
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, k);
}

void sk_type_register(lua_State *L, const sk_type *t) {
  if (luaL_newmetatable(L, t->name)) {
    if (t->methods) {
      lua_newtable(L);
      luaL_setfuncs(L, t->methods, 0);
      if (t->methods_key) {
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, t->methods_key);
      }
      if (t->index) lua_pushcclosure(L, t->index, 1);
      lua_setfield(L, -2, "__index");
    } else {
      set_fn(L, "__index", t->index);
    }
    set_fn(L, "__gc", t->gc);
    set_fn(L, "__close", t->close);
    set_fn(L, "__tostring", t->tostring);
    if (t->meta) luaL_setfuncs(L, t->meta, 0);
  }
  lua_pop(L, 1);
  if (t->push) sk_marshal_register_type(t->name, t->push);
  if (t->select) select_record(t);
}

int sk_handle_eq(lua_State *L) {
  sk_handle *a = lua_touserdata(L, 1), *b = lua_touserdata(L, 2);
  lua_pushboolean(L, a && b && a->obj && a->obj == b->obj);
  return 1;
}
