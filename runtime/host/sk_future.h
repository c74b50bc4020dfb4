/*
** sk_future.h — the future engine: the result of a task submitted to a
** pool (a thread pool's or a process pool's), shared by reference across
** workers. Its Lua face is lua/future.c.
**
** A future is an sk_obj whose state moves PENDING -> RUNNING -> DONE |
** FAILED | CANCELLED under its own mutex. The results (or the failure as
** message, traceback, value) are a marshalled buffer, decoded in whichever
** worker calls get(). Completion wakes every waiter record. The pool
** engines drive the transitions (any thread); nothing here calls Lua.
*/
#ifndef SK_HOST_FUTURE_H
#define SK_HOST_FUTURE_H

#include "sk_lua.h"

#define FUTURE_MT "skein.Future"

enum { SK_FUT_PENDING, SK_FUT_RUNNING, SK_FUT_DONE, SK_FUT_FAILED, SK_FUT_CANCELLED };

typedef struct sk_future {
  sk_obj obj;
  uv_mutex_t lock;              /* guards everything below */
  int state;
  sk_buf result;                /* results, or (message, traceback, value) */
  char *cmsg;                   /* a failure described by the engine */
  const char *kind;             /* the error kind of a failure (static) */
  const char *prefix;           /* static text put before a decoded failure's message */
  int pid;                      /* the worker process that died running it (0: none) */
  int signal;                   /* ... killed by this signal, or else */
  int64_t exit_code;            /* ... exited with this code */
  sk_waitlist waiters;
  lua_Integer id;
  int observed;
} sk_future;

/* A new pending future with one reference; NULL when out of memory. */
sk_future *sk_future_new(void);
/* PENDING -> RUNNING; 0 when it was cancelled meanwhile. Any thread. */
int sk_future_start(sk_future *f);
/* Finishes the future (DONE or FAILED), taking over *result (if any) or
** recording `cmsg` with error kind `kind` (NULL: "remote"); wakes every
** waiter. A future that already finished is left as it is. Any thread. */
void sk_future_finish(sk_future *f, int state, sk_buf *result, const char *cmsg, const char *kind);
/* Finishes the future as FAILED because the worker process running it
** ended (pid, exit status, signal: the error gets pid and exit_code or
** signal fields; pid 0 for none), with message `cmsg` of kind `kind`. */
void sk_future_fail_exit(sk_future *f, const char *cmsg, const char *kind, int pid, int64_t status,
                         int sig);
/* Finishes the future as FAILED with a copy of a remote failure (an 'F'
** payload: message, traceback, value), its message preceded by `prefix`
** (static). */
void sk_future_fail_remote(sk_future *f, const sk_buf *failure, const char *prefix);
/* PENDING -> CANCELLED; 0 when it already started. Any thread. */
int sk_future_cancel(sk_future *f);
/* Pushes a handle taking over one reference (its methods are lua/future.c's). */
void sk_future_push(lua_State *L, sk_obj *o);

#endif
