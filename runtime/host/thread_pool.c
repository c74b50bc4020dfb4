/*
** thread_pool.c — the thread-pool engine (sk_tpool.h): N thread workers
** take marshalled jobs from one queue and finish their futures. Its Lua
** face is lua/pool.c; the Lua front end (stdlib/skein/pool.lua) builds
** map/imap/starmap/apply and the coroutine kind on top of both.
**
** Ownership and threads: the pool is an sk_obj. Each worker thread holds a
** reference, as does each Lua handle. The pool's mutex guards the job queue,
** the counters and the worker table; workers sleep on the pool's condition
** variable between jobs, unless their loop has work of its own (below):
** tasks a job spawns are drained before the next job is taken. Lock order:
** pool lock, then a future's lock (through sk_future_*), then a port lock.
**
** Wakes: a worker that runs out of jobs looks at the queue's length for a
** few microseconds before it sleeps (spin_for_work), and a submit signals
** a sleeper only when no awake worker will find the job (wake_for_queue),
** so a burst of submits costs no futex call per job. Invariant: while jobs
** are queued, some worker is awake and idle, running a job, or signalled.
**
** A worker whose loop has work of its own when it runs out of jobs (tasks
** its initializer started: a timer, a socket, a wait on another worker)
** sleeps in that loop instead of on the condition variable, so that work
** goes on between jobs; it counts as sleeping, and a submit wakes it
** through its worker's async handle (wake_loop_sleeper).
**
** Per-task timeouts really stop the task: a count hook checks the deadline
** every few thousand VM instructions (so a pure-Lua loop is interrupted),
** and the job runs inside a deadline scope (so a blocked wait is cut short).
** The worker then takes the next job as usual.
**
** A worker that ran `max_tasks` jobs exits and starts its replacement,
** which joins it first, so recycled threads never pile up unjoined.
**
** Live work: a job counts in its submitter's `live` (as a task or a thread
** does) from submit until it has left the pool, so a script, a thread or a
** pool job that submitted work does not end before that work is done, and
** the REPL's Ctrl-D counts it. The submitter's port is held meanwhile, and
** whichever thread frees the job posts the uncounting to that port (a
** worker in batches: reap_batch). Jobs a
** pool's own workers submit to it are not counted there (a worker that
** waited for them could be the one they need). A pool whose handle is
** collected while its threads still run counts once more in that handle's
** worker, until its last thread has ended and been joined there.
*/

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sk_cpu.h"
#include "sk_task.h"
#include "sk_tpool.h"

#define HOOK_EVERY 4000

/* A submitter keeps up to JOB_CACHE finished jobs with room for JOB_ROOM
** bytes of code (their code.cap) for its next submits. A counted job is
** freed on its submitter's thread (jobs_reaped), so its block comes back
** to that thread, and a submit in a loop then costs no malloc and no free
** (about 350 instructions). Only counted jobs are made with that room; the
** bound keeps what an idle submitter holds to about 64 KiB. */
#define JOB_ROOM 152
#define JOB_CACHE 256

static sk_tjob *job_alloc(sk_worker *w, size_t len, int counted) {
  size_t room = counted && len <= JOB_ROOM ? JOB_ROOM : len;
  sk_tjob *j = NULL;
  if (room == JOB_ROOM && counted && w->job_cache != NULL) {
    j = w->job_cache;
    w->job_cache = j->next;
    w->job_cached--;
  } else if (room <= SIZE_MAX - sizeof *j) {
    j = malloc(sizeof *j + room);
  }
  if (j) {
    memset(j, 0, sizeof *j);
    j->code.cap = room;
  }
  return j;
}

void sk_tpool_drop_jobs(sk_worker *w) {
  while (w->job_cache) {
    sk_tjob *j = w->job_cache;
    w->job_cache = j->next;
    free(j);
  }
  w->job_cached = 0;
}

/* On the submitter's thread: a chain of jobs (linked by `next`, all of one
** port) has left the pool. */
static void jobs_reaped(void *arg) {
  for (sk_tjob *j = arg, *next; j; j = next) {
    next = j->next;
    sk_worker *w = j->owner;
    w->live--;
    sk_port_hold(j->port, -1);
    sk_port_release(j->port);
    if (j->code.cap == JOB_ROOM && w->job_cached < JOB_CACHE) {
      j->next = w->job_cache;
      w->job_cache = j;
      w->job_cached++;
    } else {
      free(j);
    }
  }
}

/* The submitter has closed: there is nothing left to uncount. */
static void jobs_orphaned(void *arg) {
  for (sk_tjob *j = arg, *next; j; j = next) {
    next = j->next;
    sk_port_release(j->port);
    free(j);
  }
}

/* Jobs a worker has finished whose uncounting is still to be posted to
** their submitter: one post (one wake of that loop) per batch instead of
** one per job. A batch holds jobs of one port only; the worker flushes it
** before it waits for work, before it runs a job of another port (or an
** uncounted one), when it is full, and before it exits, so an uncounting
** waits at most for jobs its own submitter waits for too. */
typedef struct reap_batch {
  sk_tjob *head;
  sk_port *port;
  int n;
} reap_batch;

#define REAP_BATCH 64
#define REAP_EVERY 64           /* submits between two deliveries of the submitter's port */

static void reap_flush(reap_batch *b) {
  if (b->head) sk_port_call(b->port, jobs_reaped, jobs_orphaned, b->head);
  *b = (reap_batch){NULL, NULL, 0};
}

/* Frees what job j holds but the counting: the objects its code mentions
** (its bytes live in the job) and the future. */
static void job_strip(sk_tjob *j) {
  sk_buf_clear(&j->code);
  sk_obj_release(&j->fut->obj);
  j->fut = NULL;
}

/* Frees a job that has left the pool (finished or cancelled), on any
** thread; one counted as live work of its submitter is uncounted there. */
static void job_free(sk_tjob *j) {
  job_strip(j);
  j->next = NULL;
  if (j->port) sk_port_call(j->port, jobs_reaped, jobs_orphaned, j);
  else free(j);
}

/* job_free for a worker: the uncounting joins the worker's batch b. */
static void job_free_batched(sk_tjob *j, reap_batch *b) {
  job_strip(j);
  if (j->port == NULL) {
    free(j);
    return;
  }
  if (b->port != j->port || b->n >= REAP_BATCH) reap_flush(b);
  j->next = b->head;
  b->head = j;
  b->port = j->port;
  b->n++;
}

static void pool_destroy(sk_obj *o) {
  sk_tpool *p = (sk_tpool *)o;
  while (p->head) {
    sk_tjob *j = p->head;
    p->head = j->next;
    sk_future_cancel(j->fut);
    job_free(j);
  }
  sk_buf_free(&p->init);
  sk_waitlist_free(&p->exit_waiters);
  uv_cond_destroy(&p->cond);
  uv_mutex_destroy(&p->lock);
  sk_worker_unlend(p->lent);
  free(p->init_error);
  free(p->slots);
  free(p->threads);
  free(p->name);
  free(p);
}

static const sk_objtype pool_type = {SK_TPOOL_MT, pool_destroy, NULL};

/* ------------------------------------------------------- worker side */

/* The deadline of the job a worker runs; read by the count hook. */
typedef struct job_clock {
  uint64_t deadline;
  double seconds;
} job_clock;

static void timeout_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  job_clock *jc = sk_worker_of(L)->job_clock;
  if (jc && uv_hrtime() >= jc->deadline) {
    sk_error_raise(L, "timeout", "task timed out after %f s", jc->seconds);
  }
}

/* Runs one job on worker w and finishes its future. Its results are
** encoded into `out`, the worker's own buffer: a result of up to
** SK_FUT_SMALL bytes without objects (most tasks return a number or a
** short string) is copied into the future, and the buffer, storage and
** all, serves the next job (until the worker runs out of work); any other
** is handed to the future. A fresh buffer per job would be a malloc in this
** thread's arena freed by the submitter only when it drops the future: the
** arena would grow a page at a time (an mprotect and a fault each) for as
** long as a script keeps its futures. */
static void run_job(sk_worker *w, sk_tjob *j, sk_buf *out) {
  lua_State *L = w->L;
  const char *kind = NULL;
  job_clock jc;
  sk_scope scope;
  if (j->timeout) {
    jc.deadline = uv_hrtime() + j->timeout;
    jc.seconds = (double)j->timeout / 1e9;
    w->job_clock = &jc;
    scope = (sk_scope){NULL, jc.deadline, jc.deadline, NULL, jc.seconds};
    scope.owner = &scope;
    w->root.scope = &scope;
    lua_sethook(L, timeout_hook, LUA_MASKCOUNT, HOOK_EVERY);
  }
  int rc = sk_run_call(w, j->code.data, j->code.len, out, &kind);
  if (j->timeout) {
    lua_sethook(L, NULL, 0, 0);
    w->job_clock = NULL;
    w->root.scope = NULL;
  }
  int terminated = w->interrupted;
  w->interrupted = 0;
  w->root.cancel_requested = 0;
  if (terminated) {
    sk_buf_clear(out);
    sk_future_finish(j->fut, SK_FUT_FAILED, NULL, "the pool was terminated while the task ran",
                     "cancelled");
  } else if (rc < 0) {
    sk_future_finish(j->fut, SK_FUT_FAILED, NULL,
                     lua_tostring(L, -1) ? lua_tostring(L, -1) : "the worker failed", NULL);
  } else if (sk_future_fits(out)) {
    sk_future_finish_copy(j->fut, rc != 0, out, NULL, kind, 0, 0, 0);
    out->len = 0;
  } else {
    sk_future_finish(j->fut, rc ? SK_FUT_FAILED : SK_FUT_DONE, out, NULL, kind);
  }
  lua_settop(L, 0);
}

/* Runs the pool's initializer; returns NULL or an error message to free. */
static char *run_init(sk_tpool *p, lua_State *L) {
  if (p->init.len == 0) return NULL;
  sk_worker *w = sk_worker_of(L);
  w->spawn_background = 1;      /* its tasks are the worker's background (tasks.c) */
  int n = sk_marshal_decode(L, p->init.data, p->init.len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  int st = n < 0 ? LUA_ERRRUN : sk_pcall(L, n - 1, 0);
  w->spawn_background = 0;
  if (st != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    char *copy = strdup(msg ? msg : "initializer failed");
    lua_settop(L, 0);
    return copy;
  }
  return NULL;
}

static void worker_main(void *arg);

#define SPIN_NS 20000           /* how long an idle worker looks for work before sleeping */
#define SPIN_MAX_PAUSES 64      /* the longest pause between two looks */


/* Wakes one worker that sleeps in its own loop and was not woken yet; 0
** when there is none. The caller holds the pool lock, which keeps that
** worker, and so its async handle, from going away meanwhile. */
static int wake_loop_sleeper(sk_tpool *p) {
  if (p->loop_sleeping == 0) return 0;
  for (int i = 0; i < p->size; i++) {
    sk_tslot *s = &p->slots[i];
    if (s->in_loop && !s->woken) {
      s->woken = 1;
      p->loop_sleeping--;
      uv_async_send(s->w->wakeup);
      return 1;
    }
  }
  return 0;
}

/* Wakes every sleeper (closing, terminating); the caller holds the lock. */
static void wake_all(sk_tpool *p) {
  uv_cond_broadcast(&p->cond);
  while (wake_loop_sleeper(p)) {}
}

/* Wakes one sleeping worker when the queue holds more jobs than there are
** workers that will look at it anyway: those awake and not running a job
** (spinning, or on their way back to the queue) and those already woken.
** So a burst of submits wakes each sleeper once, not once per job, and a
** lone submit to an idle pool wakes one at once. The caller holds the pool
** lock. */
static void wake_for_queue(sk_tpool *p) {
  if (p->sleeping <= p->waking) return;
  int looking = p->alive - p->sleeping - p->busy + p->waking;
  if ((int64_t)p->queued > (int64_t)looking) {
    p->waking++;
    if (!wake_loop_sleeper(p)) uv_cond_signal(&p->cond);
  }
}

/* Called without the pool lock by a worker that found no job: looks at the
** queue's length (written under the lock, read here as a hint) for up to
** SPIN_NS, backing off between looks, and yields its CPU now and then in
** case the submitter shares it. At most one worker per CPU spins at a
** time (a big pool's idle workers would only burn CPU); none on one CPU. */
static void spin_for_work(sk_tpool *p) {
  static int ncpu;
  if (__atomic_load_n(&ncpu, __ATOMIC_RELAXED) == 0) {
    __atomic_store_n(&ncpu, (int)uv_available_parallelism(), __ATOMIC_RELAXED);
  }
  int cpus = __atomic_load_n(&ncpu, __ATOMIC_RELAXED);
  if (__atomic_add_fetch(&p->spinning, 1, __ATOMIC_RELAXED) <= cpus && cpus >= 2) {
    uint64_t t0 = uv_hrtime();
    for (unsigned i = 1, pauses = 1;; i++) {
      if (__atomic_load_n(&p->queued, __ATOMIC_RELAXED) > 0) break;
      for (unsigned k = 0; k < pauses; k++) sk_cpu_relax();
      if (pauses < SPIN_MAX_PAUSES) pauses *= 2;
      if ((i & 7) == 0) {
        if (uv_hrtime() - t0 > SPIN_NS) break;
        sched_yield();
      }
    }
  }
  __atomic_sub_fetch(&p->spinning, 1, __ATOMIC_RELAXED);
}

/* Joins the threads that have ended and were not joined yet; one of them
** that is the calling thread detaches itself instead. */
void sk_tpool_join_exited(sk_tpool *p) {
  uv_thread_t self = uv_thread_self();
  uv_mutex_lock(&p->lock);
  for (int i = 0; i < p->size; i++) {
    sk_tslot *s = &p->slots[i];
    if (s->exited && !s->joined) {
      uv_thread_t t = p->threads[i];
      s->joined = 1;
      uv_mutex_unlock(&p->lock);
      if (uv_thread_equal(&t, &self)) pthread_detach(t);
      else uv_thread_join(&t);
      uv_mutex_lock(&p->lock);
    }
  }
  uv_mutex_unlock(&p->lock);
}

/* On the reaper's thread, posted by the last thread of an orphaned pool:
** joins the threads and stops counting the pool as live work. */
static void pool_reaped(void *arg) {
  sk_tpool *p = arg;
  sk_tpool_join_exited(p);
  p->reaper->live--;
  sk_port_hold(p->reaper_port, -1);
  sk_port_release(p->reaper_port);
  sk_obj_release(&p->obj);
}

/* The reaper has closed: runs on the last thread (which detaches) or on
** the reaper's thread as its port closes (which joins it). */
static void pool_reap_orphan(void *arg) {
  sk_tpool *p = arg;
  sk_tpool_join_exited(p);
  sk_port_release(p->reaper_port);
  sk_obj_release(&p->obj);
}

/* Starts the thread of slot i; the caller holds the pool lock. */
static int start_slot(sk_tpool *p, int i) {
  sk_obj_retain(&p->obj);
  p->slots[i].exited = p->slots[i].joined = 0;
  p->alive++;
  sk_worker_count(1);
  if (sk_thread_start(&p->threads[i], worker_main, &p->slots[i]) != 0) {
    sk_worker_count(-1);
    p->alive--;
    sk_obj_release(&p->obj);
    return -1;
  }
  return 0;
}

static void worker_main(void *arg) {
  sk_tslot *slot = arg;
  sk_tpool *p = slot->pool;
  const char *err;
  if (slot->has_prev) {
    uv_thread_join(&slot->prev);
    slot->has_prev = 0;
  }
  char *name = malloc(strlen(p->name) + 24);
  if (name) sprintf(name, "%s-%d", p->name, slot->index);
  sk_worker *w = sk_worker_become(SK_WORKER_POOL_THREAD, slot->index, name, p->lent, &err);
  char *init_error = NULL;
  if (w) {
    w->pool = p;
    init_error = err ? strdup(err) : run_init(p, w->L);
  }
  int ntasks = 0, recycle = 0;
  uv_mutex_lock(&p->lock);
  if (w == NULL || init_error) {
    if (p->init_error == NULL) p->init_error = init_error ? init_error : strdup(err);
    else free(init_error);
  }
  slot->w = w;
  reap_batch reaped = {NULL, NULL, 0};
  sk_buf result = {0};          /* run_job's results, kept while jobs keep coming */
  for (;;) {
    if (p->head == NULL && !p->closed && !p->terminating) {
      /* Out of work: hand the batch back (and the results buffer: an
      ** idle worker holds no memory), then look again for a moment before
      ** sleeping (a burst of submits then costs no futex). */
      uv_mutex_unlock(&p->lock);
      reap_flush(&reaped);
      sk_buf_free(&result);
      spin_for_work(p);
      uv_mutex_lock(&p->lock);
    }
    while (p->head == NULL && !p->closed && !p->terminating) {
      if (SK_TRACING()) {       /* about to sleep: the trace gets what it recorded */
        uv_mutex_unlock(&p->lock);
        sk_trace_idle(0);
        uv_mutex_lock(&p->lock);
        if (p->head || p->closed || p->terminating) break;
      }
      if (w && sk_sched_alive(&w->sched)) {
        /* Work of its own: one turn of its loop (its ready tasks, then
        ** a wait for an event, or for a submit's wake). */
        slot->in_loop = 1;
        p->sleeping++;
        p->loop_sleeping++;
        uv_mutex_unlock(&p->lock);
        sk_sched_step(&w->sched, SK_STEP_WAIT);
        uv_mutex_lock(&p->lock);
        slot->in_loop = 0;
        p->sleeping--;
        if (slot->woken) {
          slot->woken = 0;
          if (p->waking > 0) p->waking--;
        } else {
          p->loop_sleeping--;
        }
        continue;
      }
      p->sleeping++;
      uv_cond_wait(&p->cond, &p->lock);
      p->sleeping--;
      if (p->waking > 0) p->waking--;
    }
    if (p->terminating || p->head == NULL) break;
    sk_tjob *j = p->head;
    p->head = j->next;
    if (p->head == NULL) p->tail = NULL;
    __atomic_store_n(&p->queued, p->queued - 1, __ATOMIC_RELAXED);
    p->busy++;
    wake_for_queue(p);          /* a woken worker passes the wake on */
    uint64_t t0 = uv_hrtime(), flow = j->flow;
    sk_hist_add(&p->qwait, t0 - j->queued_at);
    const char *broken = p->init_error;
    const char *tname = p->tname;
    int64_t tq = (int64_t)p->queued, tb = p->busy;
    uv_mutex_unlock(&p->lock);
    /* The batch does not wait for another submitter's job (or an uncounted
    ** one), which may run long; its own submitter waits for its own jobs. */
    if (reaped.head && reaped.port != j->port) reap_flush(&reaped);
    if (flow && SK_TRACING()) sk_trace_counter(tname, "queued", tq, "busy", tb, 0);
    int ok = 1;
    if (sk_future_start(j->fut)) {
      if (broken || w == NULL) {
        sk_future_finish(j->fut, SK_FUT_FAILED, NULL, broken ? broken : "worker failed to start", NULL);
        ok = 0;
      } else {
        run_job(w, j, &result);
        ok = j->fut->state == SK_FUT_DONE;
      }
    }
    if (flow && SK_TRACING()) sk_trace_job(tname, flow, t0, t0 - j->queued_at, !ok);
    job_free_batched(j, &reaped);
    uint64_t t1 = uv_hrtime();
    uv_mutex_lock(&p->lock);
    p->busy--;
    slot->busy_ns += t1 - t0;
    slot->jobs++;
    if (flow && SK_TRACING()) {
      tq = (int64_t)p->queued;
      tb = p->busy;
      uv_mutex_unlock(&p->lock);
      sk_trace_counter(tname, "queued", tq, "busy", tb, 0);
      uv_mutex_lock(&p->lock);
    }
    if (ok) p->done++;
    else p->failed++;
    if (p->max_tasks && ++ntasks >= p->max_tasks && !p->closed && !p->terminating) {
      recycle = 1;
      break;
    }
  }
  slot->w = NULL;
  uv_mutex_unlock(&p->lock);
  reap_flush(&reaped);
  sk_buf_free(&result);
  if (w) {
    sk_task_report_failures(w);
    sk_worker_close(w);
  }
  uv_mutex_lock(&p->lock);
  p->alive--;
  int detach = 0, reap = 0;
  if (recycle) {
    slot->prev = p->threads[slot->index];
    slot->has_prev = 1;
    p->restarted++;
    if (start_slot(p, slot->index) != 0) recycle = 0;
  }
  if (!recycle) {
    /* No successor joins this thread: the owner does, the reaper of an
    ** orphaned pool does (told by the last thread), or nobody will. */
    slot->has_prev = 0;
    slot->exited = 1;
    detach = p->orphaned && p->reaper == NULL;
    if (detach) slot->joined = 1;
  }
  if (p->alive == 0) {
    sk_waitlist_wake_all(&p->exit_waiters);
    reap = p->reaper != NULL;
  }
  uv_mutex_unlock(&p->lock);
  if (detach) pthread_detach(pthread_self());
  if (reap) sk_port_call(p->reaper_port, pool_reaped, pool_reap_orphan, p);
  sk_obj_release(&p->obj);
  sk_worker_count(-1);  /* last: see sk_worker_count */
}

/* ------------------------------------------------------ owner's side */

sk_tpool *sk_tpool_new(int size, int max_tasks, const char *name, sk_buf *init, void *lent) {
  sk_tpool *p = calloc(1, sizeof *p);
  if (p) {
    p->slots = calloc((size_t)size, sizeof *p->slots);
    p->threads = calloc((size_t)size, sizeof *p->threads);
    p->name = strdup(name);
  }
  if (p == NULL || p->slots == NULL || p->threads == NULL || p->name == NULL ||
      uv_mutex_init(&p->lock) != 0) {
    sk_buf_free(init);
    sk_worker_unlend(lent);
    if (p) {
      free(p->slots);
      free(p->threads);
      free(p->name);
      free(p);
    }
    return NULL;
  }
  uv_cond_init(&p->cond);
  sk_obj_init(&p->obj, &pool_type);
  p->init = *init;
  *init = (sk_buf){0};
  p->size = size;
  p->max_tasks = max_tasks;
  p->lent = lent;
  for (int i = 0; i < size; i++) {
    p->slots[i].pool = p;
    p->slots[i].index = i;
  }
  return p;
}

int sk_tpool_start(sk_tpool *p) {
  uv_mutex_lock(&p->lock);
  int started = 0;
  for (int i = 0; i < p->size; i++) {
    if (start_slot(p, i) == 0) started++;
  }
  if (started < p->size) {
    p->closed = 1;
    p->size = started;
    wake_all(p);
  }
  uv_mutex_unlock(&p->lock);
  return started;
}

int sk_tpool_submit(sk_tpool *p, sk_worker *w, sk_buf *code, uint64_t timeout, sk_future **out) {
  size_t len = code->len;
  sk_tjob *j = job_alloc(w, len, w->pool != p);
  if (j) j->fut = sk_future_new();
  if (j == NULL || j->fut == NULL) {
    sk_buf_clear(code);
    free(j);
    return UV_ENOMEM;
  }
  memcpy(j->bytes, code->data, len);
  j->code = (sk_buf){j->bytes, len, j->code.cap, code->objs, code->nobjs, code->capobjs};
  code->objs = NULL;
  code->len = code->nobjs = code->capobjs = 0;
  j->timeout = timeout;
  j->queued_at = uv_hrtime();
  uint64_t t0 = 0, flow = 0;
  const char *tname = NULL;
  int64_t tq = 0, tb = 0;
  if (SK_TRACING()) {
    t0 = j->queued_at;
    j->flow = flow = sk_trace_flow(0, sk_trace_next_id());
  }
  sk_future *fut = j->fut;      /* a worker may free j as soon as it is queued */
  if (w->pool != p) {           /* counted before a worker can uncount it */
    j->owner = w;
    j->port = w->port;
    sk_port_retain(w->port);
    sk_port_hold(w->port, 1);
    w->live++;
  }
  uv_mutex_lock(&p->lock);
  int closed = p->closed || p->terminating;
  if (!closed) {
    sk_obj_retain(&fut->obj);
    if (p->tail) p->tail->next = j;
    else p->head = j;
    p->tail = j;
    __atomic_store_n(&p->queued, p->queued + 1, __ATOMIC_RELAXED);
    p->submitted++;
    if (t0) {
      if (p->tname == NULL) p->tname = sk_trace_intern(p->name);
      tname = p->tname;
      tq = (int64_t)p->queued;
      tb = p->busy;
    }
    wake_for_queue(p);
  }
  uv_mutex_unlock(&p->lock);
  if (t0 && !closed && tname) {
    sk_trace_submit(tname, flow, t0);
    sk_trace_counter(tname, "queued", tq, "busy", tb, 0);
  }
  if (closed) {
    if (j->port) {
      w->live--;
      sk_port_hold(j->port, -1);
      sk_port_release(j->port);
    }
    sk_buf_clear(&j->code);
    sk_obj_release(&j->fut->obj);
    free(j);
    return UV_EPIPE;
  }
  *out = fut;
  /* A script that submits in a row does not let its loop run, so the
  ** batches of finished jobs its workers post back would wait in its port
  ** until it first waits, and the heap would grow by a job for every
  ** submit. Every REAP_EVERY counted submits the port delivers here (what
  ** its async callback would run: frees, uncountings, wakes; none runs
  ** Lua), and the next jobs take the memory of those that finished. */
  if (w->pool != p && ++w->submits >= REAP_EVERY) {   /* not j: a worker may have freed it */
    w->submits = 0;
    sk_port_flush(w->port);
  }
  return 0;
}

void sk_tpool_close(sk_tpool *p) {
  uv_mutex_lock(&p->lock);
  p->closed = 1;
  wake_all(p);
  uv_mutex_unlock(&p->lock);
}

void sk_tpool_terminate(sk_tpool *p) {
  uv_mutex_lock(&p->lock);
  p->closed = p->terminating = 1;
  sk_tjob *j = p->head;
  p->head = p->tail = NULL;
  __atomic_store_n(&p->queued, 0, __ATOMIC_RELAXED);
  for (int i = 0; i < p->size; i++) {
    if (p->slots[i].w) sk_worker_interrupt(p->slots[i].w);
  }
  wake_all(p);
  uv_mutex_unlock(&p->lock);
  while (j) {
    sk_tjob *next = j->next;
    sk_future_cancel(j->fut);
    job_free(j);
    j = next;
  }
}

void sk_tpool_get_stats(sk_tpool *p, sk_tpool_stats *s) {
  uv_mutex_lock(&p->lock);
  *s = (sk_tpool_stats){p->size, p->busy, (lua_Integer)p->queued, (lua_Integer)p->done,
                        (lua_Integer)p->failed, (lua_Integer)p->restarted,
                        (lua_Integer)p->submitted, p->alive, p->closed,
                        sk_hist_quantile(&p->qwait, 0.5), sk_hist_quantile(&p->qwait, 0.99)};
  uv_mutex_unlock(&p->lock);
}

int sk_tpool_worker_stats(sk_tpool *p, uint64_t *busy_ns, uint64_t *jobs, int n) {
  uv_mutex_lock(&p->lock);
  int size = p->size;
  for (int i = 0; i < size && i < n; i++) {
    busy_ns[i] = p->slots[i].busy_ns;
    jobs[i] = p->slots[i].jobs;
  }
  uv_mutex_unlock(&p->lock);
  return size;
}

/* While the owning worker closes (the end of a script), this waits for the
** queued work and joins every thread, as an executor's exit does (after an
** interrupt, it terminates the pool instead of waiting for its work). A handle
** collected earlier leaves the threads to finish the queue; this worker
** then counts the pool as live work until its last thread has told it
** that it ended, and joins the threads (so a script does not end before
** the queue is done). On one of the pool's own workers, which cannot wait
** for itself, the threads detach themselves instead. */
void sk_tpool_release(sk_tpool *p, sk_worker *w) {
  int wait = w->closing && w->pool != p;   /* a worker cannot wait for itself */
  uv_mutex_lock(&p->lock);
  p->closed = 1;
  wake_all(p);
  while (wait && p->alive > 0) {
    int stop = w->interrupted && !p->terminating;
    uv_mutex_unlock(&p->lock);
    if (stop) sk_tpool_terminate(p);     /* Ctrl-C: the work is not waited for */
    else uv_sleep(1);
    uv_mutex_lock(&p->lock);
  }
  if (!wait) {
    p->orphaned = 1;
    if (p->alive > 0 && p->reaper == NULL && w->pool != p) {
      p->reaper = w;
      p->reaper_port = w->port;
      sk_port_retain(w->port);
      sk_port_hold(w->port, 1);
      w->live++;
      sk_obj_retain(&p->obj);     /* for the last thread's post */
    }
  }
  uv_mutex_unlock(&p->lock);
  sk_tpool_join_exited(p);
}
