/*
** pool.c — skein._threadpool and its handle: argument checks, the
** userdata, the methods and the join wait source (stdlib/skein/pool.lua is
** the front end). The engine (jobs, the worker threads, timeouts,
** recycling, reaping) is runtime/host/thread_pool.c (sk_tpool.h).
**
** Each Lua handle holds a reference to the pool (an sk_obj); __gc releases
** the pool through the engine (sk_tpool_release), then drops it.
*/
#include <string.h>

#include "sk_future.h"
#include "../runtime/host/sk_tpool.h"

#define POOL_MT SK_TPOOL_MT

static sk_tpool *check_pool(lua_State *L, int idx) {
  return (sk_tpool *)sk_handle_check(L, idx, POOL_MT);
}

static void push_pool(lua_State *L, sk_obj *o) { sk_handle_push(L, o, POOL_MT); }

/* skein._threadpool(size, max_tasks, name, init_fn, init_args...) */
static int l_pool_new(lua_State *L) {
  lua_Integer size = luaL_checkinteger(L, 1);
  lua_Integer max_tasks = luaL_optinteger(L, 2, 0);
  const char *name = luaL_optstring(L, 3, "pool");
  luaL_argcheck(L, size >= 1 && size <= 4096, 1, "size must be between 1 and 4096");
  luaL_argcheck(L, max_tasks >= 0, 2, "max_tasks must be a positive integer");
  sk_buf init = {0};
  if (!lua_isnoneornil(L, 4) && sk_marshal_encode(L, 4, lua_gettop(L) - 3, &init, "init") != 0) {
    return lua_error(L);
  }
  sk_tpool *p = sk_tpool_new((int)size, (int)max_tasks, name, &init, sk_worker_lend(L));
  if (p == NULL) return sk_error_raise(L, "memory", "not enough memory for a pool");
  push_pool(L, &p->obj);
  if (sk_tpool_start(p) == 0) return sk_error_raise(L, "memory", "cannot start any pool thread");
  return 1;
}

/* Submits fn (at `first`, its arguments above it) to p; `up` is the first
** of the two upvalues that hold the encoding box (sk_call_encode). */
static int tpool_submit_at(lua_State *L, sk_tpool *p, double t, int first, int up) {
  uint64_t timeout = t > 0 ? (uint64_t)(t * 1e9) : 0;
  sk_future *fut;
  sk_buf local, *code = sk_call_encode(L, first, up, 0, &local);
  int rc = sk_tpool_submit(p, sk_worker_of(L), code, timeout, &fut);
  sk_call_encode_done(L, up, code, &local);
  if (rc == UV_EPIPE) return sk_error_raise(L, "closed", "the pool is closed: no more submits");
  if (rc != 0) return sk_error_raise(L, "memory", "not enough memory");
  sk_future_push(L, &fut->obj);
  return 1;
}

/* pool:_submit(timeout, fn, ...) -> future */
static int l_pool_submit(lua_State *L) {
  sk_tpool *p = check_pool(L, 1);
  double t = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, t >= 0 && t == t, 2, "timeout must be a non-negative number");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  return tpool_submit_at(L, p, t, 3, 1);              /* upvalues 1, 2: the box */
}

static int tpool_hook(lua_State *L, void *ud, double t, int first, int up) {
  sk_handle *h = ud;
  return h->obj ? tpool_submit_at(L, (sk_tpool *)h->obj, t, first, up) : -1;
}

static const sk_submit_hook tpool_submit_hook = {tpool_hook};

/* Pool:submit(fn, ...) for every kind of pool: stdlib/skein/pool.lua makes
** it with skein._submit_via(owned, slow). For a pool this process owns
** whose engine is a C handle with a submit hook (a thread or a process
** pool: SK_SUBMIT_KEY in its metatable, lua/sk_future.h), it submits
** straight from here through the hook, with the pool's timeout; anything
** else (a coroutine pool, a pool reached through its door, a `fn` that is
** not a function, a closed engine, an odd timeout) goes to `slow`, the Lua
** version, which calls the engine's `_submit`. Upvalues: 1 `owned` (pool
** table -> engine), 2 `slow`, 3 the name "timeout", 4 and 5 the engine
** metatable seen last and its hook (a light userdata, or nil), 6 and 7 the
** encoding box and its metatable, 8 the name SK_SUBMIT_KEY. Why: the Lua
** version's vararg frame, its type() call and the engine's method lookup
** were about 1 400 of the 6 700 instructions a thread-pool submit cost its
** submitter, and calling the engine's `_submit` from here through Lua
** (lua_call, its argument checks) about 330 of the 6 200 left (500 of a
** process pool's 7 000). */
static int submit_slow_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

/* The submit hook of the engine on top of the stack, or NULL; upvalues 4
** and 5 remember the last engine metatable and its hook, so the field is
** looked up once per kind of engine, not per submit. Pops nothing. */
static const sk_submit_hook *engine_hook(lua_State *L) {
  if (!lua_getmetatable(L, -1)) return NULL;
  if (!lua_rawequal(L, -1, lua_upvalueindex(4))) {
    lua_pushvalue(L, lua_upvalueindex(8));
    lua_rawget(L, -2);
    if (lua_type(L, -1) != LUA_TLIGHTUSERDATA) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    lua_replace(L, lua_upvalueindex(5));
    lua_pushvalue(L, -1);
    lua_replace(L, lua_upvalueindex(4));
  }
  lua_pop(L, 1);
  return lua_touserdata(L, lua_upvalueindex(5));
}

static int l_pool_submit_via(lua_State *L) {
  int n = lua_gettop(L);
  if (n >= 2 && lua_type(L, 2) == LUA_TFUNCTION && lua_type(L, 1) == LUA_TTABLE) {
    luaL_checkstack(L, 4, "submit");
    lua_pushvalue(L, 1);
    if (lua_rawget(L, lua_upvalueindex(1)) == LUA_TUSERDATA) {
      const sk_submit_hook *h = engine_hook(L);
      void *ud = lua_touserdata(L, -1);
      lua_pushvalue(L, lua_upvalueindex(3));
      int tt = lua_rawget(L, 1);                    /* self.timeout */
      double t = tt == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
      /* The engine stays alive once popped: owned[self] holds it, and
      ** self is at index 1. */
      lua_settop(L, n);
      if (h && (tt == LUA_TNIL || tt == LUA_TNUMBER) && t >= 0 && t == t) {
        int r = h->submit(L, ud, t, 2, 6);
        if (r >= 0) return r;
      }
    }
    lua_settop(L, n);
  }
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_callk(L, n, LUA_MULTRET, 0, submit_slow_k);
  return submit_slow_k(L, LUA_OK, 0);
}

/* skein._submit_via(owned, slow) -> Pool:submit (above) */
static int l_submit_via(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  lua_pushliteral(L, "timeout");
  lua_pushnil(L);               /* the engine metatable seen last */
  lua_pushnil(L);               /* ... and its hook */
  lua_pushnil(L);               /* the encoding box, made by the first submit */
  lua_createtable(L, 0, 1);     /* ... and its metatable */
  lua_pushcfunction(L, sk_call_box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, SK_SUBMIT_KEY);
  lua_pushcclosure(L, l_pool_submit_via, 8);
  return 1;
}

/* pool:close(): no more submits; workers exit once the queue is drained */
static int l_pool_close(lua_State *L) {
  sk_tpool_close(check_pool(L, 1));
  return 0;
}

/* pool:terminate(): cancels queued jobs, interrupts running ones */
static int l_pool_terminate(lua_State *L) {
  sk_tpool_terminate(check_pool(L, 1));
  return 0;
}

static int exited(void *obj) { return ((sk_tpool *)obj)->alive == 0; }

/* A closed pool as a wait source: ready when every worker has exited. */
static int join_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_tpool *p = obj;
  (void)round;
  uv_mutex_lock(&p->lock);
  int done = p->alive == 0;
  uv_mutex_unlock(&p->lock);
  if (done) {
    sk_tpool_join_exited(p);
    return 0;
  }
  if (expired) return sk_error_raise(L, "timeout", "pool join timed out");
  return SK_WAIT_MORE;
}

static int join_link(void *obj, sk_ctx *c, int round) {
  sk_tpool *p = obj;
  (void)round;
  return sk_link_shared(c, &p->lock, &p->exit_waiters, exited, p);
}

static int join_unlink(void *obj, sk_ctx *c) {
  sk_tpool *p = obj;
  return sk_unlink_shared(c, &p->lock, &p->exit_waiters);
}

static const sk_source join_source = {
    .name = POOL_MT, .attempt = join_attempt, .link = join_link, .unlink = join_unlink};

/* pool:join([timeout]): waits for every worker to exit (after close) */
static int l_pool_join(lua_State *L) {
  sk_tpool *p = check_pool(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  uv_mutex_lock(&p->lock);
  int closed = p->closed;
  uv_mutex_unlock(&p->lock);
  if (!closed) return sk_error_raise(L, "usage", "call pool:close() or pool:terminate() before pool:join()");
  lua_settop(L, 1);
  return sk_wait_on(L, &join_source, p, d, 0);
}

/* pool:stats() -> {size=, busy=, queued=, done=, failed=, restarted=, submitted=,
** alive=, closed=, queue_wait_p50=, queue_wait_p99=, workers={{busy=, jobs=}...}} */
static int l_pool_stats(lua_State *L) {
  sk_tpool *p = check_pool(L, 1);
  sk_tpool_stats s;
  sk_tpool_get_stats(p, &s);
  int n = (int)s.size;          /* fixed at creation */
  uint64_t *busy = lua_newuserdatauv(L, sizeof *busy * 2 * (size_t)(n ? n : 1), 0);
  uint64_t *jobs = busy + n;
  sk_tpool_worker_stats(p, busy, jobs, n);
  lua_createtable(L, 0, 12);
  lua_pushnumber(L, (double)s.qwait_p50 / 1e9);
  lua_setfield(L, -2, "queue_wait_p50");
  lua_pushnumber(L, (double)s.qwait_p99 / 1e9);
  lua_setfield(L, -2, "queue_wait_p99");
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, (double)busy[i] / 1e9);
    lua_setfield(L, -2, "busy");
    lua_pushinteger(L, (lua_Integer)jobs[i]);
    lua_setfield(L, -2, "jobs");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "workers");
  lua_Integer v[] = {s.size, s.busy, s.queued, s.done, s.failed, s.restarted, s.submitted, s.alive};
  const char *k[] = {"size", "busy", "queued", "done", "failed", "restarted", "submitted", "alive"};
  for (int i = 0; i < 8; i++) {
    lua_pushinteger(L, v[i]);
    lua_setfield(L, -2, k[i]);
  }
  lua_pushboolean(L, s.closed);
  lua_setfield(L, -2, "closed");
  lua_remove(L, -2);            /* the scratch userdata */
  return 1;
}

/* __gc: closes the pool so its workers exit once the queue is drained;
** at the owning worker's close it waits for them (sk_tpool_release tells
** the whole story), then drops this handle's reference. */
static int l_pool_gc(lua_State *L) {
  sk_handle *h = lua_touserdata(L, 1);
  if (h->obj == NULL) return 0;
  sk_tpool_release((sk_tpool *)h->obj, sk_worker_of(L));
  return sk_handle_release(L);
}

void sk_pool_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"_submit", NULL},     {"close", l_pool_close}, {"terminate", l_pool_terminate},
      {"join", l_pool_join}, {"stats", l_pool_stats}, {NULL, NULL}};
  static const sk_type type = {.name = POOL_MT, .methods = methods, .gc = l_pool_gc,
                               .push = push_pool};
  sk_type_register(L, &type);
  /* _submit, with its encoding box and the box's metatable (upvalues). */
  luaL_getmetatable(L, POOL_MT);
  lua_getfield(L, -1, "__index");
  lua_pushnil(L);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sk_call_box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcclosure(L, l_pool_submit, 2);
  lua_setfield(L, -2, "_submit");
  lua_pop(L, 2);
  sk_submit_hook_set(L, POOL_MT, &tpool_submit_hook);
  lua_pushcfunction(L, l_pool_new);
  lua_setfield(L, -2, "_threadpool");
  lua_pushcfunction(L, l_submit_via);
  lua_setfield(L, -2, "_submit_via");
}
