/*
** sk_chan.h — the queue core (queue.c) as pipe.c uses it: a pipe end is a
** pair of unbounded FIFO queues, one per direction.
**
** A queue is an sk_obj guarded by its own mutex. Items are copied in on
** put (small scalars and strings inline or as one block, anything else
** marshalled) and decoded in the getter's state. Its state is never touched
** without the queue's lock, except `count` and `closed`, which are also
** read without it (atomically) by a getter that spins briefly before it
** sleeps.
**
** Threading: every function here may be called from any worker; the ones
** that take a lua_State run on that state's worker.
*/
#ifndef SK_CHAN_H
#define SK_CHAN_H

#include "sk_lua.h"

typedef struct sk_queue sk_queue;

enum { SK_QUEUE_FIFO, SK_QUEUE_LIFO, SK_QUEUE_PRIORITY };

/* Results of the non-blocking operations. */
enum { SK_Q_CLOSED = -1, SK_Q_BLOCK = 0, SK_Q_OK = 1 };

/* A new queue holding one reference (release it with sk_obj_release on its
** first member); NULL when out of memory. maxsize 0: unbounded. */
sk_queue *sk_queue_new(int order, size_t maxsize);

/* Appends the value at `idx`, ignoring maxsize. Returns SK_Q_OK or
** SK_Q_CLOSED; raises (owning nothing) when the value cannot cross. */
int sk_queue_send(lua_State *L, sk_queue *q, int idx);

/* Takes the next item without blocking: pushes it and returns the number
** of values pushed (>= 1), or returns SK_Q_BLOCK when empty, SK_Q_CLOSED
** when closed and drained. May raise when the item cannot be decoded. */
int sk_queue_recv(lua_State *L, sk_queue *q);

/* 1 when a receive would not block (an item is there, or it is closed). */
int sk_queue_readable(sk_queue *q);

/* Closes the queue: puts fail, gets drain then fail, every blocked getter
** and putter wakes. With `discard`, the items left are dropped as well. */
void sk_queue_shut(sk_queue *q, int discard);

/* Waiting to receive, in the shape sk_lua.h describes for shared objects.
** sk_queue_spin spins a few microseconds first when that may spare a
** sleep (another core, nothing else ready here): 1 when now readable.
** sk_queue_wait_begin returns 1 when readable already (nothing to wait
** for). sk_queue_wait_end unlinks the waiter; a waiter that was woken
** but leaves without receiving (an error, or `always` for a poll) passes
** the wake on to the next waiter so that no item is left unclaimed. */
int sk_queue_spin(sk_queue *q, sk_ctx *c);
int sk_queue_wait_begin(lua_State *L, sk_ctx *c, uint64_t deadline, sk_queue *q);
void sk_queue_wait_end(lua_State *L, sk_ctx *c, sk_queue *q, int always);

/* select's waiter records for receiving (see sk_selectable). */
int sk_queue_add_getter(sk_queue *q, const sk_waiter *w);
void sk_queue_remove_getter(sk_queue *q, sk_port *port, uint32_t slot);

#endif
