/*
** net.c — skein.net: TCP and Unix-socket streams and servers, UDP sockets
** (the engines are runtime/core/stream.c, sockets.c, udp.c). Every blocking
** call is a wait source of the one wait protocol; a call cancelled or timed
** out while it waits leaves the object as it was: a read's bytes stay
** buffered, a write waiting for room has queued nothing.
**
** A stream, server or UDP userdata holds one pointer to its engine object,
** NULL once closed (laid out as sk_handle, which is how skein.select reads
** it). Another task may close the object while a call waits on it: each
** source's `check` finds the pointer again from the userdata at stack
** index 1 after every wake. Connecting and resolving keep their job in a
** box userdata whose __gc gives the job up, so a call that leaves early
** frees or orphans it.
**
** serve (a task per connection) is written in Lua on top of listen and
** accept: stdlib/skein/net.lua.
*/
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#include "../runtime/core/sk_net.h"
#include "../runtime/core/sk_rbuf.h"
#include "sk_bind.h"

#define SERVER_MT "skein.Server"
#define UDP_MT "skein.UDP"
#define JOB_MT "skein.net.job"

typedef struct lstream {
  sk_stream *s;
} lstream;

typedef struct lserver {
  sk_server *sv;
} lserver;

typedef struct ludp {
  sk_udp *u;
} ludp;

/* ------------------------------------------------------------- errors */

/* Raises kind "io" (or "closed" for a closed object) for libuv error
** `err`: "<what> <where>: <strerror>", with fields code and address (or
** path for a Unix socket). */
static int raise_io(lua_State *L, int err, const char *what, const char *where, int is_path) {
  if (err == UV_EBADF) return sk_error_raise(L, "closed", "%s %s: it is closed", what, where);
  return sk_io_error_raise(L, err, is_path ? "path" : "address", where, "%s %s", what, where);
}

static const char *sname(const sk_stream *s) { return s->name ? s->name : "a stream"; }

static int raise_stream(lua_State *L, sk_stream *s, int err, const char *what) {
  return raise_io(L, err, what, sname(s), s->kind == SK_STREAM_PIPE && s->name && s->name[0] == '/');
}

/* "host:port" (IPv6 in brackets), malloc'd; NULL when out of memory. */
static char *addr_name(const char *host, int port) {
  size_t n = strlen(host) + 16;
  char *s = malloc(n);
  if (s == NULL) return NULL;
  if (strchr(host, ':')) snprintf(s, n, "[%s]:%d", host, port);
  else snprintf(s, n, "%s:%d", host, port);
  return s;
}

/* Option `k` of the table at `t`: an integer in [min, max], or `def`. */
static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def, lua_Integer min,
                           lua_Integer max) {
  lua_getfield(L, t, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  int isint = 0;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < min || v > max) {
    luaL_error(L, "bad option '%s' (an integer from %I to %I expected, got %s)", k, min, max,
               luaL_tolstring(L, -1, NULL));
  }
  lua_pop(L, 1);
  return v;
}

/* ------------------------------------------------------------ streams */

static sk_stream *check_stream(lua_State *L, int idx) {
  lstream *u = luaL_checkudata(L, idx, SK_STREAM_MT);
  if (u->s == NULL) sk_error_raise(L, "closed", "cannot use a stream after it was closed");
  return u->s;
}

/* The stream of the userdata at index 1, or NULL once closed (the sources'
** `check`). */
static void *stream_again(lua_State *L) { return ((lstream *)lua_touserdata(L, 1))->s; }


/* Pushes a new userdata for `s`, which it owns from now on. */
static void push_stream(lua_State *L, sk_stream *s) {
  lstream *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = s;
  luaL_setmetatable(L, SK_STREAM_MT);
}

static int parse_format(lua_State *L, int idx, sk_rfmt *f) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0, idx, "byte count must not be negative");
    f->kind = SK_RF_N;
    f->keep_eol = 0;
    f->n = (size_t)n;
    return 0;
  }
  const char *s = luaL_optstring(L, idx, "l");
  if (sk_rfmt_parse(s, f) != 0) return luaL_argerror(L, idx, "invalid format (n, \"l\", \"L\", \"a\" or \"any\")");
  return 0;
}

/* Read: stack [stream, fmt, timeout]. */
static int read_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  sk_stream *s = obj;
  sk_rfmt f;
  parse_format(L, 2, &f);
  const char *out;
  size_t len;
  int r = sk_stream_read(s, &f, &out, &len);
  if (r == 1) {
    if (out) lua_pushlstring(L, out, len);
    else lua_pushnil(L);
    sk_stream_trim(s);
    return 1;
  }
  if (r == UV_EMSGSIZE) {
    sk_error_push_coded(L, "io", "EMSGSIZE", "address", sname(s),
                        "cannot read a line from %s: longer than %d bytes (max_line)", sname(s),
                        (int)s->max_line);
    return lua_error(L);
  }
  if (r < 0) return raise_stream(L, s, r, "cannot read from");
  if (expired) return sk_error_raise(L, "timeout", "read from %s timed out", sname(s));
  return SK_WAIT_MORE;
}

static int read_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_iowait_link(&((sk_stream *)obj)->readers, &c->iow);
  return 0;
}

static int io_unlink(void *obj, sk_ctx *c) {
  (void)obj;
  sk_iowait_unlink(&c->iow);
  return 0;
}

/* A reader that leaves lets the stream stop reading ahead again (unless
** another reader still waits: its attempt sets `want` anew). */
static int read_unlink(void *obj, sk_ctx *c) {
  sk_stream *s = obj;
  sk_iowait_unlink(&c->iow);
  if (sk_iowaitlist_empty(&s->readers)) s->want = 0;
  return 0;
}

static const sk_source read_source = {.name = "stream", .what = "socket read",
                                      .attempt = read_attempt,
                                      .link = read_link,
                                      .unlink = read_unlink,
                                      .check = stream_again};

/* stream:read([fmt], [timeout]) -> data | nil at the end */
static int l_read(lua_State *L) {
  sk_stream *s = check_stream(L, 1);
  sk_rfmt f;
  parse_format(L, 2, &f);
  uint64_t d = sk_check_deadline(L, 3);
  lua_settop(L, 3);
  return sk_wait_on(L, &read_source, s, d, 0);
}

/* The iterator of stream:lines(fmt): upvalues stream, fmt. */
static int lines_next(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushnil(L);
  sk_stream *s = check_stream(L, 1);
  return sk_wait_on(L, &read_source, s, SK_NO_DEADLINE, 0);
}

/* stream:lines([fmt]) -> iterator */
static int l_lines(lua_State *L) {
  check_stream(L, 1);
  sk_rfmt f;
  parse_format(L, 2, &f);
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lua_pushliteral(L, "l");
    lua_replace(L, 2);
  }
  lua_pushcclosure(L, lines_next, 2);
  return 1;
}

/* Write: stack [stream, data...] (strings, numbers made strings). */
static int write_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  sk_stream *s = obj;
  if (!sk_stream_writable(s)) {
    if (expired) return sk_error_raise(L, "timeout", "write to %s timed out", sname(s));
    return SK_WAIT_MORE;
  }
  int n = lua_gettop(L) - 1;
  uv_buf_t bufs[16];
  for (int i = 0; i < n; i++) {
    size_t len;
    const char *p = lua_tolstring(L, i + 2, &len);
    bufs[i] = uv_buf_init((char *)p, (unsigned)len);
  }
  int rc = sk_stream_write(s, bufs, (unsigned)n);
  if (rc != 0) return raise_stream(L, s, rc, "cannot write to");
  lua_settop(L, 1);
  return 1;
}

static int write_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_stream *s = obj;
  if (sk_stream_writable(s)) return 1;
  sk_iowait_link(&s->writers, &c->iow);
  return 0;
}

static const sk_source write_source = {.name = "stream", .what = "socket write",
                                       .attempt = write_attempt,
                                       .link = write_link,
                                       .unlink = io_unlink,
                                       .check = stream_again};

/* stream:write(...) -> stream; waits while more than the high-water mark
** is queued. */
static int l_write(lua_State *L) {
  sk_stream *s = check_stream(L, 1);
  int n = lua_gettop(L) - 1;
  for (int i = 2; i <= n + 1; i++) {
    size_t len;
    luaL_checklstring(L, i, &len);   /* numbers become strings in place */
    if (len > UINT32_MAX) luaL_argerror(L, i, "string too long for one write (4 GiB)");
  }
  if (n > 16) {
    /* More pieces than one write takes: join them first. */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 2; i <= n + 1; i++) {
      lua_pushvalue(L, i);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_replace(L, 2);
    lua_settop(L, 2);
  }
  return sk_wait_on(L, &write_source, s, SK_NO_DEADLINE, 0);
}

static int flush_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  sk_stream *s = obj;
  if (sk_stream_flushed(s)) {
    if (s->werr) return raise_stream(L, s, s->werr, "cannot write to");
    lua_settop(L, 1);
    return 1;
  }
  if (expired) return sk_error_raise(L, "timeout", "flush of %s timed out", sname(s));
  return SK_WAIT_MORE;
}

static int flush_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_stream *s = obj;
  if (sk_stream_flushed(s)) return 1;
  sk_iowait_link(&s->writers, &c->iow);
  return 0;
}

static const sk_source flush_source = {.name = "stream", .what = "socket flush",
                                       .attempt = flush_attempt,
                                       .link = flush_link,
                                       .unlink = io_unlink,
                                       .check = stream_again};

/* stream:flush([timeout]) -> stream, once everything queued was written */
static int l_flush(lua_State *L) {
  sk_stream *s = check_stream(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &flush_source, s, d, 0);
}

/* stream:shutdown() -> stream: no more writes; the peer reads the end
** once what is queued went out. */
static int l_shutdown(lua_State *L) {
  sk_stream *s = check_stream(L, 1);
  int rc = sk_stream_shutdown(s);
  if (rc != 0) return raise_stream(L, s, rc, "cannot shut down");
  lua_settop(L, 1);
  return 1;
}

static int l_stream_close(lua_State *L) {
  lstream *u = luaL_checkudata(L, 1, SK_STREAM_MT);
  if (u->s) sk_stream_close(u->s);
  u->s = NULL;
  return 0;
}

static int push_addr(lua_State *L, int rc, const char *host, int port, int is_pipe) {
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  lua_pushstring(L, host);
  if (is_pipe) return 1;
  lua_pushinteger(L, port);
  return 2;
}

static int stream_addr(lua_State *L, int peer) {
  sk_stream *s = check_stream(L, 1);
  char host[256];
  int port = 0;
  int rc = sk_stream_addr(s, peer, host, sizeof host, &port);
  return push_addr(L, rc, host, port, s->kind == SK_STREAM_PIPE);
}
static int l_peername(lua_State *L) { return stream_addr(L, 1); }
static int l_sockname(lua_State *L) { return stream_addr(L, 0); }

static int l_stream_tostring(lua_State *L) {
  lstream *u = luaL_checkudata(L, 1, SK_STREAM_MT);
  if (u->s == NULL) lua_pushliteral(L, "skein.Stream (closed)");
  else lua_pushfstring(L, "skein.Stream (%s)", sname(u->s));
  return 1;
}

/* stream.max_line, stream.hwm as settable limits: stream:limits{...} */
static int l_limits(lua_State *L) {
  sk_stream *s = check_stream(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  static const char *const known[] = {"max_line", "hwm", NULL};
  sk_check_options(L, 2, known);
  s->max_line = (size_t)opt_int(L, 2, "max_line", (lua_Integer)s->max_line, 1, INT32_MAX);
  s->hwm = (size_t)opt_int(L, 2, "hwm", (lua_Integer)s->hwm, 0, INT32_MAX);
  lua_settop(L, 1);
  return 1;
}

static int sel_stream_try(lua_State *L, sk_obj *o) {
  if (!sk_stream_readable((sk_stream *)o)) return 0;
  lua_pushboolean(L, 1);
  return 1;
}
static int sel_stream_add(sk_obj *o, const sk_waiter *w) {
  return sk_stream_add_selector((sk_stream *)o, w);
}
static void sel_stream_remove(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_stream_remove_selector((sk_stream *)o, port, slot);
}
static const sk_selectable stream_select = {sel_stream_try, sel_stream_add, sel_stream_remove};

/* --------------------------------------------------- connect & resolve */

typedef struct jobbox {
  int kind;                     /* JOB_CONNECT, JOB_RESOLVE */
  union {
    sk_connect *c;
    sk_resolve *r;
  } j;
  char *where;                  /* what errors name */
  int is_path;
} jobbox;

enum { JOB_CONNECT, JOB_RESOLVE };

static void job_release(jobbox *b) {
  if (b->kind == JOB_CONNECT) sk_connect_release(b->j.c);
  else sk_resolve_release(b->j.r);
  b->j.c = NULL;
  free(b->where);
  b->where = NULL;
}

static int job_gc(lua_State *L) {
  jobbox *b = lua_touserdata(L, 1);
  if (b->j.c) job_release(b);
  return 0;
}

static jobbox *new_box(lua_State *L, int kind) {
  jobbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->kind = kind;
  luaL_setmetatable(L, JOB_MT);
  return b;
}

/* Connect: stack [..., box]; the box is at the top at every attempt. */
static int connect_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  jobbox *b = obj;
  sk_connect *c = b->j.c;
  if (!c->done) {
    if (!expired) return SK_WAIT_MORE;
    sk_error_push(L, "timeout", "connect to %s timed out", b->where);
    job_release(b);
    return lua_error(L);
  }
  if (c->err) {
    /* The box's text is copied onto the stack before the box lets it go. */
    const char *where = lua_pushstring(L, b->where);
    int err = c->err, is_path = b->is_path;
    job_release(b);
    return sk_io_error_raise(L, err, is_path ? "path" : "address", where, "cannot connect to %s",
                             where);
  }
  sk_stream *s = sk_connect_take(c);
  s->name = b->where;           /* the stream names its peer as it was asked for */
  b->where = NULL;
  job_release(b);
  push_stream(L, s);
  return 1;
}

static int job_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  jobbox *b = obj;
  sk_iowaitlist *l = b->kind == JOB_CONNECT ? &b->j.c->waiters : &b->j.r->waiters;
  sk_iowait_link(l, &c->iow);
  return 0;
}

static const sk_source connect_source = {
    .name = "connect", .attempt = connect_attempt, .link = job_link, .unlink = io_unlink};

/* Reads the host/port or {path=} arguments at 1, 2: returns the path or
** NULL, with *host, *port. */
static const char *where_args(lua_State *L, const char **host, int *port) {
  *host = NULL;
  *port = 0;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_getfield(L, 1, "path");
    const char *path = lua_tostring(L, -1);
    if (path == NULL) luaL_argerror(L, 1, "a Unix socket is given as {path = \"...\"}");
    if (strlen(path) >= 108) luaL_argerror(L, 1, "Unix socket path too long (107 bytes at most)");
    return path;            /* kept alive by the table */
  }
  *host = luaL_checkstring(L, 1);
  lua_Integer p = luaL_checkinteger(L, 2);
  luaL_argcheck(L, p >= 0 && p <= 65535, 2, "port must be 0..65535");
  *port = (int)p;
  return NULL;
}

static int opt_field_bool(lua_State *L, int t, const char *k, int def) {
  if (lua_type(L, t) != LUA_TTABLE) return def;
  lua_getfield(L, t, k);
  int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* skein.net.connect(host, port, [opts]) / connect({path=}, [opts]) -> stream */
static int l_connect(lua_State *L) {
  lua_settop(L, 3);             /* the path where_args reads stays above */
  const char *host;
  int port;
  const char *path = where_args(L, &host, &port);
  int oi = path ? 2 : 3;
  if (!lua_isnoneornil(L, oi)) {
    luaL_checktype(L, oi, LUA_TTABLE);
    static const char *const known[] = {"timeout", "nodelay", NULL};
    sk_check_options(L, oi, known);
  }
  uint64_t d = SK_NO_DEADLINE;
  if (lua_type(L, oi) == LUA_TTABLE) {
    lua_getfield(L, oi, "timeout");
    d = sk_check_deadline(L, lua_gettop(L));
    lua_pop(L, 1);
  }
  int nodelay = opt_field_bool(L, oi, "nodelay", 1);
  jobbox *b = new_box(L, JOB_CONNECT);
  b->is_path = path != NULL;
  b->where = path ? strdup(path) : addr_name(host, port);
  if (b->where == NULL) return sk_error_raise(L, "memory", "connect: out of memory");
  int rc = sk_connect_start(sk_worker_of(L)->sched.loop, host, port, path, nodelay, &b->j.c);
  if (rc != 0) {
    lua_pushstring(L, b->where);
    free(b->where);
    b->where = NULL;
    return raise_io(L, rc, "cannot connect to", lua_tostring(L, -1), path != NULL);
  }
  return sk_wait_on(L, &connect_source, b, d, 0);
}

/* ------------------------------------------------------------ servers */

static sk_server *check_server(lua_State *L, int idx) {
  lserver *u = luaL_checkudata(L, idx, SERVER_MT);
  if (u->sv == NULL) sk_error_raise(L, "closed", "cannot use a server after it was closed");
  return u->sv;
}

static void *server_again(lua_State *L) { return ((lserver *)lua_touserdata(L, 1))->sv; }

static int accept_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  sk_server *sv = obj;
  sk_stream *s;
  int rc = sk_server_accept(sv, &s);
  if (rc == 0) {
    char host[128];
    int port;
    if (s->kind == SK_STREAM_TCP && sk_stream_addr(s, 1, host, sizeof host, &port) == 0) {
      s->name = addr_name(host, port);
    } else if (sv->name) {
      s->name = strdup(sv->name);
    }
    push_stream(L, s);
    return 1;
  }
  if (rc != UV_EAGAIN) return raise_io(L, rc, "cannot accept on", sv->name ? sv->name : "a server", sv->kind == SK_STREAM_PIPE);
  if (expired) return sk_error_raise(L, "timeout", "accept on %s timed out", sv->name ? sv->name : "a server");
  return SK_WAIT_MORE;
}

static int accept_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_server *sv = obj;
  if (sk_server_ready(sv)) return 1;
  sk_iowait_link(&sv->waiters, &c->iow);
  return 0;
}

static const sk_source accept_source = {.name = "server", .what = "accept",
                                        .attempt = accept_attempt,
                                        .link = accept_link,
                                        .unlink = io_unlink,
                                        .check = server_again};

/* server:accept([timeout]) -> stream */
static int l_accept(lua_State *L) {
  sk_server *sv = check_server(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &accept_source, sv, d, 0);
}

static int l_server_port(lua_State *L) {
  lua_pushinteger(L, sk_server_port(check_server(L, 1)));
  return 1;
}

static int l_server_close(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  if (u->sv) sk_server_close(u->sv);
  u->sv = NULL;
  return 0;
}

static int l_server_tostring(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  if (u->sv == NULL) lua_pushliteral(L, "skein.Server (closed)");
  else lua_pushfstring(L, "skein.Server (%s)", u->sv->name ? u->sv->name : "?");
  return 1;
}

static int sel_server_try(lua_State *L, sk_obj *o) {
  if (!sk_server_ready((sk_server *)o)) return 0;
  lua_pushboolean(L, 1);
  return 1;
}
static int sel_server_add(sk_obj *o, const sk_waiter *w) {
  return sk_server_add_selector((sk_server *)o, w);
}
static void sel_server_remove(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_server_remove_selector((sk_server *)o, port, slot);
}
static const sk_selectable server_select = {sel_server_try, sel_server_add, sel_server_remove};

/* Listen options at `oi`: backlog, reuseport. */
static void listen_opts(lua_State *L, int oi, int *backlog, int *reuseport) {
  *backlog = 511;
  *reuseport = 0;
  if (lua_isnoneornil(L, oi)) return;
  luaL_checktype(L, oi, LUA_TTABLE);
  *backlog = (int)opt_int(L, oi, "backlog", 511, 1, 65535);
  *reuseport = opt_field_bool(L, oi, "reuseport", 0);
}

/* Listens on addr (or path) and pushes the server. */
static int do_listen(lua_State *L, const struct sockaddr *addr, const char *path, int backlog,
                     int reuseport, const char *where) {
  sk_server *sv;
  int rc = sk_server_listen(sk_worker_of(L)->sched.loop, addr, path, backlog, reuseport, &sv);
  if (rc != 0) return raise_io(L, rc, "cannot listen on", where, path != NULL);
  lserver *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->sv = sv;
  luaL_setmetatable(L, SERVER_MT);
  if (path) {
    sv->name = strdup(path);
  } else {
    char host[128];
    int port = 0;
    sk_addr_text(addr, host, sizeof host, &port);
    sv->name = addr_name(host, sk_server_port(sv));
  }
  return 1;
}

/* What a resolve job does with the first address once it is in. */
typedef int (*then_fn)(lua_State *L, const struct sockaddr *addr, const char *where);

static int listen_then(lua_State *L, const struct sockaddr *addr, const char *where) {
  int backlog, reuseport;
  listen_opts(L, 3, &backlog, &reuseport);
  return do_listen(L, addr, NULL, backlog, reuseport, where);
}

static int udp_bind_then(lua_State *L, const struct sockaddr *addr, const char *where);
static int sendto_then(lua_State *L, const struct sockaddr *addr, const char *where);

/* Resolve: stack [args..., box]; `then` is chosen by the box's call. */
static int resolve_attempt(lua_State *L, void *obj, int round, int expired, then_fn then) {
  (void)round;
  jobbox *b = obj;
  sk_resolve *r = b->j.r;
  if (!r->done) {
    if (!expired) return SK_WAIT_MORE;
    sk_error_push(L, "timeout", "resolving %s timed out", b->where);
    job_release(b);
    return lua_error(L);
  }
  lua_pushstring(L, b->where);      /* kept on the stack for the message */
  const char *where = lua_tostring(L, -1);
  if (r->err || r->res == NULL) {
    int err = r->err ? r->err : UV_EAI_NONAME;
    job_release(b);
    return raise_io(L, err, "cannot resolve", where, 0);
  }
  struct sockaddr_storage ss;
  memcpy(&ss, r->res->ai_addr, r->res->ai_addrlen);
  job_release(b);
  return then(L, (struct sockaddr *)&ss, where);
}

static int listen_resolved(lua_State *L, void *obj, int round, int expired) {
  return resolve_attempt(L, obj, round, expired, listen_then);
}
static int udp_resolved(lua_State *L, void *obj, int round, int expired) {
  return resolve_attempt(L, obj, round, expired, udp_bind_then);
}
static int sendto_resolved(lua_State *L, void *obj, int round, int expired) {
  return resolve_attempt(L, obj, round, expired, sendto_then);
}

static const sk_source listen_source = {.what = "resolve",
    .name = "resolve", .attempt = listen_resolved, .link = job_link, .unlink = io_unlink};
static const sk_source udp_source = {.what = "resolve",
    .name = "resolve", .attempt = udp_resolved, .link = job_link, .unlink = io_unlink};
static const sk_source sendto_source = {.what = "resolve",
    .name = "resolve", .attempt = sendto_resolved, .link = job_link, .unlink = io_unlink};

/* Resolves host:port (not numeric) and waits through `src`, whose attempt
** carries on with the first address. */
static int resolve_then(lua_State *L, const char *host, int port, int socktype, int passive,
                        const sk_source *src) {
  jobbox *b = new_box(L, JOB_RESOLVE);
  b->where = addr_name(host, port);
  if (b->where == NULL) return sk_error_raise(L, "memory", "net: out of memory");
  int rc = sk_resolve_start(sk_worker_of(L)->sched.loop, host, port, socktype, passive, &b->j.r);
  if (rc != 0) {
    lua_pushstring(L, b->where);
    free(b->where);
    b->where = NULL;
    return raise_io(L, rc, "cannot resolve", lua_tostring(L, -1), 0);
  }
  return sk_wait_on(L, src, b, SK_NO_DEADLINE, 0);
}

/* skein.net.listen(host, port, [opts]) / listen({path=}, [opts]) -> server */
static int l_listen(lua_State *L) {
  lua_settop(L, 3);             /* the path where_args reads stays above */
  const char *host;
  int port;
  const char *path = where_args(L, &host, &port);
  int oi = path ? 2 : 3;
  if (!lua_isnoneornil(L, oi)) {
    luaL_checktype(L, oi, LUA_TTABLE);
    static const char *const known[] = {"backlog", "reuseport", "max_conns", NULL};
    sk_check_options(L, oi, known);
  }
  int backlog, reuseport;
  listen_opts(L, oi, &backlog, &reuseport);
  if (path) return do_listen(L, NULL, path, backlog, reuseport, path);
  struct sockaddr_storage ss;
  if (sk_addr_numeric(host, port, &ss) == 0) {
    char *where = addr_name(host, port);
    lua_pushstring(L, where ? where : host);
    free(where);
    return do_listen(L, (struct sockaddr *)&ss, NULL, backlog, reuseport, lua_tostring(L, -1));
  }
  lua_settop(L, 3);
  return resolve_then(L, host, port, SOCK_STREAM, 1, &listen_source);
}

/* ---------------------------------------------------------------- UDP */

static sk_udp *check_udp(lua_State *L, int idx) {
  ludp *u = luaL_checkudata(L, idx, UDP_MT);
  if (u->u == NULL) sk_error_raise(L, "closed", "cannot use a UDP socket after it was closed");
  return u->u;
}

static void *udp_again(lua_State *L) { return ((ludp *)lua_touserdata(L, 1))->u; }

static int udp_open_at(lua_State *L, const struct sockaddr *addr, const char *where) {
  sk_udp *s;
  int rc = sk_udp_open(sk_worker_of(L)->sched.loop, addr, &s);
  if (rc != 0) return raise_io(L, rc, "cannot bind", where, 0);
  ludp *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->u = s;
  luaL_setmetatable(L, UDP_MT);
  s->name = where ? strdup(where) : NULL;
  return 1;
}

static int udp_bind_then(lua_State *L, const struct sockaddr *addr, const char *where) {
  return udp_open_at(L, addr, where);
}

/* skein.net.udp([host, port]) -> socket */
static int l_udp(lua_State *L) {
  if (lua_isnoneornil(L, 1)) return udp_open_at(L, NULL, NULL);
  const char *host = luaL_checkstring(L, 1);
  lua_Integer p = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, p >= 0 && p <= 65535, 2, "port must be 0..65535");
  struct sockaddr_storage ss;
  if (sk_addr_numeric(host, (int)p, &ss) == 0) {
    char *where = addr_name(host, (int)p);
    lua_pushstring(L, where ? where : host);
    free(where);
    return udp_open_at(L, (struct sockaddr *)&ss, lua_tostring(L, -1));
  }
  lua_settop(L, 2);
  return resolve_then(L, host, (int)p, SOCK_DGRAM, 1, &udp_source);
}

/* sendto: stack [sock, data, host, port, ...]. */
static int sendto_then(lua_State *L, const struct sockaddr *addr, const char *where) {
  ludp *u = lua_touserdata(L, 1);
  if (u->u == NULL) return sk_error_raise(L, "closed", "cannot use a UDP socket after it was closed");
  size_t len;
  const char *data = lua_tolstring(L, 2, &len);
  int rc = sk_udp_send(u->u, addr, data, len);
  if (rc != 0) return raise_io(L, rc, "cannot send to", where, 0);
  return 0;
}

/* sock:sendto(data, host, port) */
static int l_sendto(lua_State *L) {
  check_udp(L, 1);
  luaL_checklstring(L, 2, NULL);
  const char *host = luaL_checkstring(L, 3);
  lua_Integer p = luaL_checkinteger(L, 4);
  luaL_argcheck(L, p > 0 && p <= 65535, 4, "port must be 1..65535");
  lua_settop(L, 4);
  struct sockaddr_storage ss;
  if (sk_addr_numeric(host, (int)p, &ss) == 0) {
    char *where = addr_name(host, (int)p);
    lua_pushstring(L, where ? where : host);
    free(where);
    return sendto_then(L, (struct sockaddr *)&ss, lua_tostring(L, -1));
  }
  return resolve_then(L, host, (int)p, SOCK_DGRAM, 0, &sendto_source);
}

static int recv_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  sk_udp *u = obj;
  sk_dgram *d;
  int r = sk_udp_recv(u, &d);
  if (r == 1) {
    char host[128];
    int port = 0;
    lua_pushlstring(L, d->data, d->len);
    sk_addr_text((struct sockaddr *)&d->from, host, sizeof host, &port);
    free(d);
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    return 3;
  }
  if (r < 0) return raise_io(L, r, "cannot receive on", u->name ? u->name : "a UDP socket", 0);
  if (expired) return sk_error_raise(L, "timeout", "recvfrom timed out");
  return SK_WAIT_MORE;
}

static int recv_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_iowait_link(&((sk_udp *)obj)->waiters, &c->iow);
  return 0;
}

static const sk_source recv_source = {.name = "UDP socket", .what = "udp recv",
                                      .attempt = recv_attempt,
                                      .link = recv_link,
                                      .unlink = io_unlink,
                                      .check = udp_again};

/* sock:recvfrom([timeout]) -> data, host, port */
static int l_recvfrom(lua_State *L) {
  sk_udp *u = check_udp(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &recv_source, u, d, 0);
}

static int l_udp_sockname(lua_State *L) {
  sk_udp *u = check_udp(L, 1);
  char host[128];
  int port = 0;
  int rc = sk_udp_addr(u, host, sizeof host, &port);
  return push_addr(L, rc, host, port, 0);
}

static int l_udp_close(lua_State *L) {
  ludp *u = luaL_checkudata(L, 1, UDP_MT);
  if (u->u) sk_udp_close(u->u);
  u->u = NULL;
  return 0;
}

static int l_udp_tostring(lua_State *L) {
  ludp *u = luaL_checkudata(L, 1, UDP_MT);
  if (u->u == NULL) lua_pushliteral(L, "skein.UDP (closed)");
  else lua_pushfstring(L, "skein.UDP (%s)", u->u->name ? u->u->name : "unbound");
  return 1;
}

/* ---------------------------------------------------------------- open */

void sk_net_open(lua_State *L) {
  static const luaL_Reg stream_methods[] = {
      {"read", l_read},         {"lines", l_lines},       {"write", l_write},
      {"flush", l_flush},       {"shutdown", l_shutdown}, {"close", l_stream_close},
      {"peername", l_peername}, {"sockname", l_sockname}, {"limits", l_limits},
      {NULL, NULL}};
  static const sk_type stream_type = {.name = SK_STREAM_MT,
                                      .methods = stream_methods,
                                      .gc = l_stream_close,
                                      .close = l_stream_close,
                                      .tostring = l_stream_tostring,
                                      .select = &stream_select};
  sk_type_register(L, &stream_type);
  static const luaL_Reg server_methods[] = {{"accept", l_accept},
                                            {"port", l_server_port},
                                            {"close", l_server_close},
                                            {NULL, NULL}};
  static const sk_type server_type = {.name = SERVER_MT,
                                      .methods = server_methods,
                                      .gc = l_server_close,
                                      .close = l_server_close,
                                      .tostring = l_server_tostring,
                                      .select = &server_select};
  sk_type_register(L, &server_type);
  static const luaL_Reg udp_methods[] = {{"sendto", l_sendto},
                                         {"recvfrom", l_recvfrom},
                                         {"sockname", l_udp_sockname},
                                         {"close", l_udp_close},
                                         {NULL, NULL}};
  static const sk_type udp_type = {.name = UDP_MT,
                                   .methods = udp_methods,
                                   .gc = l_udp_close,
                                   .close = l_udp_close,
                                   .tostring = l_udp_tostring};
  sk_type_register(L, &udp_type);
  if (luaL_newmetatable(L, JOB_MT)) {
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
      {"connect", l_connect}, {"listen", l_listen}, {"udp", l_udp}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "net");
}
