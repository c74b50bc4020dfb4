/*
** test_embed_api.c — the embedding API's contracts that are easiest to
** check from C: return values, what is left on the Lua stack after success
** and failure, version numbers, NULL and foreign-state handling, init hook
** order. Prints TAP.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "skein.h"
#include "lauxlib.h"
#include "lualib.h"

#include "tap.h"

static void hook_log(lua_State *L, void *ud) {
  lua_getglobal(L, "hook_log");
  const char *prev = lua_tostring(L, -1);
  lua_pushfstring(L, "%s%s", prev ? prev : "", (const char *)ud);
  lua_setglobal(L, "hook_log");
  lua_pop(L, 1);
  lua_pushinteger(L, 42);  /* hooks may leave values behind */
}

static const char *global_string(lua_State *L, const char *name, char *buf, size_t n) {
  lua_getglobal(L, name);
  snprintf(buf, n, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(nil)");
  lua_pop(L, 1);
  return buf;
}

static void test_version(void) {
  ok(strcmp(skein_version(), SKEIN_VERSION) == 0, "skein_version() == SKEIN_VERSION (%s)", skein_version());
  ok(skein_version_num() == SKEIN_VERSION_NUM, "skein_version_num() == SKEIN_VERSION_NUM (%d)", skein_version_num());
  char buf[32];
  snprintf(buf, sizeof buf, "%d.%d.%d", SKEIN_VERSION_MAJOR, SKEIN_VERSION_MINOR, SKEIN_VERSION_PATCH);
  ok(strcmp(buf, SKEIN_VERSION) == 0, "the version macros agree");
  ok(skein_close(NULL) == 0, "skein_close(NULL) is a no-op returning 0");
}

static void test_runtime_basics(void) {
  skein_runtime *rt = skein_new(NULL);
  ok(rt != NULL, "skein_new(NULL)");
  lua_State *L = skein_lua(rt);
  ok(L != NULL && skein_loop(rt) != NULL, "skein_lua and skein_loop");
  ok(skein_from_lua(L) == rt, "skein_from_lua(skein_lua(rt)) == rt");
  lua_State *foreign = luaL_newstate();
  ok(skein_from_lua(foreign) == NULL, "skein_from_lua on a state skein did not create is NULL");
  lua_close(foreign);
  ok(strcmp(skein_errmsg(rt), "") == 0, "no error message before any failure");

  int top = lua_gettop(L);
  ok(skein_add_init(rt, hook_log, "a") == 0 && skein_add_init(rt, hook_log, "b") == 0,
     "skein_add_init twice");
  char buf[64];
  ok(strcmp(global_string(L, "hook_log", buf, sizeof buf), "ab") == 0,
     "hooks ran at once, in order (%s)", buf);
  ok(lua_gettop(L) == top, "hooks leave the stack as it was");

  ok(skein_dostring(rt, "x = 1 +", "=chunk") == -1, "syntax error: -1");
  ok(strstr(skein_errmsg(rt), "chunk:1:") != NULL, "the message names the chunk (%.*s)",
     (int)strcspn(skein_errmsg(rt), "\n"), skein_errmsg(rt));
  ok(lua_gettop(L) == top, "failed dostring leaves the stack as it was");
  ok(skein_dostring(rt, "y = 2", NULL) == 0 && lua_gettop(L) == top, "dostring with no chunk name");

  /* skein_call: results on success, nothing on failure */
  ok(skein_dostring(rt, "function add(a, b) return a + b, 'two' end", "=def") == 0, "define add");
  lua_getglobal(L, "add");
  lua_pushinteger(L, 2);
  lua_pushinteger(L, 3);
  int rc = skein_call(rt, 2, 2);
  ok(rc == 0 && lua_gettop(L) == top + 2 && lua_tointeger(L, -2) == 5,
     "skein_call returns 0 with its results pushed");
  lua_settop(L, top);
  lua_getglobal(L, "add");
  lua_pushinteger(L, 2);
  lua_pushnil(L);
  rc = skein_call(rt, 2, 2);
  ok(rc == -1 && lua_gettop(L) == top, "a failing skein_call returns -1 with nothing pushed");
  ok(strstr(skein_errmsg(rt), "arithmetic") != NULL && strstr(skein_errmsg(rt), "stack traceback") != NULL,
     "its message has the cause and a traceback");

  /* skein_call forbids blocking outside tasks */
  lua_getglobal(L, "skein");
  lua_getfield(L, -1, "sleep");
  lua_remove(L, -2);
  lua_pushnumber(L, 0.001);
  rc = skein_call(rt, 1, 0);
  ok(rc == -1 && strstr(skein_errmsg(rt), "cannot block here") != NULL,
     "skein.sleep under skein_call: cannot block here");
  ok(lua_gettop(L) == top, "stack balanced");

  /* skein_spawn */
  ok(skein_dostring(rt, "local skein = skein done = 0 function job(n) skein.sleep(0.001) done = done + n return n * 2 end", "=def") == 0,
     "define job");
  lua_getglobal(L, "job");
  lua_pushinteger(L, 21);
  rc = skein_spawn(rt, 1);
  ok(rc == 0 && lua_gettop(L) == top + 1 && lua_type(L, -1) == LUA_TUSERDATA,
     "skein_spawn pushes the task");
  lua_setglobal(L, "the_task");
  ok(skein_run(rt, SKEIN_RUN_DEFAULT) == 0, "skein_run runs it to the end");
  ok(skein_dostring(rt, "assert(done == 21 and the_task:join() == 42)", "=check") == 0,
     "the task ran with its argument and returned");
  lua_pushinteger(L, 7);  /* not callable */
  rc = skein_spawn(rt, 0);
  ok(rc == -1 && lua_gettop(L) == top, "skein_spawn of a non-function: -1, nothing pushed");
  ok(strstr(skein_errmsg(rt), "function expected") != NULL, "message says what was wrong (%.*s)",
     (int)strcspn(skein_errmsg(rt), "\n"), skein_errmsg(rt));

  /* replacing the global skein does not break skein_spawn */
  ok(skein_dostring(rt, "skein = nil", "=clobber") == 0, "clobber the global");
  lua_getglobal(L, "job");
  lua_pushinteger(L, 1);
  ok(skein_spawn(rt, 1) == 0, "skein_spawn still works");
  lua_pop(L, 1);
  ok(skein_run(rt, SKEIN_RUN_ONCE) >= 0, "a turn");
  ok(skein_run(rt, SKEIN_RUN_DEFAULT) == 0, "and the rest");

  ok(skein_run(rt, (skein_run_mode)99) == -1 && strstr(skein_errmsg(rt), "unknown mode") != NULL,
     "an unknown run mode is an error");
  ok(skein_run(rt, SKEIN_RUN_NOWAIT) == 0, "SKEIN_RUN_NOWAIT with nothing to do returns 0");

  /* skein_pcall leaves the error on the stack, with a traceback */
  luaL_loadstring(L, "error('pcall error')");
  rc = skein_pcall(L, 0, 0);
  ok(rc == LUA_ERRRUN && strstr(lua_tostring(L, -1), "stack traceback") != NULL,
     "skein_pcall returns the Lua status and leaves message + traceback");
  lua_settop(L, top);

  skein_interrupt(rt);
  ok(skein_interrupted(rt, 0) == 1, "skein_interrupted reports the request");
  ok(skein_run(rt, SKEIN_RUN_NOWAIT) == -1 && strcmp(skein_errmsg(rt), "interrupted") == 0,
     "skein_run refuses while interrupted");
  ok(skein_interrupted(rt, 1) == 1 && skein_interrupted(rt, 0) == 0, "clear=1 resets it");
  ok(skein_dostring(rt, "z = 3", "=after") == 0, "code runs again after clearing");
  ok(skein_failures(rt) == 0, "no unjoined failures");
  ok(skein_close(rt) == 0, "skein_close == 0");
}

/* The entry points a thread worker uses to run the host's init hooks in its
** own state (declared in runtime/host/sk_lua.h, not in the public header):
** the list is lent on the parent's thread, the hooks run on the child's. */
void *sk_worker_lend(lua_State *parent);
void sk_worker_unlend(void *lent);
int sk_worker_init(lua_State *L, int process, void *lent);
/* Copies the hook list and runs it, as a worker start does; the copies are
** freed once the states using them are closed. */
static void *copies[8];
static int ncopies;
static int init_from(lua_State *parent, lua_State *L) {
  void *h = sk_worker_lend(parent);
  if (h) copies[ncopies++] = h;
  return sk_worker_init(L, 0, h);
}

static void raising_hook(lua_State *L, void *ud) {
  lua_getglobal(L, "refuse");
  int refuse = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (refuse) luaL_error(L, "refused in %s", (const char *)ud);
}

static void test_worker_init_hooks(void) {
  skein_runtime *rt = skein_new(NULL);
  char buf[64];
  skein_add_init(rt, hook_log, "x");
  skein_add_init(rt, hook_log, "y");
  skein_add_init(rt, raising_hook, "child");
  lua_State *child = luaL_newstate(), *grandchild = luaL_newstate();
  ok(init_from(skein_lua(rt), child) == 0, "init hooks run in a worker's state");
  ok(strcmp(global_string(child, "hook_log", buf, sizeof buf), "xy") == 0, "in order (%s)", buf);
  ok(lua_gettop(child) == 0, "leaving its stack empty");
  ok(skein_from_lua(child) == NULL, "a worker's state is not the runtime's");
  ok(init_from(child, grandchild) == 0, "a worker started by a worker gets them too");
  ok(strcmp(global_string(grandchild, "hook_log", buf, sizeof buf), "xy") == 0, "in order (%s)", buf);
  lua_State *refusing = luaL_newstate();
  lua_pushboolean(refusing, 1);
  lua_setglobal(refusing, "refuse");
  ok(init_from(skein_lua(rt), refusing) == -1, "a hook that raises fails the worker's start");
  ok(strstr(lua_tostring(refusing, -1), "refused in child") != NULL, "with its message on the stack");
  lua_State *plain = luaL_newstate(), *other = luaL_newstate();
  ok(init_from(plain, other) == 0 && lua_getglobal(other, "hook_log") == LUA_TNIL,
     "a parent outside any runtime has no hooks to run");
  lua_close(plain);
  lua_close(other);
  lua_close(refusing);
  lua_close(grandchild);
  lua_close(child);
  while (ncopies > 0) sk_worker_unlend(copies[--ncopies]);
  ok(skein_close(rt) == 0, "skein_close == 0");
}

static void test_two_runtimes(void) {
  skein_runtime *a = skein_new(NULL), *b = skein_new(NULL);
  ok(a && b && skein_loop(a) != skein_loop(b), "two runtimes have two loops");
  skein_dostring(a, "skein.spawn(function() skein.sleep(0.001) end)", "=a");
  ok(skein_run(b, SKEIN_RUN_DEFAULT) == 0, "running one does not wait for the other's tasks");
  ok(skein_run(a, SKEIN_RUN_ONCE) >= 0, "the other runs on its own");
  ok(skein_close(a) == 0 && skein_close(b) == 0, "both close clean");
}

static void test_host_loop(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  skein_options o = {.loop = &loop};
  skein_runtime *rt = skein_new(&o);
  ok(rt && skein_loop(rt) == &loop, "skein_new on a host loop uses it");
  ok(!uv_loop_alive(&loop), "an idle runtime does not keep the host loop alive");
  ok(skein_dostring(rt, "n = 0 for i = 1, 3 do skein.spawn(function() skein.sleep(0.002) n = n + 1 end) end",
                    "=spawn") == 0, "spawn three tasks");
  uv_run(&loop, UV_RUN_DEFAULT);
  ok(skein_dostring(rt, "assert(n == 3)", "=check") == 0, "the host's uv_run ran them to the end");
  ok(skein_close(rt) == 0, "skein_close on a host loop");
  uv_run(&loop, UV_RUN_DEFAULT);
  ok(uv_loop_close(&loop) == 0, "uv_loop_close(host) == 0 after one more uv_run");

  /* Closing with tasks still waiting on timers and still ready. */
  uv_loop_init(&loop);
  rt = skein_new(&o);
  skein_dostring(rt, "for i = 1, 5 do skein.spawn(function() skein.sleep(100) end) end "
                     "skein.spawn(function() while true do skein.yield() end end)", "=pending");
  for (int i = 0; i < 3; i++) uv_run(&loop, UV_RUN_NOWAIT);
  ok(uv_loop_alive(&loop), "sleeping tasks keep the host loop alive");
  ok(skein_close(rt) == 0, "skein_close with tasks still waiting");
  uv_run(&loop, UV_RUN_DEFAULT);
  ok(uv_loop_close(&loop) == 0, "uv_loop_close(host) == 0: the runtime let go of the loop");
}

int main(void) {
  test_version();
  test_runtime_basics();
  test_worker_init_hooks();
  test_two_runtimes();
  test_host_loop();
  return tap_done();
}
