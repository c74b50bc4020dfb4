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
*/
#include <limits.h>

#include "../runtime/core/sk_trace.h"
#include "../runtime/host/sk_lua.h"
#include "sk_bind.h"

static int l_trace_start(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int rc = sk_trace_start(path, 0);
  if (rc < 0) {
    int err = uv_translate_sys_error(-rc);
    sk_error_push(L, "io", "cannot trace to '%s': %s", path, uv_strerror(err));
    lua_pushstring(L, uv_err_name(err));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    return lua_error(L);
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

void sk_trace_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"start", l_trace_start}, {"stop", l_trace_stop}, {"file", l_trace_file}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "trace");
}
