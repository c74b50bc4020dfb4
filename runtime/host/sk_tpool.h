/*
** sk_tpool.h — the thread-pool engine (thread_pool.c): N thread workers
** take marshalled jobs from one queue and finish their futures. Its Lua
** face is lua/pool.c (skein._threadpool and the handle's methods); what it
** guarantees (timeouts, recycling, live work) is told at the top of
** thread_pool.c.
**
** Threads: the pool is an sk_obj shared by its worker threads and its Lua
** handles; `lock` guards the job queue, the counters and the worker
** table. Lock order: the pool lock, then a future's lock, then a port lock.
*/
#ifndef SK_TPOOL_H
#define SK_TPOOL_H

#include "../core/sk_hist.h"
#include "sk_future.h"

#define SK_TPOOL_MT "skein.ThreadPool"

typedef struct sk_tpool sk_tpool;

/* Frees the finished jobs worker w keeps for its next submits (as it closes). */
void sk_tpool_drop_jobs(sk_worker *w);

typedef struct sk_tjob {
  struct sk_tjob *next;
  sk_future *fut;               /* counted */
  sk_buf code;                  /* fn and its arguments: bytes in `bytes` (room for
                                   code.cap of them), objects its own */
  uint64_t timeout;             /* ns, 0: none */
  sk_worker *owner;             /* the submitter it counts in (touched there only) */
  sk_port *port;                /* the submitter's port, counted and held; NULL: not counted */
  uint64_t queued_at;           /* when it was submitted (uv_hrtime) */
  uint64_t flow;                /* traced: the job's flow id; 0: untraced */
  char bytes[];                 /* the code's bytes (one allocation with the job) */
} sk_tjob;

/* One worker slot; `w` is set while the worker runs (for terminate). */
typedef struct sk_tslot {
  sk_tpool *pool;
  int index;
  sk_worker *w;                 /* guarded by the pool lock */
  uv_thread_t prev;             /* the recycled predecessor to join */
  int has_prev;
  int exited, joined;           /* its current thread ended / was joined */
  uint64_t busy_ns, jobs;       /* time spent running jobs, jobs run (pool lock) */
  int in_loop, woken;           /* idle in its own loop / woken from there (pool lock) */
} sk_tslot;

struct sk_tpool {
  sk_obj obj;
  uv_mutex_t lock;
  uv_cond_t cond;               /* jobs arrived, or closing */
  sk_tjob *head, *tail;
  size_t queued;                /* written under the lock; read without it as a hint (atomic) */
  int size, alive, busy;
  int sleeping;                 /* workers waiting on cond */
  int waking;                   /* of those, how many were signalled and not yet up */
  int loop_sleeping;            /* of those, in their own loops and not yet woken */
  int spinning;                 /* workers looking for work before they sleep (atomic) */
  int closed, terminating;
  uint64_t submitted, done, failed, restarted;
  int max_tasks;
  sk_buf init;                  /* init fn and args; len 0: none */
  char *init_error;             /* set when an initializer failed */
  sk_tslot *slots;
  uv_thread_t *threads;         /* the current thread of each slot */
  int orphaned;                 /* handle collected mid-run */
  sk_worker *reaper;            /* orphaned: the worker that joins the threads */
  sk_port *reaper_port;         /* ... its port, counted and held */
  sk_waitlist exit_waiters;     /* woken when alive reaches 0 */
  void *lent;                   /* what the owner lends its threads (sk_worker_lend) */
  char *name;
  const char *tname;            /* its name in a trace (interned once traced; pool lock) */
  sk_hist qwait;                /* jobs' waits from submit to start */
};

/* The counters of pool:stats(), read together under the pool lock. */
typedef struct sk_tpool_stats {
  lua_Integer size, busy, queued, done, failed, restarted, submitted, alive;
  int closed;
  uint64_t qwait_p50, qwait_p99;  /* ns from submit to start, percentiles */
} sk_tpool_stats;

/* A new pool of `size` slots (no thread started yet), holding one
** reference (the caller's handle); `init` (may be empty) is taken over,
** and `lent` (sk_worker_lend) too. NULL when out of memory (both freed). */
sk_tpool *sk_tpool_new(int size, int max_tasks, const char *name, sk_buf *init, void *lent);
/* Starts every slot's thread; returns how many started. When some could
** not, the pool shrinks to those and is closed. */
int sk_tpool_start(sk_tpool *p);
/* Queues a job (`code`: fn+args, marshalled) with a timeout in ns (0:
** none), submitted by worker w (counted as w's live work unless w is one
** of the pool's own workers). The code's bytes are copied into the job
** and its objects taken over (released on failure): *code is left empty,
** its storage the caller's to reuse. 0 with *out a new reference to its
** future; UV_ENOMEM or, when the pool is closed, UV_EPIPE. */
int sk_tpool_submit(sk_tpool *p, sk_worker *w, sk_buf *code, uint64_t timeout, sk_future **out);
/* No more submits: workers exit once the queue is drained. */
void sk_tpool_close(sk_tpool *p);
/* Cancels queued jobs and interrupts running ones. */
void sk_tpool_terminate(sk_tpool *p);
/* Joins the threads that have ended and were not joined yet. */
void sk_tpool_join_exited(sk_tpool *p);
/* Fills *s from the pool's counters. */
void sk_tpool_get_stats(sk_tpool *p, sk_tpool_stats *s);
/* Each slot's time spent running jobs (ns) and jobs run, into the first n
** entries of the arrays; returns the pool's size. */
int sk_tpool_worker_stats(sk_tpool *p, uint64_t *busy_ns, uint64_t *jobs, int n);
/* A Lua handle of worker w is collected: closes the pool; at w's close
** waits for its threads, else leaves them to finish the queue (the story
** is told at sk_tpool_release in thread_pool.c). The handle's reference
** is the caller's to drop. */
void sk_tpool_release(sk_tpool *p, sk_worker *w);

#endif
