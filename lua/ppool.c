/*
** ppool.c — skein._processpool and its handle: argument checks, the
** userdata and the methods (stdlib/skein/pool.lua is the front end). The
** engine (workers, jobs, crashes, restarts) is runtime/host/proc_pool.c
** (sk_ppool.h).
**
** The handle owns a pointer to the pool; __gc releases it (the engine
** frees it once its libuv handles have closed).
*/
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sk_future.h"
#include "sk_process.h"
#include "../runtime/host/sk_ppool.h"

#define PPOOL_MT "skein.ProcessPool"

static sk_ppool *check_ppool(lua_State *L, int idx) {
  sk_ppool **u = luaL_checkudata(L, idx, PPOOL_MT);
  if (*u == NULL) sk_error_raise(L, "closed", "cannot use a process pool after it was closed");
  return *u;
}

/* Pushes the error a broken pool raises at submit: its initializer's. */
static int raise_broken(lua_State *L, sk_ppool *p) {
  const sk_buf *b = &p->init_error;
  int top = lua_gettop(L);
  if (b->len == 0 ||
      sk_marshal_decode(L, b->data, b->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS) != 3) {
    lua_settop(L, top);
    return sk_error_raise(L, "remote", "the pool is broken: its initializer failed");
  }
  sk_error_push(L, "remote", "the pool's initializer failed: %s", lua_tostring(L, top + 1));
  lua_pushvalue(L, top + 3);
  lua_setfield(L, -2, "value");
  lua_pushvalue(L, top + 2);
  lua_setfield(L, -2, "traceback");
  return lua_error(L);
}

/* skein._processpool(size, max_tasks, retries, name, init_fn, init_args...) */
static int l_ppool_new(lua_State *L) {
  sk_worker *w = sk_worker_of(L);
  lua_Integer size = luaL_checkinteger(L, 1);
  lua_Integer max_tasks = luaL_optinteger(L, 2, 0);
  lua_Integer retries = luaL_optinteger(L, 3, 0);
  const char *name = luaL_optstring(L, 4, "process-pool");
  luaL_argcheck(L, size >= 1 && size <= 1024, 1, "size must be between 1 and 1024");
  luaL_argcheck(L, retries >= 0 && retries <= INT_MAX, 3, "retries must not be negative");
  luaL_argcheck(L, max_tasks >= 0 && max_tasks <= INT_MAX, 2, "max_tasks must not be negative");
  sk_check_worker_exe(L);
  sk_buf init = {0};
  if (!lua_isnoneornil(L, 5) && sk_marshal_encode_xproc(L, 5, lua_gettop(L) - 4, &init, "init") != 0) {
    return lua_error(L);
  }
  sk_frame_refuse(L, &init, 1, "init");
  sk_ppool **u = lua_newuserdatauv(L, sizeof *u, 0);   /* before the start: may raise */
  *u = NULL;
  luaL_setmetatable(L, PPOOL_MT);
  int rc;
  *u = sk_ppool_new(w, (int)size, (int)max_tasks, (int)retries, name, &init, &rc);
  if (*u == NULL) return sk_error_raise(L, "memory", "not enough memory for a pool");
  if (rc != 0) return sk_spawn_error(L, rc, NULL);
  return 1;
}

/* pool:_submit(timeout, fn, ...) -> future. Its first upvalue is the
** pool's metatable: the handle is checked against it without the registry
** lookup by name that luaL_checkudata makes on every submit; the second and
** third are sk_call_encode's box and the box's metatable. */
/* Submits fn (at `first`, its arguments above it) to p; `up` is the first
** of the two upvalues that hold the encoding box (sk_call_encode). */
static int ppool_submit_at(lua_State *L, sk_ppool *p, double t, int first, int up) {
  if (p->closed || p->terminating) return sk_error_raise(L, "closed", "the pool is closed: no more submits");
  if (p->broken) return raise_broken(L, p);
  sk_buf local, *code = sk_call_encode(L, first, up, 1, &local);
  sk_frame_refuse(L, code, 8, "fn+args");
  sk_future *f;
  int rc = sk_ppool_submit(p, code, t > 0 ? (uint64_t)(t * 1e9) : 0, &f);
  sk_call_encode_done(L, up, code, &local);
  if (rc != 0) return sk_error_raise(L, "memory", "not enough memory for a job");
  sk_future_push(L, &f->obj);
  return 1;
}

static int l_ppool_submit(lua_State *L) {
  sk_ppool **u = lua_touserdata(L, 1);
  int ours = u && lua_getmetatable(L, 1) && lua_rawequal(L, -1, lua_upvalueindex(1));
  if (u && ours) lua_pop(L, 1);
  sk_ppool *p = ours && *u ? *u : check_ppool(L, 1);   /* else raises as usual */
  double t = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, t >= 0 && t == t, 2, "timeout must be a non-negative number");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  return ppool_submit_at(L, p, t, 3, 2);
}

static int ppool_hook(lua_State *L, void *ud, double t, int first, int up) {
  sk_ppool *p = *(sk_ppool **)ud;
  return p ? ppool_submit_at(L, p, t, first, up) : -1;
}

static const sk_submit_hook ppool_submit_hook = {ppool_hook};

static int l_ppool_close(lua_State *L) {
  sk_ppool_close(check_ppool(L, 1));
  return 0;
}

static int l_ppool_terminate(lua_State *L) {
  sk_ppool_terminate(check_ppool(L, 1));
  return 0;
}

/* A closed process pool as a wait source: ready when every worker has
** exited and no start is pending. */
static int join_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  if (sk_ppool_exited(obj)) return 0;
  if (expired) return sk_error_raise(L, "timeout", "pool join timed out");
  return SK_WAIT_MORE;
}

static int join_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_link_watch(&((sk_ppool *)obj)->exit_watchers, c);
}

static const sk_source join_source = {
    .name = PPOOL_MT, .attempt = join_attempt, .link = join_link, .unlink = sk_unlink_watch};

static int l_ppool_join(lua_State *L) {
  sk_ppool *p = check_ppool(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  if (!p->closed) return sk_error_raise(L, "usage", "call pool:close() or pool:terminate() before pool:join()");
  lua_settop(L, 1);
  return sk_wait_on(L, &join_source, p, d, 0);
}

static int l_ppool_stats(lua_State *L) {
  sk_ppool *p = check_ppool(L, 1);
  lua_createtable(L, 0, 9);
  lua_Integer v[] = {p->size, p->busy, (lua_Integer)p->queued, (lua_Integer)p->done,
                     (lua_Integer)p->failed, (lua_Integer)p->restarted,
                     (lua_Integer)p->submitted, p->alive};
  const char *k[] = {"size", "busy", "queued", "done", "failed", "restarted", "submitted", "alive"};
  for (int i = 0; i < 8; i++) {
    lua_pushinteger(L, v[i]);
    lua_setfield(L, -2, k[i]);
  }
  lua_pushboolean(L, p->closed);
  lua_setfield(L, -2, "closed");
  lua_createtable(L, p->size, 0);
  for (int i = 0; i < p->size; i++) {
    lua_pushinteger(L, p->workers[i].running ? p->workers[i].pid : 0);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "pids");
  lua_pushnumber(L, (double)sk_hist_quantile(&p->qwait, 0.5) / 1e9);
  lua_setfield(L, -2, "queue_wait_p50");
  lua_pushnumber(L, (double)sk_hist_quantile(&p->qwait, 0.99) / 1e9);
  lua_setfield(L, -2, "queue_wait_p99");
  lua_createtable(L, p->size, 0);
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    lua_createtable(L, 0, 2);
    /* a job running now counts up to now */
    uint64_t busy = pw->busy_ns + (pw->job && pw->running ? uv_hrtime() - pw->head_since : 0);
    lua_pushnumber(L, (double)busy / 1e9);
    lua_setfield(L, -2, "busy");
    lua_pushinteger(L, (lua_Integer)pw->jobs);
    lua_setfield(L, -2, "jobs");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "workers");
  return 1;
}

/* __gc: the engine closes a pool dropped mid-run (its workers finish the
** queue, which the owner waits for as live work, and quit), or kills its
** workers at the owner's close. */
static int l_ppool_gc(lua_State *L) {
  sk_ppool **u = luaL_checkudata(L, 1, PPOOL_MT);
  sk_ppool *p = *u;
  if (p == NULL) return 0;
  *u = NULL;
  sk_ppool_release(p);
  return 0;
}

void sk_ppool_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"_submit", l_ppool_submit}, {"close", l_ppool_close}, {"terminate", l_ppool_terminate},
      {"join", l_ppool_join},      {"stats", l_ppool_stats}, {NULL, NULL}};
  static const sk_type type = {.name = PPOOL_MT, .methods = methods, .gc = l_ppool_gc};
  sk_type_register(L, &type);
  luaL_getmetatable(L, PPOOL_MT);
  lua_getfield(L, -1, "__index");
  lua_pushvalue(L, -2);
  lua_pushnil(L);                       /* the box, made by the first submit */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sk_call_box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcclosure(L, l_ppool_submit, 3);
  lua_setfield(L, -2, "_submit");
  lua_pop(L, 2);
  sk_submit_hook_set(L, PPOOL_MT, &ppool_submit_hook);
  lua_pushcfunction(L, l_ppool_new);
  lua_setfield(L, -2, "_processpool");
}
