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
**
** Across processes: the first time a future is encoded for another process
** it moves into the shared segment (an sk_fut_shared: state, waiters, the
** outcome as blobs), and from then on the segment's state is the truth for
** every process, the owner's included. The owner's engine still finishes
** it through its local object, which writes the segment; a view (the
** object another process decodes) only reads it, waits on it and may cancel
** it. A future whose owner process ends before finishing it fails with
** kind worker_died. Lock order: the local mutex, then the segment's.
*/
#ifndef SK_HOST_FUTURE_H
#define SK_HOST_FUTURE_H

#include "sk_lua.h"

#define FUTURE_MT "skein.Future"

enum { SK_FUT_PENDING, SK_FUT_RUNNING, SK_FUT_DONE, SK_FUT_FAILED, SK_FUT_CANCELLED };

/* The largest outcome a future keeps inside itself, in bytes. */
#define SK_FUT_SMALL 24

typedef struct sk_future {
  sk_obj obj;
  uv_mutex_t lock;              /* guards everything below */
  sk_buf result;                /* results, or (message, traceback, value) */
  char *cmsg;                   /* a failure described by the engine */
  const char *kind;             /* the error kind of a failure (static) */
  const char *prefix;           /* static text put before a decoded failure's message */
  int64_t exit_code;            /* the exit code of the worker process that died running it */
  sk_waitlist waiters;
  lua_Integer id;
  struct sk_fut_shared *seg;    /* atomic; set once, when it moves (a view: always) */
  char *label;                  /* a worker's name, or NULL */
  int state;
  int pid;                      /* the worker process that died running it (0: none) */
  int signal;                   /* ... killed by this signal (0: it exited, exit_code) */
  int observed;
  int remote;                   /* a view of a future in the segment: only `seg` counts */
  int face;                     /* SK_FACE_*: a pool's future or a worker's end */
  int wpid;                     /* a worker process's pid (SK_FACE_PROCESS) */
  /* A copied outcome of up to SK_FUT_SMALL bytes without objects is kept
  ** here (result.data points at it, result.cap is 0) instead of in an
  ** allocation of its own (sk_future_finish_copy, sk_future_fits): most
  ** tasks return a number or a short string, and a result then costs no
  ** malloc and no free, neither a thread pool's worker nor a process pool's
  ** submitter. */
  char small[SK_FUT_SMALL];
} sk_future;

/* Whether sk_future_finish_copy keeps this outcome inside the future
** itself (no allocation): at most SK_FUT_SMALL bytes, no objects. */
static inline int sk_future_fits(const sk_buf *r) {
  return r->data && r->nobjs == 0 && r->len <= SK_FUT_SMALL;
}

/* A future's face: what it stands for, and so what a view of it in another
** worker is. A worker handle (lua/thread.c, lua/process.c) that crosses to
** another process goes as a future that its engine finishes when the
** worker ends (its *anchor*); the view there is a handle whose join waits
** on that future. */
enum { SK_FACE_FUTURE, SK_FACE_THREAD, SK_FACE_PROCESS };

/* What a handle reads of a future (sk_future_read): its state and, once
** finished, the outcome. The bytes stay valid until sk_future_read_done. */
typedef struct sk_future_outcome {
  int state;
  const char *data;             /* results, or (message, traceback, value) */
  size_t len;
  const char *cmsg;             /* a failure the engine described, or NULL */
  const char *kind, *prefix;    /* NULL: none */
  int pid, signal;
  int64_t exit_code;
  struct sk_blob *blob, *cblob; /* held segment blobs behind data and cmsg */
  char kbuf[24], pbuf[64];
} sk_future_outcome;

/* The state now. Any thread. */
int sk_future_state(sk_future *f);
/* Reads the state and, when finished, the outcome into *o. Any thread;
** call sk_future_read_done after decoding. */
void sk_future_read(sk_future *f, sk_future_outcome *o);
void sk_future_read_done(sk_future_outcome *o);
/* The links of a wait source and of skein.select on a future (sk_source,
** sk_selectable): link returns 1 when it is finished, 0 linked, -1 out of
** memory; unlink 1 when a waker had taken the record. */
int sk_future_link(sk_future *f, sk_ctx *c);
int sk_future_unlink(sk_future *f, sk_ctx *c);
int sk_future_add_waiter(sk_future *f, const sk_waiter *w);
void sk_future_remove_waiter(sk_future *f, sk_port *port, uint32_t slot);
/* A worker's anchor: a pending future of face `face` (SK_FACE_THREAD or
** SK_FACE_PROCESS) carrying the worker's id, pid (0: none) and name (may be
** NULL, copied); NULL when out of memory. */
sk_future *sk_future_new_face(int face, lua_Integer id, int wpid, const char *label);
/* Finishes a future with a copy of an outcome (a worker's anchor; a
** process pool's reply): its results, or (failed) its failure payload
** (message, traceback, value), or `cmsg` of kind `kind` (NULL: remote);
** pid/status/sig for a process that died (pid 0: none). Objects `result`
** mentions are retained for the copy. Any thread. */
void sk_future_finish_copy(sk_future *f, int failed, const sk_buf *result, const char *cmsg,
                           const char *kind, int pid, int64_t status, int sig);
/* 1 when `o` is a future of any face (a local one or a view). */
int sk_future_is(const sk_obj *o);
/* The shm ops of a future, for the worker types whose anchor it is. */
struct sk_shm_obj *sk_future_share(sk_future *f);
struct sk_shm_obj *sk_future_shared(sk_future *f);
sk_obj *sk_future_view_of(struct sk_shm_obj *so);
/* A worker's join on its anchor (a view in another worker): the wait
** source, whose attempt pushes the worker's results or raises its failure
** as the worker's own handle would (remote, worker_died, timeout). */
extern const sk_source sk_worker_join_source;
/* skein.select's try on a worker's anchor: 0 while it runs, else the
** count of values pushed (a nil for none), or raises its failure. */
int sk_worker_end_try(lua_State *L, sk_obj *o);

/* Registers the future's shared-segment type in this process (once, before
** any future is decoded: sk_future_open). */
void sk_future_attach(void);

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
