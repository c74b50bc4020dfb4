/*
** rpc.c — the Lua face of RPC: the proxy type (a parent's object as a
** worker process sees it: each method call, field read or write goes to
** the parent) and the handle of a connection's server task
** (stdlib/skein/rpc.lua). The engine — the child's pending calls and the
** parent's connections, what happens when either side dies — is
** runtime/host/rpc_engine.c (sk_rpc.h).
**
** Limits (documented in docs/): only the process's main worker may use
** proxies; a proxy cannot be passed on to a grandchild; select does not
** take proxies; a waiting call is shielded from cancellation.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_process.h"
#include "../runtime/host/sk_rpc.h"

#define PROXY_MT SK_PROXY_MT
#define CONN_MT SK_CONN_MT

typedef struct proxy {
  uint32_t slot, gen;
  long pid;
  char name[48];
} proxy;

int sk_proxy_info(lua_State *L, int idx, const char **name, uint32_t *slot, uint32_t *gen,
                  long *pid) {
  proxy *p = luaL_testudata(L, idx, PROXY_MT);
  if (p == NULL) return 0;
  *name = p->name;
  *slot = p->slot;
  *gen = p->gen;
  *pid = p->pid;
  return 1;
}

int sk_proxy_push(lua_State *L, const char *name, uint32_t slot, uint32_t gen, long pid) {
  if (!sk_rpc_can_proxy(pid) || strlen(name) >= sizeof(((proxy *)0)->name)) {
    return -1;
  }
  proxy *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->slot = slot;
  p->gen = gen;
  p->pid = pid;
  strcpy(p->name, name);
  luaL_setmetatable(L, PROXY_MT);
  return 0;
}

/* proxy:method(...) — the upvalue is the method's name. */
static int l_proxy_method(lua_State *L) {
  luaL_checkudata(L, 1, PROXY_MT);
  return sk_rpc_call(L, "call", lua_tostring(L, lua_upvalueindex(1)), 2);
}

/* Known method names per type, learned from the parent's answers. */
static int l_proxy_index(lua_State *L) {
  proxy *p = luaL_checkudata(L, 1, PROXY_MT);
  if (lua_type(L, 2) == LUA_TSTRING) {
    /* Methods written in Lua for every proxy (hold, with). */
    lua_getfield(L, LUA_REGISTRYINDEX, "skein.proxy.methods");
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL) return 1;
    lua_pop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, "skein.proxy.known");
    lua_pushfstring(L, "%s.%s", p->name, lua_tostring(L, 2));
    if (lua_rawget(L, -2) == LUA_TBOOLEAN) {
      lua_pushvalue(L, 2);
      lua_pushcclosure(L, l_proxy_method, 1);
      return 1;
    }
    lua_pop(L, 2);
  }
  lua_settop(L, 2);
  /* Ask the parent: a method comes back as a marker, anything else as is. */
  int n = sk_rpc_call(L, "index", "", 2);
  if (n >= 2 && lua_toboolean(L, -1) && lua_type(L, 2) == LUA_TSTRING) {
    lua_getfield(L, LUA_REGISTRYINDEX, "skein.proxy.known");
    lua_pushfstring(L, "%s.%s", p->name, lua_tostring(L, 2));
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, l_proxy_method, 1);
    return 1;
  }
  lua_settop(L, lua_gettop(L) - n + 1);
  return 1;
}

static int l_proxy_newindex(lua_State *L) {
  luaL_checkudata(L, 1, PROXY_MT);
  lua_settop(L, 3);
  sk_rpc_call(L, "newindex", "", 2);
  return 0;
}

static int l_proxy_len(lua_State *L) {
  luaL_checkudata(L, 1, PROXY_MT);
  lua_settop(L, 1);
  sk_rpc_call(L, "len", "", 2);
  return 1;
}

static int l_proxy_tostring(lua_State *L) {
  proxy *p = luaL_checkudata(L, 1, PROXY_MT);
  lua_pushfstring(L, "%s (of process %d)", p->name, (int)p->pid);
  return 1;
}

static int l_proxy_eq(lua_State *L) {
  proxy *a = luaL_testudata(L, 1, PROXY_MT), *b = luaL_testudata(L, 2, PROXY_MT);
  lua_pushboolean(L, a && b && a->slot == b->slot && a->gen == b->gen && a->pid == b->pid);
  return 1;
}

/* ---------------------------------------------------------- connection */

static sk_conn *check_conn(lua_State *L) {
  sk_conn **u = luaL_checkudata(L, 1, CONN_MT);
  if (*u == NULL) luaL_error(L, "connection released");
  return *u;
}

/* conn:next() -> id, request | nil once the child is gone */
static int l_conn_next(lua_State *L) {
  sk_conn *c = check_conn(L);
  lua_settop(L, 1);
  return sk_conn_next(L, c);
}

/* conn:reply(id, body) -> true when sent */
static int l_conn_reply(lua_State *L) {
  sk_conn *c = check_conn(L);
  size_t il, bl;
  const char *id = luaL_checklstring(L, 2, &il);
  const char *body = luaL_checklstring(L, 3, &bl);
  if (!sk_conn_alive(c) || il != 8) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (bl > SK_FRAME_MAX - 8) {
    return sk_error_raise(L, "marshal", "the answer is too big to send to a process (%I bytes, over 4 GiB)",
                          (LUAI_UACINT)bl);
  }
  int rc = sk_conn_reply(c, id, body, bl);
  if (rc == UV_ENOMEM) return sk_error_raise(L, "memory", "not enough memory");
  lua_pushboolean(L, rc == 0);
  return 1;
}

static int l_conn_gc(lua_State *L) {
  sk_conn **u = luaL_checkudata(L, 1, CONN_MT);
  if (*u) {
    sk_conn *c = *u;
    *u = NULL;
    sk_conn_drop(c);
  }
  return 0;
}

/* skein._objid(handle) -> a light userdata naming the object behind it */
static int l_objid(lua_State *L) {
  sk_handle *h = lua_touserdata(L, 1);
  luaL_argcheck(L, h != NULL && lua_type(L, 1) == LUA_TUSERDATA, 1, "object expected");
  lua_pushlightuserdata(L, h->obj);
  return 1;
}

/* skein._rpc_setup(serve, proxy_methods): the Lua halves (rpc.lua) */
static int l_rpc_setup(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.rpc.serve");
  lua_pushvalue(L, 2);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.proxy.methods");
  return 0;
}

void sk_rpc_open(lua_State *L) {
  static const luaL_Reg proxy_mt[] = {{"__index", l_proxy_index},
                                      {"__newindex", l_proxy_newindex},
                                      {"__len", l_proxy_len},
                                      {"__tostring", l_proxy_tostring},
                                      {"__eq", l_proxy_eq},
                                      {NULL, NULL}};
  static const luaL_Reg conn_methods[] = {{"next", l_conn_next}, {"reply", l_conn_reply}, {NULL, NULL}};
  static const sk_type proxy = {.name = PROXY_MT, .meta = proxy_mt};
  static const sk_type conn = {.name = CONN_MT, .methods = conn_methods, .gc = l_conn_gc};
  sk_type_register(L, &proxy);
  sk_type_register(L, &conn);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.proxy.known");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "skein.proxy.methods");
  lua_pop(L, 2);
  lua_pushcfunction(L, l_objid);
  lua_setfield(L, -2, "_objid");
  lua_pushcfunction(L, l_rpc_setup);
  lua_setfield(L, -2, "_rpc_setup");
}
