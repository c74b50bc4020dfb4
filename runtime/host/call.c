/*
** call.c — a call as pools marshal it: the submitter's encoding of a call
** (sk_call_encode, what the two pools' submits share), running a
** marshalled call in a worker and reporting how it failed (what a thread
** pool's job, a worker process's job and an initializer have in common:
** sk_run_call), and the encoding of a failure (message, traceback, value)
** for the worker that waits on it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sk_frame.h"
#include "sk_lua.h"

/* ------------------------------------------------------ a submit's call */

/* A plain call (below) is encoded without a protected call of its own (one
** fewer per submit) into a box, a userdata whose __gc frees what it holds:
** an error raised by the encoder (out of memory, a C function no module
** exports) then leaves the partial bytes to the collector instead of
** leaking them; a plain call holds no references to objects, which would
** have to be released at once. The submit keeps one box in an upvalue and
** takes it out while it encodes, so a submit that raised, or one nested in
** another's encoding, makes a new one (from the box metatable in the next
** upvalue). The engine copies the bytes, so the box's storage serves the
** next submit. Any other call is encoded under sk_marshal_encode's
** protection, into the caller's buffer. */
typedef struct call_box {
  sk_buf buf;
} call_box;

#define BOX_KEEP 65536          /* a box keeps at most this much storage */

int sk_call_box_gc(lua_State *L) {
  sk_buf_free(&((call_box *)lua_touserdata(L, 1))->buf);
  return 0;
}

static int is_scalar(int t) {
  return t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING;
}

/* A plain call: the function's upvalues (but _ENV) and the arguments (from
** first+1 to the top) are nil, booleans, numbers or strings, so encoding
** it retains no object, and encodes the same for a thread as for a
** process. */
static int plain_call(lua_State *L, int first) {
  const char *name;
  for (int i = 1; (name = lua_getupvalue(L, first, i)) != NULL; i++) {
    int t = lua_type(L, -1);
    lua_pop(L, 1);
    if (!is_scalar(t) && strcmp(name, "_ENV") != 0) return 0;
  }
  for (int i = lua_gettop(L); i > first; i--) {
    if (!is_scalar(lua_type(L, i))) return 0;
  }
  return 1;
}

sk_buf *sk_call_encode(lua_State *L, int first, int up, int xproc, sk_buf *local) {
  int n = lua_gettop(L) - first + 1;
  if (plain_call(L, first)) {
    call_box *box = lua_touserdata(L, lua_upvalueindex(up));
    if (box) {
      lua_pushvalue(L, lua_upvalueindex(up));
      lua_pushnil(L);
      lua_replace(L, lua_upvalueindex(up));
    } else {
      box = lua_newuserdatauv(L, sizeof *box, 0);
      memset(box, 0, sizeof *box);
      lua_pushvalue(L, lua_upvalueindex(up + 1));
      lua_setmetatable(L, -2);
    }
    sk_marshal_encode_raw(L, first, n, &box->buf, "fn+args");
    return &box->buf;
  }
  int rc = xproc ? sk_marshal_encode_xproc(L, first, n, local, "fn+args")
                 : sk_marshal_encode(L, first, n, local, "fn+args");
  if (rc != 0) lua_error(L);
  lua_pushnil(L);
  return local;
}

void sk_call_encode_done(lua_State *L, int up, sk_buf *code, sk_buf *local) {
  if (code == local) {
    sk_buf_free(local);
    lua_pop(L, 1);
    return;
  }
  if (code->cap > BOX_KEEP) sk_buf_free(code);
  lua_replace(L, lua_upvalueindex(up));         /* the box goes back, empty */
}

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
  sk_buf_free(a->out);            /* the storage it came with: the failure starts afresh */
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
