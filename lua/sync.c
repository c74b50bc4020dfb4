/*
** sync.c — synchronisation objects shared by every worker that holds a
** handle: event, lock, rlock, semaphore, bounded semaphore, condition,
** barrier. Each is an sk_obj (reference counted, sendable by reference)
** whose state is guarded by its own mutex; a blocking method waits through
** sk_shared_wait_begin/end, so it suspends only its task (or drives the loop
** where it cannot yield) and honours timeouts, cancellation and Ctrl-C.
**
** Lock order: an object's mutex is held only briefly and never while
** waiting; a port's lock (taken to wake a waiter) is always innermost.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_lua.h"

#define EVENT_MT "skein.Event"
#define LOCK_MT "skein.Lock"

/* Every blocking method keeps its deadline at stack index 2. */
static void setup_deadline(lua_State *L, int timeout_arg) {
  uint64_t d = sk_check_deadline(L, timeout_arg);
  lua_settop(L, 1);
  sk_push_deadline(L, d);
}

/* ---------------------------------------------------------------- event */

typedef struct sk_event {
  sk_obj obj;
  uv_mutex_t lock;
  int set;
  sk_waitlist waiters;
} sk_event;

static void event_destroy(sk_obj *o) {
  sk_event *e = (sk_event *)o;
  sk_waitlist_free(&e->waiters);
  uv_mutex_destroy(&e->lock);
  free(e);
}

static const sk_objtype event_type = {EVENT_MT, event_destroy};

static int event_ready(void *obj) { return ((sk_event *)obj)->set; }

static void push_event(lua_State *L, sk_obj *o) { sk_handle_push(L, o, EVENT_MT); }

/* skein.event() -> event */
static int l_event_new(lua_State *L) {
  sk_event *e = calloc(1, sizeof *e);
  if (e == NULL || uv_mutex_init(&e->lock) != 0) {
    free(e);
    return luaL_error(L, "not enough memory for an event");
  }
  if (sk_obj_init(&e->obj, &event_type) != 0) {
    uv_mutex_destroy(&e->lock);
    free(e);
    return luaL_error(L, "not enough memory for an event");
  }
  push_event(L, &e->obj);
  return 1;
}

static sk_event *check_event(lua_State *L, int idx) {
  return (sk_event *)sk_handle_check(L, idx, EVENT_MT);
}

static int l_event_set(lua_State *L) {
  sk_event *e = check_event(L, 1);
  uv_mutex_lock(&e->lock);
  e->set = 1;
  sk_waitlist_wake_all(&e->waiters);
  uv_mutex_unlock(&e->lock);
  return 0;
}

static int l_event_clear(lua_State *L) {
  sk_event *e = check_event(L, 1);
  uv_mutex_lock(&e->lock);
  e->set = 0;
  uv_mutex_unlock(&e->lock);
  return 0;
}

static int l_event_is_set(lua_State *L) {
  sk_event *e = check_event(L, 1);
  uv_mutex_lock(&e->lock);
  lua_pushboolean(L, e->set);
  uv_mutex_unlock(&e->lock);
  return 1;
}

static int event_wait_k(lua_State *L, int status, lua_KContext kctx) {
  sk_event *e = check_event(L, 1);
  sk_ctx *c = sk_current(L);
  uint64_t d = sk_to_deadline(L, 2);
  for (;;) {
    if (status == LUA_YIELD) sk_shared_wait_end(L, c, &e->lock, &e->waiters);
    uv_mutex_lock(&e->lock);
    int set = e->set;
    uv_mutex_unlock(&e->lock);
    if (set || sk_expired(d)) {
      lua_pushboolean(L, set);
      return 1;
    }
    if (sk_shared_wait_begin(L, c, d, &e->lock, &e->waiters, event_ready, e)) {
      status = LUA_OK;
      continue;
    }
    status = sk_wait(L, c, kctx, event_wait_k);
  }
}

/* event:wait([timeout]) -> true when set, false on timeout */
static int l_event_wait(lua_State *L) {
  check_event(L, 1);
  setup_deadline(L, 2);
  return event_wait_k(L, LUA_OK, 0);
}

static int event_try(lua_State *L, sk_obj *o) {
  sk_event *e = (sk_event *)o;
  uv_mutex_lock(&e->lock);
  int set = e->set;
  uv_mutex_unlock(&e->lock);
  if (!set) return 0;
  lua_pushboolean(L, 1);
  return 1;
}

static int event_add_waiter(sk_obj *o, const sk_waiter *w) {
  sk_event *e = (sk_event *)o;
  uv_mutex_lock(&e->lock);
  int rc = e->set ? 1 : sk_waitlist_add(&e->waiters, w);
  uv_mutex_unlock(&e->lock);
  return rc;
}

static void event_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_event *e = (sk_event *)o;
  uv_mutex_lock(&e->lock);
  sk_waitlist_remove(&e->waiters, port, slot);
  uv_mutex_unlock(&e->lock);
}

static const sk_selectable event_select = {EVENT_MT, event_try, event_add_waiter,
                                           event_remove_waiter};

/* ----------------------------------------------------------------- lock */

/* A lock belongs to a context of a worker: (port, slot) of whoever holds it
** identifies the owner across threads, which rlock needs for re-entry and
** release checks. */
typedef struct sk_lock {
  sk_obj obj;
  uv_mutex_t lock;
  int reentrant;
  int count;                    /* 0: free */
  sk_port *owner_port;          /* not counted: compared, never used */
  uint32_t owner_slot;
  sk_waitlist waiters;
} sk_lock;

static void lock_destroy(sk_obj *o) {
  sk_lock *k = (sk_lock *)o;
  sk_waitlist_free(&k->waiters);
  uv_mutex_destroy(&k->lock);
  free(k);
}

static const sk_objtype lock_type = {LOCK_MT, lock_destroy};

static void push_lock(lua_State *L, sk_obj *o) { sk_handle_push(L, o, LOCK_MT); }

static int new_lock(lua_State *L, int reentrant) {
  sk_lock *k = calloc(1, sizeof *k);
  if (k == NULL || uv_mutex_init(&k->lock) != 0) {
    free(k);
    return luaL_error(L, "not enough memory for a lock");
  }
  if (sk_obj_init(&k->obj, &lock_type) != 0) {
    uv_mutex_destroy(&k->lock);
    free(k);
    return luaL_error(L, "not enough memory for a lock");
  }
  k->reentrant = reentrant;
  push_lock(L, &k->obj);
  return 1;
}

static int l_lock_new(lua_State *L) { return new_lock(L, 0); }
static int l_rlock_new(lua_State *L) { return new_lock(L, 1); }

static sk_lock *check_lock(lua_State *L, int idx) {
  return (sk_lock *)sk_handle_check(L, idx, LOCK_MT);
}

/* The identity of the calling context: its worker's port and wake slot.
** A context gets a slot the first time it needs one. */
static void identity(lua_State *L, sk_ctx *c, sk_port **port, uint32_t *slot) {
  if (sk_ctx_slot(c) != 0) luaL_error(L, "not enough memory");
  *port = c->w->port;
  *slot = c->wslot;
}

/* Takes the lock if it can; 1 on success. The caller holds k->lock. */
static int lock_try_locked(sk_lock *k, sk_port *port, uint32_t slot) {
  if (k->count == 0) {
    k->count = 1;
    k->owner_port = port;
    k->owner_slot = slot;
    return 1;
  }
  if (k->reentrant && k->owner_port == port && k->owner_slot == slot) {
    k->count++;
    return 1;
  }
  return 0;
}

static int lock_ready(void *obj) { return ((sk_lock *)obj)->count == 0; }

static int lock_acquire_k(lua_State *L, int status, lua_KContext kctx) {
  sk_lock *k = check_lock(L, 1);
  sk_ctx *c = sk_current(L);
  uint64_t d = sk_to_deadline(L, 2);
  sk_port *port;
  uint32_t slot;
  for (;;) {
    if (status == LUA_YIELD) sk_shared_wait_end(L, c, &k->lock, &k->waiters);
    identity(L, c, &port, &slot);
    uv_mutex_lock(&k->lock);
    int got = lock_try_locked(k, port, slot);
    uv_mutex_unlock(&k->lock);
    if (got || sk_expired(d)) {
      lua_pushboolean(L, got);
      return 1;
    }
    if (!k->reentrant && d == SK_NO_DEADLINE && k->owner_port == port && k->owner_slot == slot) {
      return luaL_error(L, "deadlock: this task already holds the lock (use skein.rlock for re-entry)");
    }
    if (sk_shared_wait_begin(L, c, d, &k->lock, &k->waiters, lock_ready, k)) {
      status = LUA_OK;
      continue;
    }
    status = sk_wait(L, c, kctx, lock_acquire_k);
  }
}

/* lock:acquire([timeout]) -> true, or false on timeout */
static int l_lock_acquire(lua_State *L) {
  check_lock(L, 1);
  setup_deadline(L, 2);
  return lock_acquire_k(L, LUA_OK, 0);
}

/* lock:release(): only the holder may release */
static int l_lock_release(lua_State *L) {
  sk_lock *k = check_lock(L, 1);
  sk_port *port;
  uint32_t slot;
  identity(L, sk_current(L), &port, &slot);
  uv_mutex_lock(&k->lock);
  int held = k->count > 0, mine = held && k->owner_port == port && k->owner_slot == slot;
  if (mine && --k->count == 0) {
    k->owner_port = NULL;
    k->owner_slot = 0;
    sk_waitlist_wake_one(&k->waiters);
  }
  uv_mutex_unlock(&k->lock);
  if (!held) return luaL_error(L, "cannot release a lock that is not held");
  if (!mine) return luaL_error(L, "cannot release a lock held by another task");
  return 0;
}

static int l_lock_locked(lua_State *L) {
  sk_lock *k = check_lock(L, 1);
  uv_mutex_lock(&k->lock);
  lua_pushboolean(L, k->count > 0);
  uv_mutex_unlock(&k->lock);
  return 1;
}

static int lock_try(lua_State *L, sk_obj *o) {
  sk_lock *k = (sk_lock *)o;
  sk_port *port;
  uint32_t slot;
  identity(L, sk_current(L), &port, &slot);
  uv_mutex_lock(&k->lock);
  int got = lock_try_locked(k, port, slot);
  uv_mutex_unlock(&k->lock);
  if (!got) return 0;
  lua_pushboolean(L, 1);
  return 1;
}

static int lock_add_waiter(sk_obj *o, const sk_waiter *w) {
  sk_lock *k = (sk_lock *)o;
  uv_mutex_lock(&k->lock);
  int rc = k->count == 0 ? 1 : sk_waitlist_add(&k->waiters, w);
  uv_mutex_unlock(&k->lock);
  return rc;
}

static void lock_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_lock *k = (sk_lock *)o;
  uv_mutex_lock(&k->lock);
  sk_waitlist_remove(&k->waiters, port, slot);
  uv_mutex_unlock(&k->lock);
}

static const sk_selectable lock_select = {LOCK_MT, lock_try, lock_add_waiter, lock_remove_waiter};

/* ---------------------------------------------------------------- open */

static void new_type(lua_State *L, const char *mt, const luaL_Reg *methods) {
  if (luaL_newmetatable(L, mt)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sk_handle_release);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

void sk_sync_open(lua_State *L) {
  static const luaL_Reg event_methods[] = {
      {"set", l_event_set},   {"clear", l_event_clear}, {"is_set", l_event_is_set},
      {"wait", l_event_wait}, {NULL, NULL}};
  static const luaL_Reg lock_methods[] = {{"acquire", l_lock_acquire},
                                          {"release", l_lock_release},
                                          {"locked", l_lock_locked},
                                          {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"event", l_event_new}, {"lock", l_lock_new}, {"rlock", l_rlock_new}, {NULL, NULL}};
  new_type(L, EVENT_MT, event_methods);
  new_type(L, LOCK_MT, lock_methods);
  sk_marshal_register_type(EVENT_MT, push_event);
  sk_marshal_register_type(LOCK_MT, push_lock);
  sk_select_register(&event_select);
  sk_select_register(&lock_select);
  luaL_setfuncs(L, funcs, 0);
}
