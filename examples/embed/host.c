/*
** host.c — a small C program embedding skein with the runtime's own loop.
**
** It gives Lua a `host` module of its own (host.greet, host.add) through an
** init hook, runs script.lua, which spawns tasks that call those functions
** and sleep, and then drives the loop itself one turn at a time with
** skein_run(rt, SKEIN_RUN_ONCE), printing a line per turn: the shape of a
** host that has its own main loop (a game, a GUI) and gives skein a slice
** of each frame.
**
**   usage: host [script.lua]
*/
#include <stdio.h>
#include <string.h>

#include <skein.h>

#include "lauxlib.h"

/* What the host shares with its Lua functions: an init hook's user data. */
typedef struct host_state {
  const char *name;
  int calls;
} host_state;

static host_state *state_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* host.greet(name) -> "hello, <name>, from <host>" */
static int l_greet(lua_State *L) {
  host_state *hs = state_of(L);
  const char *who = luaL_checkstring(L, 1);
  hs->calls++;
  lua_pushfstring(L, "hello, %s, from %s", who, hs->name);
  return 1;
}

/* host.add(a, b) -> a + b, as integers */
static int l_add(lua_State *L) {
  host_state *hs = state_of(L);
  lua_Integer a = luaL_checkinteger(L, 1), b = luaL_checkinteger(L, 2);
  hs->calls++;
  lua_pushinteger(L, a + b);
  return 1;
}

/* The init hook: runs in every worker's state before any script. */
static void open_host(lua_State *L, void *ud) {
  static const luaL_Reg funcs[] = {{"greet", l_greet}, {"add", l_add}, {NULL, NULL}};
  luaL_newlibtable(L, funcs);
  lua_pushlightuserdata(L, ud);
  luaL_setfuncs(L, funcs, 1);
  lua_setglobal(L, "host");
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : "script.lua";
  host_state hs = {"the C host", 0};
  int status = 0;

  if (skein_version_num() != SKEIN_VERSION_NUM) {
    fprintf(stderr, "host: built for skein %s, running %s\n", SKEIN_VERSION, skein_version());
    return 1;
  }
  skein_runtime *rt = skein_new(NULL);
  if (rt == NULL) {
    fprintf(stderr, "host: cannot create the runtime\n");
    return 1;
  }
  if (skein_add_init(rt, open_host, &hs) != 0 || skein_dofile(rt, script) != 0) {
    fprintf(stderr, "host: %s\n", skein_errmsg(rt));
    skein_close(rt);
    return 1;
  }
  printf("host: %s loaded, driving the loop\n", script);

  /* One turn per iteration: runs the ready tasks, then waits for one event
  ** (here, the next timer). A real host would do its own work here too. */
  int steps = 0, rc;
  while ((rc = skein_run(rt, SKEIN_RUN_ONCE)) == 1) {
    steps++;
    printf("host: step %d, host functions called %d times\n", steps, hs.calls);
  }
  if (rc < 0) {
    fprintf(stderr, "host: %s\n", skein_errmsg(rt));
    status = 1;
  }
  printf("host: no task left after %d steps; %d host calls\n", steps, hs.calls);
  if (skein_failures(rt) > 0) status = 1;  /* failed tasks nobody joined */
  if (skein_close(rt) != 0) {
    fprintf(stderr, "host: the loop still had open handles\n");
    status = 1;
  } else {
    printf("host: closed cleanly\n");
  }
  return status;
}
