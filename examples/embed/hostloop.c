/*
** hostloop.c — embedding skein in a host that owns the libuv loop.
**
** The host creates its loop, hands it to skein_new, and calls uv_run itself.
** skein runs its ready tasks from a check handle on that loop, so tasks
** progress whenever the host's loop turns. The host has a uv_timer of its
** own; from that callback it calls into Lua with skein_call (where a
** blocking call would raise "cannot block here", since the host is inside
** uv_run) and starts tasks with skein_spawn (tasks may block: they only
** suspend themselves). At the end it closes the runtime and then its loop,
** asserting that nothing was left open.
**
**   usage: hostloop [hostloop.lua]
*/
#include <stdio.h>
#include <stdlib.h>

#include <skein.h>

#include "lauxlib.h"

typedef struct host {
  uv_loop_t loop;
  uv_timer_t tick;
  skein_runtime *rt;
  int ticks, calls, failed;
} host;

/* host.record(what): counts and prints a line from Lua. */
static int l_record(lua_State *L) {
  host *h = lua_touserdata(L, lua_upvalueindex(1));
  h->calls++;
  printf("host: recorded \"%s\" at tick %d\n", luaL_checkstring(L, 1), h->ticks);
  return 0;
}

static void open_host(lua_State *L, void *ud) {
  lua_newtable(L);
  lua_pushlightuserdata(L, ud);
  lua_pushcclosure(L, l_record, 1);
  lua_setfield(L, -2, "record");
  lua_setglobal(L, "host");
}

/* The host's own timer. Calls the script's on_tick(n); when it returns
** false, stops ticking. Each tick also spawns a task from C. */
static void on_tick(uv_timer_t *t) {
  host *h = t->data;
  lua_State *L = skein_lua(h->rt);
  h->ticks++;
  lua_getglobal(L, "on_tick");
  lua_pushinteger(L, h->ticks);
  if (skein_call(h->rt, 1, 1) != 0) {
    fprintf(stderr, "host: on_tick failed: %s\n", skein_errmsg(h->rt));
    h->failed = 1;
    uv_close((uv_handle_t *)t, NULL);
    return;
  }
  int more = lua_toboolean(L, -1);
  lua_pop(L, 1);
  /* A task started from C: the script's worker(n), which may sleep. */
  lua_getglobal(L, "worker");
  lua_pushinteger(L, h->ticks);
  if (skein_spawn(h->rt, 1) != 0) {
    fprintf(stderr, "host: spawn failed: %s\n", skein_errmsg(h->rt));
    h->failed = 1;
  } else {
    lua_pop(L, 1);  /* the task object; not needed here */
  }
  if (!more) uv_close((uv_handle_t *)t, NULL);
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : "hostloop.lua";
  host h = {0};
  int status = 0;

  if (uv_loop_init(&h.loop) != 0) return 1;
  skein_options opts = {.loop = &h.loop};
  h.rt = skein_new(&opts);
  if (h.rt == NULL) {
    fprintf(stderr, "hostloop: cannot create the runtime\n");
    return 1;
  }
  if (skein_add_init(h.rt, open_host, &h) != 0 || skein_dofile(h.rt, script) != 0) {
    fprintf(stderr, "hostloop: %s\n", skein_errmsg(h.rt));
    skein_close(h.rt);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    uv_loop_close(&h.loop);
    return 1;
  }
  uv_timer_init(&h.loop, &h.tick);
  h.tick.data = &h;
  uv_timer_start(&h.tick, on_tick, 10, 10);

  /* The host's loop: runs until the host's timer is closed and skein has no
  ** timer or I/O pending, which is when every task has finished. */
  uv_run(&h.loop, UV_RUN_DEFAULT);
  printf("hostloop: uv_run returned after %d ticks, %d host calls\n", h.ticks, h.calls);

  if (skein_run(h.rt, SKEIN_RUN_NOWAIT) != 0) {  /* 0: no task is left */
    fprintf(stderr, "hostloop: tasks left: %s\n", skein_errmsg(h.rt));
    status = 1;
  }
  if (h.failed || skein_failures(h.rt) > 0) status = 1;
  if (skein_close(h.rt) != 0) status = 1;
  uv_run(&h.loop, UV_RUN_DEFAULT);  /* runs skein's close callbacks */
  int rc = uv_loop_close(&h.loop);
  printf("hostloop: uv_loop_close() == %d\n", rc);
  if (rc != 0) status = 1;
  return status;
}
