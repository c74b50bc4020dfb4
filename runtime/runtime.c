/*
** runtime.c — the embedding API (skein.h) over a worker.
*/
#include <stdlib.h>
#include <string.h>

#include "../lua/sk_lua.h"
#include "include/skein.h"

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

const char *skein_version(void) { return SKEIN_VERSION; }

/* Keeps a copy of `msg` as the runtime's last error. */
static int set_error(skein_runtime *rt, const char *msg) {
  free(rt->errmsg);
  rt->errmsg = strdup(msg ? msg : "unknown error");
  return -1;
}

/* Takes the error at the top of the stack (any value) as the last error. */
static int take_error(skein_runtime *rt) {
  lua_State *L = rt->w->L;
  const char *msg = luaL_tolstring(L, -1, NULL);
  set_error(rt, msg);
  lua_pop(L, 2);
  return -1;
}

skein_runtime *skein_new(const skein_options *opts) {
  const char *err;
  skein_runtime *rt = calloc(1, sizeof *rt);
  if (rt == NULL) return NULL;
  rt->w = sk_worker_new(opts ? opts->loop : NULL, &err);
  if (rt->w == NULL) {
    free(rt);
    return NULL;
  }
  return rt;
}

int skein_close(skein_runtime *rt) {
  int rc = sk_worker_close(rt->w);
  while (rt->hooks) {
    init_hook *h = rt->hooks;
    rt->hooks = h->next;
    free(h);
  }
  free(rt->errmsg);
  free(rt);
  return rc;
}

lua_State *skein_lua(skein_runtime *rt) { return rt->w->L; }
uv_loop_t *skein_loop(skein_runtime *rt) { return rt->w->sched.loop; }

int skein_add_init(skein_runtime *rt, skein_init_fn fn, void *ud) {
  init_hook *h = malloc(sizeof *h), **tail = &rt->hooks;
  if (h == NULL) return set_error(rt, "out of memory");
  *h = (init_hook){fn, ud, NULL};
  while (*tail) tail = &(*tail)->next;
  *tail = h;
  fn(rt->w->L, ud);
  return 0;
}

int skein_pcall(lua_State *L, int nargs, int nresults) {
  return sk_pcall(L, nargs, nresults);
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

int skein_run(skein_runtime *rt, skein_run_mode mode) {
  sk_worker *w = rt->w;
  if (w->sched.in_callback) return set_error(rt, "skein_run called from inside the loop");
  if (mode == SKEIN_RUN_DEFAULT) {
    if (sk_worker_drain(w) != 0) return take_error(rt);
    return 0;
  }
  if (w->interrupted) return set_error(rt, "interrupted");
  int alive = sk_sched_step(&w->sched, mode == SKEIN_RUN_ONCE ? SK_STEP_WAIT : SK_STEP_NOWAIT);
  if (!alive && w->live > 0) {
    return set_error(rt, "deadlock: tasks are blocked and nothing can wake them");
  }
  return w->live > 0;
}

const char *skein_errmsg(skein_runtime *rt) {
  return rt->errmsg ? rt->errmsg : "";
}

void skein_interrupt(skein_runtime *rt) { sk_worker_interrupt(rt->w); }

int skein_interrupted(skein_runtime *rt, int clear) {
  int was = rt->w->interrupted;
  if (clear) {
    rt->w->interrupted = 0;
    lua_sethook(rt->w->L, NULL, 0, 0);
  }
  return was;
}

int skein_failures(skein_runtime *rt) {
  return (int)sk_worker_report_failures(rt->w);
}

/* Used by the REPL (runtime/repl.c) to keep task output off its prompt. */
void sk_runtime_set_batch_hook(skein_runtime *rt, void (*hook)(void *, int),
                               void *ud);
void sk_runtime_set_batch_hook(skein_runtime *rt, void (*hook)(void *, int),
                               void *ud) {
  rt->w->sched.batch_hook = hook;
  rt->w->sched.batch_ud = ud;
}
