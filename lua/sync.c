/*
** sync.c — synchronisation objects shared by every worker that holds a
** handle: lock, rlock, semaphore, bounded semaphore and condition (the
** event lives in event.c, the barrier in barrier.c). Each is an sk_obj (reference counted,
** sendable by reference) whose state is guarded by its own mutex; a
** blocking method is a wait source (sk_wait_on, sk_lua.h) over the
** object's shared wait list, so it suspends only its task (or drives the
** loop where it cannot yield) and honours timeouts, cancellation and
** Ctrl-C.
**
** Ownership: a lock is held by a *context* (a task, or a worker's root),
** named across threads by (its worker's port, its task id). Ids are never
** reused within a worker, so a task that ends holding a lock does not pass
** it on to a later task.
**
** Wake hand-off: a release wakes one waiter (sk_waitlist_wake_one). A
** waiter that was picked but then leaves without taking what it was woken
** for (cancelled, interrupted, a select that took another item) hands the
** wake on to the next waiter, so a cancelled task never wedges an object.
**
** Lock order: an object's mutex is held only briefly and never while
** waiting; a port's lock (taken to wake a waiter) is always innermost. The
** condition takes its own mutex and its lock's mutex one at a time, never
** both.
*/
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sk_bind.h"
#include "sk_sync.h"

#define LOCK_MT "skein.Lock"
#define SEM_MT "skein.Semaphore"
#define COND_MT "skein.Condition"
#define GUARD_MT "skein.Guard"

/* ------------------------------------------------------------- helpers */

/* Checks the optional timeout at `timeout_arg` and leaves the stack as
** (object, deadline): every blocking method keeps its deadline at 2. */
static void setup_deadline(lua_State *L, int timeout_arg) {
  uint64_t d = sk_check_deadline(L, timeout_arg);
  lua_settop(L, 1);
  sk_push_deadline(L, d);
}

/* Pushes a new handle for `o` (taking over one reference) whose user value
** is the value on top of the stack, which it pops. */
static void push_handle_uv(lua_State *L, sk_obj *o, const char *mt) {
  sk_handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  h->obj = o;
  luaL_setmetatable(L, mt);
  lua_rotate(L, -2, 1);
  lua_setiuservalue(L, -2, 1);
}

/* ----------------------------------------------------------------- lock */

/* The states below live in the shared segment (xwait.c): handles in every
** process and worker reach the same lock, semaphore or condition. */
typedef struct sk_lock {
  sk_shm_obj obj;
  sk_xw w;
  int reentrant;
  int count;                    /* 0: free */
  sk_who owner;
} sk_lock;

static const sk_shm_ops lock_shm = {SK_SHM_LOCK, sk_xobj_shared, sk_xobj_shared, sk_xobj_view};
static const sk_objtype lock_type = {LOCK_MT, sk_xobj_destroy, &lock_shm};

/* A lock whose holder's process died is free again. */
static void lock_gone(sk_shm_obj *o) {
  sk_lock *k = (sk_lock *)o;
  sk_xw_lock(&k->w);
  sk_xw_purge(&k->w);
  if (k->count > 0 && !sk_who_alive(&k->owner)) {
    k->count = 0;
    memset(&k->owner, 0, sizeof k->owner);
  }
  if (k->count == 0) sk_xw_wake_one(&k->w);
  sk_xw_unlock(&k->w);
}

static void xw_free(sk_shm_obj *o);
static const sk_shm_type lock_shm_type = {lock_gone, xw_free};

static void push_lock(lua_State *L, sk_obj *o) { sk_handle_push(L, o, LOCK_MT); }

/* A new lock's view. */
static sk_obj *new_lock(lua_State *L, int reentrant) {
  sk_obj *o = sk_xobj_new(L, &lock_type, sizeof(sk_lock));
  sk_lock *k = SK_XSTATE(sk_lock, o);
  sk_xw_init(&k->w);
  k->reentrant = reentrant;
  return o;
}

static int l_lock_new(lua_State *L) {
  push_lock(L, new_lock(L, 0));
  return 1;
}

static int l_rlock_new(lua_State *L) {
  push_lock(L, new_lock(L, 1));
  return 1;
}

static sk_lock *check_lock(lua_State *L, int idx) {
  return SK_XSTATE(sk_lock, sk_handle_check(L, idx, LOCK_MT));
}

/* 1 when `who` holds the lock. The caller holds k->w's lock. */
static int lock_mine(sk_lock *k, const sk_who *who) {
  return k->count > 0 && sk_who_eq(&k->owner, who);
}

/* Takes the lock if it can (`count` levels at once when it was free: the
** condition's re-acquire); 1 on success. The caller holds k->w's lock. */
static int lock_try_locked(sk_lock *k, const sk_who *who, int count) {
  if (k->count == 0) {
    k->count = count;
    k->owner = *who;
    return 1;
  }
  if (k->reentrant && lock_mine(k, who)) {
    k->count++;
    return 1;
  }
  return 0;
}

/* Releases one level (or every level with `all`) for `who`. Returns NULL,
** or why it could not. */
static const char *lock_release_as(sk_lock *k, const sk_who *who, int all) {
  const char *err = NULL;
  sk_xw_lock(&k->w);
  if (k->count == 0) {
    err = "cannot release a lock that is not held";
  } else if (!lock_mine(k, who)) {
    err = "cannot release a lock held by another task";
  } else if (all || --k->count == 0) {
    k->count = 0;
    memset(&k->owner, 0, sizeof k->owner);
    sk_xw_wake_one(&k->w);
  }
  sk_xw_unlock(&k->w);
  return err;
}

static int lock_ready(void *obj) { return ((sk_lock *)obj)->count == 0; }

/* lock:release(): only the holder may release */
static int l_lock_release(lua_State *L) {
  sk_lock *k = check_lock(L, 1);
  sk_who who;
  sk_who_of(sk_current(L), &who);
  const char *err = lock_release_as(k, &who, 0);
  if (err) return sk_error_raise(L, "usage", "%s", err);
  return 0;
}

static int lock_count(sk_lock *k) {
  sk_xw_lock(&k->w);
  int count = k->count;
  sk_xw_unlock(&k->w);
  return count;
}

static int l_lock_locked(lua_State *L) {
  lua_pushboolean(L, lock_count(check_lock(L, 1)) > 0);
  return 1;
}

static int l_lock_tostring(lua_State *L) {
  sk_lock *k = check_lock(L, 1);
  int count = lock_count(k);
  const char *kind = k->reentrant ? "rlock" : "lock";
  if (count == 0) lua_pushfstring(L, "skein.%s: %p (unlocked)", kind, (void *)k);
  else if (k->reentrant) lua_pushfstring(L, "skein.%s: %p (locked x%d)", kind, (void *)k, count);
  else lua_pushfstring(L, "skein.%s: %p (locked)", kind, (void *)k);
  return 1;
}

static int lock_try(lua_State *L, sk_obj *o) {
  sk_lock *k = SK_XSTATE(sk_lock, o);
  sk_who who;
  sk_who_of(sk_current(L), &who);
  sk_xw_lock(&k->w);
  int got = lock_try_locked(k, &who, 1);
  sk_xw_unlock(&k->w);
  if (!got) return 0;
  lua_pushboolean(L, 1);
  return 1;
}

static int lock_add_waiter(sk_obj *o, const sk_waiter *w) {
  sk_lock *k = SK_XSTATE(sk_lock, o);
  sk_xw_lock(&k->w);
  int rc = k->count == 0 ? 1 : sk_xw_add(&k->w, w);
  sk_xw_unlock(&k->w);
  return rc;
}

/* A select that leaves hands on a wake it did not use. */
static void lock_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_lock *k = SK_XSTATE(sk_lock, o);
  sk_xw_lock(&k->w);
  if (sk_xw_remove(&k->w, port, slot) == 0 && k->count == 0) sk_xw_wake_one(&k->w);
  sk_xw_unlock(&k->w);
}

static const sk_selectable lock_select = {lock_try, lock_add_waiter, lock_remove_waiter};

/* ------------------------------------------------------------ semaphore */

typedef struct sk_sem {
  sk_shm_obj obj;
  sk_xw w;
  lua_Integer value, initial;
  int bounded;
} sk_sem;

static const sk_shm_ops sem_shm = {SK_SHM_SEM, sk_xobj_shared, sk_xobj_shared, sk_xobj_view};
static const sk_objtype sem_type = {SEM_MT, sk_xobj_destroy, &sem_shm};

/* Units a dead process took are not given back (a semaphore has no
** owner); its records go, and wakes it may have swallowed are passed on. */
static void sem_gone(sk_shm_obj *o) {
  sk_sem *s = (sk_sem *)o;
  sk_xw_lock(&s->w);
  sk_xw_purge(&s->w);
  for (lua_Integer i = 0; i < s->value && sk_xw_wake_one(&s->w); i++) {}
  sk_xw_unlock(&s->w);
}

static const sk_shm_type sem_shm_type = {sem_gone, xw_free};

static void push_sem(lua_State *L, sk_obj *o) { sk_handle_push(L, o, SEM_MT); }

static int new_sem(lua_State *L, int bounded) {
  lua_Integer n = sk_check_count(L, 1, 1, 0, "non-negative integer");
  sk_obj *o = sk_xobj_new(L, &sem_type, sizeof(sk_sem));
  sk_sem *s = SK_XSTATE(sk_sem, o);
  sk_xw_init(&s->w);
  s->value = s->initial = n;
  s->bounded = bounded;
  push_sem(L, o);
  return 1;
}

/* skein.semaphore([n=1]), skein.bounded_semaphore([n=1]) */
static int l_sem_new(lua_State *L) { return new_sem(L, 0); }
static int l_bsem_new(lua_State *L) { return new_sem(L, 1); }

static sk_sem *check_sem(lua_State *L, int idx) {
  return SK_XSTATE(sk_sem, sk_handle_check(L, idx, SEM_MT));
}

static int sem_ready(void *obj) { return ((sk_sem *)obj)->value > 0; }

/* Adds n to the value and wakes up to n waiters. Returns 0, or -1 when a
** bounded semaphore would exceed its initial value (nothing changes). */
static int sem_release_n(sk_sem *s, lua_Integer n, lua_Integer *value) {
  int rc = 0;
  sk_xw_lock(&s->w);
  *value = s->value;
  if ((s->bounded && s->value > s->initial - n) || s->value > LUA_MAXINTEGER - n) {
    rc = -1;
  } else {
    s->value += n;
    for (lua_Integer i = 0; i < n && sk_xw_wake_one(&s->w); i++) {}
  }
  sk_xw_unlock(&s->w);
  return rc;
}

static int sem_take(sk_sem *s) {
  sk_xw_lock(&s->w);
  int got = s->value > 0;
  if (got) s->value--;
  sk_xw_unlock(&s->w);
  return got;
}

/* semaphore:release([n=1]) */
static int l_sem_release(lua_State *L) {
  sk_sem *s = check_sem(L, 1);
  lua_Integer n = sk_check_count(L, 2, 1, 1, "positive integer"), value;
  if (sem_release_n(s, n, &value) != 0) {
    if (s->bounded) {
      return sk_error_raise(L, "usage", "bounded semaphore released too many times (value %I + %I would exceed its initial value %I)",
                        (LUAI_UACINT)value, (LUAI_UACINT)n, (LUAI_UACINT)s->initial);
    }
    return sk_error_raise(L, "usage", "semaphore value overflow");
  }
  return 0;
}

static lua_Integer sem_value(sk_sem *s) {
  sk_xw_lock(&s->w);
  lua_Integer v = s->value;
  sk_xw_unlock(&s->w);
  return v;
}

/* semaphore:value() -> the current count */
static int l_sem_value(lua_State *L) {
  lua_pushinteger(L, sem_value(check_sem(L, 1)));
  return 1;
}

static int l_sem_tostring(lua_State *L) {
  sk_sem *s = check_sem(L, 1);
  lua_Integer v = sem_value(s);
  if (s->bounded) {
    lua_pushfstring(L, "skein.bounded_semaphore: %p (value %I of %I)", (void *)s, (LUAI_UACINT)v,
                    (LUAI_UACINT)s->initial);
  } else {
    lua_pushfstring(L, "skein.semaphore: %p (value %I)", (void *)s, (LUAI_UACINT)v);
  }
  return 1;
}

static int sem_try(lua_State *L, sk_obj *o) {
  if (!sem_take(SK_XSTATE(sk_sem, o))) return 0;
  lua_pushboolean(L, 1);
  return 1;
}

static int sem_add_waiter(sk_obj *o, const sk_waiter *w) {
  sk_sem *s = SK_XSTATE(sk_sem, o);
  sk_xw_lock(&s->w);
  int rc = s->value > 0 ? 1 : sk_xw_add(&s->w, w);
  sk_xw_unlock(&s->w);
  return rc;
}

static void sem_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_sem *s = SK_XSTATE(sk_sem, o);
  sk_xw_lock(&s->w);
  if (sk_xw_remove(&s->w, port, slot) == 0 && s->value > 0) sk_xw_wake_one(&s->w);
  sk_xw_unlock(&s->w);
}

static const sk_selectable sem_select = {sem_try, sem_add_waiter, sem_remove_waiter};

/* ------------------------------------- acquire, hold and with, for both */

/* What acquire, hold and with need of a lock or a semaphore. */
typedef struct acq_ops {
  /* Takes one unit for `who` if it can (1); else sets *mine when `who`
  ** holds the lock already. */
  int (*take)(sk_obj *o, const sk_who *who, int *mine);
  /* Releases one unit on behalf of `who`: NULL or why not. */
  const char *(*release)(sk_obj *o, const sk_who *who);
  sk_ready_fn ready;            /* a unit is free (the sk_xw's lock held) */
} acq_ops;

static int lock_take(sk_obj *o, const sk_who *who, int *mine) {
  sk_lock *k = SK_XSTATE(sk_lock, o);
  sk_xw_lock(&k->w);
  int got = lock_try_locked(k, who, 1);
  *mine = !got && lock_mine(k, who);
  sk_xw_unlock(&k->w);
  return got;
}

static const char *lock_release_op(sk_obj *o, const sk_who *who) {
  return lock_release_as(SK_XSTATE(sk_lock, o), who, 0);
}

static int sem_take_op(sk_obj *o, const sk_who *who, int *mine) {
  (void)who;
  *mine = 0;
  return sem_take(SK_XSTATE(sk_sem, o));
}

static const char *sem_release_op(sk_obj *o, const sk_who *who) {
  lua_Integer value;
  (void)who;
  if (sem_release_n(SK_XSTATE(sk_sem, o), 1, &value) != 0) {
    return "bounded semaphore released too many times";
  }
  return NULL;
}

static const acq_ops lock_ops = {lock_take, lock_release_op, lock_ready};
static const acq_ops sem_ops = {sem_take_op, sem_release_op, sem_ready};

static const acq_ops *ops_of(sk_obj *o) { return o->type == &lock_type ? &lock_ops : &sem_ops; }

/* Locks and semaphores both start with their sk_xw. */
static sk_xw *xw_of(sk_obj *o) { return &SK_XSTATE(sk_lock, o)->w; }

/* Checks the lock or semaphore at idx and returns its view. */
static sk_obj *check_unit(lua_State *L, int idx) {
  sk_handle *h = luaL_testudata(L, idx, LOCK_MT);
  if (h && h->obj) return h->obj;
  if (h == NULL && luaL_testudata(L, idx, SEM_MT) == NULL) {
    luaL_typeerror(L, idx, "skein.lock, skein.rlock or skein.semaphore");
  }
  return sk_handle_check(L, idx, h ? LOCK_MT : SEM_MT);
}

/* A to-be-closed guard: releases what hold() took, on behalf of the
** context that took it (a failed task's pending __close handlers run after
** the task has stopped being the current context). */
typedef struct guard {
  const acq_ops *ops;
  sk_who who;
  int held;
} guard;

static void push_guard(lua_State *L, int obj_idx, const acq_ops *ops, sk_ctx *c) {
  guard *g = lua_newuserdatauv(L, sizeof *g, 1);
  g->ops = ops;
  sk_who_of(c, &g->who);
  g->held = 1;
  luaL_setmetatable(L, GUARD_MT);
  lua_pushvalue(L, obj_idx);
  lua_setiuservalue(L, -2, 1);
}

/* guard:release(), also its __close: releases once; later calls do nothing */
static int l_guard_release(lua_State *L) {
  guard *g = luaL_checkudata(L, 1, GUARD_MT);
  if (!g->held) return 0;
  g->held = 0;
  lua_getiuservalue(L, 1, 1);
  sk_handle *h = lua_touserdata(L, -1);
  if (h == NULL || h->obj == NULL) return 0;
  const char *err = g->ops->release(h->obj, &g->who);
  if (err) return sk_error_raise(L, "usage", "%s", err);
  return 0;
}

static int l_guard_tostring(lua_State *L) {
  guard *g = luaL_checkudata(L, 1, GUARD_MT);
  lua_pushfstring(L, "skein.guard: %p (%s)", (void *)g, g->held ? "held" : "released");
  return 1;
}

/* A lock or a semaphore as a wait source (its view; the handle at index 1,
** the call's deadline at 2): ready when the current context can take a
** unit, that is a free lock (or, for an rlock, one it holds), or a
** semaphore above zero. Waiting without a deadline for a lock the context
** holds is a deadlock. take_unit returns 1 when it took one, 0 when the
** deadline passed, or SK_WAIT_MORE. */
static int take_unit(lua_State *L, sk_obj *o, int expired) {
  sk_who who;
  int mine;
  sk_who_of(sk_current(L), &who);
  if (ops_of(o)->take(o, &who, &mine)) return 1;
  if (expired) return 0;
  if (mine && sk_to_deadline(L, 2) == SK_NO_DEADLINE) {
    return sk_error_raise(L, "deadlock",
                          "this task already holds the lock (use skein.rlock for re-entry)");
  }
  return SK_WAIT_MORE;
}

static int unit_link(void *obj, sk_ctx *c, int round) {
  sk_obj *o = obj;
  (void)round;
  return sk_xw_link(c, xw_of(o), ops_of(o)->ready, SK_XSTATE(void, o));
}

static int unit_unlink(void *obj, sk_ctx *c) { return sk_xw_unlink(c, xw_of(obj)); }

/* A release wakes one waiter: one that leaves without taking the unit
** hands the wake on. */
static void unit_pass_on(void *obj) {
  sk_obj *o = obj;
  sk_xw_pass_on(xw_of(o), ops_of(o)->ready, SK_XSTATE(void, o));
}

/* acquire gives true, or false once the deadline passed. */
static int acquire_attempt(lua_State *L, void *obj, int round, int expired) {
  int got = take_unit(L, obj, expired);
  (void)round;
  if (got == SK_WAIT_MORE) return got;
  lua_pushboolean(L, got);
  return 1;
}

/* hold gives a guard, or raises kind timeout. */
static int hold_attempt(lua_State *L, void *obj, int round, int expired) {
  int got = take_unit(L, obj, expired);
  (void)round;
  if (got == SK_WAIT_MORE) return got;
  if (!got) return sk_error_raise(L, "timeout", "hold timed out before it could acquire");
  push_guard(L, 1, ops_of(obj), sk_current(L));
  return 1;
}

/* The continuation of with's call (stack: 1 the object, 2 its deadline,
** then the function's results or its error): releases, then returns the
** results or raises the error. A failed release is reported only when the
** function itself succeeded. */
static int with_done(lua_State *L, int status, lua_KContext kctx) {
  sk_obj *o = ((sk_handle *)lua_touserdata(L, 1))->obj;
  sk_who who;
  (void)kctx;
  sk_who_of(sk_current(L), &who);
  const char *err = ops_of(o)->release(o, &who);
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(L);
  if (err) return sk_error_raise(L, "usage", "%s", err);
  return lua_gettop(L) - 2;
}

/* with calls its function (at 3, its arguments after it) once it holds
** the unit (it has no deadline), then releases. */
static int with_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  if (take_unit(L, obj, expired) == SK_WAIT_MORE) return SK_WAIT_MORE;
  return with_done(L, lua_pcallk(L, lua_gettop(L) - 3, LUA_MULTRET, 0, 0, with_done), 0);
}

#define UNIT_SOURCE(fn)                                                                    \
  {.name = "lock or semaphore", .attempt = fn, .link = unit_link, .unlink = unit_unlink,  \
   .pass_on = unit_pass_on}
static const sk_source acquire_source = UNIT_SOURCE(acquire_attempt);
static const sk_source hold_source = UNIT_SOURCE(hold_attempt);
static const sk_source with_source = UNIT_SOURCE(with_attempt);

/* lock:acquire([timeout]), semaphore:acquire([timeout]) -> true, or false
** on timeout */
static int l_sync_acquire(lua_State *L) {
  sk_obj *o = check_unit(L, 1);
  setup_deadline(L, 2);
  return sk_wait_on(L, &acquire_source, o, sk_to_deadline(L, 2), 0);
}

/* :hold([timeout]) -> a guard for `local g <close> = ...`; raises kind
** timeout when it could not acquire in time */
static int l_sync_hold(lua_State *L) {
  sk_obj *o = check_unit(L, 1);
  setup_deadline(L, 2);
  return sk_wait_on(L, &hold_source, o, sk_to_deadline(L, 2), 0);
}

/* :with(fn, ...) -> fn's results: acquires, calls fn(...), releases even
** when fn raises, then returns or re-raises */
static int l_sync_with(lua_State *L) {
  sk_obj *o = check_unit(L, 1);
  sk_check_callable(L, 2);
  sk_push_deadline(L, SK_NO_DEADLINE);
  lua_insert(L, 2);
  return sk_wait_on(L, &with_source, o, SK_NO_DEADLINE, 0);
}

/* ------------------------------------------------------------ condition */

/* A condition is a waiter list tied to a lock; its handles carry a handle
** of that lock as their first user value, to which acquire, release, hold
** and with delegate. */
typedef struct sk_cond {
  sk_shm_obj obj;
  sk_xw w;
  sk_off lk;                    /* its sk_lock, a reference */
} sk_cond;

static sk_obj *cond_view(sk_shm_obj *so);
static const sk_shm_ops cond_shm = {SK_SHM_COND, sk_xobj_shared, sk_xobj_shared, cond_view};
static const sk_objtype cond_type = {COND_MT, sk_xobj_destroy, &cond_shm};

/* A condition's view also keeps a view of its lock (`extra`). */
static sk_obj *make_cond_view(sk_shm_obj *so) {
  sk_obj *lk = sk_xobj_view(sk_shm_ptr(((sk_cond *)so)->lk));
  if (lk == NULL) return NULL;
  sk_obj *o = sk_xobj_make(so, &cond_type);
  if (o == NULL) {
    sk_obj_release(lk);
    return NULL;
  }
  ((sk_xobj *)o)->extra = lk;
  return o;
}

static sk_obj *cond_view(sk_shm_obj *so) { return sk_shm_view_get(so, make_cond_view); }

static void cond_gone(sk_shm_obj *o) {
  sk_cond *cv = (sk_cond *)o;
  sk_xw_lock(&cv->w);
  sk_xw_purge(&cv->w);
  sk_xw_unlock(&cv->w);
}

static void cond_free(sk_shm_obj *o) {
  sk_cond *cv = (sk_cond *)o;
  sk_xw_free(&cv->w);
  sk_shm_obj_release(sk_shm_ptr(cv->lk));
}

static const sk_shm_type cond_shm_type = {cond_gone, cond_free};

/* Locks and semaphores both start with their sk_xw. */
static void xw_free(sk_shm_obj *o) { sk_xw_free(&((sk_lock *)o)->w); }

/* The lock of the condition whose view is `o`. */
static sk_lock *cond_lock(sk_obj *o) { return SK_XSTATE(sk_lock, ((sk_xobj *)o)->extra); }

static void push_cond(lua_State *L, sk_obj *o) {
  sk_obj *lk = ((sk_xobj *)o)->extra;
  sk_obj_retain(lk);
  push_lock(L, lk);
  push_handle_uv(L, o, COND_MT);
}

/* skein.condition([lock]) -> condition (a new rlock when none is given) */
static int l_cond_new(lua_State *L) {
  sk_obj *lk;
  lua_settop(L, 1);
  if (lua_isnil(L, 1)) {
    lk = new_lock(L, 1);
    push_lock(L, lk);
    lua_replace(L, 1);
  } else {
    if (!luaL_testudata(L, 1, LOCK_MT)) luaL_typeerror(L, 1, "skein.lock or skein.rlock");
    lk = sk_handle_check(L, 1, LOCK_MT);
  }
  sk_obj *o = sk_xobj_new(L, &cond_type, sizeof(sk_cond));
  sk_cond *cv = SK_XSTATE(sk_cond, o);
  sk_xw_init(&cv->w);
  sk_shm_obj *lso = sk_xobj_shared(lk);
  sk_shm_obj_retain(lso);
  cv->lk = sk_shm_off(lso);
  sk_obj_retain(lk);
  ((sk_xobj *)o)->extra = lk;
  lua_pushvalue(L, 1);
  push_handle_uv(L, o, COND_MT);
  return 1;
}

static sk_cond *check_cond(lua_State *L, int idx) {
  return SK_XSTATE(sk_cond, sk_handle_check(L, idx, COND_MT));
}

static sk_lock *check_cond_lock(lua_State *L, int idx) {
  return cond_lock(sk_handle_check(L, idx, COND_MT));
}

/* The count of levels the current context holds of the condition's lock,
** or a raised error naming `op` when it holds none. */
static int cond_check_owned(lua_State *L, sk_lock *k, const char *op) {
  sk_who who;
  sk_who_of(sk_current(L), &who);
  sk_xw_lock(&k->w);
  int count = lock_mine(k, &who) ? k->count : 0;
  sk_xw_unlock(&k->w);
  if (count == 0) sk_error_raise(L, "usage", "cannot %s a condition without holding its lock", op);
  return count;
}

/* Replaces the condition at index 1 with its lock and calls f. */
static int delegate(lua_State *L, lua_CFunction f) {
  check_cond(L, 1);
  lua_getiuservalue(L, 1, 1);
  lua_replace(L, 1);
  return f(L);
}

static int l_cond_acquire(lua_State *L) { return delegate(L, l_sync_acquire); }
static int l_cond_release(lua_State *L) { return delegate(L, l_lock_release); }
static int l_cond_hold(lua_State *L) { return delegate(L, l_sync_hold); }
static int l_cond_with(lua_State *L) { return delegate(L, l_sync_with); }

static int never_ready(void *obj) {
  (void)obj;
  return 0;
}

/* A condition wait has two phases, each a wait source over this record,
** a userdata at index 2 for as long as the wait lasts (its user value: an
** error the first phase raised, kept until the lock is back). */
typedef struct cwait {
  sk_obj *cond;                 /* the condition's view (the handle at 1 holds it) */
  sk_who who;
  int count;                    /* the lock levels to take back */
  int picked;                   /* a notify took this wait's record */
  int failed;                   /* the user value holds an error to raise */
  int notified;                 /* what wait returns */
} cwait;

static sk_xw *cw_list(cwait *w) { return &SK_XSTATE(sk_cond, w->cond)->w; }

/* Phase 2, the lock back, a source over the lock's view (the record at
** index 2): ready when the lock is free. Shielded from cancels and scope
** deadlines, so that wait never returns or raises without the lock; then
** it returns whether it was notified, or raises what phase 1 kept. */
static int retake_attempt(lua_State *L, void *obj, int round, int expired) {
  cwait *w = lua_touserdata(L, 2);
  sk_lock *k = SK_XSTATE(sk_lock, obj);
  (void)round;
  (void)expired;
  sk_xw_lock(&k->w);
  int got = lock_try_locked(k, &w->who, w->count);
  sk_xw_unlock(&k->w);
  if (!got) return SK_WAIT_MORE;
  if (w->failed) {
    lua_getiuservalue(L, 2, 1);
    return lua_error(L);
  }
  lua_pushboolean(L, w->notified);
  return 1;
}

static const sk_source retake_source = UNIT_SOURCE(retake_attempt);

static int retake(lua_State *L, cwait *w) {
  return sk_wait_on(L, &retake_source, ((sk_xobj *)w->cond)->extra, SK_NO_DEADLINE,
                    SK_WAIT_SHIELD);
}

/* Phase 1 raised (cancelled, interrupted, a deadlock, a scope's deadline):
** the error waits in the user value while the lock is taken back. */
static int notify_raised(lua_State *L, void *obj) {
  lua_setiuservalue(L, 2, 1);
  ((cwait *)obj)->failed = 1;
  return retake(L, obj);
}

/* Phase 1, the notification: ready once a notify took this wait's record.
** The first look always waits: it links, then releases the lock (a notify
** needs the lock, so none is lost in between), even when the deadline
** passed already, so that a zero timeout lets others take the lock too.
** After a wake it is done: notified, or not (the deadline passed, or a
** wake only to look again), or a deadlock when the wake was to look again
** for a deadlock (worker.c): nothing is left that could notify it. */
static int notify_attempt(lua_State *L, void *obj, int round, int expired) {
  cwait *w = obj;
  if (round == 0) return SK_WAIT_MORE;
  if (!w->picked && !expired && sk_current(L)->relook) {
    sk_error_push(L, "deadlock", "this wait can never end: no task is ready, no timer is "
                  "armed and no I/O is pending");
    return notify_raised(L, obj);
  }
  w->notified = w->picked || !expired;
  return retake(L, w);
}

static int notify_link(void *obj, sk_ctx *c, int round) {
  cwait *w = obj;
  (void)round;
  int rc = sk_xw_link(c, cw_list(w), never_ready, NULL);
  if (rc == 0) lock_release_as(cond_lock(w->cond), &w->who, 1);
  return rc;
}

static int notify_unlink(void *obj, sk_ctx *c) {
  cwait *w = obj;
  w->picked = sk_xw_unlink(c, cw_list(w));
  return w->picked;
}

/* A notified wait that raises hands its notification on. */
static void notify_pass_on(void *obj) { sk_xw_pass_on(cw_list(obj), NULL, NULL); }

static const sk_source notify_source = {.name = COND_MT,
                                        .attempt = notify_attempt,
                                        .link = notify_link,
                                        .unlink = notify_unlink,
                                        .pass_on = notify_pass_on,
                                        .raised = notify_raised};

/* condition:wait([timeout]) -> true when notified, false on timeout. The
** caller must hold the lock; it is released while waiting and held again
** when wait returns or raises. */
static int l_cond_wait(lua_State *L) {
  sk_obj *o = sk_handle_check(L, 1, COND_MT);
  uint64_t d = sk_check_deadline(L, 2);
  int count = cond_check_owned(L, cond_lock(o), "wait on");
  lua_settop(L, 1);
  cwait *w = lua_newuserdatauv(L, sizeof *w, 1);
  memset(w, 0, sizeof *w);
  w->cond = o;
  w->count = count;
  sk_who_of(sk_current(L), &w->who);
  return sk_wait_on(L, &notify_source, w, d, 0);
}

enum { WF_CALL_PRED, WF_GOT_PRED };

/* The continuation of wait_for. Stack: 1 condition, 2 predicate,
** 3 deadline, 4 the predicate's last value. */
static int cond_wait_for_k(lua_State *L, int status, lua_KContext phase) {
  (void)status;
  uint64_t d = sk_to_deadline(L, 3);
  for (;;) {
    if (phase == WF_CALL_PRED) {
      lua_settop(L, 3);
      lua_pushvalue(L, 2);
      lua_callk(L, 0, 1, WF_GOT_PRED, cond_wait_for_k);
    }
    if (lua_toboolean(L, 4) || sk_expired(d)) return 1;
    lua_settop(L, 3);
    lua_pushcfunction(L, l_cond_wait);
    lua_pushvalue(L, 1);
    uint64_t now = uv_hrtime();
    if (d == SK_NO_DEADLINE) lua_pushnil(L);
    else lua_pushnumber(L, d > now ? (double)(d - now) / 1e9 : 0.0);
    phase = WF_CALL_PRED;
    lua_callk(L, 2, 0, WF_CALL_PRED, cond_wait_for_k);
  }
}

/* condition:wait_for(pred, [timeout]) -> pred's last value: waits until
** pred() is true (checked with the lock held) or the timeout passes. */
static int l_cond_wait_for(lua_State *L) {
  check_cond(L, 1);
  sk_check_callable(L, 2);
  uint64_t d = sk_check_deadline(L, 3);
  cond_check_owned(L, check_cond_lock(L, 1), "wait on");
  lua_settop(L, 2);
  sk_push_deadline(L, d);
  return cond_wait_for_k(L, LUA_OK, WF_CALL_PRED);
}

/* condition:notify([n=1]) wakes up to n waiters; the caller holds the lock */
static int l_cond_notify(lua_State *L) {
  sk_cond *cv = check_cond(L, 1);
  lua_Integer n = sk_check_count(L, 2, 1, 0, "non-negative integer");
  cond_check_owned(L, check_cond_lock(L, 1), "notify");
  sk_xw_lock(&cv->w);
  for (lua_Integer i = 0; i < n && sk_xw_wake_one(&cv->w); i++) {}
  sk_xw_unlock(&cv->w);
  return 0;
}

/* condition:notify_all() wakes every waiter; the caller holds the lock */
static int l_cond_notify_all(lua_State *L) {
  sk_cond *cv = check_cond(L, 1);
  cond_check_owned(L, check_cond_lock(L, 1), "notify");
  sk_xw_lock(&cv->w);
  sk_xw_wake_all(&cv->w);
  sk_xw_unlock(&cv->w);
  return 0;
}

static int l_cond_tostring(lua_State *L) {
  sk_cond *cv = check_cond(L, 1);
  sk_xw_lock(&cv->w);
  size_t n = sk_xw_count(&cv->w);
  sk_xw_unlock(&cv->w);
  lua_pushfstring(L, "skein.condition: %p (%I waiting)", (void *)cv, (LUAI_UACINT)n);
  return 1;
}

/* ---------------------------------------------------------------- open */

void sk_sync_open(lua_State *L) {
  static const luaL_Reg lock_methods[] = {
      {"acquire", l_sync_acquire}, {"release", l_lock_release}, {"locked", l_lock_locked},
      {"hold", l_sync_hold},       {"with", l_sync_with},            {NULL, NULL}};
  static const luaL_Reg sem_methods[] = {
      {"acquire", l_sync_acquire}, {"release", l_sem_release}, {"value", l_sem_value},
      {"hold", l_sync_hold},       {"with", l_sync_with},           {NULL, NULL}};
  static const luaL_Reg cond_methods[] = {
      {"acquire", l_cond_acquire}, {"release", l_cond_release},
      {"hold", l_cond_hold},       {"with", l_cond_with},
      {"wait", l_cond_wait},       {"wait_for", l_cond_wait_for},
      {"notify", l_cond_notify},   {"notify_all", l_cond_notify_all},
      {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"lock", l_lock_new},
                                   {"rlock", l_rlock_new},
                                   {"semaphore", l_sem_new},
                                   {"bounded_semaphore", l_bsem_new},
                                   {"condition", l_cond_new},
                                   {NULL, NULL}};
  static const luaL_Reg guard_methods[] = {{"release", l_guard_release}, {NULL, NULL}};
  static const sk_type types[] = {
      {.name = LOCK_MT, .methods = lock_methods, .gc = sk_handle_release,
       .tostring = l_lock_tostring, .push = push_lock, .select = &lock_select},
      {.name = SEM_MT, .methods = sem_methods, .gc = sk_handle_release,
       .tostring = l_sem_tostring, .push = push_sem, .select = &sem_select},
      {.name = COND_MT, .methods = cond_methods, .gc = sk_handle_release,
       .tostring = l_cond_tostring, .push = push_cond},
      {.name = GUARD_MT, .methods = guard_methods, .close = l_guard_release,
       .tostring = l_guard_tostring}};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) sk_type_register(L, &types[i]);
  sk_xobj_register(&lock_type);
  sk_xobj_register(&sem_type);
  sk_xobj_register(&cond_type);
  sk_shm_register_type(SK_SHM_LOCK, &lock_shm_type);
  sk_shm_register_type(SK_SHM_SEM, &sem_shm_type);
  sk_shm_register_type(SK_SHM_COND, &cond_shm_type);
  luaL_setfuncs(L, funcs, 0);
}
