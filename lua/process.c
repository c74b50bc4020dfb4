/*
** process.c — skein.process(fn, ...) and its handle: argument checks, the
** userdata and the methods. The engine (starting the child, its frames,
** its exit, the child's own loop) is runtime/host/proc.c and
** runtime/host/proc_child.c (sk_proc.h).
**
** The handle owns a pointer to the sk_proc; __gc releases it (the engine
** frees it once its libuv handles have closed).
*/
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "sk_process.h"

#define PROC_MT "skein.Process"

static sk_proc *check_proc(lua_State *L, int idx) {
  sk_proc **u = luaL_checkudata(L, idx, PROC_MT);
  return *u;
}

static int push_outcome(lua_State *L, sk_proc *p) {
  char what[64];
  snprintf(what, sizeof what, "process %lld", (long long)p->id);
  if (p->reply == 'R') {
    int n = sk_marshal_decode(L, p->result.data, p->result.len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
    if (n < 0) return lua_error(L);
    return n;
  }
  if (p->reply == 'F') {
    sk_push_remote_failure(L, &p->result, what);
  } else if (p->bad[0]) {
    char why[160];
    snprintf(why, sizeof why, "sent %s before it answered: its answer cannot be read", p->bad);
    sk_push_worker_died(L, p->pid, p->exit_status, p->term_signal, what, why);
  } else {
    sk_push_worker_died(L, p->pid, p->exit_status, p->term_signal, what, NULL);
  }
  return lua_error(L);
}

/* A process as a wait source: ready when it has exited and its result
** is in. */
static int join_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_proc *p = obj;
  (void)round;
  if (p->done) return push_outcome(L, p);
  if (expired) {
    return sk_error_raise(L, "timeout", "join of process %I timed out", (LUAI_UACINT)p->id);
  }
  return SK_WAIT_MORE;
}

static int join_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_link_watch(&((sk_proc *)obj)->watchers, c);
}

static const sk_source join_source = {
    .name = PROC_MT, .what = "process join",
    .attempt = join_attempt, .link = join_link, .unlink = sk_unlink_watch};

/* process:join([timeout]) -> fn's results, or raises remote/worker_died/timeout */
static int l_proc_join(lua_State *L) {
  sk_proc *p = check_proc(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &join_source, p, d, 0);
}

static int send_signal(lua_State *L, sk_proc *p, int sig) {
  lua_pushboolean(L, sk_proc_signal(p, sig));
  return 1;
}
static int l_proc_terminate(lua_State *L) { return send_signal(L, check_proc(L, 1), SIGTERM); }
static int l_proc_kill(lua_State *L) { return send_signal(L, check_proc(L, 1), SIGKILL); }

/* process:signal(name_or_number) -> true when sent */
static int l_proc_signal(lua_State *L) {
  sk_proc *p = check_proc(L, 1);
  int sig = 0;
  if (lua_isinteger(L, 2)) {
    sig = (int)lua_tointeger(L, 2);
  } else {
    const char *name = luaL_checkstring(L, 2);
    if (strncmp(name, "SIG", 3) == 0) name += 3;
    static const struct { const char *n; int s; } names[] = {
        {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
        {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP},
        {"CONT", SIGCONT}, {"ABRT", SIGABRT}, {NULL, 0}};
    for (int i = 0; names[i].n; i++) {
      if (strcmp(names[i].n, name) == 0) sig = names[i].s;
    }
  }
  luaL_argcheck(L, sig > 0 && sig < 65, 2, "unknown signal");
  return send_signal(L, p, sig);
}

static int l_proc_alive(lua_State *L) {
  lua_pushboolean(L, !check_proc(L, 1)->exited);
  return 1;
}

static int l_proc_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  sk_proc *p = check_proc(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  if (strcmp(k, "pid") == 0) lua_pushinteger(L, p->pid);
  else if (strcmp(k, "id") == 0) lua_pushinteger(L, p->id);
  else if (strcmp(k, "name") == 0 && p->name) lua_pushstring(L, p->name);
  else if (strcmp(k, "kind") == 0) lua_pushliteral(L, "process");
  else if (strcmp(k, "exit_code") == 0 && p->exited && !p->term_signal) lua_pushinteger(L, p->exit_status);
  /* Not "signal": that name is the method, which the lookup above finds first. */
  else if (strcmp(k, "exit_signal") == 0 && p->exited && p->term_signal) lua_pushinteger(L, p->term_signal);
  else lua_pushnil(L);
  return 1;
}

static int l_proc_tostring(lua_State *L) {
  sk_proc *p = check_proc(L, 1);
  lua_pushfstring(L, "skein.process %I (pid %d, %s)", (LUAI_UACINT)p->id, p->pid,
                  p->exited ? "exited" : "running");
  return 1;
}

static int l_proc_gc(lua_State *L) {
  sk_proc **u = luaL_checkudata(L, 1, PROC_MT);
  sk_proc *p = *u;
  if (p) {
    *u = NULL;
    sk_proc_release(p);
  }
  return 0;
}

/* skein.process(fn, ...) or skein.process{fn=, args=, name=, daemon=,
** init=, init_args=} */
static int l_proc_new(lua_State *L) {
  sk_worker *w = sk_worker_of(L);
  sk_check_worker_exe(L);
  int daemon, ninit;
  char *name;
  sk_worker_args(L, &daemon, &name, &ninit);
  sk_buf code, init = {0};
  if (ninit > 0 && sk_marshal_encode_xproc(L, 1, ninit, &init, "init+args") != 0) {
    free(name);
    return lua_error(L);
  }
  if (sk_marshal_encode_xproc(L, ninit + 1, lua_gettop(L) - ninit, &code, "fn+args") != 0) {
    sk_buf_free(&init);
    free(name);
    return lua_error(L);
  }
  if (code.len > SK_FRAME_MAX || init.len > SK_FRAME_MAX) {
    free(name);
    sk_frame_refuse(L, &init, 0, "init+args");
    sk_frame_refuse(L, &code, 0, "fn+args");
  }
  sk_proc **u = lua_newuserdatauv(L, sizeof *u, 0);   /* before the start: may raise */
  *u = NULL;
  luaL_setmetatable(L, PROC_MT);
  int rc = sk_proc_start(w, name, daemon, &init, &code, u);
  if (rc == 1) return sk_error_raise(L, "memory", "not enough memory for a process");
  if (rc != 0) return sk_spawn_error(L, rc, NULL);
  return 1;
}

void sk_process_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"join", l_proc_join},     {"terminate", l_proc_terminate}, {"kill", l_proc_kill},
      {"signal", l_proc_signal}, {"alive", l_proc_alive},         {NULL, NULL}};
  static const sk_type type = {.name = PROC_MT, .methods = methods, .index = l_proc_index,
                               .gc = l_proc_gc, .tostring = l_proc_tostring};
  sk_type_register(L, &type);
  lua_pushcfunction(L, l_proc_new);
  lua_setfield(L, -2, "process");
}
