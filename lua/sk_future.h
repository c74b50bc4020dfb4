/*
** sk_future.h — the Lua face of futures (the engine's header is
** runtime/host/sk_future.h).
*/
#ifndef SK_FUTURE_H
#define SK_FUTURE_H

#include "sk_bind.h"
#include "../runtime/host/sk_future.h"

#define FUTURE_MT SK_FUTURE_MT

void sk_future_open(lua_State *L);

#endif
