/*
** barrier.c — skein.barrier(n, [action]): n parties meet; each wait
** returns a distinct index 0..n-1 once all n have arrived, after the last
** one to arrive has run the action. Shared by reference like the objects
** of sync.c, and like them kept in the shared segment (xwait.c), so that
** parties may be tasks of any worker of any process of the tree.
**
** A party that stops waiting (its timeout passes, it is cancelled or
** interrupted, its process dies) or an abort() breaks the barrier: every
** party waiting in it and every later wait raises an error of kind "broken"
** until reset().
**
** Outcomes: each waiting party has a record (its identity, its index and
** PENDING, PASSED or BROKEN) in the barrier. The party that completes a
** generation or breaks it settles every pending record and wakes them all;
** each waiter reads and removes its own record. So a waiter learns how *its*
** generation ended however late it runs, even after later generations. The
** pending records are exactly the parties waiting in the current
** generation: `count` of them while it fills, all but the last party while
** that one runs the action, none once it is broken.
**
** A process killed inside the barrier's lock: every change to the records
** is published by one store (a record is filled before it counts, freed by
** one store, and the array grows by copying, then one store of its new
** offset), so a holder that dies leaves them whole. What it may leave half
** done (pending records that no longer match the state, a wake not yet
** sent) barrier_gone mends by breaking the barrier and waking everyone.
**
** Lock order: the barrier's mutex (its sk_xw's), then (to wake waiters) the
** port table's and a port's lock or another process's mailbox lock, or
** (when the records grow) the allocator's lock; all innermost.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_sync.h"

#define BARRIER_MT "skein.Barrier"

enum { B_FILLING, B_ACTION, B_BROKEN };           /* barrier states */
enum { R_FREE, R_PENDING, R_PASSED, R_BROKEN };   /* record outcomes; R_FREE: unused */

/* A waiting party's record. */
typedef struct brec {
  sk_who who;
  int32_t index, state;
} brec;

/* The records: a block of the segment of its own, which carries its
** capacity, so that one store of its offset publishes both. */
typedef struct brecs {
  uint32_t cap, pad;
  brec r[];
} brecs;

/* The objects the action's marshalled bytes mention (see keep_objects):
** `nshm` offsets of objects in the segment, each a reference, then
** `nlocal` sk_obj pointers of process (proc, pgen), each a reference of
** that process. */
typedef struct bobjs {
  uint32_t nshm, nlocal;
  uint32_t proc, pgen;
  uint64_t ref[];
} bobjs;

/* The barrier's state, in the shared segment. The fields marked immutable
** are set before the barrier is first handed out; the lock of `w` guards
** every other one. */
typedef struct sk_barrier {
  sk_shm_obj obj;
  sk_xw w;
  int32_t parties;              /* immutable */
  int32_t has_action;           /* immutable */
  int32_t count, state;
  lua_Integer gen;              /* generations ended (passed or reset) */
  sk_who runner;                /* the last party, while it runs the action */
  sk_off recs;                  /* a brecs block, or 0 */
  uint32_t nrecs, pad;          /* the records in use lie in recs->r[0 .. nrecs) */
  sk_off action;                /* immutable: the marshalled action */
  uint64_t action_len;
  sk_off objs;                  /* immutable: a bobjs block, or 0 */
  sk_off err;                   /* immutable: why the action could not be */
  uint64_t err_len;             /* marshalled (a C string), or 0 */
} sk_barrier;

static void barrier_gone(sk_shm_obj *o);
static void barrier_free(sk_shm_obj *o);
static const sk_shm_type barrier_shm_type = {barrier_gone, barrier_free};

static const sk_shm_ops barrier_shm = {SK_SHM_BARRIER, sk_xobj_shared, sk_xobj_shared, sk_xobj_view};
static const sk_objtype barrier_type = {BARRIER_MT, sk_xobj_destroy, &barrier_shm};

static void push_barrier(lua_State *L, sk_obj *o) { sk_handle_push(L, o, BARRIER_MT); }

static sk_barrier *check_barrier(lua_State *L, int idx) {
  return SK_XSTATE(sk_barrier, sk_handle_check(L, idx, BARRIER_MT));
}

/* ---------------------------------------------- records, under the lock */

/* One store, ordered after the stores before it: what publishes a change. */
static void publish32(void *p, uint32_t v) { __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE); }

static brecs *recs_of(sk_barrier *b) { return sk_shm_ptr(b->recs); }

static brec *rec_at(sk_barrier *b, int i) { return &recs_of(b)->r[i]; }

static int find_rec(sk_barrier *b, const sk_who *who) {
  brecs *rs = recs_of(b);
  for (uint32_t i = 0; rs && i < b->nrecs; i++) {
    if (rs->r[i].state != R_FREE && sk_who_eq(&rs->r[i].who, who)) return (int)i;
  }
  return -1;
}

/* Frees record i, then gives back the free records at the end. */
static void remove_rec(sk_barrier *b, int i) {
  brecs *rs = recs_of(b);
  publish32(&rs->r[i].state, R_FREE);
  while (b->nrecs > 0 && rs->r[b->nrecs - 1].state == R_FREE) publish32(&b->nrecs, b->nrecs - 1);
}

/* Adds a pending record for `who`; -1 when the segment is full (nothing
** changed). A free record is filled, then marked pending; a new one is
** filled, then counted in `nrecs`. */
static int add_rec(sk_barrier *b, const sk_who *who, int index) {
  brecs *rs = recs_of(b);
  uint32_t i = 0;
  while (rs && i < b->nrecs && rs->r[i].state != R_FREE) i++;
  if (i == b->nrecs && (rs == NULL || i == rs->cap)) {
    uint32_t cap = rs ? rs->cap * 2 : 4;
    brecs *grown = sk_shm_alloc(sizeof *grown + cap * sizeof(brec));
    if (grown == NULL) return -1;
    grown->cap = cap;
    grown->pad = 0;
    if (rs) memcpy(grown->r, rs->r, b->nrecs * sizeof(brec));
    __atomic_store_n(&b->recs, sk_shm_off(grown), __ATOMIC_RELEASE);
    sk_shm_free(rs);
    rs = grown;
  }
  brec *r = &rs->r[i];
  r->who = *who;
  r->index = index;
  if (i < b->nrecs) {
    publish32(&r->state, R_PENDING);
  } else {
    r->state = R_PENDING;
    publish32(&b->nrecs, i + 1);
  }
  return 0;
}

/* ------------------------------------------------ state, under the lock */

static void settle_locked(sk_barrier *b, int outcome) {
  brecs *rs = recs_of(b);
  for (uint32_t i = 0; rs && i < b->nrecs; i++) {
    if (rs->r[i].state == R_PENDING) publish32(&rs->r[i].state, (uint32_t)outcome);
  }
  sk_xw_wake_all(&b->w);
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

/* A process died. Its records go; if it had a party waiting in the current
** generation, or was running the action, the barrier breaks, as when a
** party stops waiting. So does a barrier whose pending records no longer
** match its state (the process died inside the lock, halfway through a
** change). Otherwise every waiter is woken all the same: a wake the dead
** process was sending may have been lost with it, and a waiter that finds
** nothing new waits again. */
static void barrier_gone(sk_shm_obj *o) {
  sk_barrier *b = (sk_barrier *)o;
  sk_xw_lock(&b->w);
  sk_xw_purge(&b->w);
  int lost = b->state == B_ACTION && !sk_who_alive(&b->runner);
  int32_t pending = 0;
  brecs *rs = recs_of(b);
  for (uint32_t i = 0; rs && i < b->nrecs; i++) {
    brec *r = &rs->r[i];
    if (r->state == R_FREE) continue;
    if (!sk_who_alive(&r->who)) {
      if (r->state == R_PENDING) lost = 1;
      remove_rec(b, (int)i);
    } else if (r->state == R_PENDING) {
      pending++;
    }
  }
  int32_t expected = b->state == B_FILLING ? b->count
                     : b->state == B_ACTION ? b->parties - 1
                                            : 0;
  if (lost || pending != expected) break_locked(b);
  else sk_xw_wake_all(&b->w);
  sk_xw_unlock(&b->w);
}

/* What the action's bytes mention is dropped with the barrier: the
** references in the segment from any process, this process's own
** references only here (see keep_objects). */
static void drop_objects(bobjs *k) {
  if (k == NULL) return;
  for (uint32_t i = 0; i < k->nshm; i++) sk_shm_obj_release(sk_shm_ptr(k->ref[i]));
  if (k->nlocal && (int)k->proc == sk_shm_self() && k->pgen == sk_shm_self_gen()) {
    for (uint32_t i = 0; i < k->nlocal; i++) {
      sk_obj_release((sk_obj *)(uintptr_t)k->ref[k->nshm + i]);
    }
  }
  sk_shm_free(k);
}

static void barrier_free(sk_shm_obj *o) {
  sk_barrier *b = (sk_barrier *)o;
  sk_xw_free(&b->w);
  sk_shm_free(recs_of(b));
  sk_shm_free(sk_shm_ptr(b->action));
  sk_shm_free(sk_shm_ptr(b->err));
  drop_objects(sk_shm_ptr(b->objs));
}

/* ----------------------------------------------------------------- wait */

static int raise_broken(lua_State *L, const char *why) {
  return sk_error_raise(L, "broken", "%s", why);
}

/* The party's wait as a wait source (the barrier at index 1, the deadline
** at 2). A party that has not arrived (it has no record) is ready to
** arrive unless the last party is running the action; one that has arrived
** is ready once its record is settled. It arrives, or learns how its
** generation ended, in the attempt, and returns (index, run the action?,
** generation). Called protected: see wait_k. */
static int barrier_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_barrier *b = obj;
  sk_who who;
  (void)round;
  sk_who_of(sk_current(L), &who);
  sk_xw_lock(&b->w);
  int i = find_rec(b, &who);
  if (i < 0 && b->state == B_BROKEN) {
    sk_xw_unlock(&b->w);
    return raise_broken(L, "the barrier is broken");
  }
  if (i < 0 && b->state == B_ACTION && expired) {
    break_locked(b);
    sk_xw_unlock(&b->w);
    return raise_broken(L, "barrier wait timed out; the barrier is now broken");
  }
  if (i < 0 && b->state == B_FILLING) {
    int index = b->count;
    int last = index + 1 == b->parties;
    if (!last && add_rec(b, &who, index) != 0) {
      sk_xw_unlock(&b->w);
      return sk_error_raise(L, "memory", "not enough shared memory to wait on a barrier");
    }
    b->count++;
    if (!last) {
      sk_xw_unlock(&b->w);
      return SK_WAIT_MORE;
    }
    int run = b->has_action;
    lua_Integer gen = b->gen;
    if (run) {
      b->runner = who;
      b->state = B_ACTION;
    } else {
      complete_locked(b);
    }
    sk_xw_unlock(&b->w);
    lua_pushinteger(L, index);
    lua_pushboolean(L, run);
    lua_pushinteger(L, gen);
    return 3;
  }
  int outcome = i < 0 ? R_PENDING : rec_at(b, i)->state;
  int timed_out = i >= 0 && outcome == R_PENDING && expired;
  if (timed_out) {
    break_locked(b);
    outcome = R_BROKEN;
  }
  if (outcome == R_PENDING) {
    sk_xw_unlock(&b->w);
    return SK_WAIT_MORE;
  }
  int index = rec_at(b, i)->index;
  remove_rec(b, i);
  sk_xw_unlock(&b->w);
  if (outcome == R_BROKEN) {
    return raise_broken(L, timed_out ? "barrier wait timed out; the barrier is now broken"
                                     : "the barrier was broken while this party waited");
  }
  lua_pushinteger(L, index);
  lua_pushboolean(L, 0);
  lua_pushinteger(L, 0);
  return 3;
}

/* What the party's wake condition looks at (called under the lock). */
typedef struct probe {
  sk_barrier *b;
  sk_who who;
} probe;

static int probe_ready(void *obj) {
  probe *p = obj;
  int i = find_rec(p->b, &p->who);
  if (i < 0) return p->b->state != B_ACTION;
  return rec_at(p->b, i)->state != R_PENDING;
}

static int barrier_link(void *obj, sk_ctx *c, int round) {
  probe p = {obj, {0}};
  (void)round;
  sk_who_of(c, &p.who);
  return sk_xw_link(c, &p.b->w, probe_ready, &p);
}

static int barrier_unlink(void *obj, sk_ctx *c) {
  return sk_xw_unlink(c, &((sk_barrier *)obj)->w);
}

static const sk_source barrier_source = {.name = BARRIER_MT,
                                         .attempt = barrier_attempt,
                                         .link = barrier_link,
                                         .unlink = barrier_unlink};

static int l_inner(lua_State *L) {
  return sk_wait_on(L, &barrier_source, check_barrier(L, 1), sk_to_deadline(L, 2), 0);
}

/* Pushes the action: the handle's own function in the worker that made
** the barrier, else a copy decoded from the marshalled one. Returns 0, or
** -1 with an error pushed. */
static int push_action(lua_State *L, sk_barrier *b) {
  if (lua_getiuservalue(L, 1, 1) != LUA_TNONE && !lua_isnil(L, -1)) return 0;
  lua_pop(L, 1);
  if (b->err) {
    sk_error_push(L, "marshal", "the barrier's action cannot run in this worker: %s",
                  (const char *)sk_shm_ptr(b->err));
    return -1;
  }
  int n = sk_marshal_decode(L, sk_shm_ptr(b->action), b->action_len,
                            SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
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
      sk_who who;
      sk_who_of(sk_current(L), &who);
      sk_xw_lock(&b->w);
      int i = find_rec(b, &who);
      if (i >= 0) {
        if (rec_at(b, i)->state == R_PENDING) break_locked(b);
        remove_rec(b, i);
      }
      sk_xw_unlock(&b->w);
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
  sk_xw_lock(&b->w);
  int ours = b->state == B_ACTION && b->gen == gen;
  int ok = status == LUA_OK || status == LUA_YIELD;
  if (ours) {
    if (ok) complete_locked(b);
    else break_locked(b);
  }
  sk_xw_unlock(&b->w);
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
  sk_xw_lock(&b->w);
  break_locked(b);
  sk_xw_unlock(&b->w);
  return 0;
}

/* barrier:reset(): back to empty; parties waiting now raise "broken" */
static int l_barrier_reset(lua_State *L) {
  sk_barrier *b = check_barrier(L, 1);
  sk_xw_lock(&b->w);
  b->state = B_FILLING;
  b->count = 0;
  b->gen++;
  settle_locked(b, R_BROKEN);
  sk_xw_unlock(&b->w);
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
    sk_xw_lock(&b->w);
    int n = b->state == B_FILLING ? b->count : 0;
    sk_xw_unlock(&b->w);
    lua_pushinteger(L, n);
  } else if (k && strcmp(k, "broken") == 0) {
    sk_xw_lock(&b->w);
    int broken = b->state == B_BROKEN;
    sk_xw_unlock(&b->w);
    lua_pushboolean(L, broken);
  } else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

static int l_barrier_tostring(lua_State *L) {
  sk_barrier *b = check_barrier(L, 1);
  sk_xw_lock(&b->w);
  int state = b->state, count = b->count;
  sk_xw_unlock(&b->w);
  if (state == B_BROKEN) lua_pushfstring(L, "skein.barrier: %p (broken)", (void *)b);
  else lua_pushfstring(L, "skein.barrier: %p (%d of %d waiting)", (void *)b, count, b->parties);
  return 1;
}

/* ------------------------------------------------------------ creation */

/* A copy of n bytes and a terminating NUL in a new block of the segment:
** its offset, or 0 when the segment is full. */
static sk_off shm_copy(const char *p, size_t n) {
  char *d = sk_shm_alloc(n + 1);
  if (d == NULL) return 0;
  memcpy(d, p, n);
  d[n] = '\0';
  return sk_shm_off(d);
}

/* Keeps what the action's bytes mention for as long as the barrier lives.
** The action was encoded with sk_marshal_encode_xproc, so every object that
** can live in the segment moved there and is named by its place: the
** barrier holds a reference to it in the segment, which whichever process
** frees the barrier drops. Any other object (a shared value, a future, a
** thread) is named by its handle in this process; only this process
** resolves that (its threads directly, its children through a proxy), and
** only while the object lives here, so the barrier takes this process's
** reference to it (buf's own ones go with buf). That reference is dropped
** when the barrier is freed in this process; when it is freed in another
** one instead, nothing can reach this process's objects, and the reference
** is never dropped: the object leaks until this process exits. Actions
** that capture such objects are rare; an action whose objects vanished
** under a live barrier would be worse. Returns 0, or -1 when the segment
** is full (nothing kept). */
static int keep_objects(sk_barrier *b, const sk_buf *buf) {
  if (buf->nobjs == 0) return 0;
  bobjs *k = sk_shm_alloc(sizeof *k + buf->nobjs * sizeof k->ref[0]);
  if (k == NULL) return -1;
  k->nshm = k->nlocal = 0;
  k->proc = (uint32_t)sk_shm_self();
  k->pgen = sk_shm_self_gen();
  for (size_t i = 0; i < buf->nobjs; i++) {
    sk_obj *o = buf->objs[i];
    sk_shm_obj *so = o->type->shm ? o->type->shm->shared(o) : NULL;
    if (so) {
      sk_shm_obj_retain(so);
      k->ref[k->nshm++] = sk_shm_off(so);
    }
  }
  for (size_t i = 0; i < buf->nobjs; i++) {
    sk_obj *o = buf->objs[i];
    if (o->type->shm && o->type->shm->shared(o)) continue;
    sk_obj_retain(o);
    k->ref[k->nshm + k->nlocal++] = (uint64_t)(uintptr_t)o;
  }
  b->objs = sk_shm_off(k);
  return 0;
}

/* Copies the action (at index 2) into the segment for the other workers
** and processes: its marshalled bytes and what they mention, or why it
** cannot be marshalled. Returns 0, or -1 when the segment is full. Never
** raises while it owns memory. */
static int keep_action(lua_State *L, sk_barrier *b) {
  sk_buf buf;
  if (sk_marshal_encode_xproc(L, 2, 1, &buf, "action") != 0) {
    size_t len;
    const char *msg = luaL_tolstring(L, -1, &len);
    b->err = shm_copy(msg, len);
    b->err_len = len;
    lua_pop(L, 2);
    return b->err ? 0 : -1;
  }
  b->action = shm_copy(buf.data, buf.len);
  b->action_len = buf.len;
  int rc = b->action && keep_objects(b, &buf) == 0 ? 0 : -1;
  sk_buf_free(&buf);
  return rc;
}

/* skein.barrier(n, [action]) -> barrier. The action runs in the worker of
** the party that arrives last; outside the worker that made the barrier it
** is a marshalled copy (upvalues copied, like any function sent to a
** thread). */
static int l_barrier_new(lua_State *L) {
  lua_Integer n = sk_check_count(L, 1, 0, 1, "positive integer (the number of parties)");
  luaL_argcheck(L, n <= 1000000, 1, "too many parties");
  int has_action = !lua_isnoneornil(L, 2);
  if (has_action) sk_check_callable(L, 2);
  lua_settop(L, 2);
  sk_obj *o = sk_xobj_new(L, &barrier_type, sizeof(sk_barrier));
  sk_barrier *b = SK_XSTATE(sk_barrier, o);
  sk_xw_init(&b->w);
  b->parties = (int32_t)n;
  b->has_action = has_action;
  /* The handle comes first, so that an error below leaves the barrier to
  ** the collector. It keeps the action itself (user value 1) for this
  ** worker. */
  sk_handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  h->obj = o;
  luaL_setmetatable(L, BARRIER_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 3, 1);
  if (has_action && keep_action(L, b) != 0) {
    return sk_error_raise(L, "memory", "not enough shared memory for a barrier's action");
  }
  return 1;
}

void sk_barrier_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"wait", l_barrier_wait}, {"abort", l_barrier_abort}, {"reset", l_barrier_reset}, {NULL, NULL}};
  static const sk_type type = {.name = BARRIER_MT, .methods = methods, .index = l_barrier_index,
                               .gc = sk_handle_release, .tostring = l_barrier_tostring,
                               .push = push_barrier};
  sk_type_register(L, &type);
  sk_xobj_register(&barrier_type);
  sk_shm_register_type(SK_SHM_BARRIER, &barrier_shm_type);
  lua_pushcfunction(L, l_barrier_new);
  lua_setfield(L, -2, "barrier");
}
