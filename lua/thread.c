/*
** thread.c — skein.thread, skein.self and the thread handle: argument
** checks, the userdata, join and the other methods. The engine (starting
** the OS thread, becoming a worker, running fn, the result, reaping) is
** runtime/host/threads.c (sk_thread.h).
**
** A handle holds one reference to the sk_thread; __gc and __close drop
** it (the thread runs on).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sk_bind.h"
#include "sk_process.h"
#include "../runtime/host/sk_future.h"
#include "../runtime/host/sk_thread.h"

#define THREAD_MT SK_THREAD_MT

typedef struct thread_ud {
  sk_obj *obj;                  /* NULL once closed */
} thread_ud;

/* The handle's object: this process's sk_thread, or (a handle that came
** from another process) a view of the thread's anchor, an sk_future. */
static sk_obj *check_handle(lua_State *L, int idx) {
  thread_ud *u = luaL_checkudata(L, idx, THREAD_MT);
  if (u->obj == NULL) sk_error_raise(L, "closed", "cannot use a thread handle after it was closed");
  return u->obj;
}

#define ANCHOR(o) (sk_thread_is(o) ? NULL : (sk_future *)(o))

static void push_handle(lua_State *L, sk_obj *o) {
  thread_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->obj = o;
  luaL_setmetatable(L, THREAD_MT);
}

/* Builds the error a join raises for a failed thread: as a process's
** (sk_push_remote_failure), so every kind of worker reports alike. */
static int raise_remote(lua_State *L, sk_thread *th) {
  if (th->cmsg) {
    return sk_error_raise(L, "remote", "thread %I could not start: %s",
                          (LUAI_UACINT)th->id, th->cmsg);
  }
  char what[64];
  snprintf(what, sizeof what, "thread %lld", (long long)th->id);
  sk_push_remote_failure(L, &th->result, what);
  return lua_error(L);
}

static int push_result(lua_State *L, sk_thread *th) {
  if (th->failed) return raise_remote(L, th);
  int n = sk_marshal_decode(L, th->result.data, th->result.len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  if (n < 0) return lua_error(L);
  return n;
}

/* A thread worker as a wait source: ready when it has finished. */
static int thread_done(void *obj) { return ((sk_thread *)obj)->done; }

static int join_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_thread *th = obj;
  (void)round;
  uv_mutex_lock(&th->lock);
  int done = th->done;
  uv_mutex_unlock(&th->lock);
  if (done) return push_result(L, th);
  if (expired) {
    return sk_error_raise(L, "timeout", "join of thread %I timed out", (LUAI_UACINT)th->id);
  }
  return SK_WAIT_MORE;
}

static int join_link(void *obj, sk_ctx *c, int round) {
  sk_thread *th = obj;
  (void)round;
  return sk_link_shared(c, &th->lock, &th->waiters, thread_done, th);
}

static int join_unlink(void *obj, sk_ctx *c) {
  sk_thread *th = obj;
  return sk_unlink_shared(c, &th->lock, &th->waiters);
}

static const sk_source join_source = {
    .name = THREAD_MT, .what = "thread join",
    .attempt = join_attempt, .link = join_link, .unlink = join_unlink};

/* worker:join([timeout]) -> fn's results, or raises kind remote/timeout */
static int l_thread_join(lua_State *L) {
  sk_obj *o = check_handle(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  if (ANCHOR(o)) return sk_wait_on(L, &sk_worker_join_source, o, d, 0);
  return sk_wait_on(L, &join_source, o, d, 0);
}

static int l_thread_alive(lua_State *L) {
  sk_obj *o = check_handle(L, 1);
  if (ANCHOR(o)) {
    lua_pushboolean(L, sk_future_state(ANCHOR(o)) < SK_FUT_DONE);
    return 1;
  }
  sk_thread *th = (sk_thread *)o;
  uv_mutex_lock(&th->lock);
  lua_pushboolean(L, !th->done);
  uv_mutex_unlock(&th->lock);
  return 1;
}

static int l_thread_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  sk_obj *o = check_handle(L, 1);
  sk_future *a = ANCHOR(o);
  lua_Integer id = a ? a->id : ((sk_thread *)o)->id;
  const char *name = a ? a->label : ((sk_thread *)o)->name;
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "id") == 0) lua_pushinteger(L, id);
  else if (k && strcmp(k, "name") == 0 && name) lua_pushstring(L, name);
  else if (k && strcmp(k, "kind") == 0) lua_pushliteral(L, "thread");
  else lua_pushnil(L);
  return 1;
}

static int l_thread_tostring(lua_State *L) {
  thread_ud *u = luaL_checkudata(L, 1, THREAD_MT);
  if (u->obj == NULL) {
    lua_pushliteral(L, "skein.thread (closed)");
    return 1;
  }
  sk_future *a = ANCHOR(u->obj);
  sk_thread *th = a ? NULL : (sk_thread *)u->obj;
  int done;
  if (a) {
    done = sk_future_state(a) >= SK_FUT_DONE;
  } else {
    uv_mutex_lock(&th->lock);
    done = th->done;
    uv_mutex_unlock(&th->lock);
  }
  lua_Integer id = a ? a->id : th->id;
  const char *name = a ? a->label : th->name;
  lua_pushfstring(L, "skein.thread %I%s%s%s (%s)", (LUAI_UACINT)id, name ? " \"" : "",
                  name ? name : "", name ? "\"" : "", done ? "done" : "running");
  return 1;
}

/* A thread handle in skein.select: ready when the thread has finished
** (its results, or its failure raised). */
static int thread_try(lua_State *L, sk_obj *o) {
  if (ANCHOR(o)) return sk_worker_end_try(L, o);
  sk_thread *th = (sk_thread *)o;
  uv_mutex_lock(&th->lock);
  int done = th->done;
  uv_mutex_unlock(&th->lock);
  if (!done) return 0;
  int n = push_result(L, th);
  if (n == 0) lua_pushnil(L);
  return n ? n : 1;
}

static int thread_add_waiter(sk_obj *o, const sk_waiter *w) {
  if (ANCHOR(o)) return sk_future_add_waiter(ANCHOR(o), w);
  sk_thread *th = (sk_thread *)o;
  uv_mutex_lock(&th->lock);
  int rc = th->done ? 1 : sk_waitlist_add(&th->waiters, w);
  uv_mutex_unlock(&th->lock);
  return rc;
}

static void thread_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  if (ANCHOR(o)) {
    sk_future_remove_waiter(ANCHOR(o), port, slot);
    return;
  }
  sk_thread *th = (sk_thread *)o;
  uv_mutex_lock(&th->lock);
  sk_waitlist_remove(&th->waiters, port, slot);
  uv_mutex_unlock(&th->lock);
}

static const sk_selectable thread_select = {thread_try, thread_add_waiter, thread_remove_waiter};

/* __gc and __close: drops this handle's reference (the thread runs on). */
static int l_thread_close(lua_State *L) {
  thread_ud *u = luaL_checkudata(L, 1, THREAD_MT);
  if (u->obj) {
    sk_obj_release(u->obj);
    u->obj = NULL;
  }
  return 0;
}

/* skein.thread(fn, ...) or skein.thread{fn=, args=, name=, daemon=, init=,
** init_args=} */
static int l_thread_new(lua_State *L) {
  sk_worker *w = sk_worker_of(L);
  int daemon, ninit;
  char *name;
  sk_worker_args(L, &daemon, &name, &ninit);
  /* Stack: [init, init_args...] fn, args... (the options table is gone). */
  sk_buf init = {0}, code;
  if ((ninit > 0 && sk_marshal_encode(L, 1, ninit, &init, "init+args") != 0) ||
      sk_marshal_encode(L, ninit + 1, lua_gettop(L) - ninit, &code, "fn+args") != 0) {
    free(name);
    sk_buf_free(&init);
    return lua_error(L);
  }
  sk_thread *th = sk_thread_new(w, &init, &code, name, daemon, sk_worker_lend(L));
  if (th == NULL) return sk_error_raise(L, "memory", "not enough memory for a thread");
  push_handle(L, &th->obj);                     /* the handle owns the first ref */
  if (sk_thread_launch(th) != 0) return sk_error_raise(L, "memory", "cannot start an OS thread");
  return 1;
}

/* skein.self() -> {kind=, id=, name=, pid=} */
static int l_self(lua_State *L) {
  sk_worker *w = sk_worker_of(L);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, w->kind);
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, w->self_id);
  lua_setfield(L, -2, "id");
  if (w->self_name) lua_pushstring(L, w->self_name);
  else lua_pushstring(L, w->kind);
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, (lua_Integer)getpid());
  lua_setfield(L, -2, "pid");
  return 1;
}

void sk_thread_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"join", l_thread_join}, {"alive", l_thread_alive}, {"close", l_thread_close}, {NULL, NULL}};
  static const sk_type type = {.name = THREAD_MT, .methods = methods, .index = l_thread_index,
                               .gc = l_thread_close, .close = l_thread_close,
                               .tostring = l_thread_tostring, .push = push_handle,
                               .select = &thread_select};
  sk_type_register(L, &type);
  lua_pushcfunction(L, l_thread_new);
  lua_setfield(L, -2, "thread");
  lua_pushcfunction(L, l_self);
  lua_setfield(L, -2, "self");
}
