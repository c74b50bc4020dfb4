/*
** httpc.c — the C half of skein.http's client (the engine is
** runtime/core/curl.c; the front end, get/request/session and the option
** checks, is stdlib/skein/httpc.lua, which takes these functions out of
** the skein.http table):
**
**   _multi(max_conns, max_per_host) -> multi    a CURLM of its own (a session)
**   _start(multi|nil, spec) -> transfer          nil: the worker's own multi
**   transfer:_step() -> "done" | "body" | "head"  waits for the next thing to do
**   transfer:_feed(piece|nil)                    the next piece of the body
**   transfer:_response() -> {status, headers, url[, body]}  or raises kind io
**   transfer:read(fmt) / transfer:lines(fmt)     a streamed body
**   transfer:close(), multi:close()
**
** A transfer userdata holds one sk_xfer pointer (NULL once closed) and
** keeps its multi's userdata alive in its user value. The worker's own
** multi is made on its first request and kept in the registry; its __gc
** closes it when the worker's state closes, which removes every transfer
** and closes curl's sockets before the loop closes.
*/
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/core/sk_curl.h"
#include "sk_bind.h"

#define MULTI_MT "skein.http.Multi"
#define XFER_MT "skein.http.Transfer"
#define DEFAULT_KEY "skein.http.multi"

typedef struct lmulti {
  sk_curlm *cm;
} lmulti;

typedef struct lxfer {
  sk_xfer *x;
} lxfer;

/* -------------------------------------------------------------- multi */

static int push_multi(lua_State *L, long max_conns, long max_per_host) {
  lmulti *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->cm = NULL;
  luaL_setmetatable(L, MULTI_MT);
  u->cm = sk_curlm_new(sk_worker_of(L)->sched.loop, max_conns, max_per_host);
  if (u->cm == NULL) {
    const char *why = sk_curl_load_error();
    if (why) return sk_error_raise(L, "io", "skein.http: %s", why);
    return sk_error_raise(L, "memory", "skein.http: cannot start libcurl");
  }
  return 1;
}

/* _multi(max_conns, max_per_host) -> multi */
static int l_multi(lua_State *L) {
  lua_Integer mc = luaL_optinteger(L, 1, 0), mh = luaL_optinteger(L, 2, 0);
  return push_multi(L, (long)mc, (long)mh);
}

static int l_multi_close(lua_State *L) {
  lmulti *u = luaL_checkudata(L, 1, MULTI_MT);
  if (u->cm) sk_curlm_close(u->cm);
  u->cm = NULL;
  return 0;
}

/* ---------------------------------------------------------- transfers */

static sk_xfer *check_xfer(lua_State *L, int idx) {
  lxfer *u = luaL_checkudata(L, idx, XFER_MT);
  if (u->x == NULL) sk_error_raise(L, "closed", "cannot use an HTTP response after it was closed");
  return u->x;
}

static void *xfer_again(lua_State *L) { return ((lxfer *)lua_touserdata(L, 1))->x; }

static lua_Number opt_num(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  lua_Number v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* A string field of the table at t; the table keeps it alive. */
static const char *opt_str(lua_State *L, int t, const char *k, size_t *len) {
  lua_getfield(L, t, k);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
  lua_pop(L, 1);
  return s;
}

static long ms_of(lua_Number s) {
  if (!(s > 0)) return 0;
  if (s > 1e9) return 0;        /* as good as none */
  long ms = (long)(s * 1000 + 0.5);
  return ms > 0 ? ms : 1;
}

/* _start(multi|nil, spec) -> transfer. `spec` was checked by the front
** end: method, url, headers (a list of "Name: value" lines), body (a
** string) or body_iter, timeout, connect_timeout, follow, max_redirects,
** decompress, cafile, stream, max_body, user_agent. */
static int l_start(lua_State *L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_isnil(L, 1)) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY) == LUA_TNIL) {
      lua_pop(L, 1);
      push_multi(L, 0, 0);
      lua_pushvalue(L, -1);
      lua_setfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY);
    }
    lua_replace(L, 1);
  }
  lmulti *m = luaL_checkudata(L, 1, MULTI_MT);
  if (m->cm == NULL) return sk_error_raise(L, "closed", "cannot use an HTTP session after it was closed");
  sk_xfer_opts o = {0};
  o.method = opt_str(L, 2, "method", NULL);
  o.url = opt_str(L, 2, "url", NULL);
  if (o.method == NULL || o.url == NULL) return luaL_error(L, "skein.http: method and url expected");
  o.body = opt_str(L, 2, "body", &o.body_len);
  o.body_iter = opt_bool(L, 2, "body_iter");
  o.timeout_ms = ms_of(opt_num(L, 2, "timeout"));
  o.connect_timeout_ms = ms_of(opt_num(L, 2, "connect_timeout"));
  o.follow = opt_bool(L, 2, "follow");
  lua_getfield(L, 2, "max_redirects");
  o.max_redirects = lua_isnil(L, -1) ? -1 : (long)lua_tointeger(L, -1);
  lua_pop(L, 1);
  o.decompress = opt_bool(L, 2, "decompress");
  o.cafile = opt_str(L, 2, "cafile", NULL);
  o.user_agent = opt_str(L, 2, "user_agent", NULL);
  o.stream = opt_bool(L, 2, "stream");
  lua_Number mb = opt_num(L, 2, "max_body");
  o.max_body = mb > 0 ? (size_t)mb : 0;
  /* The header lines, in a block Lua owns (a raise frees it). */
  lua_getfield(L, 2, "headers");
  int hi = lua_gettop(L);
  lua_Integer nh = lua_istable(L, hi) ? luaL_len(L, hi) : 0;
  const char **hs = lua_newuserdatauv(L, sizeof *hs * (size_t)(nh + 1), 0);
  for (lua_Integer i = 1; i <= nh; i++) {
    lua_geti(L, hi, i);
    hs[i - 1] = lua_tostring(L, -1);   /* the list keeps it alive */
    lua_pop(L, 1);
    if (hs[i - 1] == NULL) return luaL_error(L, "skein.http: header lines must be strings");
  }
  hs[nh] = NULL;
  o.headers = hs;
  /* The transfer's userdata first, so nothing is left to free on a raise. */
  lxfer *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->x = NULL;
  luaL_setmetatable(L, XFER_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  int rc = sk_xfer_start(m->cm, &o, &u->x);
  if (rc != 0) {
    sk_error_push_coded(L, rc == CURLE_OUT_OF_MEMORY ? "memory" : "io", sk_curl_code_name(rc),
                        "url", o.url, "%s %s: %s", o.method, o.url,
                        sk_curl_strerror(rc));
    return lua_error(L);
  }
  return 1;
}

/* Raises the error a finished transfer ended with. Nothing is held: the
** transfer stays as it is until its userdata closes. */
static int raise_failed(lua_State *L, sk_xfer *x, const char *method, const char *url) {
  if (x->closed) return sk_error_raise(L, "closed", "%s %s: its HTTP session was closed", method, url);
  if (x->nomem) return sk_error_raise(L, "memory", "%s %s: out of memory", method, url);
  if (x->too_large) {
    sk_error_push_coded(L, "io", "FILESIZE_EXCEEDED", "url", url,
                        "%s %s: the body is larger than max_body (%I bytes)", method, url,
                        (lua_Integer)x->max_body);
  } else {
    sk_error_push_coded(L, "io", sk_curl_code_name(x->result), "url", url, "%s %s: %s", method,
                        url, x->errbuf[0] ? x->errbuf : sk_curl_strerror(x->result));
  }
  return lua_error(L);
}

/* Step: stack [transfer]. */
static int step_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  (void)expired;
  sk_xfer *x = obj;
  if (x->done) lua_pushliteral(L, "done");
  else if (x->need_body) lua_pushliteral(L, "body");
  else if (x->stream && x->head_done) lua_pushliteral(L, "head");
  else return SK_WAIT_MORE;
  return 1;
}

static int xfer_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_iowait_link(&((sk_xfer *)obj)->waiters, &c->iow);
  return 0;
}

static int xfer_unlink(void *obj, sk_ctx *c) {
  (void)obj;
  sk_iowait_unlink(&c->iow);
  return 0;
}

static const sk_source step_source = {.name = "HTTP response", .what = "http transfer",
                                      .attempt = step_attempt,
                                      .link = xfer_link,
                                      .unlink = xfer_unlink,
                                      .check = xfer_again};

/* transfer:_step() -> "done" | "body" (the next piece is wanted) | "head"
** (a streamed response's head is in) */
static int l_step(lua_State *L) {
  sk_xfer *x = check_xfer(L, 1);
  lua_settop(L, 1);
  return sk_wait_on(L, &step_source, x, SK_NO_DEADLINE, 0);
}

/* transfer:_feed(piece | nil) */
static int l_feed(lua_State *L) {
  sk_xfer *x = check_xfer(L, 1);
  size_t len = 0;
  const char *p = luaL_optlstring(L, 2, NULL, &len);
  if (sk_xfer_feed(x, p, len) != 0) return sk_error_raise(L, "memory", "skein.http: out of memory");
  return 0;
}

/* Pushes the head's fields as a table with lower-case names; a repeated
** field's values joined by ", ". */
static void push_headers(lua_State *L, const sk_xfer *x) {
  lua_createtable(L, 0, 8);
  const char *p = x->head, *end = x->head + x->head_len;
  char name[64];                /* a name that fits is lowered here */
  luaL_Buffer b;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *next = eol ? eol + 1 : end;
    if (eol == NULL) eol = end;
    const char *le = eol;
    while (le > p && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t')) le--;
    const char *colon = memchr(p, ':', (size_t)(le - p));
    if (colon && colon > p && !(le - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
      size_t nlen = (size_t)(colon - p);
      if (nlen <= sizeof name) {
        for (size_t i = 0; i < nlen; i++) name[i] = (char)tolower((unsigned char)p[i]);
        lua_pushlstring(L, name, nlen);
      } else {
        luaL_buffinit(L, &b);
        for (const char *c = p; c < colon; c++) luaL_addchar(&b, (char)tolower((unsigned char)*c));
        luaL_pushresult(&b);
      }
      const char *v = colon + 1;
      while (v < le && (*v == ' ' || *v == '\t')) v++;
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(le - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(le - v));
      }
      lua_rawset(L, -3);
    }
    p = next;
  }
}

/* transfer:_response(method, url) -> {status=, headers=, url=[, body=]};
** raises kind io (or closed, memory) when the transfer failed. */
static int l_response(lua_State *L) {
  sk_xfer *x = check_xfer(L, 1);
  const char *method = luaL_checkstring(L, 2), *url = luaL_checkstring(L, 3);
  if (x->done && x->result != CURLE_OK) return raise_failed(L, x, method, url);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, sk_xfer_status(x));
  lua_setfield(L, -2, "status");
  push_headers(L, x);
  lua_setfield(L, -2, "headers");
  const char *eff = sk_xfer_url(x);
  lua_pushstring(L, eff ? eff : url);
  lua_setfield(L, -2, "url");
  if (!x->stream) {
    lua_pushlstring(L, x->body.data ? x->body.data + x->body.start : "", sk_rbuf_len(&x->body));
    lua_setfield(L, -2, "body");
  }
  return 1;
}

/* Read: stack [transfer, fmt, method, url]. Bytes that arrived are given
** before a failure is raised, except to "a", which wants the whole rest. */
static int read_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  (void)expired;
  sk_xfer *x = obj;
  sk_rfmt f;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    f.kind = SK_RF_N;
    f.keep_eol = 0;
    f.n = (size_t)lua_tointeger(L, 2);
  } else {
    sk_rfmt_parse(lua_tostring(L, 2), &f);
  }
  int failed = x->done && x->result != CURLE_OK;
  if (failed && f.kind == SK_RF_ALL) return raise_failed(L, x, lua_tostring(L, 3), lua_tostring(L, 4));
  const char *out;
  size_t len;
  if (sk_rbuf_take(&x->body, &f, x->done, &out, &len)) {
    if (out == NULL && failed) return raise_failed(L, x, lua_tostring(L, 3), lua_tostring(L, 4));
    if (out) lua_pushlstring(L, out, len);
    else lua_pushnil(L);
    /* Only now: letting curl go on may fill the buffer again. */
    sk_xfer_consumed(x, 0);
    return 1;
  }
  sk_xfer_consumed(x, 1);
  return SK_WAIT_MORE;
}

static const sk_source read_source = {.name = "HTTP response", .what = "http read",
                                      .attempt = read_attempt,
                                      .link = xfer_link,
                                      .unlink = xfer_unlink,
                                      .check = xfer_again};

static void check_format(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0, idx, "byte count must not be negative");
    return;
  }
  sk_rfmt f;
  if (sk_rfmt_parse(luaL_checkstring(L, idx), &f) != 0) {
    luaL_argerror(L, idx, "invalid format (n, \"l\", \"L\", \"a\" or \"any\")");
  }
}

/* transfer:read(fmt, method, url) -> data | nil at the end */
static int l_read(lua_State *L) {
  sk_xfer *x = check_xfer(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_pushliteral(L, "l");
    lua_replace(L, 2);
  }
  check_format(L, 2);
  luaL_checkstring(L, 3);
  luaL_checkstring(L, 4);
  lua_settop(L, 4);
  return sk_wait_on(L, &read_source, x, SK_NO_DEADLINE, 0);
}

static int l_xfer_close(lua_State *L) {
  lxfer *u = luaL_checkudata(L, 1, XFER_MT);
  if (u->x) sk_xfer_free(u->x);
  u->x = NULL;
  return 0;
}

static int l_xfer_tostring(lua_State *L) {
  lxfer *u = luaL_checkudata(L, 1, XFER_MT);
  if (u->x == NULL) lua_pushliteral(L, "skein.http.Transfer (closed)");
  else lua_pushfstring(L, "skein.http.Transfer (%s)", u->x->done ? "done" : "running");
  return 1;
}

/* ---------------------------------------------------------------- open */

void sk_httpc_open(lua_State *L) {
  static const luaL_Reg multi_methods[] = {{"close", l_multi_close}, {NULL, NULL}};
  static const sk_type multi_type = {
      .name = MULTI_MT, .methods = multi_methods, .gc = l_multi_close, .close = l_multi_close};
  sk_type_register(L, &multi_type);
  static const luaL_Reg xfer_methods[] = {{"_step", l_step},         {"_feed", l_feed},
                                          {"_response", l_response}, {"read", l_read},
                                          {"close", l_xfer_close},   {NULL, NULL}};
  static const sk_type xfer_type = {.name = XFER_MT,
                                    .methods = xfer_methods,
                                    .gc = l_xfer_close,
                                    .close = l_xfer_close,
                                    .tostring = l_xfer_tostring};
  sk_type_register(L, &xfer_type);
  static const luaL_Reg fns[] = {{"_multi", l_multi}, {"_start", l_start}, {NULL, NULL}};
  luaL_getsubtable(L, -1, "http");
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
}
