/*
** sk_sync.h — helpers shared by the synchronisation objects (sync.c,
** event.c, barrier.c); nothing outside those files uses them.
*/
#ifndef SK_SYNC_H
#define SK_SYNC_H

#include <stddef.h>

#include "sk_lua.h"

/* Makes a new, registered shared object of `size` bytes whose uv_mutex_t
** sits at `lock_off`; raises (holding nothing) when out of memory. */
void *sk_sync_new_obj(lua_State *L, size_t size, const sk_objtype *type, size_t lock_off);
#define SK_SYNC_NEW(L, T, type) \
  ((T *)sk_sync_new_obj((L), sizeof(T), (type), offsetof(T, lock)))

/* Registers a handle metatable: methods in __index, __gc, __tostring. */
void sk_sync_new_type(lua_State *L, const char *mt, const luaL_Reg *methods,
                      lua_CFunction tostring);

/* Checks the optional timeout at `timeout_arg` and leaves the stack as
** (object, deadline): every blocking method keeps its deadline at 2. */
void sk_sync_setup_deadline(lua_State *L, int timeout_arg);

/* Who the context `c` is, across threads: its worker's port and its task
** id (never reused within a worker; 0 for the worker's root). */
void sk_sync_identity(lua_State *L, sk_ctx *c, sk_port **port, lua_Integer *id);

/* Reads integer argument `arg` >= `min`; an absent one gives `def` when
** def >= min, else raises. Raises "bad argument" naming `what`. */
lua_Integer sk_sync_check_count(lua_State *L, int arg, lua_Integer def, lua_Integer min,
                                const char *what);

/* Raises a type error unless argument `arg` is callable. */
void sk_sync_check_callable(lua_State *L, int arg);

/* Ends a wait on a shared object without raising: removes c's waiter
** record from `list` (*picked = 1 when a wake had already taken it, so the
** caller owes that wake to someone), then ends the wait under protection.
** Returns LUA_OK with *timed_out set, or an error status with the error
** the wait raised (cancelled, interrupted, deadlock, a scope's timeout) on
** top of the stack, so the caller can clean up before re-raising it. */
int sk_sync_end_wait(lua_State *L, sk_ctx *c, uv_mutex_t *lock, sk_waitlist *list, int *picked,
                     int *timed_out);

/* Register skein.event and skein.barrier in the module table on top of
** the stack. */
void sk_event_open(lua_State *L);
void sk_barrier_open(lua_State *L);

#endif
