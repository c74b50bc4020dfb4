/*
** barrier.c — skein.barrier(n, [action]): n parties meet; each wait
** returns a distinct index 0..n-1 once all n have arrived, after the last
** one to arrive has run the action. Shared by reference like the objects
** of sync.c, so parties may be tasks of any worker.
**
** A party that stops waiting (its timeout passes, it is cancelled or
** interrupted) or an abort() breaks the barrier: every party waiting in it
** and every later wait raises an error of kind "broken" until reset().
**
** Outcomes: each waiting party has a record (its identity, its index and
** PENDING, PASSED or BROKEN) in the barrier. The party that completes a
** generation or breaks it settles every pending record and wakes them all;
** each waiter reads and removes its own record. So a waiter learns how *its*
** generation ended however late it runs, even after later generations.
**
** Lock order: the barrier's mutex, then (to wake waiters) port locks.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_sync.h"

#define BARRIER_MT "skein.Barrier"

enum { B_FILLING, B_ACTION, B_BROKEN };   /* barrier states */
enum { R_PENDING, R_PASSED, R_BROKEN };   /* record outcomes */

typedef struct brec {
  sk_port *port;                /* not counted: an identity */
  lua_Integer id;
  int index, state;
} brec;

typedef struct sk_barrier {
  sk_obj obj;
  uv_mutex_t lock;              /* guards everything below but `parties` */
  int parties, count, state;
  lua_Integer gen;              /* generations ended (passed or reset) */
  brec *recs;
  size_t nrecs, caprecs;
  sk_waitlist waiters;
  int has_action;
  sk_buf action;                /* the action for other workers; immutable */
  char *action_err;             /* why it could not be marshalled, if so */
} sk_barrier;

static void barrier_destroy(sk_obj *o) {
  sk_barrier *b = (sk_barrier *)o;
  sk_waitlist_free(&b->waiters);
  sk_buf_free(&b->action);
  free(b->action_err);
  free(b->recs);
  uv_mutex_destroy(&b->lock);
  free(b);
}

static const sk_objtype barrier_type = {BARRIER_MT, barrier_destroy, NULL};

static void push_barrier(lua_State *L, sk_obj *o) { sk_handle_push(L, o, BARRIER_MT); }

static sk_barrier *check_barrier(lua_State *L, int idx) {
  return (sk_barrier *)sk_handle_check(L, idx, BARRIER_MT);
}

/* ------------------------------------------------ state, under the lock */

static void settle_locked(sk_barrier *b, int outcome) {
  for (size_t i = 0; i < b->nrecs; i++) {
    if (b->recs[i].state == R_PENDING) b->recs[i].state = outcome;
  }
  sk_waitlist_wake_all(&b->waiters);
}

static void break_locked(sk_barrier *b) {
  b->state = B_BROKEN;
  b->count = 0;
  settle_locked(b, R_BROKEN);
}

static void complete_locked(sk_barrier *b) {
  b->state = B_FILLING;
  b->count = 0;
  b->gen++;
  settle_locked(b, R_PASSED);
}

static int find_rec(sk_barrier *b, sk_port *port, lua_Integer id) {
  for (size_t i = 0; i < b->nrecs; i++) {
    if (b->recs[i].port == port && b->recs[i].id == id) return (int)i;
  }
  return -1;
}

static void remove_rec(sk_barrier *b, int i) {
  b->recs[i] = b->recs[--b->nrecs];
}

static int reserve_rec(sk_barrier *b) {
  if (b->nrecs < b->caprecs) return 0;
  size_t cap = b->caprecs ? b->caprecs * 2 : 4;
  brec *r = realloc(b->recs, cap * sizeof *r);
  if (r == NULL) return -1;
  b->recs = r;
  b->caprecs = cap;
  return 0;
}

/* What a waiting party's wake condition looks at (called under the lock). */
typedef struct probe {
  sk_barrier *b;
  sk_port *port;
  lua_Integer id;
  int entering;                 /* waiting for an action to end, not arrived */
} probe;

static int probe_ready(void *obj) {
  probe *p = obj;
  if (p->entering) return p->b->state != B_ACTION;
  int i = find_rec(p->b, p->port, p->id);
  return i < 0 || p->b->recs[i].state != R_PENDING;
}

/* ----------------------------------------------------------------- wait */

enum { P_ENTER, P_WAIT };

static int raise_broken(lua_State *L, const char *why) {
  return sk_error_raise(L, "broken", "%s", why);
}

/* The inner part of wait, called protected (so the outer part can clean up
** after anything it raises). Stack: 1 barrier, 2 deadline. Returns (index,
** run the action?, generation). */
static int inner_k(lua_State *L, int status, lua_KContext phase) {
  sk_barrier *b = check_barrier(L, 1);
  sk_ctx *c = sk_current(L);
  uint64_t d = sk_to_deadline(L, 2);
  probe p = {b, NULL, 0, phase == P_ENTER};
  sk_sync_identity(L, c, &p.port, &p.id);
  for (;;) {
    if (status == LUA_YIELD) sk_shared_wait_end(L, c, &b->lock, &b->waiters);
    uv_mutex_lock(&b->lock);
    if (phase == P_ENTER && b->state == B_BROKEN) {
      uv_mutex_unlock(&b->lock);
      return raise_broken(L, "the barrier is broken");
    }
    if (phase == P_ENTER && b->state == B_ACTION && sk_expired(d)) {
      break_locked(b);
      uv_mutex_unlock(&b->lock);
      return raise_broken(L, "barrier wait timed out; the barrier is now broken");
    }
    if (phase == P_ENTER && b->state == B_FILLING) {
      int last = b->count + 1 == b->parties;
      if (!last && reserve_rec(b) != 0) {
        uv_mutex_unlock(&b->lock);
        return luaL_error(L, "not enough memory to wait on a barrier");
      }
      int index = b->count++;
      if (last) {
        int run = b->has_action;
        lua_Integer gen = b->gen;
        if (run) b->state = B_ACTION;
        else complete_locked(b);
        uv_mutex_unlock(&b->lock);
        lua_pushinteger(L, index);
        lua_pushboolean(L, run);
        lua_pushinteger(L, gen);
        return 3;
      }
      b->recs[b->nrecs++] = (brec){p.port, p.id, index, R_PENDING};
      phase = P_WAIT;
      p.entering = 0;
    } else if (phase == P_WAIT) {
      int i = find_rec(b, p.port, p.id);
      int outcome = i < 0 ? R_BROKEN : b->recs[i].state;
      int timed_out = outcome == R_PENDING && sk_expired(d);
      if (timed_out) {
        break_locked(b);
        outcome = R_BROKEN;
      }
      if (outcome != R_PENDING) {
        int index = i < 0 ? -1 : b->recs[i].index;
        if (i >= 0) remove_rec(b, i);
        uv_mutex_unlock(&b->lock);
        if (outcome == R_BROKEN) {
          return raise_broken(L, timed_out ? "barrier wait timed out; the barrier is now broken"
                                           : "the barrier was broken while this party waited");
        }
        lua_pushinteger(L, index);
        lua_pushboolean(L, 0);
        lua_pushinteger(L, 0);
        return 3;
      }
    }
    uv_mutex_unlock(&b->lock);
    if (sk_shared_wait_begin(L, c, d, &b->lock, &b->waiters, probe_ready, &p)) {
      status = LUA_OK;
      continue;
    }
    status = sk_wait(L, c, phase, inner_k);
  }
}

static int l_inner(lua_State *L) { return inner_k(L, LUA_OK, P_ENTER); }

/* Pushes the action: the handle's own function in the worker that made
** the barrier, else a copy decoded from the marshalled one. Returns 0, or
** -1 with an error pushed. */
static int push_action(lua_State *L, sk_barrier *b) {
  if (lua_getiuservalue(L, 1, 1) != LUA_TNONE && !lua_isnil(L, -1)) return 0;
  lua_pop(L, 1);
  if (b->action_err) {
    sk_error_push(L, "marshal", "the barrier's action cannot run in this worker: %s", b->action_err);
    return -1;
  }
  int n = sk_marshal_decode(L, b->action.data, b->action.len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  if (n < 0) return -1;
  if (n != 1) {
    lua_pop(L, n);
    sk_error_push(L, "marshal", "the barrier's action is malformed");
    return -1;
  }
  return 0;
}

enum { K_WAITED, K_ACTION };

/* The outer part of wait. Stack: 1 barrier, 2 deadline, then what the
** inner part returned: 3 index, 4 run the action?, 5 generation. */
static int wait_k(lua_State *L, int status, lua_KContext phase) {
  sk_barrier *b = check_barrier(L, 1);
  if (phase == K_WAITED) {
    if (status != LUA_OK && status != LUA_YIELD) {
      /* A party that leaves while pending breaks the barrier. */
      sk_port *port;
      lua_Integer id;
      sk_sync_identity(L, sk_current(L), &port, &id);
      uv_mutex_lock(&b->lock);
      int i = find_rec(b, port, id);
      if (i >= 0) {
        if (b->recs[i].state == R_PENDING) break_locked(b);
        remove_rec(b, i);
      }
      uv_mutex_unlock(&b->lock);
      return lua_error(L);
    }
    if (!lua_toboolean(L, 4)) {
      lua_settop(L, 3);
      return 1;
    }
    status = push_action(L, b) == 0 ? lua_pcallk(L, 0, 0, 0, K_ACTION, wait_k) : LUA_ERRRUN;
  }
  /* The last party ran the action: complete its generation, unless an
  ** abort or reset ended it meanwhile. */
  lua_Integer gen = lua_tointeger(L, 5);
  uv_mutex_lock(&b->lock);
  int ours = b->state == B_ACTION && b->gen == gen;
  int ok = status == LUA_OK || status == LUA_YIELD;
  if (ours) {
    if (ok) complete_locked(b);
    else break_locked(b);
  }
  uv_mutex_unlock(&b->lock);
  if (!ok) return lua_error(L);
  if (!ours) return raise_broken(L, "the barrier was aborted or reset while its action ran");
  lua_settop(L, 3);
  return 1;
}

/* barrier:wait([timeout]) -> this party's index, 0..n-1 */
static int l_barrier_wait(lua_State *L) {
  check_barrier(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  sk_push_deadline(L, d);
  lua_pushcfunction(L, l_inner);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  return wait_k(L, lua_pcallk(L, 2, 3, 0, K_WAITED, wait_k), K_WAITED);
}

/* barrier:abort(): breaks the barrier; waiters and later waits raise */
static int l_barrier_abort(lua_State *L) {
  sk_barrier *b = check_barrier(L, 1);
  uv_mutex_lock(&b->lock);
  break_locked(b);
  uv_mutex_unlock(&b->lock);
  return 0;
}

/* barrier:reset(): back to empty; parties waiting now raise "broken" */
static int l_barrier_reset(lua_State *L) {
  sk_barrier *b = check_barrier(L, 1);
  uv_mutex_lock(&b->lock);
  b->state = B_FILLING;
  b->count = 0;
  b->gen++;
  settle_locked(b, R_BROKEN);
  uv_mutex_unlock(&b->lock);
  return 0;
}

/* Fields: parties, n_waiting, broken; everything else from the methods
** table (upvalue 1). */
static int l_barrier_index(lua_State *L) {
  sk_barrier *b = check_barrier(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "parties") == 0) {
    lua_pushinteger(L, b->parties);
  } else if (k && strcmp(k, "n_waiting") == 0) {
    uv_mutex_lock(&b->lock);
    lua_pushinteger(L, b->state == B_FILLING ? b->count : 0);
    uv_mutex_unlock(&b->lock);
  } else if (k && strcmp(k, "broken") == 0) {
    uv_mutex_lock(&b->lock);
    lua_pushboolean(L, b->state == B_BROKEN);
    uv_mutex_unlock(&b->lock);
  } else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

static int l_barrier_tostring(lua_State *L) {
  sk_barrier *b = check_barrier(L, 1);
  uv_mutex_lock(&b->lock);
  int state = b->state, count = b->count;
  uv_mutex_unlock(&b->lock);
  if (state == B_BROKEN) lua_pushfstring(L, "skein.barrier: %p (broken)", (void *)b);
  else lua_pushfstring(L, "skein.barrier: %p (%d of %d waiting)", (void *)b, count, b->parties);
  return 1;
}

/* skein.barrier(n, [action]) -> barrier. The action runs in the worker of
** the party that arrives last; outside the worker that made the barrier it
** is a marshalled copy (upvalues copied, like any function sent to a
** thread). */
static int l_barrier_new(lua_State *L) {
  lua_Integer n = sk_sync_check_count(L, 1, 0, 1, "positive integer (the number of parties)");
  luaL_argcheck(L, n <= 1000000, 1, "too many parties");
  int has_action = !lua_isnoneornil(L, 2);
  if (has_action) sk_sync_check_callable(L, 2);
  lua_settop(L, 2);
  sk_buf buf = {0};
  char *err = NULL;
  if (has_action && sk_marshal_encode(L, 2, 1, &buf, "action") != 0) {
    err = strdup(luaL_tolstring(L, -1, NULL));
    lua_pop(L, 2);
    if (err == NULL) return luaL_error(L, "not enough memory for a barrier");
  }
  sk_barrier *b = calloc(1, sizeof *b);
  if (b == NULL || uv_mutex_init(&b->lock) != 0) {
    free(b);
    sk_buf_free(&buf);
    free(err);
    return luaL_error(L, "not enough memory for a barrier");
  }
  sk_obj_init(&b->obj, &barrier_type);
  b->parties = (int)n;
  b->has_action = has_action;
  b->action = buf;
  b->action_err = err;
  sk_handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  h->obj = &b->obj;
  luaL_setmetatable(L, BARRIER_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

void sk_barrier_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"wait", l_barrier_wait}, {"abort", l_barrier_abort}, {"reset", l_barrier_reset}, {NULL, NULL}};
  if (luaL_newmetatable(L, BARRIER_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, l_barrier_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sk_handle_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_barrier_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  sk_marshal_register_type(BARRIER_MT, push_barrier);
  lua_pushcfunction(L, l_barrier_new);
  lua_setfield(L, -2, "barrier");
}
