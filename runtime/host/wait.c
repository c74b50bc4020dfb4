/*
** wait.c — the one way to wait (sk_lua.h): the loop every blocking call
** runs through sk_wait_on, and the links of the common kinds of source.
**
** The primitives under it (arming a wait, suspending or pumping, raising
** what a wait owes) are the worker's, in worker.c; this file owns the
** order in which they are called, so that every source gets the same
** treatment of deadlines, scopes, cancellation, Ctrl-C and deadlocks.
*/
#include <string.h>

#include "sk_lua.h"

static int wait_k(lua_State *L, int status, lua_KContext kctx);

static int p_wait_end(lua_State *L) {
  sk_wait_end(L, lua_touserdata(L, 1));
  return 0;
}

/* Ends a wait under protection: LUA_OK, or the status of what it raised
** (cancelled, interrupted, deadlock, a scope's deadline), that error on
** top of the stack. */
static int end_guarded(lua_State *L, sk_ctx *c) {
  luaL_checkstack(L, 2, "wait");
  lua_pushcfunction(L, p_wait_end);
  lua_pushlightuserdata(L, c);
  return lua_pcall(L, 1, 0, 0);
}

/* The loop. `status` is LUA_YIELD after a suspension (the source still
** linked, the wait still armed), LUA_OK on the first look. The source, its
** object and the deadline live in locals while this context pumps (no
** other code runs on it meanwhile), and in the context across a yield,
** which drops this C frame: wait_k reads them back from there. */
static int wait_loop(lua_State *L, sk_ctx *c, int status) {
  const sk_source *src = c->wsrc;
  void *obj = c->wobj;
  uint64_t deadline = c->wdeadline;
  unsigned flags = c->wflags;
  int round = c->wround;
  for (;;) {
    if (status == LUA_YIELD) {
      if (c->wts) {             /* traced: the suspension ends with the wake */
        const char *what = src->what ? src->what : src->name;
        if (strncmp(what, "skein.", 6) == 0) what += 6;   /* "skein.Event": "Event" */
        sk_trace_wait(what, (uint64_t)c->id, c->wts);
        c->wts = 0;
      }
      if (src->check && (obj = src->check(L)) == NULL) {
        sk_wait_end(L, c);
        return sk_error_raise(L, "closed", "cannot use a %s after it was closed", src->name);
      }
      /* Unlinked before the wait ends, since ending it may raise. */
      int picked = src->unlink ? src->unlink(obj, c) : 0;
      if ((picked && src->pass_on) || src->raised) {
        /* A wait picked by a wake-one source hands the wake to the next
        ** waiter before its end raises, so that nothing is left unclaimed
        ** while it sleeps; a source with `raised` acts on the error. */
        if (end_guarded(L, c) != LUA_OK) {
          if (picked && src->pass_on) src->pass_on(obj);
          return src->raised ? src->raised(L, obj) : lua_error(L);
        }
      } else {
        sk_wait_end(L, c);
      }
      round++;
    }
    int n = src->attempt(L, obj, round, sk_expired(deadline));
    if (n != SK_WAIT_MORE) return n;
    if (flags & SK_WAIT_SHIELD) c->wait_shield = 1;
    sk_wait_begin(L, c, deadline);
    int linked = src->link ? src->link(obj, c, round) : 0;
    if (linked != 0) {
      sk_wait_abort(c);
      if (linked < 0) return sk_error_raise(L, "memory", "not enough memory to wait");
      status = LUA_OK;
      continue;
    }
    c->wsrc = src;
    c->wobj = obj;
    c->wdeadline = deadline;
    c->wflags = flags;
    c->wround = round;
    if (SK_TRACING()) c->wts = sk_trace_now();
    status = sk_wait(L, c, 0, wait_k);
  }
}

static int wait_k(lua_State *L, int status, lua_KContext kctx) {
  (void)kctx;
  return wait_loop(L, sk_current(L), status);
}

int sk_wait_on(lua_State *L, const sk_source *src, void *obj, uint64_t deadline,
               unsigned flags) {
  sk_ctx *c = sk_current(L);
  c->wsrc = src;
  c->wobj = obj;
  c->wdeadline = deadline;
  c->wflags = flags;
  c->wround = 0;
  return wait_loop(L, c, LUA_OK);
}

/* ------------------------------------------------------- common links */

int sk_link_watch(sk_watchlist *l, sk_ctx *c) {
  sk_watch_link(l, &c->joinw);
  return 0;
}

int sk_unlink_watch(void *obj, sk_ctx *c) {
  (void)obj;
  sk_watch_unlink(&c->joinw);
  return 0;
}

int sk_link_shared(sk_ctx *c, uv_mutex_t *lock, sk_waitlist *list, sk_ready_fn ready,
                   void *obj) {
  sk_waiter wr;
  if (sk_ctx_waiter(c, &wr) != 0) return -1;
  uv_mutex_lock(lock);
  int now_ready = ready(obj);
  int added = !now_ready && sk_waitlist_add(list, &wr) == 0;
  uv_mutex_unlock(lock);
  if (added) return 0;
  sk_port_release(wr.port);
  return now_ready ? 1 : -1;
}

int sk_unlink_shared(sk_ctx *c, uv_mutex_t *lock, sk_waitlist *list) {
  uv_mutex_lock(lock);
  size_t removed = sk_waitlist_remove(list, c->w->port, c->wslot);
  uv_mutex_unlock(lock);
  return removed == 0;
}
