/*
** embed_workers.c — a host for spec/embed_spec.lua: which executable the
** worker processes of a host run, and what they get of the host.
**
**   embed_workers plain CODE        a host that is not a worker executable
**                                   (its main never calls skein_worker_main)
**   embed_workers self CODE         a host whose main calls
**                                   skein_worker_main with its init hook
**                                   (also when $EMBED_WORKERS_SELF is set,
**                                   which its worker processes inherit)
**   embed_workers option EXE CODE   a plain host that sets
**                                   skein_options.worker_exe = EXE
**
** Each prints "host main PID" when its main starts (so the spec can count
** how often the host's main ran), registers the init hook with
** skein_add_init, runs CODE with skein_dostring and skein_run, and prints
** "dostring: RC [MESSAGE]" and "run: RC [MESSAGE]". The hook defines the
** global host_add(a, b) -> a + b and sets host_hook_runs (one more per run
** in each state).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "skein.h"
#include "lauxlib.h"

static int l_host_add(lua_State *L) {
  lua_pushinteger(L, luaL_checkinteger(L, 1) + luaL_checkinteger(L, 2));
  return 1;
}

static void init_hook(lua_State *L, void *ud) {
  (void)ud;
  lua_pushcfunction(L, l_host_add);
  lua_setglobal(L, "host_add");
  lua_getglobal(L, "host_hook_runs");
  lua_Integer n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_pushinteger(L, n + 1);
  lua_setglobal(L, "host_hook_runs");
}

int main(int argc, char **argv) {
  if (getenv("EMBED_WORKERS_SELF") || (argc >= 2 && strcmp(argv[1], "self") == 0)) {
    int status = skein_worker_main(argc, argv, init_hook, NULL);
    if (status >= 0) return status;
  }
  /* A worker started from a copy of this host runs only what follows when
  ** the host's main is run again, which must never happen. */
  printf("host main %d\n", (int)getpid());
  fflush(stdout);
  if (argc < 3) {
    fprintf(stderr, "usage: embed_workers plain|self CODE | option EXE CODE\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  skein_options opts = {0};
  const char *code = argv[2];
  if (strcmp(argv[1], "option") == 0 && argc >= 4) {
    opts.worker_exe = argv[2];
    code = argv[3];
  }
  skein_runtime *rt = skein_new(&opts);
  if (rt == NULL) {
    printf("skein_new: NULL\n");
    return 1;
  }
  int rc = skein_add_init(rt, init_hook, NULL);
  if (rc == 0) {
    rc = skein_dostring(rt, code, "=code");
    printf("dostring: %d %s\n", rc, rc ? skein_errmsg(rt) : "");
  }
  if (rc == 0) {
    rc = skein_run(rt, SKEIN_RUN_DEFAULT);
    printf("run: %d %s\n", rc, rc ? skein_errmsg(rt) : "");
  }
  fflush(stdout);
  if (skein_close(rt) != 0) rc = 1;
  return rc == 0 ? 0 : 1;
}
