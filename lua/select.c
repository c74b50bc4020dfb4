/*
** select.c — skein.select over tasks and shared objects (queues, pipe
** ends, events, locks, futures…): waits until one of them can complete its
** operation, performs it, and returns which one fired with its values.
**
** Object types take part by giving an sk_selectable (try without
** blocking, add/remove a waiter record) as the select hook of their type
** (sk_type_register); sk_select_find reads it back by type name.
*/
#include <string.h>

#include "sk_bind.h"

#define WATCHES_MT "skein.SelectWatches"

const sk_selectable *sk_select_find(lua_State *L, int idx) { return sk_type_select(L, idx); }

/* One watcher per task in the list; fires by waking the selecting context. */
typedef struct sel_watch {
  sk_watch w;
  sk_ctx *c;
} sel_watch;

static void sel_fire(sk_watch *w, sk_ctx *source) {
  (void)source;
  sk_ctx_wake(((sel_watch *)w)->c);
}

/* Stack layout of a select call: 1 list, 2 deadline, 3 watches (userdata),
** 4 number of waiters registered so far. */

/* Undoes every registration made for the current wait. */
static void unregister(lua_State *L, sk_ctx *c, int n) {
  sel_watch *ws = lua_touserdata(L, 3);
  int added = (int)lua_tointeger(L, 4);
  for (int i = 1; i <= n && i <= added; i++) {
    lua_rawgeti(L, 1, i);
    if (sk_task_test(L, -1)) {
      sk_watch_unlink(&ws[i - 1].w);
    } else {
      const sk_selectable *s = sk_select_find(L, -1);
      sk_handle *h = lua_touserdata(L, -1);
      if (s && h && h->obj) s->remove_waiter(h->obj, c->w->port, c->wslot);
    }
    lua_pop(L, 1);
  }
  lua_pushinteger(L, 0);
  lua_replace(L, 4);
}

/* Tries item i; returns how many values it pushed (index first), or 0. */
static int try_item(lua_State *L, int i) {
  int top = lua_gettop(L);
  lua_pushinteger(L, i);
  lua_rawgeti(L, 1, i);
  sk_ctx *t = sk_task_test(L, -1);
  if (t) {
    if (t->state != SK_DONE) {
      lua_settop(L, top);
      return 0;
    }
    int n = sk_task_push_results(L, t, top + 2);
    lua_remove(L, top + 2);
    return n + 1;
  }
  sk_handle *h = lua_touserdata(L, -1);
  const sk_selectable *s = sk_select_find(L, -1);
  if (h->obj == NULL) sk_error_raise(L, "closed", "item %d of the list was closed", i);
  int n = s->try_op(L, h->obj);
  if (n == 0) {
    lua_settop(L, top);
    return 0;
  }
  lua_remove(L, top + 2);
  return n + 1;
}

static int select_k(lua_State *L, int status, lua_KContext kctx) {
  sk_ctx *c = sk_current(L);
  uint64_t d = sk_to_deadline(L, 2);
  int n = (int)lua_rawlen(L, 1);
  sel_watch *ws = lua_touserdata(L, 3);
  for (;;) {
    if (status == LUA_YIELD) {
      unregister(L, c, n);
      sk_wait_end(L, c);
    }
    for (int i = 1; i <= n; i++) {
      int k = try_item(L, i);
      if (k) return k;
    }
    if (sk_expired(d) || n == 0) {
      lua_pushnil(L);
      return 1;
    }
    sk_wait_begin(L, c, d);
    int ready = 0;
    for (int i = 1; i <= n && !ready; i++) {
      lua_rawgeti(L, 1, i);
      sk_ctx *t = sk_task_test(L, -1);
      if (t) {
        ws[i - 1].c = c;
        ws[i - 1].w.fire = sel_fire;
        if (t->state == SK_DONE) ready = 1;
        else sk_watch_link(&t->watchers, &ws[i - 1].w);
      } else {
        sk_handle *h = lua_touserdata(L, -1);
        const sk_selectable *s = sk_select_find(L, -1);
        sk_waiter wr;
        int rc = -1;
        if (h->obj && sk_ctx_waiter(c, &wr) == 0) {
          rc = s->add_waiter(h->obj, &wr);
          if (rc != 0) sk_port_release(wr.port);
        }
        if (rc == -1) {
          lua_pop(L, 1);
          unregister(L, c, n);
          sk_wait_abort(c);
          return sk_error_raise(L, h->obj ? "memory" : "closed",
                                h->obj ? "not enough memory to wait" : "item %d of the list was closed", i);
        }
        ready = rc == 1;
      }
      lua_pop(L, 1);
      lua_pushinteger(L, i);
      lua_replace(L, 4);
    }
    if (ready) {
      unregister(L, c, n);
      sk_wait_abort(c);
      status = LUA_OK;
      continue;
    }
    status = sk_wait(L, c, kctx, select_k);
  }
}

/* skein.select(list, [timeout]) -> index, values... | nil on timeout */
static int l_select(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  uint64_t d = sk_check_deadline(L, 2);
  int n = (int)lua_rawlen(L, 1);
  /* Work on a copy in which objects written in Lua (a coroutine pool's
  ** futures) are replaced by what they wait on (__waitable). */
  lua_createtable(L, n, 0);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (lua_type(L, -1) == LUA_TTABLE && luaL_getmetafield(L, -1, "__waitable") != LUA_TNIL) {
      lua_insert(L, -2);
      lua_call(L, 1, 1);
    }
    lua_rawseti(L, -2, i);
  }
  lua_replace(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!sk_task_test(L, -1) && !sk_select_find(L, -1)) {
      return luaL_error(L, "item %d of the list is not something select can wait on (a %s)", i,
                        luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  sk_push_deadline(L, d);
  sel_watch *ws = lua_newuserdatauv(L, sizeof(sel_watch) * (size_t)(n > 0 ? n : 1), 0);
  memset(ws, 0, sizeof(sel_watch) * (size_t)(n > 0 ? n : 1));
  lua_pushinteger(L, 0);
  return select_k(L, LUA_OK, 0);
}

void sk_select_open(lua_State *L) {
  lua_pushcfunction(L, l_select);
  lua_setfield(L, -2, "select");
}
