/*
** httpd.c — the C half of skein.http.serve (the engine is
** runtime/core/httpd_proto.c; the server loop, a task per connection running
** the handler for each of its requests in turn, is stdlib/skein/httpd.lua).
**
** What it gives the Lua half, in core._httpd:
**   conn(stream, max_header, max_body) -> a connection: the request parser
**     of one accepted stream (a "skein.Stream" userdata, kept as the
**     connection's user value);
**   conn:next([header_timeout]) -> the next request (a table: method,
**     path, query, headers, body), whether the connection may carry
**     another, whether the client speaks HTTP/1.0; or nil, why ("eof",
**     "timeout", "closed", a libuv error name); or false, status, reason
**     for a bad request (400, 413, 431);
**   head(status, headers, length, keep_alive, http10) -> the response's
**     head, whether the connection stays open, whether a body may follow.
**
** conn:next waits through the one wait protocol in two phases: until the
** request's headers are complete, bounded by header_timeout (a client too
** slow to send them, or an idle keep-alive connection, gets nil,
** "timeout"); then, without a deadline, until its body is in. Like every
** stream wait, it finds the stream again after each wake (another task
** may close it).
*/
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../runtime/core/sk_httpd.h"
#include "sk_bind.h"

#define CONN_MT "skein.http.conn"

typedef struct lconn {
  sk_httpp *p;                  /* NULL once closed */
} lconn;

/* The stream of the connection at index 1 (its user value), or NULL once
** either was closed: the sources' `check`. */
static void *conn_stream(lua_State *L) {
  lconn *c = lua_touserdata(L, 1);
  if (c->p == NULL) return NULL;
  lua_getiuservalue(L, 1, 1);
  sk_stream **s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return s ? *s : NULL;
}

static lconn *check_conn(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, CONN_MT);
  if (c->p == NULL) sk_error_raise(L, "closed", "cannot use an HTTP connection after it was closed");
  return c;
}

/* Pushes the request as a table: method, path, query (the raw text after
** '?', "" when none), headers (lower-case names; a repeated name's values
** joined with ", "), body ("" when none). */
static void push_request(lua_State *L, const sk_httpreq *r) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, r->method);
  lua_setfield(L, -2, "method");
  const char *t = r->buf;
  const char *q = memchr(t, '?', r->target_len);
  size_t plen = q ? (size_t)(q - t) : r->target_len;
  lua_pushlstring(L, t, plen);
  lua_setfield(L, -2, "path");
  if (q) lua_pushlstring(L, q + 1, r->target_len - plen - 1);
  else lua_pushliteral(L, "");
  lua_setfield(L, -2, "query");
  lua_createtable(L, 0, (int)(r->nheaders < 64 ? r->nheaders : 64));
  for (size_t i = 0; i < r->nheaders; i++) {
    const sk_httphdr *h = &r->headers[i];
    lua_pushlstring(L, r->buf + h->name, h->name_len);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, r->buf + h->value, h->value_len);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, r->buf + h->value, h->value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  if (r->body_len) lua_pushlstring(L, r->body, r->body_len);
  else lua_pushliteral(L, "");
  lua_setfield(L, -2, "body");
}

static int next_attempt(lua_State *L, void *obj, int round, int expired);

static int io_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_iowait_link(&((sk_stream *)obj)->readers, &c->iow);
  return 0;
}

/* A reader that leaves lets the stream stop reading ahead again (as
** stream reads do). */
static int io_unlink(void *obj, sk_ctx *c) {
  sk_stream *s = obj;
  sk_iowait_unlink(&c->iow);
  if (sk_iowaitlist_empty(&s->readers)) s->want = 0;
  return 0;
}

/* The two phases share `attempt`: a phase is told apart by its source. */
static const sk_source head_source = {.name = "HTTP connection", .what = "http request",
                                      .attempt = next_attempt,
                                      .link = io_link,
                                      .unlink = io_unlink,
                                      .check = conn_stream};
static const sk_source body_source = {.name = "HTTP connection", .what = "http body",
                                      .attempt = next_attempt,
                                      .link = io_link,
                                      .unlink = io_unlink,
                                      .check = conn_stream};

/* Next: stack [conn]. */
static int next_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  sk_stream *s = obj;
  lconn *c = lua_touserdata(L, 1);
  int r = sk_httpd_poll(s, c->p);
  switch (r) {
  case SK_HTTP_REQUEST: {
    const sk_httpreq *q = sk_httpp_request(c->p);
    push_request(L, q);
    lua_pushboolean(L, q->keep_alive);
    lua_pushboolean(L, q->major == 0 || (q->major == 1 && q->minor == 0));
    sk_httpp_next(c->p);
    return 3;
  }
  case SK_HTTP_ERROR:
    lua_pushboolean(L, 0);
    lua_pushinteger(L, sk_httpp_status(c->p));
    lua_pushstring(L, sk_httpp_reason(c->p));
    return 3;
  case SK_HTTP_EOF:
    lua_pushnil(L);
    lua_pushliteral(L, "eof");
    return 2;
  case SK_HTTP_MORE:
    if (sk_httpp_headers_done(c->p) && sk_current(L)->wsrc == &head_source) {
      /* The headers are in: the body may take its time. */
      return sk_wait_on(L, &body_source, s, SK_NO_DEADLINE, 0);
    }
    if (!expired) return SK_WAIT_MORE;
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  default:
    lua_pushnil(L);
    if (r == UV_EBADF) lua_pushliteral(L, "closed");
    else lua_pushstring(L, uv_err_name(r));
    return 2;
  }
}

/* conn:next([header_timeout]) -> req, keep_alive, http10 | nil, why |
** false, status, reason */
static int l_next(lua_State *L) {
  check_conn(L);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  sk_stream *s = conn_stream(L);
  if (s == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  return sk_wait_on(L, &head_source, s, d, 0);
}

static int l_conn_close(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, CONN_MT);
  sk_httpp_free(c->p);
  c->p = NULL;
  return 0;
}

/* conn(stream, max_header, max_body) -> connection */
static int l_conn(lua_State *L) {
  sk_stream **s = luaL_checkudata(L, 1, SK_STREAM_MT);
  if (*s == NULL) return sk_error_raise(L, "closed", "cannot serve a stream after it was closed");
  lua_Integer mh = luaL_optinteger(L, 2, 0), mb = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, mh >= 0, 2, "max_header must not be negative");
  luaL_argcheck(L, mb >= 0, 3, "max_body must not be negative");
  lconn *c = lua_newuserdatauv(L, sizeof *c, 1);
  c->p = NULL;
  luaL_setmetatable(L, CONN_MT);
  c->p = sk_httpp_new((size_t)mh, (size_t)mb);
  if (c->p == NULL) return sk_error_raise(L, "memory", "http: out of memory");
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/* ------------------------------------------------------------ responses */

/* 1 when `s` may be a header name (an RFC 9110 token). */
static int is_token(const char *s, size_t n) {
  /* RFC 9110 tchar: visible ASCII but the separators. */
  static const unsigned char sep[128] = {
      ['"'] = 1, ['('] = 1, [')'] = 1, [','] = 1, ['/'] = 1, [':'] = 1, [';'] = 1,
      ['<'] = 1, ['='] = 1, ['>'] = 1, ['?'] = 1, ['@'] = 1, ['['] = 1, ['\\'] = 1,
      [']'] = 1, ['{'] = 1, ['}'] = 1};
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= 32 || ch >= 127 || sep[ch]) return 0;
  }
  return 1;
}

/* 1 when `s` may be a header value: no CR, LF or NUL (no header can be
** smuggled in through one). */
static int is_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  }
  return 1;
}

static int is_name(const char *k, size_t kl, const char *name) {
  return strlen(name) == kl && strncasecmp(k, name, kl) == 0;
}

/* Where a head is written: with out NULL, only counted. */
typedef struct hbuf {
  char *out;
  size_t at, cap;
} hbuf;

/* Appends n bytes (when there is room: both passes read the handler's
** tables raw, no metamethod runs between them, so they see the same bytes;
** the bound is kept all the same); counts them in any case. */
static void put(hbuf *b, const char *p, size_t n) {
  if (b->out && b->at + n <= b->cap) memcpy(b->out + b->at, p, n);
  b->at += n;
}

/* "name: value\r\n" for the value at the top (a string or a number); with
** out NULL only checks it (and raises on one that is neither or holds a
** line break) and counts. */
static void add_header(lua_State *L, hbuf *b, const char *k, size_t kl) {
  size_t vl;
  int t = lua_type(L, -1);
  const char *v = (t == LUA_TSTRING || t == LUA_TNUMBER) ? lua_tolstring(L, -1, &vl) : NULL;
  if (v == NULL) {
    luaL_error(L, "bad response header '%s' (a string, a number or a list of them expected, got %s)",
               k, luaL_typename(L, -1));
  }
  if (!is_value(v, vl)) luaL_error(L, "bad response header '%s' (its value holds a line break)", k);
  put(b, k, kl);
  put(b, ": ", 2);
  put(b, v, vl);
  put(b, "\r\n", 2);
}

/* The handler's headers (table at index 2) into out, or with out NULL
** only checked (this pass alone raises) and counted. The server's own
** Content-Length, Transfer-Encoding and Connection replace the handler's;
** "Connection: close" clears *keep; a Date sets *has_date. */
static void put_headers(lua_State *L, hbuf *b, int *keep, int *has_date) {
  if (!lua_istable(L, 2)) return;
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    size_t kl;
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
    if (k == NULL || !is_token(k, kl)) {
      luaL_error(L, "bad response header name %s", luaL_tolstring(L, -2, NULL));
    }
    if (is_name(k, kl, "content-length") || is_name(k, kl, "transfer-encoding")) {
      lua_pop(L, 1);
      continue;
    }
    if (is_name(k, kl, "connection")) {
      const char *v = lua_tostring(L, -1);
      if (v && strcasecmp(v, "close") == 0) *keep = 0;
      lua_pop(L, 1);
      continue;
    }
    if (is_name(k, kl, "date")) *has_date = 1;
    if (lua_istable(L, -1)) {
      /* A list: one line per value (Set-Cookie). */
      lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
      for (lua_Integer i = 1; i <= m; i++) {
        lua_rawgeti(L, -1, i);
        add_header(L, b, k, kl);
        lua_pop(L, 1);
      }
    } else {
      add_header(L, b, k, kl);
    }
    lua_pop(L, 1);
  }
}

/* head(status, headers, length|nil, keep_alive, http10) -> head, keep_alive,
** body_allowed. A nil length streams the body: chunked, or for an
** HTTP/1.0 client until the connection closes (keep_alive comes back
** false). No body is allowed for 1xx, 204 and 304 (no length is sent
** either). The head is built in two passes over the headers: the first
** checks and counts, the second writes into a buffer of that size (so
** nothing uses the stack while the buffer is out). */
static int l_head(lua_State *L) {
  int isint;
  lua_Integer status = lua_tointegerx(L, 1, &isint);
  if (!isint || status < 100 || status > 999) {
    return luaL_error(L, "bad response status (an integer from 100 to 999 expected, got %s)",
                      luaL_tolstring(L, 1, NULL));
  }
  if (!lua_isnil(L, 2) && !lua_istable(L, 2)) {
    return luaL_error(L, "bad response headers (a table expected, got %s)", luaL_typename(L, 2));
  }
  int has_len = !lua_isnil(L, 3);
  lua_Integer len = has_len ? luaL_checkinteger(L, 3) : 0;
  luaL_argcheck(L, len >= 0, 3, "length must not be negative");
  int keep = lua_toboolean(L, 4), v10 = lua_toboolean(L, 5);
  int body_ok = !(status < 200 || status == 204 || status == 304);
  lua_settop(L, 5);
  /* The status line and the server's own lines, without printf (this runs
  ** once per response). */
  char first[64], tail[160], date[32];
  hbuf fb = {first, 0, sizeof first}, tb = {tail, 0, sizeof tail};
  const char *reason = sk_http_reason((int)status);
  char code[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10), (char)('0' + status % 10), ' '};
  put(&fb, "HTTP/1.1 ", 9);
  put(&fb, code, 4);
  put(&fb, reason, strlen(reason));
  put(&fb, "\r\n", 2);
  hbuf count = {NULL, 0, 0};
  int has_date = 0;
  put_headers(L, &count, &keep, &has_date);
  if (!has_date) {
    sk_http_date(date);
    put(&tb, "Date: ", 6);
    put(&tb, date, strlen(date));
    put(&tb, "\r\n", 2);
  }
  if (body_ok && has_len) {
    char digits[24];
    size_t nd = 0;
    unsigned long long v = (unsigned long long)len;
    do digits[sizeof digits - ++nd] = (char)('0' + v % 10); while ((v /= 10) != 0);
    put(&tb, "Content-Length: ", 16);
    put(&tb, digits + sizeof digits - nd, nd);
    put(&tb, "\r\n", 2);
  } else if (body_ok) {
    if (v10) keep = 0;
    else put(&tb, "Transfer-Encoding: chunked\r\n", 28);
  }
  if (!keep) put(&tb, "Connection: close\r\n", 19);
  else if (v10) put(&tb, "Connection: keep-alive\r\n", 24);
  put(&tb, "\r\n", 2);
  size_t fn = fb.at, tn = tb.at;
  size_t total = count.at + fn + tn;
  luaL_Buffer lb;
  hbuf b = {luaL_buffinitsize(L, &lb, total), 0, total};
  put(&b, first, fn);
  put_headers(L, &b, &keep, &has_date);
  put(&b, tail, tn);
  luaL_pushresultsize(&lb, b.at <= total ? b.at : total);
  lua_pushboolean(L, keep);
  lua_pushboolean(L, body_ok);
  return 3;
}

void sk_httpd_open(lua_State *L) {
  static const luaL_Reg conn_methods[] = {{"next", l_next}, {"close", l_conn_close}, {NULL, NULL}};
  static const sk_type conn_type = {.name = CONN_MT,
                                    .methods = conn_methods,
                                    .gc = l_conn_close,
                                    .close = l_conn_close};
  sk_type_register(L, &conn_type);
  static const luaL_Reg fns[] = {{"conn", l_conn}, {"head", l_head}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "_httpd");
  /* The public table, shared with the client (whichever opens first makes
  ** it); serve is added by stdlib/skein/httpd.lua. */
  luaL_getsubtable(L, -1, "http");
  lua_pop(L, 1);
}
