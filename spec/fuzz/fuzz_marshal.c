/*
** fuzz_marshal.c — libFuzzer target for the marshal decoder. Every input is
** decoded with all permissions; whatever decodes must encode again and
** decode to the same encoding (the format is canonical for values without
** hash-order dependence, so only the second round trip is compared).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lua/sk_lua.h"

static sk_worker *w;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *err;
  if (w == NULL) {
    w = sk_worker_new(NULL, &err);
    if (w == NULL) abort();
  }
  lua_State *L = w->L;
  int top = lua_gettop(L);
  int n = sk_marshal_decode(L, (const char *)data, size, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  if (n >= 0) {
    sk_buf a, b;
    if (sk_marshal_encode(L, top + 1, n, &a, "value") != 0) abort();
    lua_settop(L, top);
    int m = sk_marshal_decode(L, a.data, a.len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
    if (m != n) abort();
    if (sk_marshal_encode(L, top + 1, m, &b, "value") != 0) abort();
    if (a.len != b.len) abort();
    sk_buf_free(&a);
    sk_buf_free(&b);
  }
  lua_settop(L, top);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
