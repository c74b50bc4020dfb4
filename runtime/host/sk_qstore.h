/*
** sk_qstore.h — the queue protocol: the storages behind sk_queue_*
** (private to chan.c and shq.c; bindings use sk_chan.h only).
**
** A queue's operations are one table of functions (sk_queue_ops) over a
** storage: the local two-lock queue inside the sk_queue (chan.c), or the
** queue in the shared-memory segment (shq.c). A queue starts local; when
** it first crosses to another process it moves (sk_queue_share), and its
** storage pointer is swapped to the shared one, once, under both side
** locks. Each sk_queue_* function loads the pointer and calls through it,
** so no operation asks "is it shared?". A local operation that finds the
** queue moved while it took its lock returns SK_Q_MOVED, and the caller
** dispatches again (to the shared storage, by then published).
*/
#ifndef SK_QSTORE_H
#define SK_QSTORE_H

#include "sk_chan.h"

/* A local operation raced the move to the segment: dispatch again. */
#define SK_Q_MOVED 2

/* `self` is the storage: the sk_queue (local) or the shq (shared). The
** results are sk_queue_*'s (sk_chan.h); put, get, shut and task_done may
** also return SK_Q_MOVED. */
typedef struct sk_queue_ops {
  int (*put)(void *self, sk_item *it, lua_Number prio, int prio_int, int force);
  int (*get)(void *self, sk_item *out, lua_Number *prio, int *prio_int);
  int (*shut)(void *self, int discard);
  int (*task_done)(void *self);
  int (*ready)(void *self, int what);
  size_t (*size)(void *self);
  int (*is_closed)(void *self);
  /* Registers a waiter record: 0 when added (the storage took over the
  ** record's port reference), 1 when ready already, -1 when out of memory
  ** (then nothing is added and the reference stays the caller's). With
  ** `pass`, a record that a waker took while it was being taken back
  ** (ready after all) passes that wake on. */
  int (*add_waiter)(void *self, int what, const sk_waiter *w, int pass);
  /* Removes the records of (port, slot); 1 when there were some. Without
  ** one the context had been woken: with `pass` the wake goes on to the
  ** next waiter when the queue is still ready for it. */
  int (*remove_waiter)(void *self, int what, sk_port *port, uint32_t slot, int pass);
  /* Hands a wake on to the next waiter of a kind when the queue is ready. */
  void (*pass_wake)(void *self, int what);
} sk_queue_ops;

/* A storage as a queue holds it. */
typedef struct sk_qstore {
  const sk_queue_ops *ops;
  void *self;
} sk_qstore;

/* The shared storage (shq.c). */
extern const sk_queue_ops sk_shq_ops;

shq *shq_new(int order, size_t maxsize);
/* Registers the shared queue's type (sk_shm_register_type). */
void shq_attach_type(void);
int shq_order(shq *q);
size_t shq_maxsize(shq *q);
/* Moving a queue in (chan.c): a copy of an item in the segment (NULL when
** full; *it is left alone), linked with its sequence number, or dropped;
** then the counters the queue had. */
typedef struct shitem shitem;
shitem *shq_item_new(sk_item *it, lua_Number prio, int prio_int);
void shq_item_link(shq *q, shitem *s, uint64_t seq);
void shq_item_drop(shitem *s);
void shq_set_counters(shq *q, uint64_t puts, uint64_t gets, uint64_t done, int closed,
                      uint64_t seq);

/* Whether q has moved to the shared segment (chan.c): items bound for it
** are encoded for other processes (qitem.c). */
int sk_queue_crossed(sk_queue *q);

#endif
