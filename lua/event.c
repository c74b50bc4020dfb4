/*
** event.c — skein.event(): a flag that tasks of any worker can wait for;
** set() wakes every waiter. Shared by reference like the objects of
** sync.c.
*/
#include <stdlib.h>

#include "sk_sync.h"

#define EVENT_MT "skein.Event"

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

static const sk_objtype event_type = {EVENT_MT, event_destroy, NULL};

static int event_ready(void *obj) { return ((sk_event *)obj)->set; }

static void push_event(lua_State *L, sk_obj *o) { sk_handle_push(L, o, EVENT_MT); }

/* skein.event() -> event */
static int l_event_new(lua_State *L) {
  sk_event *e = SK_SYNC_NEW(L, sk_event, &event_type);
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
  sk_sync_setup_deadline(L, 2);
  return event_wait_k(L, LUA_OK, 0);
}

static int l_event_tostring(lua_State *L) {
  sk_event *e = check_event(L, 1);
  uv_mutex_lock(&e->lock);
  int set = e->set;
  uv_mutex_unlock(&e->lock);
  lua_pushfstring(L, "skein.event: %p (%s)", (void *)e, set ? "set" : "clear");
  return 1;
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


void sk_event_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"set", l_event_set},   {"clear", l_event_clear}, {"is_set", l_event_is_set},
      {"wait", l_event_wait}, {NULL, NULL}};
  sk_sync_new_type(L, EVENT_MT, methods, l_event_tostring);
  sk_marshal_register_type(EVENT_MT, push_event);
  sk_select_register(&event_select);
  lua_pushcfunction(L, l_event_new);
  lua_setfield(L, -2, "event");
}
