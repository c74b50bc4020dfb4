/*
** task.c — the coroutine engine's Lua face (the engine is
** runtime/host/tasks.c): skein.spawn and task objects (join, cancel, done,
** status), sleep, now, timeout scopes, park and unpark.
*/
#include <stdio.h>
#include <string.h>

#include "sk_bind.h"

#define TASK_MT SK_TASK_MT

/* ------------------------------------------------------------- methods */

/* skein._is_task(v) -> whether v is a task of this worker */
static int l_is_task(lua_State *L) {
  lua_pushboolean(L, sk_task_test(L, 1) != NULL);
  return 1;
}

/* skein.spawn(fn, ...) or skein.spawn{fn=, args=, name=, daemon=} */
static int l_spawn(lua_State *L) {
  if (lua_type(L, 1) != LUA_TTABLE || sk_callable(L, 1)) {
    sk_task_spawn(L, 1, lua_gettop(L) - 1, 0);
    return 1;
  }
  static const char *const known[] = {"fn", "args", "name", "daemon", NULL};
  luaL_argcheck(L, lua_gettop(L) == 1, 2, "no arguments after an options table");
  sk_check_options(L, 1, known);
  lua_settop(L, 1);
  lua_getfield(L, 1, "fn");                               /* 2 */
  luaL_argcheck(L, sk_callable(L, 2), 1, "options.fn must be a function");
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
    lua_setiuservalue(L, -2, SK_TASK_UV_NAME);
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

static const sk_source join_source = {
    .name = TASK_MT, .what = "join",
    .attempt = join_attempt, .link = join_link, .unlink = sk_unlink_watch};

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
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, SK_TASK_UV_PAYLOAD);  /* 2: {error, traceback} */
  lua_rawgeti(L, 2, 1);
  lua_rawgeti(L, 2, 2);
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
    lua_getiuservalue(L, 1, SK_TASK_UV_NAME);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int l_task_tostring(lua_State *L) {
  sk_ctx *t = sk_task_check(L, 1);
  lua_getiuservalue(L, 1, SK_TASK_UV_NAME);
  const char *name = lua_tostring(L, -1);
  lua_pushfstring(L, "skein.task %I%s%s%s (%s)", (LUAI_UACINT)t->id,
                  name ? " \"" : "", name ? name : "", name ? "\"" : "",
                  status_name(t));
  return 1;
}

/* skein.current() -> the running task, or nil at the root */
static int l_current(lua_State *L) {
  sk_ctx *c = sk_current(L);
  if (c->co == NULL) return 0;
  sk_task_push(L, c);
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
  luaL_argcheck(L, sk_callable(L, 2), 2, "function expected");
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
  else sk_task_push(L, c);
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

/* coroutine.running, as Lua's, noting when a task takes its own coroutine:
** a finished task's coroutine is reused for a later task (tasks.c) unless
** its code may have kept it, and this is how Lua code gets it. */
static int l_co_running(lua_State *L) {
  sk_ctx *c = sk_current(L);
  if (c->co == L) c->exposed = 1;
  int ismain = lua_pushthread(L);
  lua_pushboolean(L, ismain);
  return 2;
}

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
  sk_type_register(L, &task);
  luaL_getmetatable(L, TASK_MT);
  sk_worker_of(L)->task_mt = lua_topointer(L, -1);
  sk_worker_of(L)->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sk_task_engine_open(L);
  luaL_setfuncs(L, funcs, 0);
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    lua_pushcfunction(L, l_co_running);
    lua_setfield(L, -2, "running");
  }
  lua_pop(L, 1);
}
