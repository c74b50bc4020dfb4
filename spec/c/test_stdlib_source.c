/* ctest-ldflags: -Wl,--wrap=luaL_loadbufferx */
/*
** test_stdlib_source.c — the embedded stdlib still works when the running
** liblua refuses its bytecode (a liblua of another 5.4 release), so that
** runtime/embed/module.c's load_embedded parses the embedded source instead.
** The link wraps luaL_loadbufferx (see the ldflags line above, which ./run
** adds), so every call from libskein.a goes through __wrap_luaL_loadbufferx
** below. It refuses a stdlib chunk's bytecode with the error a real liblua
** gives, and counts the refusals and the source loads that follow them, on
** the main thread and on thread workers. Only the stdlib's chunks are
** refused: other bytecode that skein loads ("b") was dumped by this liblua,
** which a liblua of any release accepts. A first run with nothing refused
** records the traceback of an error raised through stdlib/skein/pool.lua;
** the run from source must give the same one. Process workers are not
** used: they exec the skein command, which is not wrapped. Prints TAP.
*/
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "skein.h"

#include "../../runtime/embed/sk_embed.h"  /* sk_stdlib, the embedded chunks */
#include "tap.h"

static atomic_int refusing;  /* 1: a stdlib chunk's bytecode is refused */
static atomic_int bytecode_loads, refusals, source_loads, source_loads_off_main;
static pthread_t main_thread;

static int is_stdlib_chunk(const char *name) {
  for (const sk_embedded *e = sk_stdlib; name && e->name; e++) {
    if (strcmp(e->chunkname, name) == 0) return 1;
  }
  return 0;
}

int __real_luaL_loadbufferx(lua_State *L, const char *buff, size_t sz, const char *name,
                            const char *mode);
int __wrap_luaL_loadbufferx(lua_State *L, const char *buff, size_t sz, const char *name,
                            const char *mode) {
  if (is_stdlib_chunk(name)) {
    if (mode && strcmp(mode, "b") == 0) {
      if (atomic_load(&refusing)) {
        atomic_fetch_add(&refusals, 1);
        /* What lundump.c says for bytecode of another release. */
        lua_pushfstring(L, "%s: bad binary format (version mismatch)", name + 1);
        return LUA_ERRSYNTAX;
      }
      atomic_fetch_add(&bytecode_loads, 1);
    } else {
      atomic_fetch_add(&source_loads, 1);
      if (!pthread_equal(pthread_self(), main_thread)) atomic_fetch_add(&source_loads_off_main, 1);
    }
  }
  return __real_luaL_loadbufferx(L, buff, sz, name, mode);
}

/* Runs one check in Lua; it fails when the chunk raises. */
static void check(skein_runtime *rt, const char *what, const char *code) {
  int rc = skein_dostring(rt, code, "=check");
  const char *msg = rc == 0 ? "" : skein_errmsg(rt);
  ok(rc == 0, "%s%s%.*s", what, rc == 0 ? "" : ": ", (int)strcspn(msg, "\n"), msg);
}

/* An error raised in a job of a thread pool, through a coroutine pool's map
** (stdlib/skein/pool.lua) in that job: its message and traceback, in `tb`. */
static const char traceback_code[] =
    "local p = skein.pool{kind = 'thread', size = 1}\n"
    "local f = p:submit(function()\n"
    "  local cp = skein.pool{kind = 'coroutine', size = 1}\n"
    "  return cp:map(function(x) error('job ' .. x) end, {7})\n"
    "end)\n"
    "local ok, e = pcall(f.get, f, 10)\n"
    "p:close() p:join(10)\n"
    "assert(not ok and e.kind == 'remote', tostring(e))\n"
    "tb = e.message .. '\\n' .. e.traceback\n"
    "assert(tb:find('stdlib/skein/pool.lua:%d+: in'), tb)\n";

/* Runs traceback_code in a new runtime and returns `tb` (malloc'd), or NULL. */
static char *pool_traceback(const char *what) {
  skein_runtime *rt = skein_new(NULL);
  if (!rt) {
    ok(0, "%s: skein_new failed", what);
    return NULL;
  }
  check(rt, what, traceback_code);
  lua_State *L = skein_lua(rt);
  lua_getglobal(L, "tb");
  char *tb = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
  lua_pop(L, 1);
  ok(skein_close(rt) == 0, "skein_close == 0");
  return tb;
}

/* The checks made with the stdlib parsed from source, in `rt`; `expected` is
** the traceback of the reference run. */
static void from_source(skein_runtime *rt, const char *expected) {
  lua_State *L = skein_lua(rt);
  lua_newtable(L);  /* embedded[name] = the chunk name tools/embed.lua gave it */
  for (const sk_embedded *e = sk_stdlib; e->name; e++) {
    lua_pushstring(L, e->chunkname);
    lua_setfield(L, -2, e->name);
  }
  lua_setglobal(L, "embedded");

  check(rt, "stdlib functions keep their chunk names in the main worker and in a thread",
        "assert(debug.getinfo(skein.gather, 'S').source == embedded['skein'])\n"
        "assert(debug.getinfo(skein.pool, 'S').source == embedded['skein.pool'])\n"
        "local a, b = skein.thread(function()\n"
        "  return debug.getinfo(skein.gather, 'S').source, debug.getinfo(skein.pool, 'S').source\n"
        "end):join(10)\n"
        "assert(a == embedded['skein'] and b == embedded['skein.pool'], tostring(a) .. ' ' .. tostring(b))");
  check(rt, "tasks spawned and gathered (skein.gather) in the main worker",
        "local ts = {}\n"
        "for i = 1, 3 do ts[i] = skein.spawn(function() skein.sleep(0.001) return i * 2 end) end\n"
        "local r = skein.gather(ts, 10)\n"
        "assert(r[1] == 2 and r[2] == 4 and r[3] == 6 and ts[3]:join(10) == 6)");
  check(rt, "a thread pool of two maps a function over a list",
        "local p = skein.pool{kind = 'thread', size = 2}\n"
        "local r = p:map(function(x) return x * x end, {1, 2, 3, 4, 5, 6, 7, 8}, {timeout = 10})\n"
        "p:close() p:join(10)\n"
        "assert(r.n == 8, r.n)\n"
        "for i = 1, 8 do assert(r[i] == i * i, i) end");
  check(rt, "a queue carries a thread's gathered results to the main worker",
        "local q = skein.queue()\n"
        "local th = skein.thread(function(q)\n"
        "  for i = 1, 3 do\n"
        "    q:put(skein.gather({skein.spawn(function() return i * 10 end)}, 10)[1])\n"
        "  end\n"
        "  q:close()\n"
        "  return 'done'\n"
        "end, q)\n"
        "for i = 1, 3 do assert(q:get(10) == i * 10) end\n"
        "assert(th:join(10) == 'done')");

  char *got = pool_traceback("an error in a pool job, raised through stdlib/skein/pool.lua");
  int same = expected && got && strcmp(expected, got) == 0;
  ok(same, "its message and traceback are those of the bytecode run");
  if (!same) printf("# from bytecode:\n%s\n# from source:\n%s\n", expected ? expected : "(none)",
                    got ? got : "(none)");
  free(got);
  ok(skein_failures(rt) == 0, "no unjoined failures");
  ok(skein_close(rt) == 0, "skein_close == 0");
}

int main(void) {
  main_thread = pthread_self();

  /* With the bytecode taken, nothing is parsed: the wrapper is in the link,
  ** and what follows with refusals is a change from the usual path. */
  char *expected = pool_traceback("reference run: the stdlib from bytecode");
  ok(atomic_load(&bytecode_loads) > 0 && atomic_load(&source_loads) == 0,
     "the wrapper saw %d stdlib bytecode loads and no source load", atomic_load(&bytecode_loads));

  atomic_store(&bytecode_loads, 0);
  atomic_store(&refusing, 1);
  skein_runtime *rt = skein_new(NULL);
  ok(rt != NULL, "skein_new loads the stdlib with its bytecode refused");
  if (rt) from_source(rt, expected);
  free(expected);

  int refused = atomic_load(&refusals), parsed = atomic_load(&source_loads);
  ok(refused > 0, "the stdlib's bytecode was refused (%d times)", refused);
  ok(parsed == refused, "each refused chunk was parsed from source (%d of %d)", parsed, refused);
  ok(atomic_load(&source_loads_off_main) > 0, "thread workers parsed it too (%d loads)",
     atomic_load(&source_loads_off_main));
  ok(atomic_load(&bytecode_loads) == 0, "no stdlib bytecode was loaded while refused");
  return tap_done();
}
