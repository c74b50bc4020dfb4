/*
** sk_sync.h — helpers shared by the synchronisation objects (sync.c,
** event.c, barrier.c); nothing outside those files uses them.
*/
#ifndef SK_SYNC_H
#define SK_SYNC_H

#include <stddef.h>

#include "sk_bind.h"
#include "../runtime/host/sk_chan.h"
#include "../runtime/host/sk_xwait.h"


/* Checks the optional timeout at `timeout_arg` and leaves the stack as
** (object, deadline): every blocking method keeps its deadline at 2. */
void sk_sync_setup_deadline(lua_State *L, int timeout_arg);

/* Reads integer argument `arg` >= `min`; an absent one gives `def` when
** def >= min, else raises. Raises "bad argument" naming `what`. */
lua_Integer sk_sync_check_count(lua_State *L, int arg, lua_Integer def, lua_Integer min,
                                const char *what);

/* Raises a type error unless argument `arg` is callable. */
void sk_sync_check_callable(lua_State *L, int arg);

/* Register skein.event and skein.barrier in the module table on top of
** the stack. */
void sk_event_open(lua_State *L);
void sk_barrier_open(lua_State *L);

#endif
