/*
** pipe.c — skein.pipe([duplex=true]) -> a, b: two connected ends, like
** Python's multiprocessing.Pipe, and their methods (send, recv, poll,
** close, closed; ends in skein.select). The ends themselves, their closing
** and their move to the shared segment are runtime/host/pipes.c
** (sk_pipe.h).
*/
#include <stdlib.h>
#include <unistd.h>

#include "sk_bind.h"
#include "../runtime/host/sk_pipe.h"

#define PIPE_MT SK_PIPE_MT

static void push_end(lua_State *L, sk_obj *o) { sk_stamped_push(L, o, PIPE_MT); }

/* skein.pipe([duplex=true]) -> a, b. One-way: a receives, b sends. */
static int l_pipe_new(lua_State *L) {
  int duplex = 1;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    duplex = lua_toboolean(L, 1);
  }
  sk_queue *ab = sk_queue_new(SK_QUEUE_FIFO, 0);
  sk_queue *ba = duplex ? sk_queue_new(SK_QUEUE_FIFO, 0) : NULL;
  sk_pipe_end *a = NULL, *b = NULL;
  if (ab && (ba || !duplex)) {
    a = duplex ? sk_pipe_end_new(ba, ab, 1) : sk_pipe_end_new(ab, NULL, 0);
    b = duplex ? sk_pipe_end_new(ab, ba, 1) : sk_pipe_end_new(NULL, ab, 0);
  }
  /* The ends hold their own references now. */
  if (ab) sk_obj_release((sk_obj *)ab);
  if (ba) sk_obj_release((sk_obj *)ba);
  if (a == NULL || b == NULL) {
    if (a) sk_obj_release(&a->obj);
    if (b) sk_obj_release(&b->obj);
    return sk_error_raise(L, "memory", "not enough memory for a pipe");
  }
  push_end(L, &a->obj);
  push_end(L, &b->obj);
  return 2;
}

static sk_pipe_end *check_end(lua_State *L, int idx) {
  sk_obj *o = sk_stamped_obj(L, idx);
  sk_pipe_end *e = o && sk_pipe_end_is(o) ? (sk_pipe_end *)o
                                              : (sk_pipe_end *)sk_handle_check(L, idx, PIPE_MT);
  if (sk_pipe_end_closed(e)) {
    sk_error_raise(L, "closed", "this pipe end is closed");
  }
  return e;
}

static sk_pipe_end *check_reader(lua_State *L, int idx) {
  sk_pipe_end *e = check_end(L, idx);
  if (e->in == NULL) {
    sk_error_raise(L, "usage", "this is the sending end of a one-way pipe: it cannot receive");
  }
  return e;
}

/* Receives without blocking: pushes the value and returns 1, or returns
** SK_Q_BLOCK / SK_Q_CLOSED. */
static int recv_once(lua_State *L, sk_queue *q) {
  sk_item it;
  lua_Number prio;
  int pi;
  int st = sk_queue_get(q, &it, &prio, &pi);
  if (st != SK_Q_OK) return st;
  sk_item_push(L, &it);
  return 1;
}

static int raise_peer_closed(lua_State *L) {
  return sk_error_raise(L, "closed", "the other end of the pipe is closed");
}

/* end:send(v): never blocks (a pipe is unbounded) */
static int l_pipe_send(lua_State *L) {
  sk_pipe_end *e = check_end(L, 1);
  if (e->out == NULL) {
    return sk_error_raise(L, "usage", "this is the receiving end of a one-way pipe: it cannot send");
  }
  luaL_checkany(L, 2);
  sk_item it;
  if (sk_item_encode(L, 2, &it, e->out) != 0) return lua_error(L);
  int st = sk_queue_put(e->out, &it, 0, 0, 1);
  if (st == SK_Q_OK) return 0;
  sk_item_free(&it);
  if (st == SK_Q_NOMEM) return sk_error_raise(L, "memory", "not enough memory to send");
  return raise_peer_closed(L);
}

/* An end as a wait source: its incoming queue's getters. The end's handle
** is at index 1; a task of this worker may close it meanwhile (check). */
static void *waiting_end(lua_State *L) { return ((sk_handle *)lua_touserdata(L, 1))->obj; }

static int end_link(void *obj, sk_ctx *c, int round) {
  return sk_queue_link(((sk_pipe_end *)obj)->in, SK_WAIT_GET, c, round);
}

static int end_unlink(void *obj, sk_ctx *c) {
  return sk_queue_unlink(((sk_pipe_end *)obj)->in, SK_WAIT_GET, c, 0);
}

/* A poll takes nothing: a wake it was picked for goes on at once. */
static int poll_unlink(void *obj, sk_ctx *c) {
  sk_queue_unlink(((sk_pipe_end *)obj)->in, SK_WAIT_GET, c, 1);
  return 0;
}

static void end_pass_on(void *obj) { sk_queue_pass_on(((sk_pipe_end *)obj)->in, SK_WAIT_GET); }

/* After a wake, an end closed meanwhile (by any worker) ends the wait. */
static void check_open_again(lua_State *L, sk_pipe_end *e, int round) {
  if (round > 0 && sk_pipe_end_closed(e)) sk_error_raise(L, "closed", "this pipe end is closed");
}

static int recv_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_pipe_end *e = obj;
  check_open_again(L, e, round);
  int n = recv_once(L, e->in);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return raise_peer_closed(L);
  if (expired) return sk_error_raise(L, "timeout", "recv timed out");
  return SK_WAIT_MORE;
}

static int poll_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_pipe_end *e = obj;
  check_open_again(L, e, round);
  if (sk_queue_ready(e->in, SK_WAIT_GET)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (expired) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return SK_WAIT_MORE;
}

static const sk_source recv_source = {.name = PIPE_MT, .attempt = recv_attempt,
                                      .link = end_link, .unlink = end_unlink,
                                      .pass_on = end_pass_on, .check = waiting_end};
static const sk_source poll_source = {.name = PIPE_MT, .attempt = poll_attempt,
                                      .link = end_link, .unlink = poll_unlink,
                                      .check = waiting_end};

/* end:recv([timeout]) -> v; raises "closed" once the peer closed and
** everything it sent was received, "timeout" when the time is up */
static int l_pipe_recv(lua_State *L) {
  sk_pipe_end *e = check_reader(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  int n = recv_once(L, e->in);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return raise_peer_closed(L);
  lua_settop(L, 1);
  return sk_wait_on(L, &recv_source, e, d, 0);
}

/* end:poll([timeout]) -> true when recv would not block (data, or the peer
** closed), false when the time is up first; no timeout: do not wait */
static int l_pipe_poll(lua_State *L) {
  sk_pipe_end *e = check_reader(L, 1);
  uint64_t d = lua_isnoneornil(L, 2) ? 0 : sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &poll_source, e, d, 0);
}

/* end:close(): closes this end for every worker holding it */
static int l_pipe_close(lua_State *L) {
  sk_pipe_end_shut((sk_pipe_end *)sk_handle_check(L, 1, PIPE_MT));
  return 0;
}

static int l_pipe_closed(lua_State *L) {
  sk_pipe_end *e = (sk_pipe_end *)sk_handle_check(L, 1, PIPE_MT);
  lua_pushboolean(L, sk_pipe_end_closed(e));
  return 1;
}

static int l_pipe_tostring(lua_State *L) {
  sk_handle *h = luaL_checkudata(L, 1, PIPE_MT);
  sk_pipe_end *e = (sk_pipe_end *)h->obj;
  if (e == NULL) {
    lua_pushliteral(L, "skein.pipe end (released)");
    return 1;
  }
  const char *what = e->duplex ? "duplex" : e->in ? "receiving end" : "sending end";
  int closed = sk_pipe_end_closed(e);
  lua_pushfstring(L, "skein.pipe end (%s%s)", what, closed ? ", closed" : "");
  return 1;
}

/* ---------------------------------------------------------------- select */

static int end_try(lua_State *L, sk_obj *o) {
  sk_pipe_end *e = (sk_pipe_end *)o;
  if (sk_pipe_end_closed(e)) {
    return sk_error_raise(L, "closed", "this pipe end is closed");
  }
  if (e->in == NULL) return sk_error_raise(L, "usage", "select cannot receive on the sending end of a one-way pipe");
  int n = recv_once(L, e->in);
  if (n == SK_Q_CLOSED) return raise_peer_closed(L);
  return n > 0 ? n : 0;
}

static int end_add_waiter(sk_obj *o, const sk_waiter *w) {
  sk_pipe_end *e = (sk_pipe_end *)o;
  /* A closed or send-only end is "ready": end_try then raises. */
  if (e->in == NULL || sk_pipe_end_closed(e)) return 1;
  return sk_queue_add_getter(e->in, w);
}

static void end_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_pipe_end *e = (sk_pipe_end *)o;
  if (e->in) sk_queue_remove_getter(e->in, port, slot);
}

static const sk_selectable end_select = {end_try, end_add_waiter, end_remove_waiter};

void sk_pipe_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"send", l_pipe_send},   {"recv", l_pipe_recv},
                                     {"poll", l_pipe_poll},   {"close", l_pipe_close},
                                     {"closed", l_pipe_closed}, {NULL, NULL}};
  static const sk_type type = {.name = PIPE_MT, .methods = methods, .gc = sk_handle_release,
                               .close = sk_handle_release, .tostring = l_pipe_tostring,
                               .push = push_end, .select = &end_select};
  sk_type_register(L, &type);
  sk_pipe_engine_open();
  lua_pushcfunction(L, l_pipe_new);
  lua_setfield(L, -2, "pipe");
}
