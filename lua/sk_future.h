/*
** sk_future.h — the Lua face of futures (future.c); the engine is
** runtime/host/sk_future.h.
*/
#ifndef SK_FUTURE_H
#define SK_FUTURE_H

#include "sk_bind.h"
#include "../runtime/host/sk_future.h"

void sk_future_open(lua_State *L);

#endif
