/*
** call.c — running a marshalled call in a worker and reporting how it
** failed: what a thread pool's job, a worker process's job and an
** initializer have in common (sk_run_call), and the encoding of a failure
** (message, traceback, value) for the worker that waits on it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sk_frame.h"
#include "sk_lua.h"

/* ------------------------------------------------- failures of workers */

int sk_capture(lua_State *L) {
  lua_settop(L, 1);
  lua_createtable(L, 0, 3);                                   /* 2 */
  lua_pushvalue(L, 1);
  lua_setfield(L, 2, "value");
  if (sk_error_is(L, 1, NULL)) {
    lua_getfield(L, 1, "message");
  } else if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER) {
    lua_pushvalue(L, 1);
  } else if (!luaL_callmeta(L, 1, "__tostring") || !lua_isstring(L, -1)) {
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  lua_setfield(L, 2, "message");
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, 2, "traceback");
  return 1;
}

const char *sk_encode_failure(lua_State *L, sk_buf *out) {
  const char *kind = NULL;
  if (!lua_istable(L, -1) || sk_error_is(L, -1, NULL) ||
      lua_getfield(L, -1, "traceback") != LUA_TSTRING) {
    if (lua_istable(L, -1) && !sk_error_is(L, -1, NULL)) lua_pop(L, 1);
    lua_pushcfunction(L, sk_capture);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
  } else {
    lua_pop(L, 1);
  }
  lua_getfield(L, -1, "message");
  lua_getfield(L, -2, "traceback");
  lua_getfield(L, -3, "value");
  if (sk_error_is(L, -1, "timeout")) kind = "timeout";
  else if (sk_error_is(L, -1, "interrupted") || sk_error_is(L, -1, "cancelled")) kind = "cancelled";
  else if (sk_error_is(L, -1, "marshal")) kind = "marshal";
  if (sk_marshal_encode(L, -3, 3, out, "error") != 0) {
    lua_pop(L, 2);                  /* the marshal error and the value */
    lua_pushnil(L);
    sk_marshal_encode(L, -3, 3, out, "error");
  }
  lua_pop(L, 4);
  return kind;
}

/* Where p_call is: an error raised while it decodes the call or encodes
** its results is the call's failure (the rest is the worker failing). */
enum { IN_CALL, IN_DECODE, IN_RESULT };

typedef struct call_args {
  const char *code;
  size_t len;
  sk_buf *out;
  int failed;
  const char *kind;
  int phase;
  int was_xproc;                /* sk_marshal_xproc before p_call set it */
} call_args;

/* A decode error that names the top-level value it met (its `index`, see
** marshal.c) is about a call's function and arguments: names it "fn" or
** "args[i]" in its path and message. */
static void name_decoded_value(lua_State *L) {
  if (!sk_error_is(L, -1, "marshal")) return;
  if (lua_getfield(L, -1, "index") != LUA_TNUMBER) {
    lua_pop(L, 1);
    return;
  }
  lua_Integer i = lua_tointeger(L, -1);
  lua_pop(L, 1);
  int e = lua_gettop(L);
  if (i == 1) lua_pushliteral(L, "fn");                             /* e+1 */
  else lua_pushfstring(L, "args[%I]", (LUAI_UACINT)(i - 1));
  lua_getfield(L, e, "path");                                       /* e+2 */
  lua_getfield(L, e, "message");                                    /* e+3 */
  size_t plen = 0;
  const char *old = lua_tolstring(L, e + 2, &plen), *msg = lua_tostring(L, e + 3);
  if (msg == NULL) msg = "";
  if (old && strncmp(msg, old, plen) == 0) lua_pushfstring(L, "%s%s", lua_tostring(L, e + 1), msg + plen);
  else lua_pushfstring(L, "%s: %s", lua_tostring(L, e + 1), msg);
  lua_setfield(L, e, "message");
  lua_pushvalue(L, e + 1);
  lua_setfield(L, e, "path");
  lua_settop(L, e);
}

/* Protected body of sk_run_call. The call is decoded and its results
** encoded without protected calls of their own (two fewer per job): an
** error there unwinds to sk_run_call, which frees the results' buffer and
** reports the error as the call's failure (p_fail). */
static int p_call(lua_State *L) {
  call_args *a = lua_touserdata(L, 1);
  sk_worker *w = sk_worker_of(L);
  lua_settop(L, 0);
  lua_pushcfunction(L, sk_capture);
  a->phase = IN_DECODE;
  int n = sk_marshal_decode_raw(L, a->code, a->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  a->phase = IN_CALL;
  int st = lua_pcall(L, n - 1, LUA_MULTRET, 1);
  if (st == LUA_OK && sk_worker_drain(w) != 0) st = LUA_ERRRUN;
  /* A worker process's results may be read after it is gone (marshal.c). */
  if (w->results_to_parent) sk_marshal_xproc = SK_XPROC_TO_PARENT;
  if (st == LUA_OK) {
    a->phase = IN_RESULT;
    sk_marshal_encode_raw(L, 2, lua_gettop(L) - 1, a->out, "result");
    a->phase = IN_CALL;
    /* A process's frame carries at most SK_FRAME_MAX bytes, with room
    ** for a job id; a thread's results are not framed. */
    if (!w->results_to_parent || a->out->len <= SK_FRAME_MAX - 16) {
      sk_marshal_xproc = a->was_xproc;
      return 0;
    }
    size_t n = a->out->len;
    sk_buf_free(a->out);
    sk_error_push(L, "marshal", "result: too big to send (%I bytes, over 4 GiB)", (LUAI_UACINT)n);
  }
  a->failed = 1;
  a->kind = sk_encode_failure(L, a->out);
  sk_marshal_xproc = a->was_xproc;
  return 0;
}

/* Protected: [1] the error p_call raised while decoding the call or
** encoding its results, [2] the call_args; encodes it as the failure. */
static int p_fail(lua_State *L) {
  call_args *a = lua_touserdata(L, 2);
  lua_settop(L, 1);
  if (a->phase == IN_DECODE) name_decoded_value(L);
  if (sk_worker_of(L)->results_to_parent) sk_marshal_xproc = SK_XPROC_TO_PARENT;
  a->kind = sk_encode_failure(L, a->out);
  sk_marshal_xproc = a->was_xproc;
  a->failed = 1;
  return 0;
}

int sk_run_call(sk_worker *w, const char *code, size_t len, sk_buf *out, const char **kind) {
  lua_State *L = w->L;
  call_args a = {code, len, out, 0, NULL, IN_CALL, sk_marshal_xproc};
  memset(out, 0, sizeof *out);
  lua_pushcfunction(L, p_call);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    sk_marshal_xproc = a.was_xproc;
    sk_buf_free(out);             /* what the results' encoder wrote before it failed */
    if (a.phase == IN_CALL) return -1;
    lua_pushcfunction(L, p_fail);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      sk_marshal_xproc = a.was_xproc;
      sk_buf_free(out);
      return -1;
    }
  }
  *kind = a.kind;
  return a.failed;
}
