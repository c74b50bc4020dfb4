/*
** thread.c — thread workers: skein.thread(fn, ...) runs fn in a new OS
** thread with its own worker (Lua state, loop, scheduler), so it can spawn
** tasks, threads and pools of its own.
**
** The function and its arguments are marshalled in the caller (a value
** that cannot cross fails there, naming its path); results and errors come
** back the same way. A thread is a shared object: its handle can itself be
** sent to other workers, and any of them may join it.
**
** Lifetime: the sk_thread is reference counted: one reference per Lua
** handle, one for the running thread. When the thread ends it posts a call
** to its parent's port; the parent, on its own thread, joins the OS thread
** and updates its count of live work. If the parent is gone by then, the
** thread detaches itself.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sk_bind.h"
#include "sk_process.h"

#define THREAD_MT "skein.Thread"

typedef struct sk_thread {
  sk_obj obj;
  uv_mutex_t lock;              /* guards done, failed, result, cmsg, waiters */
  int done, failed;
  sk_buf code;                  /* fn and args; the thread consumes it */
  sk_buf init;                  /* init and its args (len 0: none); consumed too */
  sk_buf result;                /* results, or (message, traceback, value) */
  char *cmsg;                   /* a failure from before Lua could run */
  sk_waitlist waiters;
  lua_Integer id;
  char *name;
  int daemon;
  uv_thread_t tid;
  sk_port *parent;              /* counted */
  sk_worker *pw;                /* only touched on the parent's thread */
  void *lent;                   /* what the parent lends it (sk_worker_lend) */
} sk_thread;

static lua_Integer next_worker_id;

static void thread_destroy(sk_obj *o) {
  sk_thread *th = (sk_thread *)o;
  sk_buf_free(&th->code);
  sk_buf_free(&th->init);
  sk_buf_free(&th->result);
  sk_waitlist_free(&th->waiters);
  uv_mutex_destroy(&th->lock);
  sk_worker_unlend(th->lent);
  free(th->cmsg);
  free(th->name);
  free(th);
}

static const sk_objtype thread_type = {THREAD_MT, thread_destroy, NULL};

/* -------------------------------------------------- the thread's side */

static void reap(void *arg);
static void reap_orphan(void *arg);

static void thread_main(void *arg) {
  sk_thread *th = arg;
  const char *err = NULL;
  sk_buf out = {0};
  int failed = 0;
  char *cmsg = NULL;
  sk_worker *w = sk_worker_become(SK_WORKER_THREAD, th->id, th->name ? strdup(th->name) : NULL,
                                  th->lent, &err);
  if (w == NULL) {
    failed = 1;
    cmsg = strdup(err);
  } else {
    const char *kind = NULL;
    int rc = -1;
    if (err == NULL) {
      /* The init option runs first (it may register metatables the
      ** arguments need); when it fails, its failure is the outcome. */
      rc = th->init.len ? sk_run_call(w, th->init.data, th->init.len, &out, &kind) : 0;
      if (rc == 0) {
        sk_buf_free(&out);
        rc = sk_run_call(w, th->code.data, th->code.len, &out, &kind);
      }
    }
    sk_buf_free(&th->init);
    sk_buf_free(&th->code);
    if (rc < 0) {
      const char *msg = lua_tostring(w->L, -1);
      cmsg = strdup(msg ? msg : "the thread failed to start");
    }
    failed = rc != 0;
    sk_task_report_failures(w);
    if (sk_worker_close(w) != 0 && !failed) {
      fprintf(stderr, "skein: thread %lld closed with handles still open\n", (long long)th->id);
    }
  }
  uv_mutex_lock(&th->lock);
  th->done = 1;
  th->failed = failed;
  th->result = out;
  th->cmsg = cmsg;
  sk_waitlist_wake_all(&th->waiters);
  uv_mutex_unlock(&th->lock);
  sk_port_call(th->parent, reap, reap_orphan, th);
  sk_worker_count(-1);
}

/* On the parent's thread, after the thread posted its end. */
static void reap(void *arg) {
  sk_thread *th = arg;
  uv_thread_join(&th->tid);
  if (!th->daemon) th->pw->live--;
  sk_port_hold(th->parent, -1);
  sk_port_release(th->parent);
  sk_obj_release(&th->obj);
}

/* On the thread itself, when its parent has already closed. */
static void reap_orphan(void *arg) {
  sk_thread *th = arg;
  pthread_detach(pthread_self());
  sk_port_release(th->parent);
  sk_obj_release(&th->obj);
}

/* ------------------------------------------------- the parent's side */

typedef struct thread_ud {
  sk_obj *obj;                  /* NULL once closed */
} thread_ud;

static sk_thread *check_thread(lua_State *L, int idx) {
  thread_ud *u = luaL_checkudata(L, idx, THREAD_MT);
  if (u->obj == NULL) sk_error_raise(L, "closed", "cannot use a thread handle after it was closed");
  return (sk_thread *)u->obj;
}

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
    .name = THREAD_MT, .attempt = join_attempt, .link = join_link, .unlink = join_unlink};

/* worker:join([timeout]) -> fn's results, or raises kind remote/timeout */
static int l_thread_join(lua_State *L) {
  sk_thread *th = check_thread(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &join_source, th, d, 0);
}

static int l_thread_alive(lua_State *L) {
  sk_thread *th = check_thread(L, 1);
  uv_mutex_lock(&th->lock);
  lua_pushboolean(L, !th->done);
  uv_mutex_unlock(&th->lock);
  return 1;
}

static int l_thread_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  sk_thread *th = check_thread(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "id") == 0) lua_pushinteger(L, th->id);
  else if (k && strcmp(k, "name") == 0 && th->name) lua_pushstring(L, th->name);
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
  sk_thread *th = (sk_thread *)u->obj;
  uv_mutex_lock(&th->lock);
  int done = th->done;
  uv_mutex_unlock(&th->lock);
  lua_pushfstring(L, "skein.thread %I%s%s%s (%s)", (LUAI_UACINT)th->id, th->name ? " \"" : "",
                  th->name ? th->name : "", th->name ? "\"" : "", done ? "done" : "running");
  return 1;
}

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
  sk_thread *th = calloc(1, sizeof *th);
  if (th == NULL ||
      (ninit > 0 && sk_marshal_encode(L, 1, ninit, &th->init, "init+args") != 0) ||
      sk_marshal_encode(L, ninit + 1, lua_gettop(L) - ninit, &th->code, "fn+args") != 0) {
    free(name);
    if (th) sk_buf_free(&th->init);
    free(th);
    return th ? lua_error(L) : sk_error_raise(L, "memory", "not enough memory for a thread");
  }
  if (uv_mutex_init(&th->lock) != 0) {
    sk_buf_free(&th->init);
    sk_buf_free(&th->code);
    free(name);
    free(th);
    return sk_error_raise(L, "memory", "cannot create a thread");
  }
  sk_obj_init(&th->obj, &thread_type);
  th->id = __atomic_add_fetch(&next_worker_id, 1, __ATOMIC_RELAXED);
  th->name = name;
  th->daemon = daemon;
  th->parent = w->port;
  sk_port_retain(w->port);
  th->pw = w;
  th->lent = sk_worker_lend(L);
  push_handle(L, &th->obj);                     /* the handle owns the first ref */
  sk_obj_retain(&th->obj);                      /* the running thread's ref */
  if (!daemon) w->live++;
  sk_port_hold(w->port, 1);
  sk_worker_count(1);
  if (sk_thread_start(&th->tid, thread_main, th) != 0) {
    sk_worker_count(-1);
    if (!daemon) w->live--;
    sk_port_hold(w->port, -1);
    sk_port_release(th->parent);
    sk_obj_release(&th->obj);
    return sk_error_raise(L, "memory", "cannot start an OS thread");
  }
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
                               .tostring = l_thread_tostring, .push = push_handle};
  sk_type_register(L, &type);
  lua_pushcfunction(L, l_thread_new);
  lua_setfield(L, -2, "thread");
  lua_pushcfunction(L, l_self);
  lua_setfield(L, -2, "self");
}
