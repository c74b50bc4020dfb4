/*
** sk_port.h — a worker's inbox for other threads.
**
** Every worker owns one port. Another thread reaches the worker only by
** posting to its port: a *wake token* (which context to wake) or a *call*
** (a C function the worker runs on its own thread, outside Lua). Posting
** is thread-safe and never blocks on the worker; a uv_async_t wakes the
** worker's loop, which then drains the port.
**
** Lifetime: ports are reference counted. Whoever may post later (a waiter
** record in a shared object, a thread handle) holds a reference. When the
** worker closes it marks the port dead; posts to a dead port are dropped
** (a call's `drop` function, if any, runs instead, on the posting thread).
**
** Lock order: a shared object's lock may be held while posting (the port
** lock is always innermost).
*/
#ifndef SK_PORT_H
#define SK_PORT_H

#include <stdint.h>
#include <uv.h>

typedef struct sk_port sk_port;

/* A waiter record: enough to wake one context of one worker, safely even
** after that context stopped waiting (the generation no longer matches). */
typedef struct sk_waiter {
  sk_port *port;                /* a counted reference */
  uint32_t slot, gen;
} sk_waiter;

/* Called on the worker's thread when a token is drained. */
typedef void (*sk_port_wake_fn)(void *ud, uint32_t slot, uint32_t gen);
typedef void (*sk_port_call_fn)(void *arg);

/* Creates a port on `loop`, whose drained wake tokens go to wake(ud, ...).
** The async handle is unreferenced: a port alone does not keep a loop
** alive. Returns NULL when out of memory. Must run on the loop's thread. */
sk_port *sk_port_new(uv_loop_t *loop, sk_port_wake_fn wake, void *ud);
/* Marks the port dead, closes its async handle (freed in the close
** callback) and drops the worker's reference. Pending items are discarded
** (calls' drop functions run). */
void sk_port_close(sk_port *p);
void sk_port_retain(sk_port *p);
void sk_port_release(sk_port *p);

/* Thread-safe. Returns 0, or -1 when the port is dead. */
int sk_port_wake(sk_port *p, uint32_t slot, uint32_t gen);
/* Thread-safe: runs fn(arg) on the worker's thread; when the port is dead
** runs drop(arg) (if not NULL) on the caller's thread and returns -1. */
int sk_port_call(sk_port *p, sk_port_call_fn fn, sk_port_call_fn drop, void *arg);
/* Keeps the worker's loop alive while > 0 (for example while a thread it
** started is still running). Must run on the worker's thread. */
void sk_port_hold(sk_port *p, int delta);
/* On the owner's thread: delivers what was posted so far (as the async
** callback does) and returns how many posts it delivered. Takes void * to
** serve as the scheduler's flush hook. */
size_t sk_port_flush(void *port);

/* A process-wide id for the port, by which other processes wake its
** contexts (sk_shm.h); 0 when out of memory or the port is closed. */
uint32_t sk_port_id(sk_port *p);
/* The port with that id, retained, or NULL once it has closed. */
sk_port *sk_port_by_id(uint32_t id);

/* Wakes the context a waiter record names (thread-safe) and releases the
** record's port reference. */
void sk_waiter_fire(sk_waiter *w);

/* Starts an OS thread that never takes SIGINT: Ctrl-C is the main thread's
** to handle (the command's handler reaches the main worker), so a thread
** worker or a helper thread never runs it in the middle of its own work.
** Returns 0 or a libuv error, as uv_thread_create. */
int sk_thread_start(uv_thread_t *t, void (*fn)(void *), void *arg);

/* A list of waiter records inside a shared object, guarded by that object's
** own lock (every function here expects the caller to hold it). */
typedef struct sk_waitlist {
  sk_waiter *w;
  size_t n, cap;
} sk_waitlist;

/* Adds a record (taking over its port reference); -1 when out of memory. */
int sk_waitlist_add(sk_waitlist *l, const sk_waiter *w);
/* Removes the records for (port, slot), releasing their references, and
** returns how many there were: 0 tells a waiter that a wake took its record
** (it was picked by sk_waitlist_wake_one/all). */
size_t sk_waitlist_remove(sk_waitlist *l, sk_port *port, uint32_t slot);
/* Wakes and removes the oldest record; 0 when the list was empty. Records
** of workers that have closed (a daemon task left waiting) are dropped on
** the way, so that they do not swallow the wake. */
int sk_waitlist_wake_one(sk_waitlist *l);
/* Wakes and removes every record. */
void sk_waitlist_wake_all(sk_waitlist *l);
void sk_waitlist_free(sk_waitlist *l);

#endif
