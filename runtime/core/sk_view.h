/*
** sk_view.h — this process's side of the shared-memory segment
** (shm_view.c): one local object (a *view*) per shared object the process
** uses, so that two handles decoded from the same bytes are one object
** with one wait list; and the local objects kept alive for good because a
** value in the segment mentions them by handle.
**
** Threading: every function may be called from any thread; the tables
** have a mutex each, and `make` callbacks run without it.
*/
#ifndef SK_VIEW_H
#define SK_VIEW_H

#include "sk_obj.h"
#include "sk_shm.h"

/* Registers the view maker of a shared type (ops->type, at most 15); the
** object families do this when they open, before any of their objects is
** decoded. */
void sk_shm_register_ops(const sk_shm_ops *ops);
/* This process's object for `so` (a new reference), made by `make` when
** there is none; NULL when out of memory. */
sk_obj *sk_shm_view_get(sk_shm_obj *so, sk_obj *(*make)(sk_shm_obj *so));
/* The same through so's registered type; NULL for a type nobody
** registered. */
sk_obj *sk_shm_view_of(sk_shm_obj *so);
/* Records `o` as the view of `so` (a local object that moved), and drops
** it (from o's destroy). */
void sk_shm_view_remember(sk_shm_obj *so, sk_obj *o);
void sk_shm_view_forget(sk_shm_obj *so, sk_obj *o);
/* Keeps a local object alive for as long as this process lives: a value in
** the segment mentions it by handle (it cannot move there itself). */
void sk_shm_pin(sk_obj *o);

#endif
