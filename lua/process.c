/*
** process.c — skein.process(fn, ...) and its handle: argument checks, the
** userdata and the methods. The engine (starting the child, its frames,
** its exit, the child's own loop) is runtime/host/proc.c and
** runtime/host/proc_child.c (sk_proc.h).
**
** The handle owns a pointer to the sk_proc; __gc releases it (the engine
** frees it once its libuv handles have closed). It also holds the
** process's anchor (sk_future.h), first, so that the marshal layer sends a
** handle as that: another worker (a thread, another process) gets a view
** of the anchor, whose join waits for the process's outcome and whose
** signals go to its pid while it runs.
*/
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "sk_process.h"
#include "../runtime/host/sk_future.h"

#define PROC_MT "skein.Process"

typedef struct proc_ud {
  sk_obj *anchor;               /* counted; first: what crosses (sk_future) */
  sk_proc *p;                   /* NULL: a view of another worker's process */
} proc_ud;

static proc_ud *check_ud(lua_State *L, int idx) {
  proc_ud *u = luaL_checkudata(L, idx, PROC_MT);
  if (u->anchor == NULL) sk_error_raise(L, "closed", "cannot use a process handle after it was closed");
  return u;
}

#define ANCHOR(u) ((sk_future *)(u)->anchor)

static void push_handle(lua_State *L, sk_obj *o) {
  proc_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->anchor = o;
  u->p = NULL;
  luaL_setmetatable(L, PROC_MT);
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
  proc_ud *u = check_ud(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  if (u->p == NULL) return sk_wait_on(L, &sk_worker_join_source, u->anchor, d, 0);
  return sk_wait_on(L, &join_source, u->p, d, 0);
}

/* A view signals the pid while the process's outcome is not in: its
** parent reaps it only after that, so the pid is still that process's. */
static int send_signal(lua_State *L, proc_ud *u, int sig) {
  if (u->p) {
    lua_pushboolean(L, sk_proc_signal(u->p, sig));
  } else {
    sk_future *a = ANCHOR(u);
    lua_pushboolean(L, a->wpid > 0 && sk_future_state(a) < SK_FUT_DONE && kill(a->wpid, sig) == 0);
  }
  return 1;
}
static int l_proc_terminate(lua_State *L) { return send_signal(L, check_ud(L, 1), SIGTERM); }
static int l_proc_kill(lua_State *L) { return send_signal(L, check_ud(L, 1), SIGKILL); }

/* process:signal(name_or_number) -> true when sent */
static int l_proc_signal(lua_State *L) {
  proc_ud *u = check_ud(L, 1);
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
  return send_signal(L, u, sig);
}

static int l_proc_alive(lua_State *L) {
  proc_ud *u = check_ud(L, 1);
  if (u->p) lua_pushboolean(L, !u->p->exited);
  else lua_pushboolean(L, sk_future_state(ANCHOR(u)) < SK_FUT_DONE);
  return 1;
}

/* A view's exit fields, once the process's outcome is in. */
static int view_exit(sk_future *a, int64_t *status, int *sig) {
  sk_future_outcome o;
  sk_future_read(a, &o);
  int in = o.state >= SK_FUT_DONE && o.pid != 0;
  *status = o.exit_code;
  *sig = o.signal;
  sk_future_read_done(&o);
  return in;
}

static int l_proc_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  proc_ud *u = check_ud(L, 1);
  sk_proc *p = u->p;
  sk_future *a = ANCHOR(u);
  const char *k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  int exited = p ? p->exited : 0, sig = p ? p->term_signal : 0;
  int64_t status = p ? p->exit_status : 0;
  if (!p && (strcmp(k, "exit_code") == 0 || strcmp(k, "exit_signal") == 0)) {
    exited = view_exit(a, &status, &sig);
  }
  const char *name = p ? p->name : a->label;
  if (strcmp(k, "pid") == 0) lua_pushinteger(L, p ? p->pid : a->wpid);
  else if (strcmp(k, "id") == 0) lua_pushinteger(L, p ? p->id : a->id);
  else if (strcmp(k, "name") == 0 && name) lua_pushstring(L, name);
  else if (strcmp(k, "kind") == 0) lua_pushliteral(L, "process");
  else if (strcmp(k, "exit_code") == 0 && exited && !sig) lua_pushinteger(L, status);
  /* Not "signal": that name is the method, which the lookup above finds first. */
  else if (strcmp(k, "exit_signal") == 0 && exited && sig) lua_pushinteger(L, sig);
  else lua_pushnil(L);
  return 1;
}

static int l_proc_tostring(lua_State *L) {
  proc_ud *u = check_ud(L, 1);
  sk_proc *p = u->p;
  sk_future *a = ANCHOR(u);
  int running = p ? !p->exited : sk_future_state(a) < SK_FUT_DONE;
  lua_pushfstring(L, "skein.process %I (pid %d, %s)", (LUAI_UACINT)(p ? p->id : a->id),
                  p ? p->pid : a->wpid, running ? "running" : "exited");
  return 1;
}

/* A process handle in skein.select: ready once its outcome is in (the
** anchor, finished by the engine as a join here would see it). */
static int proc_try(lua_State *L, sk_obj *o) { return sk_worker_end_try(L, o); }

static int proc_add_waiter(sk_obj *o, const sk_waiter *w) {
  return sk_future_add_waiter((sk_future *)o, w);
}

static void proc_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_future_remove_waiter((sk_future *)o, port, slot);
}

static const sk_selectable proc_select = {proc_try, proc_add_waiter, proc_remove_waiter};

static int l_proc_gc(lua_State *L) {
  proc_ud *u = luaL_checkudata(L, 1, PROC_MT);
  if (u->p) {
    sk_proc *p = u->p;
    u->p = NULL;
    sk_proc_release(p);
  }
  if (u->anchor) {
    sk_obj_release(u->anchor);
    u->anchor = NULL;
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
  proc_ud *u = lua_newuserdatauv(L, sizeof *u, 0);   /* before the start: may raise */
  u->anchor = NULL;
  u->p = NULL;
  luaL_setmetatable(L, PROC_MT);
  int rc = sk_proc_start(w, name, daemon, &init, &code, &u->p);
  if (rc == 1) return sk_error_raise(L, "memory", "not enough memory for a process");
  if (rc != 0) return sk_spawn_error(L, rc, NULL);
  sk_proc *p = u->p;
  sk_future *a = sk_future_new_face(SK_FACE_PROCESS, p->id, p->pid, p->name);
  if (a == NULL) return sk_error_raise(L, "memory", "not enough memory for a process");
  sk_obj_retain(&a->obj);
  p->anchor = a;                /* the engine's reference */
  u->anchor = &a->obj;          /* the handle's */
  return 1;
}

void sk_process_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"join", l_proc_join},     {"terminate", l_proc_terminate}, {"kill", l_proc_kill},
      {"signal", l_proc_signal}, {"alive", l_proc_alive},         {NULL, NULL}};
  static const sk_type type = {.name = PROC_MT, .methods = methods, .index = l_proc_index,
                               .gc = l_proc_gc, .tostring = l_proc_tostring,
                               .push = push_handle, .select = &proc_select};
  sk_type_register(L, &type);
  lua_pushcfunction(L, l_proc_new);
  lua_setfield(L, -2, "process");
}
