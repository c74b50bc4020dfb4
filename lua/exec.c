/*
** exec.c — skein.exec(cmd, args, [opts]) and skein.exec.run: argument
** checks, the process userdata, its methods and waits. The engine (the
** child, its pipes, its timeout, reaping) is runtime/core/subproc.c
** (sk_exec.h); a worker kills and reaps the children still running when
** it closes (sk_worker_close).
**
** A process userdata holds the sk_exec pointer (NULL once closed) and, as
** user values, the Lua streams of its pipes (metatable "skein.Stream",
** whose methods are lua/net.c's; each is exactly one sk_stream pointer).
** __gc drops the engine reference only: a child whose handle is collected
** keeps running until its worker closes. __close (a `<close>` variable)
** kills a child still running with SIGKILL first; libuv reaps it.
**
** skein.exec.run keeps its child in a to-be-closed box on its own stack:
** a call that leaves early (cancelled, a skein.timeout scope, Ctrl-C)
** kills its child.
*/
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/core/sk_exec.h"
#include "../runtime/core/sk_signal.h"
#include "sk_bind.h"

#define EXEC_MT "skein.Exec"
#define RUN_MT "skein.exec.run"

typedef struct exec_box {
  sk_exec *x;                   /* NULL once closed */
} exec_box;

/* The arguments of a start, checked; every string and array lives on the
** Lua stack (the anchor table and the userdata made by check_args). */
typedef struct exec_args {
  sk_exec_opts o;
  const char *cmd;
} exec_args;

/* Raises "bad argument #3" (the options) with the formatted reason. */
static int opt_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return luaL_argerror(L, 3, msg);
}

static const char *const stdio_names[] = {"stdin", "stdout", "stderr"};

/* Reads stream option `fd` at the top of the stack (popped): a mode, or
** for stdin any other string, the bytes to feed. */
static void check_stdio(lua_State *L, int fd, exec_args *a, int run) {
  int t = lua_type(L, -1);
  if (t == LUA_TNIL) {
    a->o.stdio[fd] = run ? (fd == 0 ? SK_EXEC_NULL : SK_EXEC_CAPTURE) : SK_EXEC_INHERIT;
  } else if (t != LUA_TSTRING) {
    opt_error(L, "option '%s': a string expected, got %s", stdio_names[fd],
               luaL_typename(L, -1));
  } else {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (strcmp(s, "inherit") == 0) a->o.stdio[fd] = SK_EXEC_INHERIT;
    else if (strcmp(s, "null") == 0) a->o.stdio[fd] = SK_EXEC_NULL;
    else if (strcmp(s, "pipe") == 0) a->o.stdio[fd] = run && fd > 0 ? SK_EXEC_CAPTURE : SK_EXEC_PIPE;
    else if (fd == 0) {
      a->o.stdio[0] = SK_EXEC_FEED;
      a->o.feed = s;            /* the value stays in the opts table */
      a->o.feedlen = len;
    } else {
      opt_error(L, "option '%s': \"pipe\", \"inherit\" or \"null\" expected, got \"%s\"",
                 stdio_names[fd], s);
    }
  }
  lua_pop(L, 1);
}

/* Builds the environment array from the table at the top of the stack
** (popped); the "NAME=value" strings go to the anchor table at `anchor`. */
static char **check_env(lua_State *L, int anchor) {
  int env = lua_gettop(L);
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, env)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      opt_error(L, "option 'env': names must be strings, got %s", luaL_typename(L, -2));
    }
    const char *k = lua_tostring(L, -2);
    if (k[0] == '\0' || strchr(k, '=') || strlen(k) != lua_rawlen(L, -2)) {
      opt_error(L, "option 'env': invalid variable name '%s'", k);
    }
    int vt = lua_type(L, -1);
    if (vt != LUA_TSTRING && vt != LUA_TNUMBER) {
      opt_error(L, "option 'env': env.%s must be a string, got %s", k, luaL_typename(L, -1));
    }
    lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    lua_pop(L, 1);
    n++;
  }
  char **envp = lua_newuserdatauv(L, (n + 1) * sizeof *envp, 0);
  lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
  size_t first = lua_rawlen(L, anchor) - 1 - n;
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, anchor, (lua_Integer)(first + 1 + i));
    envp[i] = (char *)lua_tostring(L, -1);    /* anchored */
    lua_pop(L, 1);
  }
  envp[n] = NULL;
  lua_pop(L, 1);
  return envp;
}

/* Checks (cmd, args, [opts]) at 1..3 and fills `a`. Leaves the stack as
** 1 cmd, 2 args, 3 opts, 4 the anchor table. Raises on bad arguments,
** holding nothing. */
static void check_args(lua_State *L, exec_args *a, int run) {
  memset(a, 0, sizeof *a);
  if (lua_type(L, 1) != LUA_TSTRING) luaL_typeerror(L, 1, "string (the command)");
  a->cmd = lua_tostring(L, 1);
  if (a->cmd[0] == '\0') luaL_argerror(L, 1, "the command is empty");
  int at = lua_type(L, 2);
  if (at != LUA_TNIL && at != LUA_TNONE && at != LUA_TTABLE) {
    luaL_typeerror(L, 2, "table (the arguments) or nil");
  }
  int ot = lua_type(L, 3);
  if (ot != LUA_TNIL && ot != LUA_TNONE && ot != LUA_TTABLE) {
    luaL_typeerror(L, 3, "table (the options) or nil");
  }
  lua_settop(L, 3);
  lua_newtable(L);              /* 4: anchors what the arrays point to */
  size_t n = at == LUA_TTABLE ? lua_rawlen(L, 2) : 0;
  char **argv = lua_newuserdatauv(L, (n + 2) * sizeof *argv, 0);
  lua_rawseti(L, 4, 1);
  argv[0] = (char *)a->cmd;
  for (size_t i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 2, (lua_Integer)i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
      luaL_argerror(L, 2, lua_pushfstring(L, "args[%d] is %s, a string expected", (int)i,
                                          luaL_typename(L, -1)));
    }
    lua_tostring(L, -1);        /* a number becomes a string: anchored below */
    lua_pushvalue(L, -1);
    lua_rawseti(L, 4, (lua_Integer)lua_rawlen(L, 4) + 1);
    argv[i] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  argv[n + 1] = NULL;
  a->o.file = a->cmd;
  a->o.args = argv;
  for (int fd = 0; fd < 3; fd++) {
    lua_pushnil(L);
    check_stdio(L, fd, a, run);
  }
  if (ot != LUA_TTABLE) return;
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int fd = -1;
    for (int i = 0; k && i < 3; i++) {
      if (strcmp(k, stdio_names[i]) == 0) fd = i;
    }
    if (fd >= 0) {
      lua_pushvalue(L, -1);
      check_stdio(L, fd, a, run);
    } else if (k && strcmp(k, "cwd") == 0) {
      if (lua_type(L, -1) != LUA_TSTRING) {
        opt_error(L, "option 'cwd': a string expected, got %s", luaL_typename(L, -1));
      }
      a->o.cwd = lua_tostring(L, -1);
    } else if (k && strcmp(k, "env") == 0) {
      if (!lua_istable(L, -1)) {
        opt_error(L, "option 'env': a table of names to values expected, got %s",
                   luaL_typename(L, -1));
      }
      lua_pushvalue(L, -1);
      a->o.env = check_env(L, 4);
    } else if (k && strcmp(k, "timeout") == 0) {
      lua_Number s = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
      if (isnan(s) || s <= 0) {
        opt_error(L, "option 'timeout': a positive number of seconds expected");
      }
      a->o.timeout_ms = s >= 1e9 ? 0 : (uint64_t)ceil(s * 1000);
    } else {
      lua_pushvalue(L, -2);
      opt_error(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
  }
}

/* Raises kind "io" for a start that failed, naming the command. */
static int raise_start(lua_State *L, const exec_args *a, int rc) {
  if (a->o.cwd) {
    return sk_io_error_raise(L, rc, "path", a->cmd, "cannot run '%s' (in '%s')", a->cmd, a->o.cwd);
  }
  return sk_io_error_raise(L, rc, "path", a->cmd, "cannot run '%s'", a->cmd);
}

/* Starts the child into the box on top of the stack; raises on failure. */
static void start(lua_State *L, exec_args *a, exec_box *b) {
  sk_worker *w = sk_worker_of(L);
  int rc = sk_exec_start(w->sched.loop, &w->execs, &a->o, &b->x);
  if (rc == UV_ENOMEM) sk_error_raise(L, "memory", "exec: out of memory");
  if (rc != 0) raise_start(L, a, rc);
}

/* Pushes (code, signal) of a child that exited: code nil when a signal
** ended it, then the signal's name (its number if it has none). */
static int push_status(lua_State *L, const sk_exec *x) {
  if (x->termsig) {
    lua_pushnil(L);
    const char *name = sk_sig_name(x->termsig);
    if (name) lua_pushstring(L, name);
    else lua_pushinteger(L, x->termsig);
  } else {
    lua_pushinteger(L, (lua_Integer)x->status);
    lua_pushnil(L);
  }
  return 2;
}

/* ------------------------------------------------------------ proc */

static exec_box *check_box(lua_State *L, int idx) {
  exec_box *b = luaL_checkudata(L, idx, EXEC_MT);
  if (b->x == NULL) sk_error_raise(L, "closed", "exec: the process handle is closed");
  return b;
}

static int wait_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_exec *x = obj;
  (void)round;
  if (x->exited) return push_status(L, x);
  if (expired) return sk_error_raise(L, "timeout", "wait for process %d timed out", x->pid);
  return SK_WAIT_MORE;
}

static int wait_link(void *obj, sk_ctx *c, int round) {
  sk_exec *x = obj;
  (void)round;
  if (x->exited) return 1;
  sk_iowait_link(&x->waiters, &c->iow);
  return 0;
}

static int wait_unlink(void *obj, sk_ctx *c) {
  (void)obj;
  sk_iowait_unlink(&c->iow);
  return 0;
}

/* Another task may close the handle while this one waits. */
static void *wait_check(lua_State *L) { return ((exec_box *)lua_touserdata(L, 1))->x; }

static const sk_source wait_source = {.name = EXEC_MT, .what = "process wait", .attempt = wait_attempt,
                                      .link = wait_link, .unlink = wait_unlink,
                                      .check = wait_check};

/* proc:wait([timeout]) -> code, signal */
static int l_exec_wait(lua_State *L) {
  exec_box *b = check_box(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &wait_source, b->x, d, 0);
}

/* The signal argument at idx: a name ("SIGTERM" or "TERM") or a number. */
static int check_signal(lua_State *L, int idx, int def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, idx);
    luaL_argcheck(L, n > 0 && n < NSIG, idx, "not a signal number");
    return (int)n;
  }
  if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "signal name or number");
  int sig = sk_sig_number(lua_tostring(L, idx));
  if (sig == 0) luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", lua_tostring(L, idx)));
  return sig;
}

/* proc:kill([signal]) -> true when sent, false when the child had exited */
static int l_exec_kill(lua_State *L) {
  exec_box *b = check_box(L, 1);
  int sig = check_signal(L, 2, SIGTERM);
  int rc = sk_exec_kill(b->x, sig);
  if (rc != 0 && rc != UV_ESRCH) {
    return sk_io_error_raise(L, rc, NULL, NULL, "cannot signal process %d", b->x->pid);
  }
  lua_pushboolean(L, rc == 0);
  return 1;
}

static int l_exec_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  exec_box *b = luaL_checkudata(L, 1, EXEC_MT);
  const char *k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  for (int fd = 0; fd < 3; fd++) {
    if (strcmp(k, stdio_names[fd]) == 0) {
      lua_getiuservalue(L, 1, fd + 1);
      return 1;
    }
  }
  if (strcmp(k, "pid") == 0 && b->x) lua_pushinteger(L, b->x->pid);
  else lua_pushnil(L);
  return 1;
}

static int l_exec_tostring(lua_State *L) {
  exec_box *b = luaL_checkudata(L, 1, EXEC_MT);
  if (b->x == NULL) lua_pushliteral(L, "skein.exec process (closed)");
  else lua_pushfstring(L, "skein.exec process %d (%s)", b->x->pid,
                       b->x->exited ? "exited" : "running");
  return 1;
}

/* Drops the engine reference, waking whoever waits on the child (a wait
** then finds the handle closed). `kill`: a child still running is killed
** first. */
static void box_release(exec_box *b, int kill) {
  sk_exec *x = b->x;
  if (x == NULL) return;
  b->x = NULL;
  if (kill) sk_exec_kill(x, SIGKILL);
  sk_iowaitlist_wake(&x->waiters);
  sk_exec_release(x);
}

static int l_exec_gc(lua_State *L) {
  box_release(luaL_checkudata(L, 1, EXEC_MT), 0);
  return 0;
}

static int l_exec_close(lua_State *L) {
  box_release(luaL_checkudata(L, 1, EXEC_MT), 1);
  return 0;
}

/* Makes the Lua stream of each pipe before the start (which may then
** raise no more): user value fd + 1 of the box at `box`. */
static void make_streams(lua_State *L, int box, const exec_args *a) {
  for (int fd = 0; fd < 3; fd++) {
    if (a->o.stdio[fd] != SK_EXEC_PIPE) continue;
    sk_stream **u = lua_newuserdatauv(L, sizeof *u, 0);
    *u = NULL;
    luaL_setmetatable(L, SK_STREAM_MT);
    lua_setiuservalue(L, box, fd + 1);
  }
}

/* skein.exec(cmd, args, [opts]) -> proc (called through the table's
** __call: the table is argument 1) */
static int l_exec_call(lua_State *L) {
  lua_remove(L, 1);
  exec_args a;
  check_args(L, &a, 0);
  exec_box *b = lua_newuserdatauv(L, sizeof *b, 3);      /* 5 */
  b->x = NULL;
  luaL_setmetatable(L, EXEC_MT);
  make_streams(L, 5, &a);
  start(L, &a, b);
  for (int fd = 0; fd < 3; fd++) {
    if (b->x->io[fd] == NULL) continue;
    lua_getiuservalue(L, 5, fd + 1);
    *(sk_stream **)lua_touserdata(L, -1) = b->x->io[fd];  /* the stream is Lua's now */
    b->x->io[fd] = NULL;
    lua_pop(L, 1);
  }
  lua_settop(L, 5);
  return 1;
}

/* ------------------------------------------------------------ run */

static int run_attempt(lua_State *L, void *obj, int round, int expired) {
  exec_box *b = obj;
  sk_exec *x = b->x;
  (void)round;
  (void)expired;                /* no deadline of its own: opts.timeout kills the child */
  if (!sk_exec_done(x)) return SK_WAIT_MORE;
  if (x->cap_err) {
    return sk_io_error_raise(L, x->cap_err, NULL, NULL, "cannot read the output of '%s'",
                             lua_tostring(L, 1));
  }
  lua_createtable(L, 0, 5);
  push_status(L, x);
  lua_setfield(L, -3, "signal");
  lua_setfield(L, -2, "code");
  for (int i = 0; i < 2; i++) {
    sk_rbuf *r = &x->cap[i];
    if (lua_tointeger(L, 6) & (1 << i)) {
      lua_pushlstring(L, r->data ? r->data + r->start : "", sk_rbuf_len(r));
      lua_setfield(L, -2, stdio_names[i + 1]);
    }
    sk_rbuf_free(r);
  }
  if (x->timed_out) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "timed_out");
  }
  return 1;
}

static int run_link(void *obj, sk_ctx *c, int round) {
  sk_exec *x = ((exec_box *)obj)->x;
  (void)round;
  if (sk_exec_done(x)) return 1;
  sk_iowait_link(&x->waiters, &c->iow);
  return 0;
}

static const sk_source run_source = {.name = "skein.exec.run", .what = "exec run", .attempt = run_attempt,
                                     .link = run_link, .unlink = wait_unlink};

static int l_run_close(lua_State *L) {
  box_release(luaL_checkudata(L, 1, RUN_MT), 1);
  return 0;
}

/* skein.exec.run(cmd, args, [opts]) -> {code=, signal=, stdout=, stderr=}
** The stack through the wait: 1 cmd, 2 args, 3 opts, 4 the anchor, 5 the
** box (to-be-closed), 6 which outputs are captured (bit 0 stdout, bit 1
** stderr). */
static int l_exec_run(lua_State *L) {
  exec_args a;
  check_args(L, &a, 1);
  int captured = (a.o.stdio[1] == SK_EXEC_CAPTURE) | (a.o.stdio[2] == SK_EXEC_CAPTURE) << 1;
  exec_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->x = NULL;
  luaL_setmetatable(L, RUN_MT);
  lua_pushinteger(L, captured);
  start(L, &a, b);
  lua_toclose(L, 5);
  return sk_wait_on(L, &run_source, b, SK_NO_DEADLINE, 0);
}

void sk_exec_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"wait", l_exec_wait}, {"kill", l_exec_kill}, {NULL, NULL}};
  static const sk_type type = {.name = EXEC_MT, .methods = methods, .index = l_exec_index,
                               .gc = l_exec_gc, .close = l_exec_close,
                               .tostring = l_exec_tostring};
  sk_type_register(L, &type);
  if (luaL_newmetatable(L, RUN_MT)) {
    lua_pushcfunction(L, l_run_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_run_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_exec_run);
  lua_setfield(L, -2, "run");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_exec_call);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "exec");
}
