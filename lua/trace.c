/*
** trace.c — skein.trace: start and stop the trace recorder
** (runtime/core/sk_trace.h) from Lua.
**
**   skein.trace.start(path)   records this process and the worker processes
**                             it starts from now on into `path` (truncated);
**                             raises kind "io" (`code`, `path`) when the file
**                             cannot be opened
**   skein.trace.stop()        stops recording in this process
**   skein.trace.file()        the absolute path of the running trace, or nil
**
** and skein.stats(), what a trace's counters show, on demand: this
** worker's live work, the process's workers, the tree's processes and the
** shared segment's use.
*/
#include <limits.h>

#include "../runtime/core/sk_shm.h"
#include "../runtime/core/sk_trace.h"
#include "../runtime/host/sk_lua.h"
#include "sk_bind.h"

static int l_trace_start(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int rc = sk_trace_start(path, 0);
  if (rc < 0) {
    return sk_io_error_raise(L, uv_translate_sys_error(-rc), "path", path, "cannot trace to '%s'",
                             path);
  }
  return 0;
}

static int l_trace_stop(lua_State *L) {
  (void)L;
  sk_trace_stop();
  return 0;
}

static int l_trace_file(lua_State *L) {
  char path[PATH_MAX];
  if (sk_trace_path(path, sizeof path) != 0) return 0;
  lua_pushstring(L, path);
  return 1;
}

/* skein.stats() -> {live=, workers=, processes=, shm_used=, shm_size=,
** shm_inuse=, shm_objects=} */
static int l_stats(lua_State *L) {
  uint64_t used = 0, size = 0, inuse = 0;
  uint32_t objects = 0;
  int procs = 1;
  sk_shm_usage(&used, &size, &procs);
  sk_shm_live(&inuse, &objects);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)inuse);
  lua_setfield(L, -2, "shm_inuse");
  lua_pushinteger(L, (lua_Integer)objects);
  lua_setfield(L, -2, "shm_objects");
  lua_pushinteger(L, (lua_Integer)sk_worker_of(L)->live);
  lua_setfield(L, -2, "live");
  lua_pushinteger(L, sk_worker_total());
  lua_setfield(L, -2, "workers");
  lua_pushinteger(L, procs);
  lua_setfield(L, -2, "processes");
  lua_pushinteger(L, (lua_Integer)used);
  lua_setfield(L, -2, "shm_used");
  lua_pushinteger(L, (lua_Integer)size);
  lua_setfield(L, -2, "shm_size");
  return 1;
}

void sk_trace_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"start", l_trace_start}, {"stop", l_trace_stop}, {"file", l_trace_file}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "trace");
  lua_pushcfunction(L, l_stats);
  lua_setfield(L, -2, "stats");
}
