/*
** event.c — skein.event(): a flag that tasks of any worker can wait for;
** set() wakes every waiter. Shared by reference like the objects of
** sync.c, and like them kept in the shared segment, so that worker
** processes use the same event (xwait.c).
*/
#include <stdlib.h>

#include "sk_sync.h"

#define EVENT_MT "skein.Event"

/* The event's state, in the shared segment (xwait.c). */
typedef struct sk_event {
  sk_shm_obj obj;
  sk_xw w;
  int set;
} sk_event;

static void event_gone(sk_shm_obj *o) {
  sk_event *e = (sk_event *)o;
  sk_xw_lock(&e->w);
  sk_xw_purge(&e->w);
  if (e->set) sk_xw_wake_all(&e->w);   /* a wake lost with the dead one */
  sk_xw_unlock(&e->w);
}

static void event_free(sk_shm_obj *o) { sk_xw_free(&((sk_event *)o)->w); }

static const sk_shm_type event_shm_type = {event_gone, event_free};

static const sk_shm_ops event_shm = {SK_SHM_EVENT, sk_xobj_shared, sk_xobj_shared, sk_xobj_view};
static const sk_objtype event_type = {EVENT_MT, sk_xobj_destroy, &event_shm};


static int event_ready(void *obj) { return ((sk_event *)obj)->set; }

static void push_event(lua_State *L, sk_obj *o) { sk_handle_push(L, o, EVENT_MT); }

/* skein.event() -> event */
static int l_event_new(lua_State *L) {
  sk_obj *o = sk_xobj_new(L, &event_type, sizeof(sk_event));
  sk_xw_init(&SK_XSTATE(sk_event, o)->w);
  push_event(L, o);
  return 1;
}

static sk_event *check_event(lua_State *L, int idx) {
  return SK_XSTATE(sk_event, sk_handle_check(L, idx, EVENT_MT));
}

static int l_event_set(lua_State *L) {
  sk_event *e = check_event(L, 1);
  sk_xw_lock(&e->w);
  e->set = 1;
  sk_xw_wake_all(&e->w);
  sk_xw_unlock(&e->w);
  return 0;
}

static int l_event_clear(lua_State *L) {
  sk_event *e = check_event(L, 1);
  sk_xw_lock(&e->w);
  e->set = 0;
  sk_xw_unlock(&e->w);
  return 0;
}

static int is_set(sk_event *e) {
  sk_xw_lock(&e->w);
  int set = e->set;
  sk_xw_unlock(&e->w);
  return set;
}

static int l_event_is_set(lua_State *L) {
  lua_pushboolean(L, is_set(check_event(L, 1)));
  return 1;
}

/* An event as a wait source (the view `o` of it at index 1): ready when
** set; wait() gives true, or false on timeout. */
static int event_attempt(lua_State *L, void *obj, int round, int expired) {
  int set = is_set(SK_XSTATE(sk_event, (sk_obj *)obj));
  (void)round;
  if (!set && !expired) return SK_WAIT_MORE;
  lua_pushboolean(L, set);
  return 1;
}

static int event_link(void *obj, sk_ctx *c, int round) {
  sk_obj *o = obj;
  sk_event *e = SK_XSTATE(sk_event, o);
  (void)round;
  /* An event nobody else holds can only be set by this worker: a wait
  ** that nothing here can end is a deadlock, also in a thread. */
  c->wait_alone = sk_xobj_alone(o);
  return sk_xw_link(c, &e->w, event_ready, e);
}

static int event_unlink(void *obj, sk_ctx *c) {
  return sk_xw_unlink(c, &SK_XSTATE(sk_event, (sk_obj *)obj)->w);
}

static const sk_source event_source = {
    .name = EVENT_MT, .attempt = event_attempt, .link = event_link, .unlink = event_unlink};

/* event:wait([timeout]) -> true when set, false on timeout */
static int l_event_wait(lua_State *L) {
  sk_obj *o = sk_handle_check(L, 1, EVENT_MT);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &event_source, o, d, 0);
}

static int l_event_tostring(lua_State *L) {
  sk_event *e = check_event(L, 1);
  lua_pushfstring(L, "skein.event: %p (%s)", (void *)e, is_set(e) ? "set" : "clear");
  return 1;
}

static int event_try(lua_State *L, sk_obj *o) {
  if (!is_set(SK_XSTATE(sk_event, o))) return 0;
  lua_pushboolean(L, 1);
  return 1;
}

static int event_add_waiter(sk_obj *o, const sk_waiter *w) {
  sk_event *e = SK_XSTATE(sk_event, o);
  sk_xw_lock(&e->w);
  int rc = e->set ? 1 : sk_xw_add(&e->w, w);
  sk_xw_unlock(&e->w);
  return rc;
}

static void event_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_event *e = SK_XSTATE(sk_event, o);
  sk_xw_lock(&e->w);
  sk_xw_remove(&e->w, port, slot);
  sk_xw_unlock(&e->w);
}

static const sk_selectable event_select = {event_try, event_add_waiter,
                                           event_remove_waiter};


/* event:_alone() -> whether this handle's worker holds the only reference
** to the event in the whole process tree (no other handle, queue item or
** process has it). stdlib/skein/pool.lua uses it to learn when the last
** copy of a pool is gone. */
static int l_event_alone(lua_State *L) {
  check_event(L, 1);
  lua_pushboolean(L, sk_xobj_alone(sk_handle_check(L, 1, EVENT_MT)));
  return 1;
}

void sk_event_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"set", l_event_set},   {"clear", l_event_clear}, {"is_set", l_event_is_set},
      {"wait", l_event_wait}, {"_alone", l_event_alone}, {NULL, NULL}};
  static const sk_type type = {.name = EVENT_MT, .methods = methods, .gc = sk_handle_release,
                               .tostring = l_event_tostring, .push = push_event,
                               .select = &event_select};
  sk_type_register(L, &type);
  sk_xobj_register(&event_type);
  sk_shm_register_type(SK_SHM_EVENT, &event_shm_type);
  lua_pushcfunction(L, l_event_new);
  lua_setfield(L, -2, "event");
}
