/*
** sk_ppool.h — the process-pool engine (proc_pool.c): N worker processes fed
** marshalled jobs, each finishing a future. Its Lua face is lua/ppool.c;
** what it survives and how is told at the top of proc_pool.c.
**
** Threads: everything belongs to the owning worker's own OS thread.
** Ownership: the pool is freed once its handle is released
** (sk_ppool_release) and every libuv handle it opened has closed.
*/
#ifndef SK_PPOOL_H
#define SK_PPOOL_H

#include "../core/sk_hist.h"
#include "sk_future.h"
#include "sk_proc.h"

typedef struct sk_ppool sk_ppool;

typedef struct pjob {
  struct pjob *next;
  sk_future *fut;               /* counted */
  uint64_t id;                  /* its frame's first 8 bytes (a trace's flow id too) */
  sk_buf code;                  /* fn and args, marshalled */
  uint64_t timeout;             /* ns, 0: none */
  int attempts;                 /* times it started (counted with retries only) */
  int started;                  /* its worker announced it ('S') */
  uint64_t queued_at;           /* when it was submitted (uv_hrtime) */
  char bytes[];                 /* the code's bytes (one allocation with the job) */
} pjob;

typedef struct pworker {
  sk_ppool *pool;
  uv_process_t *proc;
  uv_pipe_t *pipe;
  uv_timer_t *timer;
  int pid;
  int running;                  /* spawned and not yet exited */
  int ready;                    /* it said 'O': its initializer went well */
  int restart_pending;          /* `timer` will start it again */
  int init_failed;              /* it said 'E' */
  int quitting;                 /* told to quit after max_tasks */
  int timed_out;                /* killed because its job ran too long */
  char bad[96];                 /* the malformed frame it was killed for ("": none) */
  int ntasks;
  pjob *job;                    /* sent jobs, oldest (the running one) first */
  pjob *job_tail;
  int njobs;
  sk_frame_reader in;           /* bytes read, not yet framed */
  sk_buf out;                   /* frames gathered for one write */
  sk_buf xrefs;                 /* an 'X' frame's references, for the next reply */
  uv_prepare_t *flush;          /* writes `out` before the loop next waits */
  int idle_job;                 /* `out` holds a job for an idle worker */
  sk_conn *conn;                /* serves the worker's calls on our objects */
  uint64_t head_since;          /* when its oldest job became its running one */
  uint64_t busy_ns, jobs;       /* time its jobs ran (as seen from here), jobs answered */
} pworker;

struct sk_ppool {
  sk_worker *w;
  pworker *workers;
  int size;
  pjob *head, *tail;
  size_t queued;
  int busy, alive;
  int nready;                   /* workers alive and ready */
  int pending;                  /* workers whose restart is delayed */
  int closed, terminating;
  uint64_t submitted, done, failed, restarted;
  int max_tasks, retries;
  sk_buf init;                  /* the 'I' frame's payload: flags, initializer */
  /* Workers in a row that never became ready, and the last one's story. */
  int boot_failures, init_failures;
  char boot_msg[160];
  int boot_pid, boot_sig;
  int64_t boot_status;
  sk_buf init_error;            /* the last initializer failure ('E' payload) */
  int stalled;                  /* gave up starting workers until the next submit */
  int since_pump;               /* submits since the last pump (proc_pool.c) */
  int broken;                   /* its initializer fails: no more work, ever */
  char *name;
  int has_handle, open_handles;
  const char *tname;            /* its name in a trace (interned once traced) */
  sk_hist qwait;                /* jobs' waits from submit to running in a worker */
  sk_watchlist exit_watchers;
  struct sk_ppool *next;        /* the owning worker's pools */
};

/* A new pool of `size` workers (size >= 1), started at once; `init` (may
** be empty; taken over) is the initializer's call. NULL with *rc set when
** out of memory. Otherwise the pool, linked into w's pools: *rc is 0 when
** at least one worker started, else why the last could not (the pool then
** tries no more: release it). */
sk_ppool *sk_ppool_new(sk_worker *w, int size, int max_tasks, int retries, const char *name,
                       sk_buf *init, int *rc);
/* Queues a job (`code`: fn+args, marshalled; at most SK_FRAME_MAX - 8
** bytes) with a timeout in ns (0: none). The job copies the bytes and takes
** over the objects they mention (released on UV_ENOMEM); the caller keeps
** code's storage, to free or use again (sk_buf_free). 0 with *out a new
** reference to its future, or UV_ENOMEM. */
int sk_ppool_submit(sk_ppool *p, sk_buf *code, uint64_t timeout, sk_future **out);
/* No more submits: idle workers quit now, busy ones once the queue is
** done. */
void sk_ppool_close(sk_ppool *p);
/* Cancels the queue and kills every worker. */
void sk_ppool_terminate(sk_ppool *p);
/* 1 when every worker has exited and no start is pending (a closed pool's
** join is over); tells idle workers to quit once the queue is drained. */
int sk_ppool_exited(sk_ppool *p);
/* The Lua handle is gone: a pool dropped mid-run is closed (its workers
** finish the queue and quit); at the owner's close every worker is killed
** and reaped. */
void sk_ppool_release(sk_ppool *p);
/* At worker close: kills and reaps every worker of every pool of w. */
void sk_ppool_kill_all(sk_worker *w);

#endif
