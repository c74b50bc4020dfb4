/*
** sk_xwait.h — what every synchronisation object shared across processes
** is made of (runtime/host/xwait.c): a wait list and its mutex in the
** shared segment (sk_xw) with the links of a wait source on it, the
** identity of a context in every process of the tree (sk_who), and this
** process's view of a shared object (sk_xobj). The objects themselves are
** lua/sync.c, event.c, barrier.c, shared.c and shared_table.c.
**
** Lock order: an object's mutex, then (to wake a waiter) the port table's
** lock and a port's, or the target process's mailbox lock; all innermost.
*/
#ifndef SK_XWAIT_H
#define SK_XWAIT_H

#include <pthread.h>
#include <stddef.h>

#include "../core/sk_shm.h"
#include "../core/sk_view.h"
#include "sk_lua.h"
#include "sk_shmtypes.h"

/* A wait list and its mutex, in the shared segment (sk_shm.h). Every
** function but init expects the caller to hold the lock (add, remove,
** wake, purge, count). */
typedef struct sk_xw {
  pthread_mutex_t lock;
  sk_off head;
} sk_xw;

void sk_xw_init(sk_xw *x);
void sk_xw_lock(sk_xw *x);
void sk_xw_unlock(sk_xw *x);
/* Adds a record for w, taking over its port reference; -1 (the record
** still the caller's) when out of memory. */
int sk_xw_add(sk_xw *x, const sk_waiter *w);
/* Removes this process's records of (port, slot); returns how many. */
int sk_xw_remove(sk_xw *x, sk_port *port, uint32_t slot);
/* Wakes the oldest waiter still there (1), or finds none (0). */
int sk_xw_wake_one(sk_xw *x);
void sk_xw_wake_all(sk_xw *x);
/* Drops the records of processes that are gone. */
void sk_xw_purge(sk_xw *x);
size_t sk_xw_count(sk_xw *x);
/* At the object's end: drops every record. */
void sk_xw_free(sk_xw *x);

/* The link and unlink of a wait source on an sk_xw (see sk_source):
** `ready` is called with the list's lock held; sk_xw_unlink returns 1 when
** a waker had already taken c's record. sk_xw_pass_on, for a source's
** pass_on, wakes the next waiter when `ready` (or always, NULL) says a unit
** is there for it. */
int sk_xw_link(sk_ctx *c, sk_xw *x, sk_ready_fn ready, void *st);
int sk_xw_unlink(sk_ctx *c, sk_xw *x);
void sk_xw_pass_on(sk_xw *x, sk_ready_fn ready, void *st);

/* Who a context is, in every process of the tree: its process slot and
** that slot's generation, its worker's port id and its task id. */
typedef struct sk_who {
  uint32_t proc, pgen, port, pad;
  lua_Integer id;
} sk_who;
void sk_who_of(sk_ctx *c, sk_who *out);
int sk_who_eq(const sk_who *a, const sk_who *b);
/* 1 while the process of `w` is alive. */
int sk_who_alive(const sk_who *w);

/* A process's object for a shared synchronisation object: what handles
** point to. `extra` is another object it keeps (a condition's lock). */
typedef struct sk_xobj {
  sk_obj obj;
  sk_shm_obj *s;                /* a reference */
  sk_obj *extra;                /* counted, or NULL */
} sk_xobj;

/* A new shared object of `size` bytes (zeroed, linked with type->shm's
** type) and this process's view of it; raises (holding nothing) when out of
** memory. */
void *sk_xobj_new(lua_State *L, const sk_objtype *type, size_t size);
/* For the type's sk_shm_ops ({type, sk_xobj_shared, sk_xobj_shared,
** sk_xobj_view}) and sk_objtype ({MT, sk_xobj_destroy, &ops}); a type is
** registered once per process with sk_xobj_register. sk_xobj_make makes a
** view of `type` (for a type whose view needs more, like a condition's). */
void sk_xobj_register(const sk_objtype *t);
sk_obj *sk_xobj_view(sk_shm_obj *so);
sk_obj *sk_xobj_make(sk_shm_obj *so, const sk_objtype *type);
sk_shm_obj *sk_xobj_shared(sk_obj *o);
void sk_xobj_destroy(sk_obj *o);
#define SK_XSTATE(T, o) ((T *)((sk_xobj *)(o))->s)

/* Whether the view `o` is the only reference to its shared object and has
** a single reference itself (one Lua handle, in one worker): then nothing
** outside that worker can reach the object, so nothing else can end a wait
** on it (a queued item, a blob or a marshalled argument holding it counts
** as a reference). */
int sk_xobj_alone(sk_obj *o);

#endif
