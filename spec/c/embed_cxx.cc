// embed_cxx.cc — a C++ host for spec/embed_spec.lua: skein.h (and the Lua
// API it brings in) must compile and link from C++.
#include <cstdio>

#include "skein.h"

int main() {
  skein_options o = {};
  skein_runtime *rt = skein_new(&o);
  if (rt == nullptr) return 1;
  lua_State *L = skein_lua(rt);
  lua_pushinteger(L, 41);
  lua_setglobal(L, "x");
  if (skein_dostring(rt, "assert(x == 41) skein.spawn(function() skein.sleep(0.001) end)", "=cxx") != 0) {
    std::fprintf(stderr, "%s\n", skein_errmsg(rt));
    return 2;
  }
  if (skein_run(rt, SKEIN_RUN_DEFAULT) != 0) return 3;
  std::printf("c++ host ok, skein %s\n", skein_version());
  return skein_close(rt) == 0 && skein_version_num() == SKEIN_VERSION_NUM ? 0 : 4;
}
