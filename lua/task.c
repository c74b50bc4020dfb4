/*
** task.c — the coroutine engine's Lua face: skein.spawn and task objects
** (join, cancel, done, status), sleep, now, timeout scopes.
**
** A task is a userdata holding its sk_ctx, with four user values: the
** coroutine (dropped when the task ends), the payload (its single result, a
** table of several results, or its error), the traceback of a failure, and
** its name. A registry reference keeps the userdata alive from spawn until
** the task has finished and left the ready queue; raw pointers held by the
** scheduler and watcher lists rely on that.
*/
#include <stdio.h>
#include <string.h>

#include "sk_bind.h"

#define TASK_MT "skein.Task"
#define FAILURE_MT "skein.TaskFailure"

enum { UV_CO = 1, UV_PAYLOAD, UV_TRACE, UV_NAME, UV_COUNT = UV_NAME };

void sk_ctx_init(sk_ctx *c, sk_worker *w);
static void task_run(sk_runnable *r);

/* Compares the metatable by the pointer cached at load time instead of
** looking TASK_MT up in the registry by name on every call. */
sk_ctx *sk_task_test(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
  const void *mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return mt == sk_worker_of(L)->task_mt ? p : NULL;
}

sk_ctx *sk_task_check(lua_State *L, int idx) {
  sk_ctx *t = sk_task_test(L, idx);
  return t ? t : luaL_checkudata(L, idx, TASK_MT);
}

static int is_callable(lua_State *L, int idx) {
  if (lua_isfunction(L, idx)) return 1;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

/* Marks `t` finished: no Lua is called, so this is safe from group
** cancellation and watcher callbacks. */
static void complete(sk_ctx *t, int result) {
  sk_ctx_drop_slot(t);
  t->state = SK_DONE;
  t->result = result;
  if (!t->daemon) t->w->live--;
  sk_watchlist_fire(&t->watchers, t);
  if (t->group) sk_group_member_done(t);
}

/* Creates a task running the value at `fn` with the `nargs` values after it
** and pushes the task. Raises (holding nothing) when `fn` is not callable. */
sk_ctx *sk_task_spawn(lua_State *L, int fn, int nargs, int daemon);
sk_ctx *sk_task_spawn(lua_State *L, int fn, int nargs, int daemon) {
  sk_worker *w = sk_worker_of(L);
  fn = lua_absindex(L, fn);
  if (!is_callable(L, fn)) luaL_typeerror(L, fn, "function");
  luaL_checkstack(L, nargs + 4, "too many arguments to spawn");
  sk_ctx *t = lua_newuserdatauv(L, sizeof *t, UV_COUNT);
  *t = (sk_ctx){0};
  sk_ctx_init(t, w);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->task_mt_ref);
  lua_setmetatable(L, -2);
  lua_State *co = lua_newthread(L);
  lua_setiuservalue(L, -2, UV_CO);
  if (!lua_checkstack(co, nargs + 1)) luaL_error(L, "too many arguments to spawn");
  for (int i = 0; i <= nargs; i++) lua_pushvalue(L, fn + i);
  lua_xmove(L, co, nargs + 1);
  t->co = co;
  t->id = ++w->next_id;
  t->daemon = daemon != 0;
  t->run.run = task_run;
  t->state = SK_NEW;
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (!t->daemon) w->live++;
  sk_sched_push(&w->sched, &t->run);
  return t;
}

/* Drops the coroutine and the registry reference of a finished task. */
static void release(lua_State *L, sk_ctx *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_pushnil(L);
  lua_setiuservalue(L, -2, UV_CO);
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
  t->co = NULL;
}

/* Stores the outcome of a coroutine that returned or raised, using the
** driving state `L` as scratch space, then completes the task. */
static void finish(lua_State *L, sk_ctx *t, int st, int nres) {
  lua_State *co = t->co;
  int result;
  luaL_checkstack(L, nres + 6, "task results");
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  int u = lua_gettop(L);
  if (st == LUA_OK) {
    lua_xmove(co, L, nres);
    if (nres == 1) {
      lua_setiuservalue(L, u, UV_PAYLOAD);
    } else if (nres > 1) {
      lua_createtable(L, nres, 0);
      lua_insert(L, u + 1);
      for (int i = nres; i >= 1; i--) lua_rawseti(L, u + 1, i);
      lua_setiuservalue(L, u, UV_PAYLOAD);
    }
    t->nres = nres;
    result = SK_RES_OK;
  } else {
    lua_xmove(co, L, 1);
    if (t->cancel_requested && sk_error_is(L, -1, "cancelled")) {
      result = SK_RES_CANCELLED;
    } else {
      const char *msg = lua_tostring(L, -1);
      result = SK_RES_FAILED;
      if (msg == NULL) {
        if (luaL_callmeta(L, -1, "__tostring") && lua_isstring(L, -1)) {
          msg = lua_tostring(L, -1);
        } else {
          msg = lua_pushfstring(L, "(error object is a %s value)",
                                luaL_typename(L, -1));
        }
      }
      luaL_traceback(L, co, msg, 0);
      lua_setiuservalue(L, u, UV_TRACE);
      lua_settop(L, u + 1);  /* drops the message made for the traceback */
      /* skein.failed[task] = a sentinel whose __gc reports the failure
      ** if nobody observed it; only failed tasks carry a finalizer. */
      lua_getfield(L, LUA_REGISTRYINDEX, "skein.failed");
      lua_pushvalue(L, u);
      lua_newuserdatauv(L, 0, 1);
      luaL_setmetatable(L, FAILURE_MT);
      lua_pushvalue(L, u);
      lua_setiuservalue(L, -2, 1);
      lua_rawset(L, -3);
      lua_pop(L, 1);
    }
    lua_setiuservalue(L, u, UV_PAYLOAD);
    /* Runs the __close handlers the error left pending. */
    lua_resetthread(co);
  }
  lua_settop(L, u - 1);
  release(L, t);
  complete(t, result);
}

/* The ready-queue entry point: starts or resumes the task's coroutine. */
static void task_run(sk_runnable *r) {
  sk_ctx *t = (sk_ctx *)r;
  sk_worker *w = t->w;
  lua_State *from = w->cur_L;
  if (t->state == SK_DONE) {  /* cancelled before it ever ran */
    release(from, t);
    return;
  }
  lua_State *co = t->co;
  sk_ctx *prev = w->current;
  int nres, nargs = t->state == SK_NEW ? lua_gettop(co) - 1 : 0;
  t->state = SK_RUNNING;
  w->current = t;
  w->cur_L = co;
  int st = lua_resume(co, from, nargs, &nres);
  w->current = prev;
  w->cur_L = from;
  if (st == LUA_YIELD) {
    if (t->state == SK_RUNNING) {  /* a bare coroutine.yield(): reschedule */
      lua_pop(co, nres);
      t->state = SK_READY;
      sk_sched_push(&w->sched, &t->run);
    }
    return;
  }
  finish(from, t, st, nres);
}

int sk_task_cancel(sk_ctx *t) {
  if (t->state == SK_DONE) return 0;
  t->cancel_requested = 1;
  if (t->state == SK_NEW) {
    complete(t, SK_RES_CANCELLED);  /* task_run releases it later */
  } else {
    sk_ctx_wake(t);
  }
  return 1;
}

int sk_task_push_results(lua_State *L, sk_ctx *t, int idx) {
  idx = lua_absindex(L, idx);
  t->observed = 1;
  if (t->result == SK_RES_FAILED) {
    lua_getiuservalue(L, idx, UV_PAYLOAD);
    return lua_error(L);
  }
  if (t->result == SK_RES_CANCELLED) {
    return sk_error_raise(L, "cancelled", "task %I was cancelled",
                          (LUAI_UACINT)t->id);
  }
  if (t->nres == 0) return 0;
  lua_getiuservalue(L, idx, UV_PAYLOAD);
  if (t->nres == 1) return 1;
  luaL_checkstack(L, t->nres, "too many results");
  int tbl = lua_gettop(L);
  for (int i = 1; i <= t->nres; i++) lua_rawgeti(L, tbl, i);
  lua_remove(L, tbl);
  return t->nres;
}

void sk_task_report(lua_State *L, int idx) {
  sk_ctx *t = sk_task_test(L, idx);
  if (t == NULL || t->state != SK_DONE || t->result != SK_RES_FAILED ||
      t->observed || t->reported) {
    return;
  }
  t->reported = 1;
  t->w->failures++;
  lua_getiuservalue(L, lua_absindex(L, idx), UV_TRACE);
  fprintf(stderr, "skein: task %lld failed and was never joined:\n%s\n",
          (long long)t->id, lua_tostring(L, -1));
  fflush(stderr);
  lua_pop(L, 1);
}

size_t sk_task_report_failures(sk_worker *w) {
  lua_State *L = w->L;
  if (lua_getfield(L, LUA_REGISTRYINDEX, "skein.failed") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      sk_task_report(L, -1);
    }
  }
  lua_pop(L, 1);
  return w->failures;
}

/* ------------------------------------------------------------- methods */

/* skein._is_task(v) -> whether v is a task of this worker */
static int l_is_task(lua_State *L) {
  lua_pushboolean(L, sk_task_test(L, 1) != NULL);
  return 1;
}

/* skein.spawn(fn, ...) or skein.spawn{fn=, args=, name=, daemon=} */
static int l_spawn(lua_State *L) {
  if (lua_type(L, 1) != LUA_TTABLE || is_callable(L, 1)) {
    sk_task_spawn(L, 1, lua_gettop(L) - 1, 0);
    return 1;
  }
  static const char *const known[] = {"fn", "args", "name", "daemon", NULL};
  luaL_argcheck(L, lua_gettop(L) == 1, 2, "no arguments after an options table");
  sk_check_options(L, 1, known);
  lua_settop(L, 1);
  lua_getfield(L, 1, "fn");                               /* 2 */
  luaL_argcheck(L, is_callable(L, 2), 1, "options.fn must be a function");
  int daemon = lua_getfield(L, 1, "daemon") != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  int tn = lua_getfield(L, 1, "name");                    /* 3 */
  luaL_argcheck(L, tn == LUA_TNIL || tn == LUA_TSTRING, 1,
                "options.name must be a string");
  int ta = lua_getfield(L, 1, "args");                    /* 4 */
  luaL_argcheck(L, ta == LUA_TNIL || ta == LUA_TTABLE, 1,
                "options.args must be a table");
  lua_Integer n = 0;
  if (ta == LUA_TTABLE) {
    lua_getfield(L, 4, "n");
    n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (lua_Integer)lua_rawlen(L, 4);
    lua_pop(L, 1);
    luaL_argcheck(L, n >= 0 && n < 1000000, 1, "options.args is too long");
    luaL_checkstack(L, (int)n + 8, "too many arguments to spawn");
  }
  lua_pushvalue(L, 2);                                    /* 5: fn */
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, 4, i);
  sk_task_spawn(L, 5, (int)n, daemon);
  if (tn == LUA_TSTRING) {
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, UV_NAME);
  }
  return 1;
}

/* A task as a wait source: done when it has finished. The joined task is
** at stack index 1. */
static int join_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_ctx *t = obj;
  (void)round;
  if (t->state == SK_DONE) return sk_task_push_results(L, t, 1);
  if (expired) {
    return sk_error_raise(L, "timeout", "join of task %I timed out", (LUAI_UACINT)t->id);
  }
  return SK_WAIT_MORE;
}

static int join_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_link_watch(&((sk_ctx *)obj)->watchers, c);
}

static int join_unlink(void *obj, sk_ctx *c) {
  (void)obj;
  return sk_unlink_watch(c);
}

static const sk_source join_source = {
    .name = TASK_MT, .attempt = join_attempt, .link = join_link, .unlink = join_unlink};

/* task:join([timeout]) -> the task's results, or raises its error */
static int l_task_join(lua_State *L) {
  sk_ctx *t = sk_task_check(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  if (t == sk_current(L)) sk_error_raise(L, "deadlock", "a task cannot join itself");
  lua_settop(L, 1);
  return sk_wait_on(L, &join_source, t, d, 0);
}

/* task:cancel() -> true when a cancellation was requested */
static int l_task_cancel(lua_State *L) {
  lua_pushboolean(L, sk_task_cancel(sk_task_check(L, 1)));
  return 1;
}

static int l_task_done(lua_State *L) {
  lua_pushboolean(L, sk_task_check(L, 1)->state == SK_DONE);
  return 1;
}

static const char *status_name(const sk_ctx *t) {
  if (t->state == SK_NEW) return "pending";
  if (t->state != SK_DONE) return "running";
  if (t->result == SK_RES_OK) return "done";
  return t->result == SK_RES_FAILED ? "failed" : "cancelled";
}

static int l_task_status(lua_State *L) {
  lua_pushstring(L, status_name(sk_task_check(L, 1)));
  return 1;
}

/* task:error() -> the error of a failed task (marking it observed), else nil */
static int l_task_error(lua_State *L) {
  sk_ctx *t = sk_task_check(L, 1);
  if (t->state != SK_DONE || t->result == SK_RES_OK) return 0;
  t->observed = 1;
  if (t->result == SK_RES_CANCELLED) {
    sk_error_push(L, "cancelled", "task %I was cancelled", (LUAI_UACINT)t->id);
    return 1;
  }
  lua_getiuservalue(L, 1, UV_PAYLOAD);
  lua_getiuservalue(L, 1, UV_TRACE);
  return 2;
}

static int l_task_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  sk_ctx *t = sk_task_check(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "id") == 0) {
    lua_pushinteger(L, t->id);
  } else if (k && strcmp(k, "name") == 0) {
    lua_getiuservalue(L, 1, UV_NAME);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int l_task_tostring(lua_State *L) {
  sk_ctx *t = sk_task_check(L, 1);
  lua_getiuservalue(L, 1, UV_NAME);
  const char *name = lua_tostring(L, -1);
  lua_pushfstring(L, "skein.task %I%s%s%s (%s)", (LUAI_UACINT)t->id,
                  name ? " \"" : "", name ? name : "", name ? "\"" : "",
                  status_name(t));
  return 1;
}

static int l_failure_gc(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  sk_task_report(L, -1);
  return 0;
}

/* skein.current() -> the running task, or nil at the root */
static int l_current(lua_State *L) {
  sk_ctx *c = sk_current(L);
  if (c->co == NULL) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  return 1;
}

/* ---------------------------------------------------------- time, sleep */

static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* Sleep waits on nothing but its deadline, and suspends at least once. */
static int sleep_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)L;
  (void)obj;
  return round > 0 && expired ? 0 : SK_WAIT_MORE;
}

static const sk_source sleep_source = {.name = "sleep", .attempt = sleep_attempt};

/* skein.sleep(seconds): suspends at least once, even for 0 */
static int l_sleep(lua_State *L) {
  luaL_checktype(L, 1, LUA_TNUMBER);
  uint64_t d = sk_check_deadline(L, 1);
  lua_settop(L, 0);
  return sk_wait_on(L, &sleep_source, NULL, d, 0);
}

/* Pops the scope skein.timeout pushed and turns its own expiry into a plain
** timeout error; other errors pass through untouched. */
static int timeout_k(lua_State *L, int status, lua_KContext kctx) {
  sk_ctx *c = sk_current(L);
  sk_scope *sc = lua_touserdata(L, 1);
  (void)kctx;
  c->scope = sc->parent;
  if (status == LUA_OK || status == LUA_YIELD) return lua_gettop(L) - 1;
  if (sk_error_is(L, -1, "timeout")) {
    lua_getfield(L, -1, "scope");
    if (lua_touserdata(L, -1) == sc) {
      return sk_error_raise(L, "timeout", "timed out after %f s", sc->seconds);
    }
    lua_pop(L, 1);
  }
  return lua_error(L);
}

/* skein.timeout(seconds, fn, ...) -> fn's results, or raises `timeout` */
static int l_timeout(lua_State *L) {
  luaL_checktype(L, 1, LUA_TNUMBER);
  uint64_t d = sk_check_deadline(L, 1);
  luaL_argcheck(L, is_callable(L, 2), 2, "function expected");
  sk_ctx *c = sk_current(L);
  double secs = lua_tonumber(L, 1);
  sk_scope *sc = lua_newuserdatauv(L, sizeof *sc, 0);
  lua_replace(L, 1);
  sc->parent = c->scope;
  sc->seconds = secs;
  sc->deadline = d;
  if (sc->parent && sc->parent->eff <= d) {
    sc->eff = sc->parent->eff;
    sc->owner = sc->parent->owner;
  } else {
    sc->eff = d;
    sc->owner = sc;
  }
  c->scope = sc;
  return timeout_k(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, timeout_k), 0);
}

/* ------------------------------------------------------ park / unpark */

/* The building block of the Lua-written pools: a context parks itself and
** another context of the same worker unparks it by its token (its task, or
** "root" for the root context). */

/* Parking waits for skein._unpark to set the context's `unparked` flag;
** the deadline counts only after the first suspension. */
static int park_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_ctx *c = obj;
  if (c->unparked) {
    c->unparked = 0;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (round > 0 && expired) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return SK_WAIT_MORE;
}

static const sk_source park_source = {.name = "park", .attempt = park_attempt};

/* skein._park([timeout]) -> true when unparked, false on timeout */
static int l_park(lua_State *L) {
  uint64_t d = sk_check_deadline(L, 1);
  lua_settop(L, 0);
  return sk_wait_on(L, &park_source, sk_current(L), d, 0);
}

/* skein._parker() -> the token _unpark takes for the running context */
static int l_parker(lua_State *L) {
  sk_ctx *c = sk_current(L);
  if (c->co == NULL) lua_pushliteral(L, "root");
  else lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  return 1;
}

/* skein._unpark(token): wakes a parked context; remembered if not parked */
static int l_unpark(lua_State *L) {
  sk_ctx *c = lua_type(L, 1) == LUA_TSTRING ? &sk_worker_of(L)->root : sk_task_check(L, 1);
  if (c->state == SK_DONE) return 0;
  c->unparked = 1;
  sk_ctx_wake(c);
  return 0;
}

/* core._interrupting(): whether the error that last left a protected call
** of this worker with a traceback was an interrupt. A `<close>` handler
** reached by an interrupt gets that traceback string, not the error object,
** and asks this to tell Ctrl-C from other errors (pool.lua). */
static int l_interrupting(lua_State *L) {
  lua_pushboolean(L, sk_worker_of(L)->int_escaped);
  return 1;
}

int sk_yield(lua_State *L);

void sk_task_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"join", l_task_join},     {"cancel", l_task_cancel},
      {"done", l_task_done},     {"status", l_task_status},
      {"error", l_task_error},   {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"spawn", l_spawn},     {"sleep", l_sleep},     {"yield", sk_yield},
      {"now", l_now},         {"timeout", l_timeout}, {"current", l_current},
      {"_park", l_park},      {"_parker", l_parker},  {"_unpark", l_unpark},
      {"_is_task", l_is_task}, {"_interrupting", l_interrupting},
      {NULL, NULL}};
  static const sk_type task = {.name = TASK_MT, .methods = methods, .index = l_task_index,
                               .tostring = l_task_tostring};
  static const sk_type failure = {.name = FAILURE_MT, .gc = l_failure_gc};
  sk_type_register(L, &task);
  sk_type_register(L, &failure);
  luaL_getmetatable(L, TASK_MT);
  sk_worker_of(L)->task_mt = lua_topointer(L, -1);
  sk_worker_of(L)->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.failed");
  luaL_setfuncs(L, funcs, 0);
}
