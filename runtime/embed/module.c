/*
** module.c — luaopen_skein, the module every worker preloads: builds the C
** core table from the open function of every binding in lua/ (errors,
** tasks, groups, wait sets, sync objects, queues, pools, processes...) and
** a few machine facts, then runs the embedded stdlib/skein.lua with that
** table and returns what it returns. The other embedded stdlib modules are
** registered in package.preload as "skein.<name>".
*/
#include <string.h>
#include <unistd.h>

#include "../../lua/sk_bind.h"
#include "../../lua/sk_process.h"
#include "sk_embed.h"

static int l_cpu_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
  return 1;
}

/* skein.exepath() -> the path of the running executable */
static int l_exepath(lua_State *L) {
  char buf[4096];
  size_t n = sizeof buf;
  if (uv_exepath(buf, &n) != 0) return 0;
  lua_pushlstring(L, buf, n);
  return 1;
}

static const sk_embedded *find_embedded(const char *name) {
  for (const sk_embedded *e = sk_stdlib; e->name; e++) {
    if (strcmp(e->name, name) == 0) return e;
  }
  return NULL;
}

/* Pushes the chunk, from its bytecode when this liblua takes it (the build's
** lua5.4 made it; a liblua of another release refuses it, and the source is
** parsed instead). */
static int load_embedded(lua_State *L, const sk_embedded *e) {
  if (e->code && luaL_loadbufferx(L, e->code, e->clen, e->chunkname, "b") == LUA_OK) return 1;
  if (e->code) lua_pop(L, 1);
  if (luaL_loadbufferx(L, e->src, e->len, e->chunkname, "t") != LUA_OK) {
    return lua_error(L);
  }
  return 1;
}

/* skein._module(name) -> the embedded chunk "skein.<name>", not yet run */
static int l_module(lua_State *L) {
  const sk_embedded *e = find_embedded(luaL_checkstring(L, 1));
  if (e == NULL) return luaL_error(L, "no embedded module '%s'", lua_tostring(L, 1));
  return load_embedded(L, e);
}

/* skein._methods(mt) -> the method table of a C type that takes Lua-written
** methods (registered as registry["<mt>.methods"]) */
static int l_methods(lua_State *L) {
  lua_pushfstring(L, "%s.methods", luaL_checkstring(L, 1));
  lua_gettable(L, LUA_REGISTRYINDEX);
  return 1;
}

/* skein._callable(v) -> boolean: a function, or a value whose metatable has
** __call (the stdlib modules' check, the same as the C bindings' sk_callable) */
static int l_callable(lua_State *L) {
  lua_pushboolean(L, sk_callable(L, 1));
  return 1;
}

/* skein._isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* package.preload loader for "skein.<name>" */
static int l_preload(lua_State *L) {
  const sk_embedded *e = find_embedded(luaL_checkstring(L, 1));
  if (e == NULL) return luaL_error(L, "no embedded module '%s'", lua_tostring(L, 1));
  load_embedded(L, e);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

int luaopen_skein(lua_State *L) {
  lua_newtable(L);
  sk_error_open(L);
  sk_task_open(L);
  sk_group_open(L);
  sk_marshal_open(L);
  sk_thread_open(L);
  sk_sync_open(L);
  sk_event_open(L);
  sk_barrier_open(L);
  sk_queue_open(L);
  sk_pipe_open(L);
  sk_shared_open(L);
  sk_shared_table_open(L);
  sk_select_open(L);
  sk_future_open(L);
  sk_pool_open(L);
  sk_process_open(L);
  sk_ppool_open(L);
  sk_rpc_open(L);
  sk_fs_open(L);
  sk_net_open(L);
  sk_exec_open(L);
  sk_signal_open(L);
  sk_httpc_open(L);
  sk_broker_open(L);
  sk_trace_open(L);
  sk_httpd_open(L);
  static const luaL_Reg facts[] = {{"cpu_count", l_cpu_count}, {"exepath", l_exepath},
                                    {"_module", l_module},       {"_methods", l_methods},
                                    {"_isatty", l_isatty},       {"_callable", l_callable},
                                    {NULL, NULL}};
  luaL_setfuncs(L, facts, 0);
  lua_pushliteral(L, SKEIN_VERSION);
  lua_setfield(L, -2, "version");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const sk_embedded *e = sk_stdlib; e->name; e++) {
    if (strcmp(e->name, "skein") == 0) continue;
    lua_pushcfunction(L, l_preload);
    lua_setfield(L, -2, e->name);
  }
  lua_pop(L, 1);
  const sk_embedded *main = find_embedded("skein");
  if (main == NULL) return luaL_error(L, "skein: stdlib/skein.lua is not embedded");
  load_embedded(L, main);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return 1;
}
