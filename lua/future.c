/*
** future.c — the Lua face of futures (the engine is runtime/host/futures.c):
** get, wait, done, cancel, status, error, and futures in skein.select.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_future.h"
#include "../runtime/host/sk_proc.h"

static sk_future *check_future(lua_State *L, int idx) {
  return (sk_future *)sk_handle_check(L, idx, FUTURE_MT);
}

static int finished(int state) { return state >= SK_FUT_DONE; }

/* Pushes the error a failed future raises: kind "remote" (or the engine's
** own kind, e.g. "timeout" or "worker_died") with the remote traceback. */
static void push_failure(lua_State *L, sk_future *f, const sk_future_outcome *o) {
  int top = lua_gettop(L);
  if (o->state == SK_FUT_CANCELLED) {
    sk_error_push(L, "cancelled", "future %I was cancelled", (LUAI_UACINT)f->id);
    return;
  }
  if (o->cmsg) {
    sk_error_push(L, o->kind ? o->kind : "remote", "%s", o->cmsg);
    if (o->pid) sk_set_exit_fields(L, o->pid, o->exit_code, o->signal);
    return;
  }
  if (o->data == NULL ||
      sk_marshal_decode(L, o->data, o->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS) != 3) {
    lua_settop(L, top);
    sk_error_push(L, "remote", "future %I failed (its error could not be read)", (LUAI_UACINT)f->id);
    return;
  }
  sk_error_push(L, o->kind ? o->kind : "remote", "%s%s", o->prefix ? o->prefix : "",
                lua_tostring(L, top + 1));
  lua_pushvalue(L, top + 3);
  lua_setfield(L, -2, "value");
  lua_pushvalue(L, top + 2);
  lua_setfield(L, -2, "traceback");
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/* Pushes the results of a finished future (its outcome read as `o`), or
** raises its failure; the outcome is released before any raise. */
static int push_outcome(lua_State *L, sk_future *f, sk_future_outcome *o) {
  f->observed = 1;
  if (o->state != SK_FUT_DONE) {
    push_failure(L, f, o);
    sk_future_read_done(o);
    return lua_error(L);
  }
  int n = o->data ? sk_marshal_decode(L, o->data, o->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS) : 0;
  sk_future_read_done(o);
  if (n < 0) return lua_error(L);
  return n;
}

/* A future as a wait source: ready when finished. get() pushes the
** outcome, wait() true; on timeout get() raises and wait() gives false. */
static int get_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_future *f = obj;
  (void)round;
  sk_future_outcome o;
  sk_future_read(f, &o);
  if (finished(o.state)) return push_outcome(L, f, &o);
  sk_future_read_done(&o);
  if (expired) return sk_error_raise(L, "timeout", "future %I: get timed out", (LUAI_UACINT)f->id);
  return SK_WAIT_MORE;
}

static int wait_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  int fin = finished(sk_future_state(obj));
  if (!fin && !expired) return SK_WAIT_MORE;
  lua_pushboolean(L, fin);
  return 1;
}

static int future_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_future_link(obj, c);
}

static int future_unlink(void *obj, sk_ctx *c) { return sk_future_unlink(obj, c); }

static const sk_source get_source = {
    .name = FUTURE_MT, .what = "future get",
    .attempt = get_attempt, .link = future_link, .unlink = future_unlink};
static const sk_source wait_source = {
    .name = FUTURE_MT, .what = "future wait",
    .attempt = wait_attempt, .link = future_link, .unlink = future_unlink};

static int start_wait(lua_State *L, const sk_source *src) {
  sk_future *f = check_future(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, src, f, d, 0);
}

/* future:get([timeout]) -> results, or raises (remote, cancelled, timeout…) */
static int l_future_get(lua_State *L) { return start_wait(L, &get_source); }

/* future:wait([timeout]) -> true when finished, false on timeout */
static int l_future_wait(lua_State *L) { return start_wait(L, &wait_source); }

static int l_future_done(lua_State *L) {
  lua_pushboolean(L, finished(sk_future_state(check_future(L, 1))));
  return 1;
}

/* future:cancel() -> true when it had not started (it never will) */
static int l_future_cancel(lua_State *L) {
  lua_pushboolean(L, sk_future_cancel(check_future(L, 1)));
  return 1;
}

static const char *state_name(int s) {
  static const char *names[] = {"pending", "running", "done", "failed", "cancelled"};
  return names[s];
}

static int l_future_status(lua_State *L) {
  lua_pushstring(L, state_name(sk_future_state(check_future(L, 1))));
  return 1;
}

/* future:error() -> the error of a finished, failed future, else nil */
static int l_future_error(lua_State *L) {
  sk_future *f = check_future(L, 1);
  sk_future_outcome o;
  sk_future_read(f, &o);
  if (o.state <= SK_FUT_DONE) {
    sk_future_read_done(&o);
    return 0;
  }
  f->observed = 1;
  push_failure(L, f, &o);
  sk_future_read_done(&o);
  return 1;
}

static int l_future_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  sk_future *f = check_future(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "id") == 0) lua_pushinteger(L, f->id);
  else lua_pushnil(L);
  return 1;
}

static int l_future_tostring(lua_State *L) {
  sk_future *f = check_future(L, 1);
  int state = sk_future_state(f);
  lua_pushfstring(L, "skein.future %I (%s)", (LUAI_UACINT)f->id, state_name(state));
  return 1;
}

static int future_try(lua_State *L, sk_obj *o) {
  sk_future *f = (sk_future *)o;
  sk_future_outcome out;
  sk_future_read(f, &out);
  if (finished(out.state)) {
    /* A task that returned nothing is still ready: select gives nil. */
    int n = push_outcome(L, f, &out);
    if (n == 0) lua_pushnil(L);
    return n ? n : 1;
  }
  sk_future_read_done(&out);
  return 0;
}

static int future_add_waiter(sk_obj *o, const sk_waiter *w) {
  return sk_future_add_waiter((sk_future *)o, w);
}

static void future_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_future_remove_waiter((sk_future *)o, port, slot);
}

static const sk_selectable future_select = {future_try, future_add_waiter,
                                            future_remove_waiter};

void sk_future_open(lua_State *L) {
  sk_future_attach();
  static const luaL_Reg methods[] = {
      {"get", l_future_get},     {"wait", l_future_wait},   {"done", l_future_done},
      {"cancel", l_future_cancel}, {"status", l_future_status}, {"error", l_future_error},
      {NULL, NULL}};
  static const sk_type type = {.name = FUTURE_MT, .methods = methods, .index = l_future_index,
                               /* Lua-written methods go here too */
                               .methods_key = "skein.Future.methods",
                               .gc = sk_handle_release, .tostring = l_future_tostring,
                               .push = sk_future_push, .select = &future_select};
  sk_type_register(L, &type);
}
