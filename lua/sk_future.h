/*
** sk_future.h — the Lua face of futures (future.c); the engine is
** runtime/host/sk_future.h.
*/
#ifndef SK_FUTURE_H
#define SK_FUTURE_H

#include "sk_bind.h"
#include "../runtime/host/sk_future.h"

void sk_future_open(lua_State *L);

/* How Pool:submit (pool.c, l_pool_submit_via) submits to a pool engine that
** is a C handle without calling its `_submit` through Lua (one call frame
** and the engine's argument checks less per submit): the engine's
** metatable has, at SK_SUBMIT_KEY, a light userdata pointing at one of
** these. `submit` is given the engine's userdata, the pool's timeout
** (checked: a number >= 0), the stack index of fn (its arguments follow it
** up to the top) and the first of the two upvalues of the running C
** function that hold an encoding box (sk_call_encode). It pushes the
** future and returns 1, raising as the engine's `_submit` would; or it
** returns -1, having pushed nothing, when the engine is closed (Pool:submit
** then takes the Lua path, which raises the error of a closed engine).
** This is how one binding reaches another's engine: through a metatable
** made at start-up, never by a call between their files. */
typedef struct sk_submit_hook {
  int (*submit)(lua_State *L, void *ud, double timeout, int first, int up);
} sk_submit_hook;
#define SK_SUBMIT_KEY "__sk_submit"

/* Sets the submit hook of the metatable named `mt` (after sk_type_register). */
static inline void sk_submit_hook_set(lua_State *L, const char *mt, const sk_submit_hook *h) {
  luaL_getmetatable(L, mt);
  lua_pushlightuserdata(L, (void *)h);
  lua_setfield(L, -2, SK_SUBMIT_KEY);
  lua_pop(L, 1);
}

#endif
