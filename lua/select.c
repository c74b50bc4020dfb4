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

const sk_selectable *sk_select_find(lua_State *L, int idx) { return sk_type_select(L, idx); }

/* One candidate of a select call, as the source's links see it: a task
** (its watcher fires by waking the selecting context) or a handle with its
** type's selectable. The list at stack index 1 keeps every task and handle
** alive through the call, so these pointers stay valid across a yield. */
typedef struct sel_item {
  sk_watch w;
  sk_ctx *c;                    /* the selecting context, while linked */
  sk_ctx *task;                 /* NULL for a handle */
  sk_handle *h;                 /* its object may be closed meanwhile */
  const sk_selectable *s;
} sel_item;

/* The select call as one wait source (stack index 2): linking adds a
** waiter to every candidate, unlinking removes them all. */
typedef struct sel {
  int n;
  int added;                    /* candidates linked by the current wait */
  sel_item item[];
} sel;

static void sel_fire(sk_watch *w, sk_ctx *source) {
  (void)source;
  sk_ctx_wake(((sel_item *)w)->c);
}

/* Undoes every link of the current wait. A queue's remove_waiter passes a
** wake this context took on to the next getter (it acts on one candidate
** at most), so nothing is owed afterwards. */
static int sel_unlink(void *obj, sk_ctx *c) {
  sel *s = obj;
  for (int i = 0; i < s->added; i++) {
    sel_item *it = &s->item[i];
    if (it->task) sk_watch_unlink(&it->w);
    else if (it->h->obj) it->s->remove_waiter(it->h->obj, c->w->port, c->wslot);
  }
  s->added = 0;
  return 0;
}

/* Links every candidate, or none: a candidate ready meanwhile (or closed,
** which its attempt reports) undoes the links made so far. */
static int sel_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sel *s = obj;
  int rc = 0;
  s->added = 0;
  for (int i = 0; i < s->n && rc == 0; i++) {
    sel_item *it = &s->item[i];
    if (it->task) {
      it->c = c;
      it->w.fire = sel_fire;
      if (it->task->state == SK_DONE) rc = 1;
      else sk_watch_link(&it->task->watchers, &it->w);
    } else {
      sk_waiter wr;
      if (it->h->obj == NULL) rc = 1;
      else if (sk_ctx_waiter(c, &wr) != 0) rc = -1;
      else if ((rc = it->s->add_waiter(it->h->obj, &wr)) != 0) sk_port_release(wr.port);
    }
    if (rc == 0) s->added = i + 1;
  }
  if (rc != 0) sel_unlink(s, c);
  return rc;
}

/* Tries candidate i; returns how many values it pushed (index first), or 0. */
static int try_item(lua_State *L, sel *s, int i) {
  sel_item *it = &s->item[i - 1];
  int top = lua_gettop(L);
  if (it->task) {
    if (it->task->state != SK_DONE) return 0;
    lua_pushinteger(L, i);
    lua_rawgeti(L, 1, i);
    int n = sk_task_push_results(L, it->task, top + 2);
    lua_remove(L, top + 2);
    return n + 1;
  }
  if (it->h->obj == NULL) sk_error_raise(L, "closed", "item %d of the list was closed", i);
  lua_pushinteger(L, i);
  int n = it->s->try_op(L, it->h->obj);
  if (n == 0) {
    lua_settop(L, top);
    return 0;
  }
  return n + 1;
}

static int sel_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  sel *s = obj;
  for (int i = 1; i <= s->n; i++) {
    int k = try_item(L, s, i);
    if (k) return k;
  }
  if (expired || s->n == 0) {
    lua_pushnil(L);
    return 1;
  }
  return SK_WAIT_MORE;
}

static const sk_source select_source = {
    .name = "select", .attempt = sel_attempt, .link = sel_link, .unlink = sel_unlink};

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
  lua_settop(L, 1);
  sel *s = lua_newuserdatauv(L, sizeof(sel) + sizeof(sel_item) * (size_t)n, 0);
  memset(s, 0, sizeof(sel) + sizeof(sel_item) * (size_t)n);
  s->n = n;
  for (int i = 1; i <= n; i++) {
    sel_item *it = &s->item[i - 1];
    lua_rawgeti(L, 1, i);
    if ((it->task = sk_task_test(L, -1)) == NULL && (it->s = sk_select_find(L, -1)) == NULL) {
      return luaL_error(L, "item %d of the list is not something select can wait on (a %s)", i,
                        luaL_typename(L, -1));
    }
    it->h = lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  return sk_wait_on(L, &select_source, s, d, 0);
}

void sk_select_open(lua_State *L) {
  lua_pushcfunction(L, l_select);
  lua_setfield(L, -2, "select");
}
