/*
** tasks.c — the coroutine engine: tasks (spawn, the ready-queue entry that
** resumes them, finishing, cancelling, their results and the report of
** failures nobody saw) and the bookkeeping of groups. Its Lua face is
** lua/task.c and lua/group.c.
**
** A task is a userdata holding its sk_ctx, with two user values
** (sk_task.h): the coroutine, which the task's outcome replaces when it
** ends (nothing, its single result, a table of several results, its error,
** or for a failure {error, traceback}), and its name. Its slot in the worker's anchor table (below) keeps the
** userdata alive from spawn until the task has finished and left the ready
** queue; raw pointers held by the scheduler and watcher lists rely on that.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sk_task.h"

#define FAILURE_MT "skein.TaskFailure"

static void group_member_done(sk_ctx *t);

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
  return t ? t : luaL_checkudata(L, idx, SK_TASK_MT);
}

/* Marks `t` finished: no Lua is called, so this is safe from group
** cancellation and watcher callbacks. */
static void complete(sk_ctx *t, int result) {
  sk_ctx_drop_slot(t);
  t->state = SK_DONE;
  t->result = result;
  if (!t->daemon) t->w->live--;
  if (SK_TRACING()) sk_trace_counter("live tasks", "tasks", (int64_t)t->w->live, NULL, 0, 1);
  sk_watchlist_fire(&t->watchers, t);
  if (t->group) group_member_done(t);
}

/* ------------------------------------------------------------ anchoring */

/* A live task is held by its slot in the worker's anchor table, a plain
** array whose slots this file hands out from a stack kept in C: the slot
** freed last, or the next past the top. Holding a task costs one table
** write each way, where luaL_ref also reads and writes the registry's own
** free list (about 250 instructions per task in all). The table keeps the
** size its busiest moment gave it, as the registry did: replacing it when
** it empties was measured, and the collector, paced by a smaller heap,
** then ran more cycles over the next burst than the slots it saved.
**
** Invariant: every slot up to anchor_top is in the free stack or holds
** exactly one unfinished task (its t->ref), or neither (lost to a memory
** error in the table write, harmlessly); so the free stack never holds
** more than anchor_top <= anchor_cap slots. */

/* Pushes the anchor table and then the task; returns the table's index. */
static int push_anchored(lua_State *L, sk_ctx *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->w->anchor_ref);
  lua_rawgeti(L, -1, t->ref);
  return lua_gettop(L) - 1;
}

void sk_task_push(lua_State *L, sk_ctx *t) {
  push_anchored(L, t);
  lua_remove(L, -2);
}

/* Anchors the new task on top of the stack (it stays there). Raises, with
** nothing held, when the free stack cannot grow. */
static void anchor(lua_State *L, sk_worker *w, sk_ctx *t) {
  int slot;
  if (w->anchor_nfree > 0) {
    slot = w->anchor_free[--w->anchor_nfree];
  } else {
    if (w->anchor_top == w->anchor_cap) {
      int cap = w->anchor_cap ? 2 * w->anchor_cap : 64;
      int *p = realloc(w->anchor_free, (size_t)cap * sizeof *p);
      if (p == NULL) luaL_error(L, "not enough memory");
      w->anchor_free = p;
      w->anchor_cap = cap;
    }
    slot = ++w->anchor_top;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->anchor_ref);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  t->ref = slot;
}

/* Frees the task's slot in the anchor table at index `a`. */
static void unanchor(lua_State *L, sk_ctx *t, int a) {
  sk_worker *w = t->w;
  lua_pushnil(L);
  lua_rawseti(L, a, t->ref);
  w->anchor_free[w->anchor_nfree++] = t->ref;
  t->ref = LUA_NOREF;
}

/* ------------------------------------------------------------ tasks */

sk_ctx *sk_task_spawn(lua_State *L, int fn, int nargs, int daemon) {
  sk_worker *w = sk_worker_of(L);
  fn = lua_absindex(L, fn);
  if (!sk_callable(L, fn)) luaL_typeerror(L, fn, "function");
  luaL_checkstack(L, nargs + 4, "too many arguments to spawn");
  sk_ctx *t = lua_newuserdatauv(L, sizeof *t, SK_TASK_UV_COUNT);
  *t = (sk_ctx){0};
  sk_ctx_init(t, w);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->task_mt_ref);
  lua_setmetatable(L, -2);
  lua_State *co = NULL;
  if (w->co_cached > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->co_cache_ref);
    lua_rawgeti(L, -1, w->co_cached);
    co = lua_tothread(L, -1);
    lua_pushnil(L);
    lua_rawseti(L, -3, w->co_cached--);
    lua_remove(L, -2);
  } else {
    co = lua_newthread(L);
  }
  lua_setiuservalue(L, -2, SK_TASK_UV_CO);
  if (!lua_checkstack(co, nargs + 1)) luaL_error(L, "too many arguments to spawn");
  for (int i = 0; i <= nargs; i++) lua_pushvalue(L, fn + i);
  lua_xmove(L, co, nargs + 1);
  t->co = co;
  t->id = ++w->next_id;
  /* A pool worker's background: tasks its init starts, and the tasks they
  ** start, are daemons, so they never hold up a job's end (a worker drains
  ** its job's tasks before it takes the next one); they run whenever the
  ** worker's loop does. Without this, an init that starts a task that never
  ** ends would stall every job of that worker. */
  t->background = w->spawn_background || (w->current && w->current->background);
  t->daemon = daemon != 0 || t->background;
  t->run.run = task_run;
  t->state = SK_NEW;
  anchor(L, w, t);
  if (!t->daemon) w->live++;
  if (SK_TRACING()) sk_trace_counter("live tasks", "tasks", (int64_t)w->live, NULL, 0, 1);
  sk_sched_push(&w->sched, &t->run);
  return t;
}

/* Finished coroutines a worker keeps for its next tasks. A coroutine whose
** function returned is, once its results are taken, as good as a new one
** (status OK, an empty stack: what lua_newthread gives), so reusing it
** saves making one and collecting one. Kept only when its task ended well
** and its code never took the coroutine itself (coroutine.running, which
** lua/task.c wraps to say so), since then nothing outside can tell. The
** bound keeps what an idle worker holds small (about 1 KiB each); the
** collector still shrinks their stacks. */
#define CO_CACHE 256

static void keep_coroutine(lua_State *L, sk_worker *w, sk_ctx *t, int co_idx) {
  lua_State *co = t->co;
  if (w->co_cached >= CO_CACHE || t->exposed ||
      lua_status(co) != LUA_OK || lua_gettop(co) != 0) {
    return;
  }
  if (lua_gethook(co) != NULL) lua_sethook(co, NULL, 0, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->co_cache_ref);
  lua_pushvalue(L, co_idx);
  lua_rawseti(L, -2, ++w->co_cached);
  lua_pop(L, 1);
}

/* Drops the anchor of a finished task, whose userdata is at a + 1 above
** the anchor table at `a` (push_anchored), and pops everything from `a`
** up. Its user value no longer holds the coroutine (finish, task_run);
** `co_idx`, when not 0, is where the coroutine of a task whose function
** returned is on the stack, and it may be kept for reuse. */
static void release(lua_State *L, sk_ctx *t, int a, int co_idx) {
  if (co_idx) keep_coroutine(L, t->w, t, co_idx);
  unanchor(L, t, a);
  lua_settop(L, a - 1);
  t->co = NULL;
}

/* Stores the outcome of a coroutine that returned or raised, using the
** driving state `L` as scratch space, then completes the task. */
static void finish(lua_State *L, sk_ctx *t, int st, int nres) {
  lua_State *co = t->co;
  int result;
  luaL_checkstack(L, nres + 8, "task results");
  int a = push_anchored(L, t), u = a + 1, c = a + 2;
  /* The coroutine stays on the stack at c while its user value becomes
  ** the outcome. */
  lua_getiuservalue(L, u, SK_TASK_UV_CO);
  if (st == LUA_OK) {
    lua_xmove(co, L, nres);
    if (nres == 0) {
      lua_pushnil(L);
    } else if (nres > 1) {
      lua_createtable(L, nres, 0);
      lua_insert(L, c + 1);
      for (int i = nres; i >= 1; i--) lua_rawseti(L, c + 1, i);
    }
    lua_setiuservalue(L, u, SK_TASK_UV_PAYLOAD);
    t->nres = nres;
    result = SK_RES_OK;
  } else {
    lua_xmove(co, L, 1);                      /* c + 1: the error */
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
      if (SK_TRACING()) sk_trace_fail("task failed", (uint64_t)t->id, msg);
      luaL_traceback(L, co, msg, 0);
      lua_createtable(L, 2, 0);               /* {error, traceback} */
      lua_insert(L, -2);
      lua_rawseti(L, -2, 2);
      lua_pushvalue(L, c + 1);
      lua_rawseti(L, -2, 1);
      lua_replace(L, c + 1);
      lua_settop(L, c + 1);  /* drops the message made for the traceback */
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
    lua_setiuservalue(L, u, SK_TASK_UV_PAYLOAD);
    /* Runs the __close handlers the error left pending. */
    lua_resetthread(co);
  }
  lua_settop(L, c);
  release(L, t, a, result == SK_RES_OK ? c : 0);
  complete(t, result);
}

/* The ready-queue entry point: starts or resumes the task's coroutine. */
static void task_run(sk_runnable *r) {
  sk_ctx *t = (sk_ctx *)r;
  sk_worker *w = t->w;
  lua_State *from = w->cur_L;
  if (t->state == SK_DONE) {  /* cancelled before it ever ran */
    luaL_checkstack(from, 3, "task");
    int a = push_anchored(from, t);
    lua_pushnil(from);
    lua_setiuservalue(from, a + 1, SK_TASK_UV_CO);
    release(from, t, a, 0);
    return;
  }
  lua_State *co = t->co;
  sk_ctx *prev = w->current;
  int nres, nargs = t->state == SK_NEW ? lua_gettop(co) - 1 : 0;
  t->state = SK_RUNNING;
  w->current = t;
  w->cur_L = co;
  uint64_t t0 = SK_TRACING() ? sk_trace_now() : 0;
  int st = lua_resume(co, from, nargs, &nres);
  if (t0) sk_trace_run((uint64_t)t->id, t0);
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
    lua_getiuservalue(L, idx, SK_TASK_UV_PAYLOAD);
    lua_rawgeti(L, -1, 1);
    return lua_error(L);
  }
  if (t->result == SK_RES_CANCELLED) {
    return sk_error_raise(L, "cancelled", "task %I was cancelled",
                          (LUAI_UACINT)t->id);
  }
  if (t->nres == 0) return 0;
  lua_getiuservalue(L, idx, SK_TASK_UV_PAYLOAD);
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
  lua_getiuservalue(L, lua_absindex(L, idx), SK_TASK_UV_PAYLOAD);
  lua_rawgeti(L, -1, 2);
  fprintf(stderr, "skein: task %lld failed and was never joined:\n%s\n",
          (long long)t->id, lua_tostring(L, -1));
  fflush(stderr);
  lua_pop(L, 2);
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

/* ---------------------------------------------------------------- groups */

void sk_group_cancel_all(sk_group *g) {
  for (sk_ctx *m = g->head, *next; m; m = next) {
    next = m->gnext;
    sk_task_cancel(m);
  }
}

/* When a member finishes; calls no Lua. The first failure cancels every
** other live member; the group takes over reporting it. */
static void group_member_done(sk_ctx *t) {
  sk_group *g = t->group;
  if (t->gprev) t->gprev->gnext = t->gnext;
  else g->head = t->gnext;
  if (t->gnext) t->gnext->gprev = t->gprev;
  t->gprev = t->gnext = NULL;
  t->group = NULL;
  g->nlive--;
  if (t->result == SK_RES_FAILED) {
    t->observed = 1;
    if (g->failed == NULL) {
      g->failed = t;
      sk_group_cancel_all(g);
    }
  }
  sk_watchlist_fire(&g->waiters, t);
}

void sk_group_add(sk_group *g, sk_ctx *t) {
  t->group = g;
  t->gnext = g->head;
  if (g->head) g->head->gprev = t;
  g->head = t;
  g->nlive++;
  if (g->failed) sk_task_cancel(t);  /* a failed group runs nothing new */
}


/* ------------------------------------------------------------ failures */

static int failure_gc(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  sk_task_report(L, -1);
  return 0;
}

void sk_task_engine_open(lua_State *L) {
  static const sk_type failure = {.name = FAILURE_MT, .gc = failure_gc};
  sk_type_register(L, &failure);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.failed");
  lua_newtable(L);
  sk_worker_of(L)->co_cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sk_worker_of(L)->co_cached = 0;
  lua_newtable(L);
  sk_worker_of(L)->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
