/*
** group.c — structured concurrency (skein.group) and wait sets, the
** primitive under skein.wait, gather, as_completed and select.
**
** Both objects hold raw pointers into task contexts. That is safe because
** each keeps its tasks reachable through a user value (so a task outlives
** the object's interest in it), and each object unhooks itself from its
** tasks in __gc, before its own memory goes.
*/
#include <string.h>

#include "sk_bind.h"

#define GROUP_MT "skein.Group"
#define WAITSET_MT "skein.WaitSet"

/* ---------------------------------------------------------------- group */

static sk_group *check_group(lua_State *L, int idx) {
  sk_group *g = luaL_checkudata(L, idx, GROUP_MT);
  return g;
}

/* skein.group() -> group */
static int l_group_new(lua_State *L) {
  sk_group *g = lua_newuserdatauv(L, sizeof *g, 1);
  memset(g, 0, sizeof *g);
  sk_watchlist_init(&g->waiters);
  luaL_setmetatable(L, GROUP_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/* group:spawn(fn, ...) -> task */
static int l_group_spawn(lua_State *L) {
  sk_group *g = check_group(L, 1);
  if (g->closed) sk_error_raise(L, "closed", "the group is closed: no more spawns");
  sk_ctx *t = sk_task_spawn(L, 2, lua_gettop(L) - 2, 0);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
  sk_group_add(g, t);
  return 1;
}

/* Raises the first member error once it is known and all members ended. */
static int raise_failed(lua_State *L, sk_group *g) {
  lua_getiuservalue(L, 1, 1);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_touserdata(L, -1) == g->failed) {
      g->raised = 1;
      return sk_task_push_results(L, g->failed, -1);
    }
    lua_pop(L, 1);
  }
  return luaL_error(L, "skein: group lost its failed member");
}

/* A group as a wait source: ready when no member is left running. */
static int group_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_link_watch(&((sk_group *)obj)->waiters, c);
}

/* group:wait: the group at index 1. */
static int group_wait_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_group *g = obj;
  (void)round;
  if (g->nlive > 0) {
    if (expired) return sk_error_raise(L, "timeout", "group wait timed out");
    return SK_WAIT_MORE;
  }
  if (g->failed) return raise_failed(L, g);
  return 0;
}

/* __close: the group at index 1, the error the scope is left by (or nil)
** at index 2. */
static int group_close_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_group *g = obj;
  (void)round;
  (void)expired;
  if (g->nlive > 0) return SK_WAIT_MORE;
  g->closed = 1;
  if (!lua_isnil(L, 2) || g->failed == NULL || g->raised) return 0;
  return raise_failed(L, g);
}

static const sk_source group_wait_source = {
    .name = GROUP_MT, .attempt = group_wait_attempt, .link = group_link, .unlink = sk_unlink_watch};
static const sk_source group_close_source = {
    .name = GROUP_MT, .attempt = group_close_attempt, .link = group_link, .unlink = sk_unlink_watch};

/* group:wait([timeout]): waits for every member; raises the first error */
static int l_group_wait(lua_State *L) {
  sk_group *g = check_group(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &group_wait_source, g, d, 0);
}

/* __close: cancels what still runs and waits for it, shielded from the
** caller's own cancellation so no member outlives the scope. On a normal
** exit an error no one has seen yet is raised. */
static int l_group_close(lua_State *L) {
  sk_group *g = check_group(L, 1);
  lua_settop(L, 2);
  sk_group_cancel_all(g);
  return sk_wait_on(L, &group_close_source, g, SK_NO_DEADLINE, SK_WAIT_SHIELD);
}

static int l_group_cancel(lua_State *L) {
  sk_group_cancel_all(check_group(L, 1));
  return 0;
}

static int l_group_gc(lua_State *L) {
  sk_group *g = lua_touserdata(L, 1);
  for (sk_ctx *m = g->head; m; m = m->gnext) m->group = NULL;
  g->head = NULL;
  return 0;
}

static int l_group_tasks(lua_State *L) {
  check_group(L, 1);
  lua_getiuservalue(L, 1, 1);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* ------------------------------------------------------------- wait set */

typedef struct ws_entry {
  sk_watch w;
  struct sk_waitset *ws;
  int index;
} ws_entry;

typedef struct sk_waitset {
  int n, qhead, qtail;
  int *queue;                   /* completed indices, in completion order */
  sk_watchlist waiters;
  ws_entry entries[1];
} sk_waitset;

static void ws_fire(sk_watch *w, sk_ctx *source) {
  ws_entry *e = (ws_entry *)w;
  (void)source;
  e->ws->queue[e->ws->qtail++] = e->index;
  sk_watchlist_fire(&e->ws->waiters, source);
}

static void ws_unhook(sk_waitset *ws) {
  for (int i = 0; i < ws->n; i++) sk_watch_unlink(&ws->entries[i].w);
}

/* skein._waitset(list) -> a wait set over the tasks in `list` */
static int l_waitset_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, n < 10000000, 1, "list too long");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (sk_task_test(L, -1) == NULL) {
      luaL_error(L, "item %I of the list is not a task (a %s)", (LUAI_UACINT)i,
                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  size_t size = sizeof(sk_waitset) + (size_t)n * (sizeof(ws_entry) + sizeof(int));
  sk_waitset *ws = lua_newuserdatauv(L, size, 1);
  memset(ws, 0, size);
  ws->n = (int)n;
  ws->queue = (int *)(void *)&ws->entries[n > 0 ? n : 1];
  sk_watchlist_init(&ws->waiters);
  luaL_setmetatable(L, WAITSET_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  for (int i = 0; i < ws->n; i++) {
    lua_rawgeti(L, 1, i + 1);
    sk_ctx *t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    ws->entries[i].ws = ws;
    ws->entries[i].index = i + 1;
    ws->entries[i].w.fire = ws_fire;
    if (t->state == SK_DONE) ws->queue[ws->qtail++] = i + 1;
    else sk_watch_link(&t->watchers, &ws->entries[i].w);
  }
  return 1;
}

/* A wait set as a wait source: ready when a member has finished that
** next() has not returned yet. */
static int ws_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_waitset *ws = obj;
  (void)round;
  if (ws->qhead < ws->qtail) {
    lua_pushinteger(L, ws->queue[ws->qhead++]);
    return 1;
  }
  if (ws->qhead < ws->n && !expired) return SK_WAIT_MORE;
  lua_pushnil(L);
  if (ws->qhead >= ws->n) lua_pushliteral(L, "exhausted");
  else lua_pushliteral(L, "timeout");
  return 2;
}

static int ws_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_link_watch(&((sk_waitset *)obj)->waiters, c);
}

static const sk_source ws_source = {
    .name = WAITSET_MT, .attempt = ws_attempt, .link = ws_link, .unlink = sk_unlink_watch};

/* waitset:next([timeout]) -> index | nil, "timeout" | nil, "exhausted" */
static int l_waitset_next(lua_State *L) {
  sk_waitset *ws = luaL_checkudata(L, 1, WAITSET_MT);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &ws_source, ws, d, 0);
}

static int l_waitset_close(lua_State *L) {
  ws_unhook(luaL_checkudata(L, 1, WAITSET_MT));
  return 0;
}

void sk_group_open(lua_State *L) {
  static const luaL_Reg gmethods[] = {
      {"spawn", l_group_spawn},   {"wait", l_group_wait},
      {"cancel", l_group_cancel}, {"tasks", l_group_tasks},
      {NULL, NULL}};
  static const luaL_Reg wmethods[] = {
      {"next", l_waitset_next}, {"close", l_waitset_close}, {NULL, NULL}};
  static const sk_type group = {.name = GROUP_MT, .methods = gmethods, .gc = l_group_gc,
                                .close = l_group_close};
  static const sk_type waitset = {.name = WAITSET_MT, .methods = wmethods,
                                  .gc = l_waitset_close, .close = l_waitset_close};
  sk_type_register(L, &group);
  sk_type_register(L, &waitset);
  lua_pushcfunction(L, l_group_new);
  lua_setfield(L, -2, "group");
  lua_pushcfunction(L, l_waitset_new);
  lua_setfield(L, -2, "_waitset");
}
