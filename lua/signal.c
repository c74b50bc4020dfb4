/*
** signal.c — skein.signal(name, fn) and skein.signal.wait(name, [timeout]):
** argument checks, the handle and the wait. The engine (watches, the
** dispositions they take over and give back) is runtime/core/sigwatch.c
** (sk_signal.h).
**
** A handle is a userdata holding its watch (NULL once closed), a runnable
** and the handler as user value 1. A delivery makes the runnable ready
** (from the libuv callback, which calls no Lua); the runnable, outside
** libuv, spawns one task fn(name) per delivery it has not handled yet. A
** registry reference keeps the handle alive while it is open or its
** runnable is queued, so an open handle is never collected: it lasts until
** handle:close() or the end of its worker. It does not keep the script
** running (a watch is unreferenced in its loop); the tasks it spawns do.
*/
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../runtime/core/sk_signal.h"
#include "sk_bind.h"

#define SIGNAL_MT "skein.Signal"
#define SIGWAIT_MT "skein.signal.wait"

typedef struct sig_handle {
  sk_runnable run;              /* first: spawns the handler tasks */
  sk_sigwatch *s;               /* NULL once closed */
  sk_worker *w;
  uint64_t done;                /* deliveries whose task was spawned */
  int ref;                      /* registry reference while open or queued */
  int signum;
} sig_handle;

/* The signal argument at idx, which must be one that may be watched. */
static int check_watchable(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "string (a signal name)");
  const char *name = lua_tostring(L, idx);
  int sig = sk_sig_number(name);
  if (sig == 0) luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", name));
  if (!sk_sig_watchable(sig)) {
    const char *why = sig == SIGKILL || sig == SIGSTOP ? "it cannot be caught"
                      : sig == SIGCHLD ? "it is how children are reaped (use skein.exec's wait)"
                                       : "it signals a fault of the process itself";
    luaL_argerror(L, idx, lua_pushfstring(L, "%s cannot be watched: %s", sk_sig_name(sig), why));
  }
  return sig;
}

static int raise_watch(lua_State *L, int sig, int rc) {
  return sk_io_error_raise(L, rc, NULL, NULL, "cannot watch %s", sk_sig_name(sig));
}

/* ------------------------------------------------------------ handles */

/* In a protected call, with the handle as argument 1: one task per new
** delivery. */
static int spawn_handlers(lua_State *L) {
  sig_handle *h = lua_touserdata(L, 1);
  uint64_t n = h->s->count - h->done;
  h->done = h->s->count;
  luaL_checkstack(L, 4, "skein.signal");
  for (uint64_t i = 0; i < n; i++) {
    lua_getiuservalue(L, 1, 1);
    lua_pushstring(L, sk_sig_name(h->signum));
    sk_task_spawn(L, -2, 1, 0);
    lua_pop(L, 3);
  }
  return 0;
}

/* The runnable, outside libuv: spawns the tasks, or after a close drops
** the reference its queueing kept. */
static void run_handlers(sk_runnable *r) {
  sig_handle *h = (sig_handle *)r;
  lua_State *L = h->w->cur_L;
  if (h->s == NULL || h->w->closing) {
    if (h->s == NULL && h->ref != LUA_NOREF) {
      luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
      h->ref = LUA_NOREF;
    }
    return;
  }
  if (!lua_checkstack(L, 3)) return;
  lua_pushcfunction(L, spawn_handlers);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
  if (sk_pcall(L, 1, 0) != LUA_OK) {
    fprintf(stderr, "skein.signal: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* From the libuv callback: only makes the runnable ready. */
static void on_delivery(sk_sigwatch *s) {
  sig_handle *h = s->data;
  sk_sched_push(&h->w->sched, &h->run);
}

static sig_handle *check_handle(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, SIGNAL_MT);
}

/* handle:close(): no more deliveries; the disposition the signal had comes
** back when no other watch of it is left. Idempotent; also __gc, __close. */
static int l_signal_close(lua_State *L) {
  sig_handle *h = check_handle(L, 1);
  if (h->s == NULL) return 0;
  sk_sigwatch_close(h->s);
  h->s = NULL;
  if (!h->run.queued && h->ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
    h->ref = LUA_NOREF;
  }
  return 0;
}

static int l_signal_tostring(lua_State *L) {
  sig_handle *h = check_handle(L, 1);
  lua_pushfstring(L, "skein.signal %s (%s)", sk_sig_name(h->signum), h->s ? "open" : "closed");
  return 1;
}

/* skein.signal(name, fn) -> handle (through the table's __call: the table
** is argument 1) */
static int l_signal_call(lua_State *L) {
  lua_remove(L, 1);
  int sig = check_watchable(L, 1);
  sk_check_callable(L, 2);
  lua_settop(L, 2);
  sig_handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  memset(h, 0, sizeof *h);
  h->ref = LUA_NOREF;
  h->signum = sig;
  h->w = sk_worker_of(L);
  h->run.run = run_handlers;
  luaL_setmetatable(L, SIGNAL_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 3, 1);
  lua_pushvalue(L, 3);
  h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int rc = sk_sigwatch_start(h->w->sched.loop, sig, 0, &h->s);
  if (rc != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
    h->ref = LUA_NOREF;
    return raise_watch(L, sig, rc);
  }
  h->s->data = h;
  h->s->notify = on_delivery;
  return 1;
}

/* ------------------------------------------------------------ wait */

typedef struct sig_wait {
  sk_sigwatch *s;               /* NULL once closed */
} sig_wait;

static int l_sigwait_close(lua_State *L) {
  sig_wait *b = luaL_checkudata(L, 1, SIGWAIT_MT);
  if (b->s) sk_sigwatch_close(b->s);
  b->s = NULL;
  return 0;
}

static int sigwait_attempt(lua_State *L, void *obj, int round, int expired) {
  sig_wait *b = obj;
  (void)round;
  if (b->s->count > 0) {
    lua_pushstring(L, sk_sig_name(b->s->signum));
    sk_sigwatch_close(b->s);
    b->s = NULL;
    return 1;
  }
  if (expired) {
    return sk_error_raise(L, "timeout", "signal.wait(%s) timed out", sk_sig_name(b->s->signum));
  }
  return SK_WAIT_MORE;
}

static int sigwait_link(void *obj, sk_ctx *c, int round) {
  sig_wait *b = obj;
  (void)round;
  if (b->s->count > 0) return 1;
  sk_iowait_link(&b->s->waiters, &c->iow);
  return 0;
}

static int sigwait_unlink(void *obj, sk_ctx *c) {
  (void)obj;
  sk_iowait_unlink(&c->iow);
  return 0;
}

static const sk_source sigwait_source = {.name = "skein.signal", .what = "signal wait", .attempt = sigwait_attempt,
                                         .link = sigwait_link, .unlink = sigwait_unlink};

/* skein.signal.wait(name, [timeout]) -> name. The watch lives in a
** to-be-closed box on this call's stack: however the call ends, the signal
** stops being watched (and gets its disposition back). While it waits,
** the watch keeps the loop alive: a signal may come from outside. */
static int l_signal_wait(lua_State *L) {
  int sig = check_watchable(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 2);
  sig_wait *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  luaL_setmetatable(L, SIGWAIT_MT);
  lua_toclose(L, 3);
  int rc = sk_sigwatch_start(sk_worker_of(L)->sched.loop, sig, 1, &b->s);
  if (rc != 0) return raise_watch(L, sig, rc);
  return sk_wait_on(L, &sigwait_source, b, d, 0);
}

void sk_signal_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"close", l_signal_close}, {NULL, NULL}};
  static const sk_type type = {.name = SIGNAL_MT, .methods = methods, .gc = l_signal_close,
                               .close = l_signal_close, .tostring = l_signal_tostring};
  sk_type_register(L, &type);
  if (luaL_newmetatable(L, SIGWAIT_MT)) {
    lua_pushcfunction(L, l_sigwait_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_sigwait_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_signal_wait);
  lua_setfield(L, -2, "wait");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_signal_call);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "signal");
}
