/*
** ppool.c — the process-pool engine: N worker processes (this executable
** in pool mode, see process.c) fed marshalled jobs over their sockets by
** the owning worker's loop. It is built to survive what breaks
** multiprocessing pools:
**
**  - a worker that dies (a signal, a segfault, os.exit) fails only the job
**    it was running, with kind "worker_died" and its signal or exit code
**    and pid, or re-runs that job when `retries` allows; a replacement
**    starts and the queue goes on;
**  - a per-task timeout kills the worker running the task (the task really
**    stops), fails the future with kind "timeout" and starts a replacement;
**  - `max_tasks` retires a worker after that many jobs (it finishes the
**    job, then is told to quit) without stranding queued jobs;
**  - a worker that sends a malformed frame (anything the protocol does not
**    allow here, e.g. bytes a program it ran wrote to its socket) is
**    killed: its running job fails saying so, and it is replaced;
**  - a worker counts as started once it says it is ready ('O', after the
**    initializer). Workers that keep failing to get there (no process can
**    be started, the initializer fails, they die while starting) are
**    restarted after a doubling delay; when no worker at all is ready
**    after a bound of such failures, the queued jobs fail with the cause.
**    A failing initializer breaks the pool for good (later submits raise
**    its error, as Python's BrokenProcessPool); other causes only stall it
**    until the next submit tries again;
**  - a job is an attempt (for `retries`) only once it has started: with
**    retries the worker announces each job it starts ('S'), and jobs that
**    never started (sent ahead, or to a worker that died while starting)
**    go back to the queue;
**  - every child dies with its parent and is reaped;
**  - a job counts as live work of the owning worker (w->live) from submit
**    until it is freed (drop_job), so a script does not end, and a pool
**    collected while open does not drop its queue, before it is done.
**
** Threads: everything here runs on the owning worker's thread. libuv
** callbacks only move jobs and finish futures (which is thread-safe and
** calls no Lua). Ownership: the pool struct is freed once its Lua handle is
** gone and every libuv handle it opened has closed.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <limits.h>

#include "sk_future.h"
#include "sk_process.h"

#define PPOOL_MT "skein.ProcessPool"
/* Jobs sent ahead to a worker: it takes the next one from its socket the
** moment it answers, instead of waiting for a round trip. */
#define PIPELINE 16
/* A pool with no ready worker gives up on its queue after this many
** workers in a row failed to become ready (plus its size, since they all
** start at once), or after this many initializer failures in a row. */
#define BOOT_TRIES 5
#define INIT_TRIES 3
/* The delay before restarting a worker after such failures: doubles from
** the first up to the last. */
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 1000

typedef struct pjob {
  struct pjob *next;
  sk_future *fut;               /* counted */
  sk_buf code;                  /* 8-byte id, then fn and args */
  uint64_t timeout;             /* ns, 0: none */
  int attempts;                 /* times it started (counted with retries only) */
  int started;                  /* its worker announced it ('S') */
} pjob;

typedef struct sk_ppool sk_ppool;

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
  sk_buf in;
  sk_buf out;                   /* frames gathered for one write */
  uv_prepare_t *flush;          /* writes `out` before the loop next waits */
  int idle_job;                 /* `out` holds a job for an idle worker */
  sk_conn *conn;                /* serves the worker's calls on our objects */
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
  int broken;                   /* its initializer fails: no more work, ever */
  char *name;
  int has_handle, open_handles;
  uint64_t next_job;
  sk_watchlist exit_watchers;
  struct sk_ppool *next;        /* the owning worker's pools */
};

static int start_worker(sk_ppool *p, int i);
static void replace_worker(sk_ppool *p, int i, int now);
static void quit_idle_if_drained(sk_ppool *p);

static void drop_job(sk_ppool *p, pjob *j);

static void pool_free_if_unused(sk_ppool *p) {
  if (p->has_handle || p->open_handles > 0) return;
  while (p->head) {
    pjob *j = p->head;
    p->head = j->next;
    sk_future_cancel(j->fut);
    drop_job(p, j);
  }
  for (int i = 0; i < p->size; i++) {
    sk_buf_free(&p->workers[i].in);
    sk_buf_free(&p->workers[i].out);
  }
  sk_buf_free(&p->init);
  sk_buf_free(&p->init_error);
  free(p->workers);
  free(p->name);
  free(p);
}

static void on_closed(uv_handle_t *h) {
  sk_ppool *p = ((pworker *)h->data)->pool;
  free(h);
  p->open_handles--;
  pool_free_if_unused(p);
}

static void close_handle(void *h) {
  if (h) uv_close((uv_handle_t *)h, on_closed);
}

/* Frees a job that has left the pool (finished, failed or cancelled); it
** no longer counts as live work of the owner. */
static void drop_job(sk_ppool *p, pjob *j) {
  p->w->live--;
  sk_obj_release(&j->fut->obj);
  sk_buf_free(&j->code);
  free(j);
}

/* Cancels every job still in the queue. */
static void cancel_queued(sk_ppool *p) {
  while (p->head) {
    pjob *j = p->head;
    p->head = j->next;
    sk_future_cancel(j->fut);
    drop_job(p, j);
  }
  p->tail = NULL;
  p->queued = 0;
}

/* Puts a list of jobs (linked by next) back at the head of the queue, in
** order: they never started, so they are pending again. */
static void requeue_front(sk_ppool *p, pjob *first) {
  if (first == NULL) return;
  pjob *last = NULL;
  for (pjob *r = first; r; r = r->next) {
    uv_mutex_lock(&r->fut->lock);
    r->fut->state = SK_FUT_PENDING;
    uv_mutex_unlock(&r->fut->lock);
    r->started = 0;
    p->queued++;
    last = r;
  }
  last->next = p->head;
  p->head = first;
  if (p->tail == NULL) p->tail = last;
}

/* Fails every queued job with the reason no worker could take it: the
** initializer's error once the pool is broken, else why the last worker
** failed to start. */
static void fail_queued(sk_ppool *p) {
  while (p->head) {
    pjob *j = p->head;
    p->head = j->next;
    if (sk_future_start(j->fut)) {
      if (p->broken && p->init_error.len) {
        sk_future_fail_remote(j->fut, &p->init_error, "the pool's initializer failed: ");
      } else {
        sk_future_fail_exit(j->fut, p->boot_msg, "worker_died", p->boot_pid, p->boot_status,
                            p->boot_sig);
      }
      p->failed++;
    }
    drop_job(p, j);
  }
  p->tail = NULL;
  p->queued = 0;
}

/* Closes a worker's pipe and ends its RPC connection. Frames gathered for
** it and not yet written are dropped: its jobs go back to the queue (the
** exit callback) and must not reach its replacement twice. */
static void close_pipe(pworker *pw) {
  sk_buf_free(&pw->out);
  if (pw->flush) uv_prepare_stop(pw->flush);
  if (pw->pipe) {
    close_handle(pw->pipe);
    pw->pipe = NULL;
  }
  if (pw->conn) {
    sk_conn_close(pw->conn);
    pw->conn = NULL;
  }
}

/* Tells a worker to quit after the jobs it has. One whose pipe is already
** gone is on its way out: its exit does the rest. */
static void send_quit(pworker *pw) {
  pw->quitting = 1;
  sk_send_frame(pw->pipe, 'Q', "", 0);
}

/* Cancels the delayed restarts (the pool needs no more workers). */
static void stop_restarts(sk_ppool *p) {
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->restart_pending) {
      uv_timer_stop(pw->timer);
      pw->restart_pending = 0;
      p->pending--;
    }
  }
}

static void unlink_pool(sk_ppool *p);

/* Wakes pool:join once every worker has exited; a pool whose handle is gone
** then closes its timers so that it can be freed. */
static void check_exit(sk_ppool *p) {
  if (!(p->closed || p->terminating)) return;
  if (p->head == NULL) stop_restarts(p);
  if (p->alive != 0 || p->pending != 0) return;
  sk_watchlist_fire(&p->exit_watchers, NULL);
  if (!p->has_handle) {
    for (int i = 0; i < p->size; i++) {
      close_handle(p->workers[i].timer);
      p->workers[i].timer = NULL;
      close_handle(p->workers[i].flush);
      p->workers[i].flush = NULL;
    }
    unlink_pool(p);
  }
}

/* Whether the oldest job sent to pw runs: its worker is ready and, with
** retries (where the worker announces starts), announced it. */
static int job_started(sk_ppool *p, pworker *pw, pjob *j) {
  return j && pw->ready && (p->retries == 0 || j->started);
}

static void on_job_timeout(uv_timer_t *t) {
  pworker *pw = t->data;
  if (pw->job && pw->proc && pw->running) {
    pw->timed_out = 1;
    uv_process_kill(pw->proc, SIGKILL);
  }
}

/* Starts the timeout of the job the worker runs now (its oldest), once it
** has started. */
static void arm_timer(sk_ppool *p, pworker *pw) {
  uv_timer_stop(pw->timer);
  if (pw->job && pw->job->timeout && job_started(p, pw, pw->job)) {
    uv_timer_start(pw->timer, on_job_timeout, (pw->job->timeout + 999999) / 1000000, 0);
  }
}

/* Writes the frames gathered for a worker. On failure the worker is going
** away; its exit fails or requeues the jobs. */
static void flush_out(pworker *pw) {
  if (pw->out.len && pw->pipe) sk_write_owned(pw->pipe, pw->out.data, pw->out.len);
  else sk_buf_free(&pw->out);
  memset(&pw->out, 0, sizeof pw->out);
  pw->idle_job = 0;
  if (pw->flush) uv_prepare_stop(pw->flush);
}

static void on_flush(uv_prepare_t *h) { flush_out(h->data); }

/* Moves the next queued job to worker i's in-flight list and appends its
** frame to the worker's pending write; 0 when there was none to move. */
static int give_one(sk_ppool *p, int i) {
  pworker *pw = &p->workers[i];
  while (p->head) {
    pjob *j = p->head;
    p->head = j->next;
    if (p->head == NULL) p->tail = NULL;
    p->queued--;
    j->next = NULL;
    if (!sk_future_start(j->fut)) {  /* cancelled while queued */
      drop_job(p, j);
      continue;
    }
    size_t need = pw->out.len + j->code.len + 5;
    if (need > pw->out.cap) {
      size_t cap = pw->out.cap ? pw->out.cap * 2 : 4096;
      while (cap < need) cap *= 2;
      char *d = realloc(pw->out.data, cap);
      if (d == NULL) {
        sk_future_finish(j->fut, SK_FUT_FAILED, NULL, "out of memory", NULL);
        p->failed++;
        drop_job(p, j);
        return 0;
      }
      pw->out.data = d;
      pw->out.cap = cap;
    }
    size_t len = j->code.len;   /* at most SK_FRAME_MAX: checked at submit */
    char *h = pw->out.data + pw->out.len;
    h[0] = (char)len;
    h[1] = (char)(len >> 8);
    h[2] = (char)(len >> 16);
    h[3] = (char)(len >> 24);
    h[4] = 'J';
    memcpy(h + 5, j->code.data, len);
    pw->out.len = need;
    if (pw->job_tail) pw->job_tail->next = j;
    else pw->job = j;
    pw->job_tail = j;
    if (pw->njobs++ == 0) {
      p->busy++;
      arm_timer(p, pw);
      pw->idle_job = 1;
    }
    return 1;
  }
  return 0;
}

/* Hands queued jobs out one at a time, round robin, idle workers first.
** Workers get jobs ahead of the one they run only while the queue is long
** (up to PIPELINE): then they never wait a round trip for work, and with a
** short queue every job goes to a worker that is free. A job sent ahead
** counts as running: it can no longer be cancelled. */
static void dispatch_all(sk_ppool *p) {
  size_t depth = 1, backlog = 2 * (size_t)p->size;
  if (p->queued > backlog) depth = 1 + p->queued / backlog;
  if (depth > PIPELINE) depth = PIPELINE;
  for (int moved = 1; moved && p->head;) {
    moved = 0;
    for (int i = 0; i < p->size && p->head; i++) {
      pworker *pw = &p->workers[i];
      if (!pw->running || pw->quitting || (size_t)pw->njobs >= depth) continue;
      if (p->max_tasks && pw->ntasks + pw->njobs >= p->max_tasks) continue;
      moved |= give_one(p, i);
    }
  }
  /* A job for an idle worker goes out at once (it has nothing else to do
  ** while this code goes on); the rest once the running code lets the loop
  ** run (a prepare handle), so a burst of submits costs one write per
  ** worker, not one each. */
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->out.len == 0) continue;
    if (pw->idle_job || pw->flush == NULL) flush_out(pw);
    else uv_prepare_start(pw->flush, on_flush);
  }
}

/* A reply frame from worker pw: [8-byte job id][kind byte][outcome], about
** its oldest job (the worker answers in order; read_frames checked it). */
static void on_reply(sk_ppool *p, pworker *pw, int type, const char *payload, size_t len) {
  pjob *j = pw->job;
  pw->job = j->next;
  if (pw->job == NULL) pw->job_tail = NULL;
  pw->njobs--;
  if (pw->job == NULL) p->busy--;
  arm_timer(p, pw);
  sk_buf out = {0};
  out.data = malloc(len - 9 ? len - 9 : 1);
  if (out.data) {
    memcpy(out.data, payload + 9, len - 9);
    out.len = out.cap = len - 9;
  }
  const char *kind = payload[8] == 't' ? "timeout" : payload[8] == 'm' ? "marshal" : NULL;
  sk_future_finish(j->fut, type == 'R' ? SK_FUT_DONE : SK_FUT_FAILED, out.data ? &out : NULL,
                   out.data ? NULL : "out of memory", kind);
  if (type == 'R') p->done++;
  else p->failed++;
  drop_job(p, j);
  pw->ntasks++;
  if (p->max_tasks && pw->ntasks >= p->max_tasks && !pw->quitting) send_quit(pw);
  dispatch_all(p);
  quit_idle_if_drained(p);
  check_exit(p);
}

/* Restarts every worker that is neither alive nor about to restart (after
** the pool stalled). */
static void revive(sk_ppool *p) {
  p->stalled = 0;
  p->boot_failures = 0;
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (!pw->running && !pw->restart_pending) replace_worker(p, i, 0);
  }
}

/* Worker pw said it is ready ('O'). */
static void on_ready(sk_ppool *p, pworker *pw) {
  pw->ready = 1;
  p->nready++;
  p->boot_failures = p->init_failures = 0;
  if (p->stalled) revive(p);
  arm_timer(p, pw);
}

/* What is wrong with the frame at h (avail bytes in so far, at least the
** 5 of its header): 0 when nothing yet. Checked before its payload is in,
** so that a bogus length is never waited for: the type and, once in, the
** job id must be what this worker may send now. */
static int frame_bad(sk_ppool *p, pworker *pw, const uint8_t *h, size_t avail) {
  size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
  pjob *j = pw->job;
  switch (h[4]) {
    case 'C':
      return 0;
    case 'O':
      return pw->ready || len != 0;
    case 'E':
      return pw->ready;
    case 'S':
      if (len != 8 || !pw->ready || p->retries == 0 || j == NULL || j->started) return 1;
      return avail >= 13 && memcmp(h + 5, j->code.data, 8) != 0;
    case 'R':
    case 'F':
      if (len < 9 || !job_started(p, pw, j)) return 1;
      if (avail >= 13 && memcmp(h + 5, j->code.data, 8) != 0) return 1;
      return avail >= 14 && h[13] != 't' && h[13] != 'm' && h[13] != '-';
    default:
      return 1;
  }
}

/* Kills a worker for a malformed frame: what follows on its socket cannot
** be framed. Its exit fails (or re-runs) its job and replaces it. */
static void malformed(pworker *pw, const uint8_t *h) {
  size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
  snprintf(pw->bad, sizeof pw->bad, "a malformed frame (type 0x%02x, %zu bytes)", h[4], len);
  close_pipe(pw);
  pw->in.len = 0;
  if (pw->running && pw->proc) uv_process_kill(pw->proc, SIGKILL);
}

/* Handles the complete frames read from worker pw. */
static void read_frames(sk_ppool *p, pworker *pw) {
  size_t off = 0, used, plen;
  int type;
  const char *payload;
  while (pw->pipe && pw->in.len - off >= 5) {
    const uint8_t *h = (const uint8_t *)pw->in.data + off;
    if (frame_bad(p, pw, h, pw->in.len - off)) {
      malformed(pw, h);
      return;
    }
    used = sk_frame_parse(pw->in.data + off, pw->in.len - off, &type, &payload, &plen);
    if (used == 0) break;
    off += used;
    switch (type) {
      case 'C':
        if (pw->conn) sk_conn_request(pw->conn, payload, plen);
        break;
      case 'O':
        on_ready(p, pw);
        break;
      case 'E':
        pw->init_failed = 1;
        sk_buf_free(&p->init_error);
        p->init_error.data = malloc(plen ? plen : 1);
        if (p->init_error.data) {
          memcpy(p->init_error.data, payload, plen);
          p->init_error.len = p->init_error.cap = plen;
        }
        break;
      case 'S':
        pw->job->started = 1;
        pw->job->attempts++;
        arm_timer(p, pw);
        break;
      default:
        on_reply(p, pw, type, payload, plen);
    }
  }
  if (off) {
    memmove(pw->in.data, pw->in.data + off, pw->in.len - off);
    pw->in.len -= off;
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  pworker *pw = h->data;
  (void)hint;
  if (pw->in.cap - pw->in.len < 65536) {
    size_t cap = pw->in.cap ? pw->in.cap * 2 : 65536;
    while (cap - pw->in.len < 65536) cap *= 2;
    char *d = realloc(pw->in.data, cap);
    if (d == NULL) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
    pw->in.data = d;
    pw->in.cap = cap;
  }
  *buf = uv_buf_init(pw->in.data + pw->in.len, (unsigned)(pw->in.cap - pw->in.len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  pworker *pw = s->data;
  (void)buf;
  if (n < 0) {
    close_pipe(pw);
    return;
  }
  pw->in.len += (size_t)n;
  read_frames(pw->pool, pw);
}

/* Reads what a dead worker left on its socket (its exit may be handled
** before the last reads): a result it sent just before dying counts. */
static void drain_pipe(sk_ppool *p, pworker *pw) {
  uv_os_fd_t fd;
  while (pw->pipe && uv_fileno((uv_handle_t *)pw->pipe, &fd) == 0) {
    uv_buf_t b;
    on_alloc((uv_handle_t *)pw->pipe, 0, &b);
    if (b.base == NULL) return;
    ssize_t n = read(fd, b.base, b.len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    pw->in.len += (size_t)n;
    read_frames(p, pw);
  }
}

/* A worker that died before it was ready: the pool tries again after a
** growing delay, and gives its queue up when no worker is ready and too
** many in a row failed (for good when the initializer fails). */
static void boot_failed(sk_ppool *p, int i) {
  p->boot_failures++;
  if (p->nready == 0 && p->init_failures >= INIT_TRIES) {
    p->broken = 1;
    fail_queued(p);
    for (int k = 0; k < p->size; k++) {   /* the others fail the same way */
      pworker *pw = &p->workers[k];
      if (pw->running && pw->proc) uv_process_kill(pw->proc, SIGKILL);
    }
    stop_restarts(p);
    return;
  }
  if (p->nready == 0 && p->boot_failures >= p->size + BOOT_TRIES) {
    p->stalled = 1;
    fail_queued(p);
    stop_restarts(p);
    return;
  }
  replace_worker(p, i, 0);
}

static void on_restart(uv_timer_t *t) {
  pworker *pw = t->data;
  sk_ppool *p = pw->pool;
  pw->restart_pending = 0;
  p->pending--;
  replace_worker(p, (int)(pw - p->workers), 1);
  dispatch_all(p);
  check_exit(p);
}

/* Starts worker i again, now or (after failures to start, unless `now`)
** after a delay, unless the pool needs no more workers. */
static void replace_worker(sk_ppool *p, int i, int now) {
  pworker *pw = &p->workers[i];
  if (p->broken || p->stalled || p->terminating || (p->closed && p->head == NULL)) return;
  if (p->boot_failures > 0 && !now && !pw->restart_pending) {
    uint64_t ms = BACKOFF_FIRST_MS;
    for (int k = 1; k < p->boot_failures && ms < BACKOFF_MAX_MS; k++) ms *= 2;
    if (ms > BACKOFF_MAX_MS) ms = BACKOFF_MAX_MS;
    if (pw->timer && uv_timer_start(pw->timer, on_restart, ms, 0) == 0) {
      pw->restart_pending = 1;
      p->pending++;
      return;
    }
  }
  if (pw->restart_pending) return;
  p->restarted++;
  int rc = start_worker(p, i);
  if (rc != 0) {
    snprintf(p->boot_msg, sizeof p->boot_msg, "cannot start a worker process: %s", uv_strerror(rc));
    p->boot_pid = 0;
    boot_failed(p, i);
  }
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig) {
  pworker *pw = h->data;
  sk_ppool *p = pw->pool;
  sk_shm_proc_gone(h->pid);
  sk_worker_recheck_waits(p->w);
  int i = (int)(pw - p->workers);
  pw->running = 0;              /* first: the frames drained get it no new job */
  drain_pipe(p, pw);
  p->alive--;
  close_handle(pw->proc);
  pw->proc = NULL;
  close_pipe(pw);
  uv_timer_stop(pw->timer);
  pjob *j = pw->job;
  int started = job_started(p, pw, j);
  int was_ready = pw->ready;
  if (was_ready) p->nready--;
  pw->ready = 0;
  pw->job = pw->job_tail = NULL;
  pw->njobs = 0;
  if (j) p->busy--;
  /* Jobs that never started go back to the queue's head, in order. */
  if (started) {
    requeue_front(p, j->next);
    j->next = NULL;
  } else {
    requeue_front(p, j);
  }
  if (started) {
    char msg[256];
    if (pw->timed_out) {
      snprintf(msg, sizeof msg, "task timed out after %g s (its worker, pid %d, was killed)",
               (double)j->timeout / 1e9, pw->pid);
      sk_future_fail_exit(j->fut, msg, "timeout", pw->pid, status, sig);
      p->failed++;
      drop_job(p, j);
    } else if (p->retries > 0 && j->attempts <= p->retries && !p->terminating) {
      requeue_front(p, j);   /* to run again */
    } else {
      if (pw->bad[0]) {
        snprintf(msg, sizeof msg, "the worker process (pid %d) running this task sent %s; it was killed",
                 pw->pid, pw->bad);
      } else if (sig) {
        snprintf(msg, sizeof msg, "the worker process (pid %d) running this task was killed by signal %d",
                 pw->pid, sig);
      } else {
        snprintf(msg, sizeof msg, "the worker process (pid %d) running this task exited with code %d",
                 pw->pid, (int)status);
      }
      sk_future_fail_exit(j->fut, msg, "worker_died", pw->pid, status, sig);
      p->failed++;
      drop_job(p, j);
    }
  }
  pw->timed_out = 0;
  if (p->terminating) cancel_queued(p);   /* what went back to the queue */
  if (was_ready) {
    replace_worker(p, i, 0);
  } else {
    if (pw->init_failed) {
      p->init_failures++;
      snprintf(p->boot_msg, sizeof p->boot_msg, "the pool's initializer failed");
    } else if (pw->bad[0]) {
      snprintf(p->boot_msg, sizeof p->boot_msg,
               "worker processes fail to start (the last one, pid %d, sent %s)", pw->pid, pw->bad);
    } else if (sig) {
      snprintf(p->boot_msg, sizeof p->boot_msg,
               "worker processes fail to start (the last one, pid %d, was killed by signal %d)",
               pw->pid, sig);
    } else {
      snprintf(p->boot_msg, sizeof p->boot_msg,
               "worker processes fail to start (the last one, pid %d, exited with code %d)",
               pw->pid, (int)status);
    }
    p->boot_pid = pw->pid;
    p->boot_status = status;
    p->boot_sig = sig;
    boot_failed(p, i);
  }
  if (p->broken || p->stalled) fail_queued(p);
  dispatch_all(p);
  check_exit(p);
}

/* Starts (or restarts) worker process i and sends it the 'I' frame; 0 or
** a libuv error. */
static int start_worker(sk_ppool *p, int i) {
  pworker *pw = &p->workers[i];
  uv_process_t *proc = malloc(sizeof *proc);
  uv_pipe_t *pipe = malloc(sizeof *pipe);
  if (proc == NULL || pipe == NULL) {
    free(proc);
    free(pipe);
    return UV_ENOMEM;
  }
  pw->in.len = 0;
  pw->ntasks = 0;
  pw->quitting = 0;
  pw->init_failed = 0;
  pw->bad[0] = 0;
  char name[96];
  snprintf(name, sizeof name, "%s-%d", p->name, i);
  int rc = sk_spawn_worker(p->w->sched.loop, proc, pipe, i, name, "pool", on_exit_cb);
  if (rc != 0) {   /* proc is released */
    free(pipe);
    return rc;
  }
  proc->data = pipe->data = pw;
  pw->proc = proc;
  pw->pipe = pipe;
  pw->pid = proc->pid;
  pw->running = 1;
  p->alive++;
  p->open_handles += 2;
  pw->conn = sk_conn_new(p->w, pipe);
  uv_read_start((uv_stream_t *)pipe, on_alloc, on_read);
  sk_send_frame(pipe, 'I', p->init.data, p->init.len);
  return 0;
}

/* ------------------------------------------------------------ Lua side */

static sk_ppool *check_ppool(lua_State *L, int idx) {
  sk_ppool **u = luaL_checkudata(L, idx, PPOOL_MT);
  if (*u == NULL) sk_error_raise(L, "closed", "cannot use a process pool after it was closed");
  return *u;
}

/* Pushes the error a broken pool raises at submit: its initializer's. */
static int raise_broken(lua_State *L, sk_ppool *p) {
  const sk_buf *b = &p->init_error;
  int top = lua_gettop(L);
  if (b->len == 0 ||
      sk_marshal_decode(L, b->data, b->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS) != 3) {
    lua_settop(L, top);
    return sk_error_raise(L, "remote", "the pool is broken: its initializer failed");
  }
  sk_error_push(L, "remote", "the pool's initializer failed: %s", lua_tostring(L, top + 1));
  lua_pushvalue(L, top + 3);
  lua_setfield(L, -2, "value");
  lua_pushvalue(L, top + 2);
  lua_setfield(L, -2, "traceback");
  return lua_error(L);
}

/* skein._processpool(size, max_tasks, retries, name, init_fn, init_args...) */
static int l_ppool_new(lua_State *L) {
  sk_worker *w = sk_worker_of(L);
  lua_Integer size = luaL_checkinteger(L, 1);
  lua_Integer max_tasks = luaL_optinteger(L, 2, 0);
  lua_Integer retries = luaL_optinteger(L, 3, 0);
  const char *name = luaL_optstring(L, 4, "process-pool");
  luaL_argcheck(L, size >= 1 && size <= 1024, 1, "size must be between 1 and 1024");
  luaL_argcheck(L, retries >= 0 && retries <= INT_MAX, 3, "retries must not be negative");
  luaL_argcheck(L, max_tasks >= 0 && max_tasks <= INT_MAX, 2, "max_tasks must not be negative");
  char exe[4096], why[512];
  if (sk_worker_exe(exe, sizeof exe, why, sizeof why) != 0) return sk_spawn_error(L, UV_ENOENT, why);
  sk_buf init = {0};
  if (!lua_isnoneornil(L, 5) && sk_marshal_encode_xproc(L, 5, lua_gettop(L) - 4, &init, "init") != 0) {
    return lua_error(L);
  }
  sk_frame_refuse(L, &init, 1, "init");
  /* The 'I' frame: a flags byte, then the initializer (if any). */
  sk_ppool *p = calloc(1, sizeof *p);
  char *frame = malloc(init.len + 1);
  if (p) {
    p->workers = calloc((size_t)size, sizeof *p->workers);
    p->name = strdup(name);
  }
  if (p == NULL || frame == NULL || p->workers == NULL || p->name == NULL) {
    sk_buf_free(&init);
    free(frame);
    if (p) {
      free(p->workers);
      free(p->name);
      free(p);
    }
    return sk_error_raise(L, "memory", "not enough memory for a pool");
  }
  frame[0] = retries > 0 ? SK_POOL_STARTS : 0;
  if (init.len) memcpy(frame + 1, init.data, init.len);
  p->init = init;              /* keeps the objects the initializer mentions */
  free(p->init.data);
  p->init.data = frame;
  p->init.len = p->init.cap = init.len + 1;
  sk_ppool **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = p;
  luaL_setmetatable(L, PPOOL_MT);
  p->has_handle = 1;
  p->w = w;
  p->size = (int)size;
  p->max_tasks = (int)max_tasks;
  p->retries = (int)retries;
  sk_watchlist_init(&p->exit_watchers);
  p->next = w->ppools;
  w->ppools = p;
  int rc = 0;
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    pw->pool = p;
    pw->timer = malloc(sizeof *pw->timer);
    if (pw->timer) {
      uv_timer_init(w->sched.loop, pw->timer);
      pw->timer->data = pw;
      p->open_handles++;
    }
    pw->flush = malloc(sizeof *pw->flush);
    if (pw->flush) {
      uv_prepare_init(w->sched.loop, pw->flush);
      pw->flush->data = pw;
      p->open_handles++;
    }
    int e = start_worker(p, i);
    if (e != 0) {   /* tried again later, unless none started */
      rc = e;
      snprintf(p->boot_msg, sizeof p->boot_msg, "cannot start a worker process: %s", uv_strerror(e));
      p->boot_failures++;
      replace_worker(p, i, 0);
    }
  }
  if (p->alive == 0) {
    stop_restarts(p);
    return sk_spawn_error(L, rc, NULL);
  }
  return 1;
}

/* pool:_submit(timeout, fn, ...) -> future */
static int l_ppool_submit(lua_State *L) {
  sk_ppool *p = check_ppool(L, 1);
  double t = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, t >= 0 && t == t, 2, "timeout must be a non-negative number");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (p->closed || p->terminating) return sk_error_raise(L, "closed", "the pool is closed: no more submits");
  if (p->broken) return raise_broken(L, p);
  sk_buf code;
  if (sk_marshal_encode_xproc(L, 3, lua_gettop(L) - 2, &code, "fn+args") != 0) return lua_error(L);
  sk_frame_refuse(L, &code, 8, "fn+args");
  pjob *j = calloc(1, sizeof *j);
  char *framed = malloc(code.len + 8);
  sk_future *f = j && framed ? sk_future_new() : NULL;
  if (f == NULL) {
    free(j);
    free(framed);
    sk_buf_free(&code);
    return sk_error_raise(L, "memory", "not enough memory for a job");
  }
  uint64_t id = ++p->next_job;
  memcpy(framed, &id, 8);
  memcpy(framed + 8, code.data, code.len);
  j->code.data = framed;
  j->code.len = j->code.cap = code.len + 8;
  j->code.objs = code.objs;       /* the job keeps the objects it mentions */
  j->code.nobjs = code.nobjs;
  j->code.capobjs = code.capobjs;
  free(code.data);
  j->fut = f;
  j->timeout = t > 0 ? (uint64_t)(t * 1e9) : 0;
  sk_obj_retain(&f->obj);
  if (p->tail) p->tail->next = j;
  else p->head = j;
  p->tail = j;
  p->queued++;
  p->submitted++;
  p->w->live++;                 /* until drop_job: the script waits for it */
  sk_future_push(L, &f->obj);
  if (p->stalled) revive(p);   /* no worker could start: try again */
  dispatch_all(p);
  return 1;
}

static int l_ppool_close(lua_State *L) {
  sk_ppool *p = check_ppool(L, 1);
  p->closed = 1;
  /* Idle workers are told to quit now; busy ones after their job. */
  if (p->head == NULL) {
    for (int i = 0; i < p->size; i++) {
      pworker *pw = &p->workers[i];
      if (pw->running && pw->job == NULL && !pw->quitting) send_quit(pw);
    }
  }
  check_exit(p);
  return 0;
}

/* Tells idle workers to quit once the queue has drained after a close. */
static void quit_idle_if_drained(sk_ppool *p) {
  if (!p->closed || p->head) return;
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->running && pw->job == NULL && !pw->quitting) send_quit(pw);
  }
}

static void terminate(sk_ppool *p) {
  p->closed = p->terminating = 1;
  cancel_queued(p);
  stop_restarts(p);
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->proc && pw->running) uv_process_kill(pw->proc, SIGKILL);
  }
}

static int l_ppool_terminate(lua_State *L) {
  terminate(check_ppool(L, 1));
  return 0;
}

/* A closed process pool as a wait source: ready when every worker has
** exited and no start is pending. */
static int join_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_ppool *p = obj;
  (void)round;
  quit_idle_if_drained(p);
  if (p->alive == 0 && p->pending == 0) return 0;
  if (expired) return sk_error_raise(L, "timeout", "pool join timed out");
  return SK_WAIT_MORE;
}

static int join_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_link_watch(&((sk_ppool *)obj)->exit_watchers, c);
}

static const sk_source join_source = {
    .name = PPOOL_MT, .attempt = join_attempt, .link = join_link, .unlink = sk_unlink_watch};

static int l_ppool_join(lua_State *L) {
  sk_ppool *p = check_ppool(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  if (!p->closed) return sk_error_raise(L, "usage", "call pool:close() or pool:terminate() before pool:join()");
  lua_settop(L, 1);
  return sk_wait_on(L, &join_source, p, d, 0);
}

static int l_ppool_stats(lua_State *L) {
  sk_ppool *p = check_ppool(L, 1);
  lua_createtable(L, 0, 9);
  lua_Integer v[] = {p->size, p->busy, (lua_Integer)p->queued, (lua_Integer)p->done,
                     (lua_Integer)p->failed, (lua_Integer)p->restarted,
                     (lua_Integer)p->submitted, p->alive};
  const char *k[] = {"size", "busy", "queued", "done", "failed", "restarted", "submitted", "alive"};
  for (int i = 0; i < 8; i++) {
    lua_pushinteger(L, v[i]);
    lua_setfield(L, -2, k[i]);
  }
  lua_pushboolean(L, p->closed);
  lua_setfield(L, -2, "closed");
  lua_createtable(L, p->size, 0);
  for (int i = 0; i < p->size; i++) {
    lua_pushinteger(L, p->workers[i].running ? p->workers[i].pid : 0);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "pids");
  return 1;
}

/* Unlinks from the owner's list (a no-op when not in it). */
static void unlink_pool(sk_ppool *p) {
  for (sk_ppool **q = &p->w->ppools; *q; q = &(*q)->next) {
    if (*q == p) {
      *q = p->next;
      break;
    }
  }
}

/* Closes every libuv handle of the pool (its processes are gone). */
static void close_all(sk_ppool *p) {
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->proc) {
      int pid = pw->pid;
      uv_process_kill(pw->proc, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
      close_handle(pw->proc);
      pw->proc = NULL;
      pw->running = 0;
    }
    close_pipe(pw);
    if (pw->timer) {
      close_handle(pw->timer);
      pw->timer = NULL;
    }
    if (pw->flush) {
      close_handle(pw->flush);
      pw->flush = NULL;
    }
    while (pw->job) {
      pjob *j = pw->job;
      pw->job = j->next;
      sk_future_finish(j->fut, SK_FUT_FAILED, NULL, "the pool's owner closed", "cancelled");
      drop_job(p, j);
    }
    pw->job_tail = NULL;
    pw->njobs = 0;
  }
  p->alive = 0;
}

/* __gc: a pool dropped mid-run is closed (its workers finish the queue,
** which the owner waits for as live work, and quit); at the owner's close
** every worker is killed and reaped. */
static int l_ppool_gc(lua_State *L) {
  sk_ppool **u = luaL_checkudata(L, 1, PPOOL_MT);
  sk_ppool *p = *u;
  if (p == NULL) return 0;
  *u = NULL;
  p->has_handle = 0;
  if (p->w->closing) {
    terminate(p);
    close_all(p);
    unlink_pool(p);
  } else {
    p->closed = 1;
    quit_idle_if_drained(p);
    check_exit(p);
  }
  pool_free_if_unused(p);
  return 0;
}

void sk_ppool_kill_all(sk_worker *w) {
  while (w->ppools) {
    sk_ppool *p = w->ppools;
    w->ppools = p->next;
    terminate(p);
    close_all(p);
  }
}

void sk_ppool_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"_submit", l_ppool_submit}, {"close", l_ppool_close}, {"terminate", l_ppool_terminate},
      {"join", l_ppool_join},      {"stats", l_ppool_stats}, {NULL, NULL}};
  static const sk_type type = {.name = PPOOL_MT, .methods = methods, .gc = l_ppool_gc};
  sk_type_register(L, &type);
  lua_pushcfunction(L, l_ppool_new);
  lua_setfield(L, -2, "_processpool");
}
