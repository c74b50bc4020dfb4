/*
** sk_thread.h — thread workers (threads.c): skein.thread's engine, which
** starts an OS thread that becomes a worker (its own Lua state, loop and
** scheduler), runs the marshalled function there and keeps its result
** for whoever joins. Its Lua face is lua/thread.c.
**
** Lifetime: the sk_thread is reference counted: one reference per Lua
** handle, one for the running thread. When the thread ends it posts a call
** to its parent's port; the parent, on its own thread, joins the OS thread
** and updates its count of live work. If the parent is gone by then, the
** thread detaches itself.
*/
#ifndef SK_THREAD_H
#define SK_THREAD_H

#include "sk_lua.h"

#define SK_THREAD_MT "skein.Thread"

typedef struct sk_thread {
  sk_obj obj;
  uv_mutex_t lock;              /* guards done, failed, result, cmsg, waiters */
  int done, failed;
  sk_buf code;                  /* fn and args; the thread consumes it */
  sk_buf init;                  /* init and its args (len 0: none); consumed too */
  sk_buf result;                /* results, or (message, traceback, value) */
  char *cmsg;                   /* a failure from before Lua could run */
  sk_waitlist waiters;          /* woken when done */
  lua_Integer id;
  char *name;
  int daemon;
  uv_thread_t tid;
  sk_port *parent;              /* counted */
  sk_worker *pw;                /* only touched on the parent's thread */
  void *lent;                   /* what the parent lends it (sk_worker_lend) */
  struct sk_future *anchor;     /* under lock: made when the handle first crosses
                                ** to another process, finished at the end */
} sk_thread;

/* A new thread worker of w, not started, holding one reference (the
** caller's handle) and a new id: `init` (may be empty), `code` (fn+args,
** marshalled), `name` (malloc'd or NULL) and `lent` (sk_worker_lend) are
** taken over. NULL when out of memory (all of them freed). */
sk_thread *sk_thread_new(sk_worker *w, sk_buf *init, sk_buf *code, char *name, int daemon,
                         void *lent);
/* Starts its OS thread, counted as live work of its parent (unless a
** daemon). 0, or -1 when no thread could be started (the caller's
** reference stays). */
int sk_thread_launch(sk_thread *th);
/* 1 when `o` is a thread of this process (not a view of another's). */
int sk_thread_is(const sk_obj *o);

#endif
