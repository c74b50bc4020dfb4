/*
** sk_process.h — what the bindings of worker processes offer the embed
** layer: their open functions (the proxy type's marshal hooks are in
** sk_bind.h).
** The engines (starting workers, frames, one process, the child's main,
** the process pool, RPC's two ends) are runtime/host/sk_proc.h, sk_ppool.h
** and sk_rpc.h.
*/
#ifndef SK_PROCESS_H
#define SK_PROCESS_H

#include "sk_bind.h"
#include "../runtime/host/sk_proc.h"

void sk_ppool_open(lua_State *L);
void sk_process_open(lua_State *L);

#endif
