/*
** queue.c — skein.queue: the Lua face of the queue engine (chan.c). A
** queue is shared by every worker holding a handle (tasks, threads), FIFO,
** LIFO or priority, optionally bounded (put waits while full), with
** task_done/join accounting and close.
**
** Every blocking method waits through sk_wait_on (sk_lua.h) on a source
** made of the queue's links (sk_queue_link/unlink/pass_on), so it suspends
** only its task (or drives the loop where it cannot yield) and honours
** timeouts, cancellation and Ctrl-C. Before it first sleeps, a getter or
** putter spins a few microseconds (inside sk_queue_link), which spares a
** sleep and a cross-thread wake per item when a producer and a consumer
** run neck and neck on two threads.
**
** Errors: kind "timeout" (get, put, join with a timeout), "closed" (put
** on a closed queue, get on a closed and drained one), "full"/"empty"
** (put_nowait, get_nowait), "marshal" (a value that cannot cross, at put).
*/
#include <math.h>
#include <string.h>

#include "sk_bind.h"
#include "../runtime/host/sk_chan.h"

#define QUEUE_MT "skein.Queue"
#define PENDING_MT "skein.QueuePending"

static sk_queue *check_queue(lua_State *L, int idx) {
  return (sk_queue *)sk_handle_check(L, idx, QUEUE_MT);
}

/* check_queue for the hot methods: a stamped handle (sk_chan.h) of a queue
** is recognised with one API call; anything else gets check_queue's errors. */
static inline __attribute__((always_inline)) sk_queue *self_queue(lua_State *L) {
  sk_obj *o = sk_stamped_obj(L, 1);
  if (o && sk_queue_is(o)) return (sk_queue *)o;
  return check_queue(L, 1);
}

static void push_queue(lua_State *L, sk_obj *o) { sk_stamped_push(L, o, QUEUE_MT); }

static int raise_closed(lua_State *L) {
  return sk_error_raise(L, "closed", "the queue is closed");
}

static int raise_nomem(lua_State *L) { return sk_error_raise(L, "memory", "not enough memory for a queue item"); }

/* The queue a resumed wait works on (its handle is at index 1); NULL when a
** task of this worker closed the handle meanwhile, which ends the wait. */
static void *waiting_queue(lua_State *L) { return ((sk_handle *)lua_touserdata(L, 1))->obj; }

static int get_link(void *obj, sk_ctx *c, int round) {
  return sk_queue_link(obj, SK_WAIT_GET, c, round);
}
static int get_unlink(void *obj, sk_ctx *c) { return sk_queue_unlink(obj, SK_WAIT_GET, c, 0); }
static void get_pass_on(void *obj) { sk_queue_pass_on(obj, SK_WAIT_GET); }

static int put_link(void *obj, sk_ctx *c, int round) {
  return sk_queue_link(obj, SK_WAIT_PUT, c, round);
}
static int put_unlink(void *obj, sk_ctx *c) { return sk_queue_unlink(obj, SK_WAIT_PUT, c, 0); }
static void put_pass_on(void *obj) { sk_queue_pass_on(obj, SK_WAIT_PUT); }

/* Joiners are all woken at once: nothing to pass on. */
static int join_link(void *obj, sk_ctx *c, int round) {
  return sk_queue_link(obj, SK_WAIT_JOIN, c, round);
}
static int join_unlink(void *obj, sk_ctx *c) {
  sk_queue_unlink(obj, SK_WAIT_JOIN, c, 0);
  return 0;
}

/* Parses maxsize: nil -> 0 (unbounded), else a non-negative integer. */
static size_t check_maxsize(lua_State *L, int idx, int arg) {
  if (lua_isnoneornil(L, idx)) return 0;
  int isint;
  lua_Integer n = lua_tointegerx(L, idx, &isint);
  if (!isint || lua_type(L, idx) != LUA_TNUMBER) {
    if (lua_type(L, idx) == LUA_TNUMBER) luaL_argerror(L, arg, "maxsize must be an integer");
    luaL_typeerror(L, arg, "integer maxsize, options table or nil");
  }
  if (n < 0) luaL_argerror(L, arg, "maxsize must not be negative (0 means unbounded)");
  return (size_t)n;
}

/* skein.queue([maxsize | {maxsize=, order="fifo"|"lifo"|"priority"}]) */
static int l_queue_new(lua_State *L) {
  static const char *const orders[] = {"fifo", "lifo", "priority", NULL};
  size_t maxsize = 0;
  int order = SK_QUEUE_FIFO;
  if (lua_type(L, 1) == LUA_TTABLE) {
    static const char *const known[] = {"maxsize", "order", NULL};
    sk_check_options(L, 1, known);
    lua_getfield(L, 1, "maxsize");
    maxsize = check_maxsize(L, -1, 1);
    lua_getfield(L, 1, "order");
    if (!lua_isnil(L, -1)) {
      const char *o = lua_tostring(L, -1);
      for (order = 0; o && orders[order] && strcmp(orders[order], o) != 0; order++) {}
      if (o == NULL || orders[order] == NULL || lua_type(L, -1) != LUA_TSTRING) {
        return luaL_argerror(L, 1, "order must be \"fifo\", \"lifo\" or \"priority\"");
      }
    }
    lua_pop(L, 2);
  } else {
    maxsize = check_maxsize(L, 1, 1);
  }
  sk_queue *q = sk_queue_new(order, maxsize);
  if (q == NULL) return sk_error_raise(L, "memory", "not enough memory for a queue");
  push_queue(L, (sk_obj *)q);
  return 1;
}

/* ----------------------------------------------------------------- put */

static lua_Number check_priority(lua_State *L, int idx, int *is_int) {
  if (lua_type(L, idx) != LUA_TNUMBER) {
    luaL_typeerror(L, idx, "number (a priority queue's put takes a priority)");
  }
  *is_int = lua_isinteger(L, idx);
  lua_Number p = lua_tonumber(L, idx);
  if (isnan(p)) luaL_argerror(L, idx, "priority is NaN");
  return p;
}

/* A put that has to wait keeps its encoded item in one of these (stack
** index 3), so that an error or a cancel frees it through __gc. */
typedef struct pending {
  sk_item it;
  lua_Number prio;
  int prio_int;
} pending;

static int l_pending_gc(lua_State *L) {
  pending *p = lua_touserdata(L, 1);
  sk_item_free(&p->it);
  return 0;
}

/* A put waiting for room: the pending item at index 3. Every way out but
** success frees the item at once (the holder's __gc is the backstop for
** raises from the wait itself: cancel, Ctrl-C, a scope's deadline). */
static int put_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  pending *p = lua_touserdata(L, 3);
  int st = sk_queue_put(obj, &p->it, p->prio, p->prio_int, 0);
  if (st == SK_Q_OK) return 0;
  if (st != SK_Q_BLOCK) {
    sk_item_free(&p->it);
    return st == SK_Q_NOMEM ? raise_nomem(L) : raise_closed(L);
  }
  if (expired) {
    sk_item_free(&p->it);
    return sk_error_raise(L, "timeout", "put timed out: the queue stayed full");
  }
  return SK_WAIT_MORE;
}

static const sk_source put_source = {.name = QUEUE_MT, .what = "queue put",
                                     .attempt = put_attempt, .link = put_link,
                                     .unlink = put_unlink,
                                     .pass_on = put_pass_on, .check = waiting_queue};

/* Shared by put, try_put and put_nowait: checks the value (and priority),
** encodes it and tries once. Returns SK_Q_OK or SK_Q_BLOCK (full); raises
** for the rest. */
static int put_once(lua_State *L, sk_queue *q, int top, lua_Number *prio, int *pi) {
  sk_item it;
  if (top < 2) luaL_argerror(L, 2, "value expected (nil must be passed explicitly)");
  if (sk_queue_order(q) == SK_QUEUE_PRIORITY) *prio = check_priority(L, 3, pi);
  if (sk_item_encode(L, 2, &it, q) != 0) lua_error(L);
  int st = sk_queue_put(q, &it, *prio, *pi, 0);
  if (st == SK_Q_OK) return st;
  sk_item_free(&it);
  if (st == SK_Q_NOMEM) raise_nomem(L);
  if (st == SK_Q_CLOSED) raise_closed(L);
  return st;
}

/* Full: waits for room, with the item encoded again into a collectable
** holder (the value at index 2). */
static int put_wait(lua_State *L, sk_queue *q, uint64_t d, lua_Number prio, int pi) {
  lua_settop(L, 2);
  pending *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->it.kind = 0;
  p->prio = prio;
  p->prio_int = pi;
  luaL_setmetatable(L, PENDING_MT);
  if (sk_item_encode(L, 2, &p->it, q) != 0) return lua_error(L);
  return sk_wait_on(L, &put_source, q, d, 0);
}

/* q:put(v, [timeout]); priority queues: q:put(v, priority, [timeout]) */
static int l_queue_put(lua_State *L) {
  sk_queue *q = self_queue(L);
  int top = lua_gettop(L);
  lua_Number prio = 0;
  int pi = 0;
  if (top == 2 && sk_queue_order(q) != SK_QUEUE_PRIORITY) {
    /* The common call, put(v) with no timeout, in as few steps as it
    ** takes: the same checks and outcomes as put_once's. */
    sk_item it;
    if (sk_item_encode(L, 2, &it, q) != 0) return lua_error(L);
    int st = sk_queue_put(q, &it, 0, 0, 0);
    if (st == SK_Q_OK) return 0;
    sk_item_free(&it);
    if (st == SK_Q_NOMEM) return raise_nomem(L);
    if (st == SK_Q_CLOSED) return raise_closed(L);
    return put_wait(L, q, SK_NO_DEADLINE, 0, 0);
  }
  int targ = sk_queue_order(q) == SK_QUEUE_PRIORITY ? 4 : 3;
  uint64_t d = top < targ ? SK_NO_DEADLINE : sk_check_deadline(L, targ);
  if (put_once(L, q, top, &prio, &pi) == SK_Q_OK) return 0;
  if (sk_expired(d)) return sk_error_raise(L, "timeout", "put timed out: the queue stayed full");
  return put_wait(L, q, d, prio, pi);
}

/* q:try_put(v, [priority]) -> true, or false when full */
static int l_queue_try_put(lua_State *L) {
  sk_queue *q = self_queue(L);
  lua_Number prio = 0;
  int pi = 0;
  lua_pushboolean(L, put_once(L, q, lua_gettop(L), &prio, &pi) == SK_Q_OK);
  return 1;
}

/* q:put_nowait(v, [priority]): raises "full" when full */
static int l_queue_put_nowait(lua_State *L) {
  sk_queue *q = self_queue(L);
  lua_Number prio = 0;
  int pi = 0;
  if (put_once(L, q, lua_gettop(L), &prio, &pi) != SK_Q_OK) return sk_error_raise(L, "full", "the queue is full");
  return 0;
}

/* ----------------------------------------------------------------- get */

/* Takes an item without blocking: pushes it (and a priority queue's
** priority) and returns how many values, or SK_Q_BLOCK / SK_Q_CLOSED. */
static int try_get(lua_State *L, sk_queue *q) {
  sk_item it;
  lua_Number prio = 0;
  int pi = 0;
  int st = sk_queue_get(q, &it, &prio, &pi);
  if (st != SK_Q_OK) return st;
  sk_item_push(L, &it);
  if (sk_queue_order(q) != SK_QUEUE_PRIORITY) return 1;
  if (pi) lua_pushinteger(L, (lua_Integer)prio);
  else lua_pushnumber(L, prio);
  return 2;
}

/* get and the iterator, the queue's handle at index 1: an item, or (the
** iterator) the end once the queue is closed and drained. */
static int get_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  int n = try_get(L, obj);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return raise_closed(L);
  if (expired) return sk_error_raise(L, "timeout", "get timed out: the queue stayed empty");
  return SK_WAIT_MORE;
}

static int iter_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  (void)expired;
  int n = try_get(L, obj);
  if (n > 0) return n;
  return n == SK_Q_CLOSED ? 0 : SK_WAIT_MORE;
}

static const sk_source get_source = {.name = QUEUE_MT, .what = "queue get",
                                     .attempt = get_attempt, .link = get_link,
                                     .unlink = get_unlink,
                                     .pass_on = get_pass_on, .check = waiting_queue};
static const sk_source iter_source = {.name = QUEUE_MT, .what = "queue get",
                                      .attempt = iter_attempt, .link = get_link,
                                      .unlink = get_unlink,
                                      .pass_on = get_pass_on, .check = waiting_queue};

/* q:get([timeout]) -> item (priority queues: item, priority) */
static int l_queue_get(lua_State *L) {
  sk_queue *q = self_queue(L);
  int top = lua_gettop(L);
  if (top == 1 && sk_queue_order(q) != SK_QUEUE_PRIORITY) {
    /* The common call, get() with no timeout: try_get's first look,
    ** inline. */
    sk_item it;
    lua_Number prio;
    int pi;
    int st = sk_queue_get(q, &it, &prio, &pi);
    if (st == SK_Q_OK) {
      sk_item_push(L, &it);
      return 1;
    }
    if (st == SK_Q_CLOSED) return raise_closed(L);
    return sk_wait_on(L, &get_source, q, SK_NO_DEADLINE, 0);
  }
  uint64_t d = top < 2 ? SK_NO_DEADLINE : sk_check_deadline(L, 2);
  int n = try_get(L, q);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return raise_closed(L);
  lua_settop(L, 1);
  return sk_wait_on(L, &get_source, q, d, 0);
}

/* q:try_get() -> true, item | false when empty; raises "closed" once closed
** and drained */
static int l_queue_try_get(lua_State *L) {
  sk_queue *q = self_queue(L);
  lua_pushboolean(L, 1);
  int n = try_get(L, q);
  if (n > 0) return n + 1;
  if (n == SK_Q_CLOSED) return raise_closed(L);
  lua_pushboolean(L, 0);
  return 1;
}

/* q:get_nowait() -> item; raises "empty" when empty */
static int l_queue_get_nowait(lua_State *L) {
  sk_queue *q = self_queue(L);
  int n = try_get(L, q);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return raise_closed(L);
  return sk_error_raise(L, "empty", "the queue is empty");
}

static int iter_step(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  sk_queue *q = check_queue(L, 1);
  int n = try_get(L, q);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return 0;
  return sk_wait_on(L, &iter_source, q, SK_NO_DEADLINE, 0);
}

/* q:iter() -> an iterator over the items until the queue is closed and
** drained (as with any generic for, a nil item also ends the loop) */
static int l_queue_iter(lua_State *L) {
  self_queue(L);
  lua_settop(L, 1);
  lua_pushcclosure(L, iter_step, 1);
  return 1;
}

/* ------------------------------------------------------------- the rest */

static int l_queue_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sk_queue_size(self_queue(L)));
  return 1;
}

static int l_queue_empty(lua_State *L) {
  lua_pushboolean(L, sk_queue_size(self_queue(L)) == 0);
  return 1;
}

static int l_queue_full(lua_State *L) {
  sk_queue *q = self_queue(L);
  size_t max = sk_queue_maxsize(q);
  lua_pushboolean(L, max && sk_queue_size(q) >= max);
  return 1;
}

static int l_queue_closed(lua_State *L) {
  lua_pushboolean(L, sk_queue_is_closed(self_queue(L)));
  return 1;
}

/* q:task_done(): one item taken earlier is fully processed */
static int l_queue_task_done(lua_State *L) {
  if (sk_queue_task_done(self_queue(L)) != 0) {
    return sk_error_raise(L, "usage", "task_done() called more times than items were put");
  }
  return 0;
}

static int join_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  if (sk_queue_ready(obj, SK_WAIT_JOIN)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (expired) return sk_error_raise(L, "timeout", "join timed out: items are still unfinished");
  return SK_WAIT_MORE;
}

static const sk_source join_source = {.name = QUEUE_MT, .what = "queue join",
                                      .attempt = join_attempt, .link = join_link,
                                      .unlink = join_unlink,
                                      .check = waiting_queue};

/* q:join([timeout]) -> true once every item put was marked task_done */
static int l_queue_join(lua_State *L) {
  sk_queue *q = self_queue(L);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &join_source, q, d, 0);
}

/* q:close(): puts raise "closed"; gets drain what is left, then raise it */
static int l_queue_close(lua_State *L) {
  sk_queue_shut(self_queue(L), 0);
  return 0;
}

static int l_queue_tostring(lua_State *L) {
  static const char *const orders[] = {"fifo", "lifo", "priority"};
  sk_handle *h = luaL_checkudata(L, 1, QUEUE_MT);
  sk_queue *q = (sk_queue *)h->obj;
  if (q == NULL) {
    lua_pushliteral(L, "skein.queue (released)");
    return 1;
  }
  const char *order = orders[sk_queue_order(q)];
  const char *closed = sk_queue_is_closed(q) ? ", closed" : "";
  LUAI_UACINT n = (LUAI_UACINT)sk_queue_size(q), max = (LUAI_UACINT)sk_queue_maxsize(q);
  if (max) lua_pushfstring(L, "skein.queue %s (%I/%I items%s)", order, n, max, closed);
  else lua_pushfstring(L, "skein.queue %s (%I items%s)", order, n, closed);
  return 1;
}

/* -------------------------------------------------------------- select */

static int queue_try(lua_State *L, sk_obj *o) {
  int n = try_get(L, (sk_queue *)o);
  if (n == SK_Q_CLOSED) return raise_closed(L);
  return n > 0 ? n : 0;
}

static int queue_add_waiter(sk_obj *o, const sk_waiter *w) {
  return sk_queue_add_getter((sk_queue *)o, w);
}

static void queue_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_queue_remove_getter((sk_queue *)o, port, slot);
}

static const sk_selectable queue_select = {queue_try, queue_add_waiter,
                                           queue_remove_waiter};

void sk_queue_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"put", l_queue_put},
      {"get", l_queue_get},
      {"try_put", l_queue_try_put},
      {"try_get", l_queue_try_get},
      {"put_nowait", l_queue_put_nowait},
      {"get_nowait", l_queue_get_nowait},
      {"size", l_queue_size},
      {"empty", l_queue_empty},
      {"full", l_queue_full},
      {"closed", l_queue_closed},
      {"task_done", l_queue_task_done},
      {"join", l_queue_join},
      {"close", l_queue_close},
      {"iter", l_queue_iter},
      {NULL, NULL}};
  static const sk_type queue = {.name = QUEUE_MT, .methods = methods, .gc = sk_handle_release,
                                .close = sk_handle_release, .tostring = l_queue_tostring,
                                .push = push_queue, .select = &queue_select};
  static const sk_type pending = {.name = PENDING_MT, .gc = l_pending_gc};
  sk_type_register(L, &queue);
  sk_type_register(L, &pending);
  sk_chan_open();
  lua_pushcfunction(L, l_queue_new);
  lua_setfield(L, -2, "queue");
}
