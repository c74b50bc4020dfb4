/*
** runtime.c — the embedding API (skein.h) over a worker.
**
** A runtime wraps one sk_worker and adds what only a host needs: the last
** error message, the init hooks, and the way back from a lua_State to its
** runtime (a light userdata in the registry under the address of rt_key).
*/
#define _GNU_SOURCE  /* dladdr */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lua/sk_bind.h"
#include "../../lua/sk_process.h"
#include "../host/sk_lua.h"
#include "../host/sk_ppool.h"
#include "../include/skein.h"
#include "sk_embed.h"

/* One registered init hook; the list keeps registration order. */
typedef struct init_hook {
  skein_init_fn fn;
  void *ud;
  struct init_hook *next;
} init_hook;

struct skein_runtime {
  sk_worker *w;
  char *errmsg;
  init_hook *hooks;
};

/* Registry keys: their addresses are unique in the process. rt_key maps the
** runtime's own state to the runtime; hooks_key maps every state that runs
** the runtime's init hooks (its own and its thread workers') to it. */
static const char rt_key = 'r';
static const char hooks_key = 'h';

const char *skein_version(void) { return SKEIN_VERSION; }
int skein_version_num(void) { return SKEIN_VERSION_NUM; }

/* Keeps a copy of `msg` as the runtime's last error. */
static int set_error(skein_runtime *rt, const char *msg) {
  free(rt->errmsg);
  rt->errmsg = strdup(msg ? msg : "unknown error");
  return -1;
}

/* The message of a failure with no runtime to keep it (skein_errmsg(NULL)):
** one per thread, a copy truncated to fit. */
static _Thread_local char no_rt_errmsg[256];

int sk_runtime_fail(skein_runtime *rt, const char *msg) {
  if (rt) return set_error(rt, msg);
  snprintf(no_rt_errmsg, sizeof no_rt_errmsg, "%s", msg ? msg : "unknown error");
  return -1;
}

static int l_tostring(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Takes the error at the top of the stack (any value) as the last error and
** pops it. Converting runs __tostring, which may itself raise, so it runs
** under lua_pcall. */
static int take_error(skein_runtime *rt) {
  lua_State *L = rt->w->L;
  lua_pushcfunction(L, l_tostring);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
    set_error(rt, lua_tostring(L, -1));
  } else {
    set_error(rt, "(error object cannot be converted to a string)");
  }
  lua_pop(L, 1);
  return -1;
}

/* Records the runtime (argument 1) and its hook list (argument 2) in its
** state's registry. */
static int l_register(lua_State *L) {
  lua_pushvalue(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &rt_key);
  lua_pushvalue(L, 2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hooks_key);
  return 0;
}

/* ------------------------------------------------------- the layers */

/* Becoming a worker: the init hooks a thread worker inherits and runs,
** what a worker process runs, and which executable that is (below). */
static void *lend_hooks(lua_State *parent);
static void unlend_hooks(void *hooks);
static int init_worker(lua_State *L, int process, void *lent);
static int worker_exe(char *out, size_t n, char *err, size_t errn);

static const sk_worker_hooks worker_hooks = {.open_module = luaopen_skein,
                                             .lend = lend_hooks,
                                             .unlend = unlend_hooks,
                                             .init = init_worker,
                                             .exe = worker_exe};
static const sk_marshal_proxy marshal_proxy = {sk_proxy_info, sk_proxy_push};
static uv_once_t layers_once = UV_ONCE_INIT;

/* Lends the host what it must reach of the bindings and of this layer. */
static void layers_init(void) {
  sk_worker_set_hooks(&worker_hooks);
  sk_marshal_set_proxy(&marshal_proxy);
  /* $SKEIN_TRACE: a trace from the start (a file that cannot be opened is
  ** said once, and the program runs untraced). */
  int rc = sk_trace_from_env();
  if (rc < 0) {
    fprintf(stderr, "skein: cannot trace to %s: %s\n", getenv("SKEIN_TRACE"), strerror(-rc));
  }
}

void sk_embed_init(void) { uv_once(&layers_once, layers_init); }

/* ------------------------------------------------- worker executables */

/* Which executable worker processes run (worker_exe) is a property of
** the process, not of one runtime: thread workers start processes too, and
** they know no runtime. `exe_lock` guards `exe_option`, the path the last
** skein_new with options->worker_exe set; `exe_serves` is set once this
** executable's main has called skein_worker_main. */
static uv_once_t exe_once = UV_ONCE_INIT;
static uv_mutex_t exe_lock;
static char *exe_option;
static volatile int exe_serves;

/* A worker process of a host that runs the host's executable: the init
** hook skein_worker_main was given, as a one-entry hook list. */
static init_hook child_hook;
static init_hook *child_hooks;

static void exe_lock_init(void) { uv_mutex_init(&exe_lock); }

/* 1 when `path` is an executable regular file other than `self` (the
** running executable's status, or NULL). */
static int usable_exe(const char *path, const struct stat *self) {
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || access(path, X_OK) != 0) return 0;
  return self == NULL || st.st_dev != self->st_dev || st.st_ino != self->st_ino;
}

/* Looks for the `skein` command: next to the library that holds this code
** (its folder, then ../bin), then on $PATH. Never this executable. */
static int find_skein(char *out, size_t n, const struct stat *self) {
  Dl_info info;
  if (dladdr((void *)&skein_new, &info) && info.dli_fname && strchr(info.dli_fname, '/')) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", info.dli_fname);
    *strrchr(dir, '/') = '\0';
    snprintf(out, n, "%s/skein", dir);
    if (usable_exe(out, self)) return 1;
    snprintf(out, n, "%s/../bin/skein", dir);
    if (usable_exe(out, self)) return 1;
  }
  const char *path = getenv("PATH");
  while (path && *path) {
    const char *end = strchr(path, ':');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    if (len > 0) {
      snprintf(out, n, "%.*s/skein", (int)len, path);
      if (usable_exe(out, self)) return 1;
    }
    path = end ? end + 1 : NULL;
  }
  return 0;
}

static int worker_exe(char *out, size_t n, char *err, size_t errn) {
  char self[4096];
  size_t selflen = sizeof self;
  struct stat self_st;
  const char *env = getenv("SKEIN_WORKER_EXE");
  int found = 0;
  uv_once(&exe_once, exe_lock_init);
  uv_mutex_lock(&exe_lock);
  if (exe_option) {
    snprintf(out, n, "%s", exe_option);
    found = 1;
  }
  uv_mutex_unlock(&exe_lock);
  if (found) return 0;
  if (env && *env) {
    snprintf(out, n, "%s", env);
    return 0;
  }
  if (uv_exepath(self, &selflen) != 0) {
    snprintf(self, sizeof self, "this program");
  } else if (exe_serves) {
    snprintf(out, n, "%s", self);
    return 0;
  }
  if (find_skein(out, n, stat("/proc/self/exe", &self_st) == 0 ? &self_st : NULL)) return 0;
  snprintf(err, errn,
           "cannot start a worker process: %s is not a skein worker executable "
           "(its main does not call skein_worker_main) and no skein command was "
           "found next to the skein library or on PATH; install skein, or name "
           "it with $SKEIN_WORKER_EXE or skein_options.worker_exe",
           self);
  return -1;
}

/* 1 when this process was started as a worker (argv[1] is --skein-worker)
** and yet a runtime is being made: the executable is a host whose main did
** not hand its arguments to skein_worker_main. */
static int started_as_worker(void) {
  char buf[256];
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t k = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (k <= 0) return 0;
  buf[k] = '\0';
  size_t first = strlen(buf) + 1;
  return first < (size_t)k && strcmp(buf + first, "--skein-worker") == 0;
}

int skein_worker_main(int argc, char **argv, skein_init_fn init, void *ud) {
  exe_serves = 1;
  if (argc < 3 || argv[1] == NULL || strcmp(argv[1], "--skein-worker") != 0) return -1;
  if (init) {
    child_hook = (init_hook){init, ud, NULL};
    child_hooks = &child_hook;
  }
  sk_embed_init();
  return sk_process_child_main(atoi(argv[2]), argc >= 4 ? argv[3] : "once");
}

skein_runtime *skein_new(const skein_options *opts) {
  const char *err;
  if (started_as_worker()) {
    /* Going on would run the host's main again in every worker. */
    fprintf(stderr, "skein: this process was started as a skein worker, but its "
                    "main does not call skein_worker_main; not starting a runtime\n");
    return NULL;
  }
  if (opts && opts->worker_exe) {
    char *copy = strdup(opts->worker_exe);
    if (copy == NULL) return NULL;
    uv_once(&exe_once, exe_lock_init);
    uv_mutex_lock(&exe_lock);
    free(exe_option);
    exe_option = copy;
    uv_mutex_unlock(&exe_lock);
  }
  sk_embed_init();
  skein_runtime *rt = calloc(1, sizeof *rt);
  if (rt == NULL) return NULL;
  rt->w = sk_worker_new(opts ? opts->loop : NULL, &err);
  if (rt->w == NULL) {
    free(rt);
    return NULL;
  }
  lua_State *L = rt->w->L;
  lua_pushcfunction(L, l_register);
  lua_pushlightuserdata(L, rt);
  lua_pushlightuserdata(L, &rt->hooks);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {  /* out of memory */
    sk_worker_close(rt->w);
    free(rt);
    return NULL;
  }
  return rt;
}

int skein_close(skein_runtime *rt) {
  if (rt == NULL) return 0;
  int rc = sk_worker_close(rt->w);
  while (rt->hooks) {
    init_hook *h = rt->hooks;
    rt->hooks = h->next;
    free(h);
  }
  free(rt->errmsg);
  free(rt);
  return rc == 0 ? 0 : -1;
}

lua_State *skein_lua(skein_runtime *rt) { return rt->w->L; }
uv_loop_t *skein_loop(skein_runtime *rt) { return rt->w->sched.loop; }

skein_runtime *skein_from_lua(lua_State *L) {
  skein_runtime *rt;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rt_key);
  rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return rt;
}

/* Runs one hook (a light userdata argument) under lua_pcall, so that a hook
** that raises fails its registration instead of panicking. */
static int l_run_hook(lua_State *L) {
  const init_hook *h = lua_touserdata(L, 1);
  lua_settop(L, 0);
  h->fn(L, h->ud);
  return 0;
}

/* Runs `h` in L; 0, or -1 with the error message left on L's stack. */
static int run_hook(lua_State *L, const init_hook *h) {
  lua_pushcfunction(L, l_run_hook);
  lua_pushlightuserdata(L, (void *)h);
  return sk_pcall(L, 1, 0) == LUA_OK ? 0 : -1;
}

int skein_add_init(skein_runtime *rt, skein_init_fn fn, void *ud) {
  init_hook *h = malloc(sizeof *h), **tail = &rt->hooks;
  if (h == NULL) return set_error(rt, "out of memory");
  *h = (init_hook){fn, ud, NULL};
  if (run_hook(rt->w->L, h) != 0) {
    free(h);
    return take_error(rt);
  }
  while (*tail) tail = &(*tail)->next;
  *tail = h;
  return 0;
}

/* Hook lists for workers. Every state that runs init hooks maps hooks_key
** to the address of the head of its list: the runtime's own state to
** &rt->hooks, a worker's state to a copy owned by the object that started
** the worker (so a worker never depends on its parent still existing). */

/* On the spawning worker's thread: copies the hook list the state `parent`
** runs; NULL when there is none (or out of memory: then no hooks run). */
static void *lend_hooks(lua_State *parent) {
  lua_rawgetp(parent, LUA_REGISTRYINDEX, &hooks_key);
  init_hook **src = lua_touserdata(parent, -1);
  lua_pop(parent, 1);
  if (src == NULL || *src == NULL) return NULL;
  init_hook **box = calloc(1, sizeof *box), **tail = box;
  if (box == NULL) return NULL;
  for (const init_hook *h = *src; h; h = h->next) {
    init_hook *c = malloc(sizeof *c);
    if (c == NULL) break;
    *c = (init_hook){h->fn, h->ud, NULL};
    *tail = c;
    tail = &c->next;
  }
  return box;
}

static void unlend_hooks(void *hooks) {
  init_hook **box = hooks;
  if (box == NULL) return;
  while (*box) {
    init_hook *h = *box;
    *box = h->next;
    free(h);
  }
  free(box);
}

/* On the new worker's thread: runs the hook list `hooks` in L and marks L
** so that workers it starts get them too. Returns 0, or -1 with the error
** message on L's stack. */
static int init_state(void *hooks, lua_State *L) {
  init_hook **box = hooks;
  if (box == NULL) return 0;
  lua_pushlightuserdata(L, box);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hooks_key);
  for (const init_hook *h = *box; h; h = h->next) {
    if (run_hook(L, h) != 0) return -1;
  }
  return 0;
}

/* A new worker's init (sk_worker_hooks.init): a thread worker runs the
** hooks it inherited (lent, from lend_hooks); a worker process runs the
** hook its executable's main gave skein_worker_main (if any), which the
** thread workers it starts then inherit. */
static int init_worker(lua_State *L, int process, void *lent) {
  if (process) return child_hooks ? init_state(&child_hooks, L) : 0;
  return init_state(lent, L);
}

int skein_pcall(lua_State *L, int nargs, int nresults) {
  return sk_pcall(L, nargs, nresults);
}

int skein_call(skein_runtime *rt, int nargs, int nresults) {
  sk_sched *s = &rt->w->sched;
  s->in_callback++;
  int st = sk_pcall(rt->w->L, nargs, nresults);
  s->in_callback--;
  return st == LUA_OK ? 0 : take_error(rt);
}

/* Calls skein.spawn as the module defines it (package.loaded.skein, which
** a script replacing the global `skein` does not touch) on its arguments. */
static int l_spawn(lua_State *L) {
  int n = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "skein") != LUA_TTABLE) {
    return luaL_error(L, "the skein module is not loaded");
  }
  lua_getfield(L, -1, "spawn");
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_insert(L, 1);
  lua_call(L, n, 1);
  return 1;
}

int skein_spawn(skein_runtime *rt, int nargs) {
  lua_State *L = rt->w->L;
  if (!lua_checkstack(L, 2)) return set_error(rt, "stack overflow");
  lua_pushcfunction(L, l_spawn);
  lua_insert(L, -(nargs + 2));
  if (sk_pcall(L, nargs + 1, 1) != LUA_OK) return take_error(rt);
  return 0;
}

int skein_dofile(skein_runtime *rt, const char *path) {
  lua_State *L = rt->w->L;
  if (luaL_loadfile(L, path) != LUA_OK) return take_error(rt);
  if (sk_pcall(L, 0, 0) != LUA_OK) return take_error(rt);
  return 0;
}

int skein_dostring(skein_runtime *rt, const char *code, const char *chunkname) {
  lua_State *L = rt->w->L;
  if (luaL_loadbuffer(L, code, strlen(code), chunkname ? chunkname : code) != LUA_OK) {
    return take_error(rt);
  }
  if (sk_pcall(L, 0, 0) != LUA_OK) return take_error(rt);
  return 0;
}

/* An interrupt that arrived during a run ends it with -1 even when the
** interrupted code was a task that then failed and left nothing to wait
** for: the host asked the run to stop, and it learns that it did. */
int skein_run(skein_runtime *rt, skein_run_mode mode) {
  sk_worker *w = rt->w;
  int live;
  if (w->sched.in_callback) return set_error(rt, "skein_run called from inside the loop");
  if (mode != SKEIN_RUN_DEFAULT && mode != SKEIN_RUN_ONCE && mode != SKEIN_RUN_NOWAIT) {
    return set_error(rt, "skein_run: unknown mode");
  }
  if (w->interrupted) return set_error(rt, "interrupted");
  if (mode == SKEIN_RUN_DEFAULT) {
    if (sk_worker_drain(w) != 0) return take_error(rt);
    live = 0;
  } else {
    int alive = sk_sched_step(&w->sched, mode == SKEIN_RUN_ONCE ? SK_STEP_WAIT : SK_STEP_NOWAIT);
    if (!alive && w->live > 0) {
      return set_error(rt, "deadlock: tasks are blocked and nothing can wake them");
    }
    live = w->live > 0;
  }
  if (w->interrupted) return set_error(rt, "interrupted");
  return live;
}

const char *skein_errmsg(skein_runtime *rt) {
  if (rt == NULL) return no_rt_errmsg;
  return rt->errmsg ? rt->errmsg : "";
}

void skein_interrupt(skein_runtime *rt) { sk_worker_interrupt(rt->w); }

int skein_interrupted(skein_runtime *rt, int clear) {
  int was = rt->w->interrupted;
  if (clear) {
    rt->w->interrupted = rt->w->int_owed = 0;
    rt->w->int_escaped = 0;
    lua_sethook(rt->w->L, NULL, 0, 0);
  }
  return was;
}

int skein_trace_start(const char *path) { return sk_trace_start(path, 0); }

void skein_trace_stop(void) { sk_trace_stop(); }

int skein_failures(skein_runtime *rt) {
  return (int)sk_task_report_failures(rt->w);
}

/* Used by the command (runtime/cli/main.c) after a chunk: whether it ended
** because of an interrupt its code did not catch (the error reached the top,
** or the interrupt is still owed to code that never took it). */
int sk_runtime_interrupt_escaped(skein_runtime *rt) {
  return rt->w->int_escaped || rt->w->int_owed;
}

/* Used by the command when the script returned normally: an interrupt its
** code caught and handled no longer stops what follows (the wait for its
** remaining tasks). One not yet delivered still does. */
void sk_runtime_interrupt_handled(skein_runtime *rt) {
  if (!rt->w->int_owed) rt->w->interrupted = 0;
}

/* Used by the REPL (runtime/cli/repl.c): unfinished non-daemon tasks and
** workers, which end of input must not drop without a word. */
size_t sk_runtime_live(skein_runtime *rt) { return rt->w->live; }
