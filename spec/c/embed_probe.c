/*
** embed_probe.c — a host for spec/embed_spec.lua: runs one scenario of the
** embedding API and prints what each call returned, one line per call
** ("NAME: RC [MESSAGE]"), so the spec can check results, messages and exit
** status. Not a TAP test (its name does not start with test_).
**
**   embed_probe file PATH    skein_dofile(PATH), then skein_run DEFAULT
**   embed_probe run CODE     skein_dostring(CODE), then skein_run DEFAULT
**   embed_probe step CODE    skein_dostring(CODE), then SKEIN_RUN_ONCE turns
**   embed_probe load CODE    skein_dostring(CODE), then skein_close at once
**   embed_probe host CODE    host loop: skein_dostring(CODE); a host timer
**                            calls the global tick(n) with skein_call every
**                            2 ms until it returns false or fails
**   embed_probe badinit      an init hook that raises
**
** Lua sees a `probe` module (installed by an init hook):
**   probe.call(f, ...)   calls f through lua_call, a C boundary no task can
**                        yield across
**   probe.run_once()     skein_run(rt, SKEIN_RUN_ONCE) -> rc, errmsg
**   probe.interrupt()    skein_interrupt(rt)
**   probe.same_runtime() skein_from_lua(L) == the runtime
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skein.h"
#include "lauxlib.h"

static skein_runtime *g_rt;

static void report(const char *what, int rc) {
  if (rc == 0 || rc == 1) printf("%s: %d\n", what, rc);
  else printf("%s: %d %s\n", what, rc, skein_errmsg(g_rt));
  fflush(stdout);
}

static int l_call(lua_State *L) {
  luaL_checkany(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int l_run_once(lua_State *L) {
  int rc = skein_run(g_rt, SKEIN_RUN_ONCE);
  lua_pushinteger(L, rc);
  lua_pushstring(L, rc < 0 ? skein_errmsg(g_rt) : "");
  return 2;
}

static int l_interrupt(lua_State *L) {
  (void)L;
  skein_interrupt(g_rt);
  return 0;
}

static int l_same_runtime(lua_State *L) {
  lua_pushboolean(L, skein_from_lua(L) == g_rt);
  return 1;
}

static void open_probe(lua_State *L, void *ud) {
  static const luaL_Reg funcs[] = {{"call", l_call},
                                   {"run_once", l_run_once},
                                   {"interrupt", l_interrupt},
                                   {"same_runtime", l_same_runtime},
                                   {NULL, NULL}};
  (void)ud;
  luaL_newlib(L, funcs);
  lua_setglobal(L, "probe");
}

static void bad_hook(lua_State *L, void *ud) {
  (void)ud;
  luaL_error(L, "init hook refuses");
}

/* ------------------------------------------------------------ host loop */

typedef struct host {
  uv_loop_t loop;
  uv_timer_t timer;
  int n;
} host;

static void on_timer(uv_timer_t *t) {
  host *h = t->data;
  lua_State *L = skein_lua(g_rt);
  char name[32];
  int more = 0;
  snprintf(name, sizeof name, "call %d", ++h->n);
  if (lua_getglobal(L, "tick") != LUA_TFUNCTION) {
    lua_pop(L, 1);
  } else {
    lua_pushinteger(L, h->n);
    int rc = skein_call(g_rt, 1, 1);
    report(name, rc);
    if (rc == 0) {
      more = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
  }
  if (!more || h->n >= 1000) uv_close((uv_handle_t *)t, NULL);
}

static int host_mode(const char *code) {
  host h = {0};
  uv_loop_init(&h.loop);
  skein_options opts = {.loop = &h.loop};
  g_rt = skein_new(&opts);
  if (g_rt == NULL) return 2;
  report("init", skein_add_init(g_rt, open_probe, NULL));
  report("dostring", skein_dostring(g_rt, code, "=probe"));
  uv_timer_init(&h.loop, &h.timer);
  h.timer.data = &h;
  uv_timer_start(&h.timer, on_timer, 2, 2);
  uv_run(&h.loop, UV_RUN_DEFAULT);
  report("after", skein_run(g_rt, SKEIN_RUN_NOWAIT));
  printf("failures: %d\n", skein_failures(g_rt));
  report("close", skein_close(g_rt));
  uv_run(&h.loop, UV_RUN_DEFAULT);
  printf("loop_close: %d\n", uv_loop_close(&h.loop));
  return 0;
}

/* ------------------------------------------------------------- own loop */

static int own_mode(const char *mode, const char *arg) {
  g_rt = skein_new(NULL);
  if (g_rt == NULL) return 2;
  if (strcmp(mode, "badinit") == 0) {
    report("init", skein_add_init(g_rt, bad_hook, NULL));
    report("dostring", skein_dostring(g_rt, "assert(skein and not probe)", "=after"));
    report("close", skein_close(g_rt));
    return 0;
  }
  report("init", skein_add_init(g_rt, open_probe, NULL));
  if (strcmp(mode, "file") == 0) {
    report("dofile", skein_dofile(g_rt, arg));
  } else {
    report("dostring", skein_dostring(g_rt, arg, "=probe"));
  }
  if (skein_interrupted(g_rt, 1)) printf("interrupted: 1\n");
  if (strcmp(mode, "load") == 0) {
    /* closes with the tasks the code spawned still unfinished */
  } else if (strcmp(mode, "step") == 0) {
    int rc, steps = 0;
    while ((rc = skein_run(g_rt, SKEIN_RUN_ONCE)) == 1 && steps < 100000) steps++;
    printf("steps: %d\n", steps);
    report("step", rc);
  } else {
    report("run", skein_run(g_rt, SKEIN_RUN_DEFAULT));
  }
  if (skein_interrupted(g_rt, 1)) printf("interrupted: 1\n");
  printf("failures: %d\n", skein_failures(g_rt));
  report("close", skein_close(g_rt));
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: embed_probe file|run|step|load|host ARG | badinit\n");
    return 2;
  }
  const char *arg = argc > 2 ? argv[2] : "";
  if (strcmp(argv[1], "host") == 0) return host_mode(arg);
  return own_mode(argv[1], arg);
}
