/*
** broker.c — the low-level Redis connection under skein.broker (the
** engine is runtime/core/resp.c; the broker itself, queues, pools and the
** worker loop are Lua: stdlib/skein/broker.lua, stdlib/skein/worker.lua).
**
**   skein._redis{host=, port=, user=, password=, db=, timeout=,
**                connect_timeout=} -> connection
**   conn:call(cmd, args...) -> reply          (the connection's timeout)
**   conn:call_timeout(seconds, cmd, args...) -> reply
**   conn:address() -> "host:port";  conn:connected() -> boolean
**   conn:close()
**
** A reply becomes: a status or bulk string -> string, an integer ->
** integer, nil -> nil (false inside an array, as in Redis's own Lua), an
** array -> a list, an error reply -> a raise of kind "broker" with the
** text Redis sent (inside an array: an error object in its place).
** Failures are errors of kind "broker" with fields `address` and `code`
** ("down", "auth", "lost", "protocol", "redis" for an error reply,
** "loading" for Redis's LOADING reply while it reads its data set); a
** command with no reply by its deadline raises kind "timeout" (the
** connection was presumed stalled and dropped); a closed connection,
** "closed".
**
** A call waits on its request through the one wait protocol; the request
** sits in a box userdata on the call's stack whose __gc releases it, so a
** call that leaves early (cancelled, a skein.timeout scope) lets it go,
** and a command not yet written is then never sent.
*/
#include <stdlib.h>
#include <string.h>

#include <hiredis/read.h>

#include "../runtime/core/sk_resp.h"
#include "sk_bind.h"

#define REDIS_MT "skein.Redis"
#define REQ_MT "skein.Redis.req"

typedef struct lconn {
  sk_resp *r;                   /* NULL once closed */
  double timeout;               /* seconds per command; < 0: none */
} lconn;

typedef struct reqbox {
  sk_resp_req *q;               /* NULL once released */
  char cmd[24];                 /* the command's name, for messages */
  char addr[96];
} reqbox;

static sk_resp *check_conn(lua_State *L, int idx) {
  lconn *c = luaL_checkudata(L, idx, REDIS_MT);
  if (c->r == NULL) sk_error_raise(L, "closed", "cannot use a Redis connection after it was closed");
  return c->r;
}

/* Pushes an error object of kind "broker" with its address and code. */
static void push_broker_error(lua_State *L, const char *addr, const char *code, const char *text,
                              size_t len) {
  lua_pushlstring(L, text, len);
  sk_error_push_coded(L, "broker", code, "address", addr, "Redis at %s: %s", addr,
                      lua_tostring(L, -1));
  lua_remove(L, -2);
}

/* Pushes reply `v` (nested: inside an array). Error replies nested in an
** array become error objects; at the top they are the caller's to raise. */
static void push_reply(lua_State *L, const sk_resp_reply *v, const char *addr, int nested) {
  switch (v->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, v->str, v->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushinteger(L, (lua_Integer)v->integer);
    break;
  case REDIS_REPLY_NIL:
    if (nested) lua_pushboolean(L, 0);
    else lua_pushnil(L);
    break;
  case REDIS_REPLY_ARRAY:
    luaL_checkstack(L, 4, "Redis reply nested too deep");
    lua_createtable(L, v->elements > INT32_MAX ? 0 : (int)v->elements, 0);
    for (size_t i = 0; i < v->elements; i++) {
      push_reply(L, v->element[i], addr, 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case REDIS_REPLY_ERROR:
  default:
    /* A Redis that is still loading its data set (after a restart) says
    ** so: code "loading", which callers that wait treat as Redis not up yet. */
    push_broker_error(L, addr,
                      v->str && v->len >= 8 && memcmp(v->str, "LOADING ", 8) == 0 ? "loading" : "redis",
                      v->str ? v->str : "", v->str ? v->len : 0);
    break;
  }
}

/* The source's attempt: stack [..., box]. */
static int call_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  reqbox *b = obj;
  sk_resp_req *q = b->q;
  if (!q->done) {
    if (!expired) return SK_WAIT_MORE;
    sk_resp_release(q);
    b->q = NULL;
    return sk_error_raise(L, "timeout", "Redis at %s: %s timed out", b->addr, b->cmd);
  }
  if (q->err) {
    static const char *const codes[] = {"ok", "down", "auth", "lost", "protocol",
                                        "timeout", "closed", "memory"};
    int err = q->err;
    if (err == SK_RESP_ETIMEOUT) {
      lua_pushfstring(L, "Redis at %s: %s timed out (no reply: the connection was dropped)",
                      b->addr, b->cmd);
    } else {
      lua_pushstring(L, q->msg ? q->msg : "Redis connection failed");
    }
    sk_resp_release(q);
    b->q = NULL;
    const char *msg = lua_tostring(L, -1);
    if (err == SK_RESP_ETIMEOUT) return sk_error_raise(L, "timeout", "%s", msg);
    if (err == SK_RESP_ECLOSED) return sk_error_raise(L, "closed", "%s", msg);
    if (err == SK_RESP_ENOMEM) return sk_error_raise(L, "memory", "%s", msg);
    sk_error_push_coded(L, "broker", codes[err], "address", b->addr, "%s", msg);
    return lua_error(L);
  }
  const sk_resp_reply *v = q->reply;
  /* Converting may raise (memory): the box still owns the request then,
  ** and its __gc releases it. */
  if (v->type == REDIS_REPLY_ERROR) {
    push_reply(L, v, b->addr, 0);
    sk_resp_release(q);
    b->q = NULL;
    return lua_error(L);
  }
  push_reply(L, v, b->addr, 0);
  sk_resp_release(q);
  b->q = NULL;
  return 1;
}

static int call_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  reqbox *b = obj;
  if (b->q->done) return 1;
  sk_iowait_link(&b->q->waiters, &c->iow);
  return 0;
}

static int call_unlink(void *obj, sk_ctx *c) {
  (void)obj;
  sk_iowait_unlink(&c->iow);
  return 0;
}

static const sk_source call_source = {
    .name = "Redis command", .what = "redis command", .attempt = call_attempt, .link = call_link, .unlink = call_unlink};

static int req_gc(lua_State *L) {
  reqbox *b = lua_touserdata(L, 1);
  if (b->q) sk_resp_release(b->q);
  b->q = NULL;
  return 0;
}

#define MAX_ARGS 4096

/* The command is at stack [first, top]; seconds < 0: no deadline. */
static int do_call(lua_State *L, sk_resp *r, int first, double seconds) {
  int argc = lua_gettop(L) - first + 1;
  luaL_argcheck(L, argc >= 1, first, "a Redis command expected");
  luaL_argcheck(L, argc <= MAX_ARGS, first, "too many arguments for one Redis command");
  for (int i = first; i < first + argc; i++) {
    int t = lua_type(L, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
      luaL_typeerror(L, i, "string or number (a Redis command argument)");
    }
  }
  const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)argc, 0);
  size_t *lens = lua_newuserdatauv(L, sizeof(size_t) * (size_t)argc, 0);
  for (int i = 0; i < argc; i++) argv[i] = lua_tolstring(L, first + i, &lens[i]);
  reqbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, REQ_MT);
  size_t n = lens[0] < sizeof b->cmd - 1 ? lens[0] : sizeof b->cmd - 1;
  memcpy(b->cmd, argv[0], n);
  for (size_t i = 0; i < n; i++) {
    if (b->cmd[i] >= 'a' && b->cmd[i] <= 'z') b->cmd[i] = (char)(b->cmd[i] - 'a' + 'A');
    else if ((unsigned char)b->cmd[i] < 32) b->cmd[i] = '?';
  }
  snprintf(b->addr, sizeof b->addr, "%s", sk_resp_address(r));
  uint64_t deadline = seconds < 0 || seconds > 1e9 ? SK_NO_DEADLINE
                                                   : uv_hrtime() + (uint64_t)(seconds * 1e9);
  int rc = sk_resp_command(r, argc, argv, lens, deadline, &b->q);
  if (rc == SK_RESP_ECLOSED) {
    return sk_error_raise(L, "closed", "cannot use a Redis connection after it was closed");
  }
  if (rc != 0) return sk_error_raise(L, "memory", "Redis command: out of memory");
  return sk_wait_on(L, &call_source, b, deadline, 0);
}

/* conn:call(cmd, ...) -> reply */
static int l_call(lua_State *L) {
  sk_resp *r = check_conn(L, 1);
  lconn *c = lua_touserdata(L, 1);
  return do_call(L, r, 2, c->timeout);
}

/* conn:call_timeout(seconds | nil, cmd, ...) -> reply */
static int l_call_timeout(lua_State *L) {
  sk_resp *r = check_conn(L, 1);
  double s = -1;
  if (!lua_isnil(L, 2)) {
    s = luaL_checknumber(L, 2);
    luaL_argcheck(L, s >= 0 && s == s, 2, "timeout must not be negative");
  }
  return do_call(L, r, 3, s);
}

static int l_close(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, REDIS_MT);
  if (c->r) sk_resp_close(c->r);
  c->r = NULL;
  return 0;
}

static int l_address(lua_State *L) {
  lua_pushstring(L, sk_resp_address(check_conn(L, 1)));
  return 1;
}

static int l_connected(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, REDIS_MT);
  lua_pushboolean(L, c->r && sk_resp_connected(c->r));
  return 1;
}

static int l_tostring(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, REDIS_MT);
  if (c->r) lua_pushfstring(L, "redis connection (%s)", sk_resp_address(c->r));
  else lua_pushliteral(L, "redis connection (closed)");
  return 1;
}

/* Option `k` of the table at 1 as a string, or NULL. */
static const char *opt_str(lua_State *L, const char *k) {
  lua_getfield(L, 1, k);
  const char *s = NULL;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "bad option '%s' (a string expected)", k);
    s = lua_tostring(L, -1);
  }
  lua_pop(L, 1);          /* the table keeps the string alive */
  return s;
}

static double opt_num(lua_State *L, const char *k, double def) {
  lua_getfield(L, 1, k);
  double v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "bad option '%s' (a number expected)", k);
    v = lua_tonumber(L, -1);
    if (!(v >= 0)) luaL_error(L, "bad option '%s' (must not be negative)", k);
  }
  lua_pop(L, 1);
  return v;
}

/* skein._redis{host=, port=, user=, password=, db=, timeout=, connect_timeout=} */
static int l_redis(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const known[] = {"host", "port", "user", "password", "db",
                                      "timeout", "connect_timeout", NULL};
  sk_check_options(L, 1, known);
  sk_resp_opts o = {0};
  o.host = opt_str(L, "host");
  if (o.host == NULL) o.host = "127.0.0.1";
  if (strlen(o.host) > 255) luaL_error(L, "bad option 'host' (too long)");
  double port = opt_num(L, "port", 6379);
  if (port != (int)port || port < 1 || port > 65535) luaL_error(L, "bad option 'port' (1..65535)");
  o.port = (int)port;
  o.user = opt_str(L, "user");
  o.password = opt_str(L, "password");
  if (o.user && !o.password) luaL_error(L, "bad option 'user' (a user needs a password)");
  double db = opt_num(L, "db", 0);
  if (db != (int)db || db > 1000000) luaL_error(L, "bad option 'db' (an integer expected)");
  o.db = (int)db;
  lua_getfield(L, 1, "timeout");
  double timeout = lua_isnil(L, -1) ? 10 : opt_num(L, "timeout", 10);
  lua_pop(L, 1);
  double ct = opt_num(L, "connect_timeout", timeout > 0 ? timeout : 10);
  o.connect_timeout = ct > 1e9 ? UINT64_MAX : (uint64_t)(ct * 1e9);
  lconn *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->r = NULL;
  c->timeout = timeout > 1e9 ? -1 : timeout;
  luaL_setmetatable(L, REDIS_MT);
  c->r = sk_resp_new(sk_worker_of(L)->sched.loop, &o);
  if (c->r == NULL) return sk_error_raise(L, "memory", "Redis connection: out of memory");
  return 1;
}

/* skein._broker_encode(...) -> string: the values marshalled for Redis.
** Only data may travel to another machine: the bytes are decoded once
** here as a worker will (no functions, no shared objects), and a value
** that needs more raises kind "marshal". */
static int l_broker_encode(lua_State *L) {
  int n = lua_gettop(L);
  sk_buf b;
  if (sk_marshal_encode(L, 1, n, &b, "value") != 0) return lua_error(L);
  lua_pushlstring(L, b.data, b.len);
  sk_buf_free(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  int top = lua_gettop(L);
  if (sk_marshal_decode(L, s, len, 0) < 0) {
    if (lua_istable(L, -1)) lua_getfield(L, -1, "message");
    const char *why = lua_tostring(L, -1);
    return sk_error_raise(L, "marshal", "a broker payload holds only data (tasks travel by name): %s",
                          why ? why : "it cannot be decoded");
  }
  lua_settop(L, top);
  return 1;
}

/* skein._broker_decode(s) -> ...: data only; bytecode, C functions,
** globals and shared objects are refused (kind "marshal"). */
static int l_broker_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  int n = sk_marshal_decode(L, s, len, 0);
  if (n < 0) return lua_error(L);
  return n;
}

/* skein._broker_ident() -> "hostname:pid" */
static int l_broker_ident(lua_State *L) {
  char host[256];
  size_t n = sizeof host;
  if (uv_os_gethostname(host, &n) != 0) snprintf(host, sizeof host, "localhost");
  lua_pushfstring(L, "%s:%d", host, (int)uv_os_getpid());
  return 1;
}

void sk_broker_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"call", l_call},
                                     {"call_timeout", l_call_timeout},
                                     {"address", l_address},
                                     {"connected", l_connected},
                                     {"close", l_close},
                                     {NULL, NULL}};
  static const sk_type conn_type = {.name = REDIS_MT,
                                    .methods = methods,
                                    .gc = l_close,
                                    .close = l_close,
                                    .tostring = l_tostring};
  sk_type_register(L, &conn_type);
  if (luaL_newmetatable(L, REQ_MT)) {
    lua_pushcfunction(L, req_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"_redis", l_redis},
                                 {"_broker_encode", l_broker_encode},
                                 {"_broker_decode", l_broker_decode},
                                 {"_broker_ident", l_broker_ident},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
