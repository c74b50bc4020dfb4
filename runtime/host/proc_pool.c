/*
** proc_pool.c — the process-pool engine (sk_ppool.h): N worker processes (the
** worker executable in pool mode, see proc_child.c) fed marshalled jobs
** over their sockets by the owning worker's loop. Its Lua face is
** lua/ppool.c. It is built to survive what breaks
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

#include "sk_ppool.h"
#include "sk_rpc.h"

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

static int start_worker(sk_ppool *p, int i);
static void replace_worker(sk_ppool *p, int i, int now);
static void quit_idle_if_drained(sk_ppool *p);

static void drop_job(sk_ppool *p, pjob *j);

/* Drops the references an 'X' frame handed over when no reply will take
** them (the worker went, or the pool ends). */
static void drop_xrefs(pworker *pw) {
  if (pw->xrefs.len == 0) {
    sk_buf_free(&pw->xrefs);
    return;
  }
  sk_buf gone = {0};
  sk_marshal_adopt_refs(&gone, pw->xrefs.data, pw->xrefs.len);
  sk_buf_free(&gone);
  sk_buf_free(&pw->xrefs);
}

static void pool_free_if_unused(sk_ppool *p) {
  if (p->has_handle || p->open_handles > 0) return;
  while (p->head) {
    pjob *j = p->head;
    p->head = j->next;
    sk_future_cancel(j->fut);
    drop_job(p, j);
  }
  for (int i = 0; i < p->size; i++) {
    sk_frame_reader_free(&p->workers[i].in);
    sk_buf_free(&p->workers[i].out);
    drop_xrefs(&p->workers[i]);
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
  sk_buf_clear(&j->code);       /* its bytes are the job's own */
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
  drop_xrefs(pw);
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

/* Writes the frames gathered for a worker. What the socket takes at once
** (the usual case) leaves the buffer to the worker for its next frames; a
** rest goes to a queued write (the buffer itself when none went out, else
** a copy), behind which later writes queue in order (sk_write_owned). A
** buffer grown past OUT_KEEP is not kept. On failure the worker is going
** away; its exit fails or requeues the jobs. */
#define OUT_KEEP 65536

static void flush_out(pworker *pw) {
  if (pw->out.len && pw->pipe) {
    uv_buf_t b;                 /* not uv_buf_init, whose length is an unsigned int */
    b.base = pw->out.data;
    b.len = pw->out.len;
    int n = uv_try_write((uv_stream_t *)pw->pipe, &b, 1);
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == 0) {
      sk_write_owned(pw->pipe, pw->out.data, pw->out.len);
      memset(&pw->out, 0, sizeof pw->out);
    } else if (done < pw->out.len) {
      char *rest = malloc(pw->out.len - done);
      if (rest) {
        memcpy(rest, pw->out.data + done, pw->out.len - done);
        sk_write_owned(pw->pipe, rest, pw->out.len - done);
      } else {                  /* the stream cannot go on: the worker goes */
        close_pipe(pw);
        if (pw->running && pw->proc) uv_process_kill(pw->proc, SIGKILL);
      }
    }
    pw->out.len = 0;
  }
  if (pw->out.cap > OUT_KEEP || pw->pipe == NULL) {
    sk_buf_free(&pw->out);
    memset(&pw->out, 0, sizeof pw->out);
  }
  pw->idle_job = 0;
  if (pw->flush) uv_prepare_stop(pw->flush);
}

static void on_flush(uv_prepare_t *h) { flush_out(h->data); }

/* Worker pw's oldest job becomes the one it runs (as far as this side
** knows): its wait in the queue ends. */
static void job_runs(sk_ppool *p, pworker *pw) {
  pw->head_since = uv_hrtime();
  sk_hist_add(&p->qwait, pw->head_since - pw->job->queued_at);
}

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
    size_t need = pw->out.len + SK_FRAME_HEAD + 8 + j->code.len;
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
    char *h = pw->out.data + pw->out.len;
    sk_frame_head((uint8_t *)h, 'J', 8 + j->code.len);   /* at most SK_FRAME_MAX: checked at submit */
    memcpy(h + SK_FRAME_HEAD, &j->id, 8);
    memcpy(h + SK_FRAME_HEAD + 8, j->code.data, j->code.len);
    pw->out.len = need;
    if (pw->job_tail) pw->job_tail->next = j;
    else pw->job = j;
    pw->job_tail = j;
    if (pw->njobs++ == 0) {
      p->busy++;
      job_runs(p, pw);
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

/* Finishes fut with a reply's outcome that mentions objects: the reply
** takes over the references its 'X' frame handed over. */
static void finish_adopting(pworker *pw, sk_future *fut, int type, const char *payload, size_t len,
                            const char *kind) {
  sk_buf out = {0};
  out.data = malloc(len - 9 ? len - 9 : 1);
  if (out.data) {
    memcpy(out.data, payload + 9, len - 9);
    out.len = out.cap = len - 9;
    sk_marshal_adopt_refs(&out, pw->xrefs.data, pw->xrefs.len);
    sk_buf_free(&pw->xrefs);
  } else {
    drop_xrefs(pw);
  }
  sk_future_finish(fut, type == 'R' ? SK_FUT_DONE : SK_FUT_FAILED, out.data ? &out : NULL,
                   out.data ? NULL : "out of memory", kind);
}

/* A reply frame from worker pw: [8-byte job id][kind byte][outcome], about
** its oldest job (the worker answers in order; read_frames checked it).
** The caller then calls after_replies. */
static void on_reply(sk_ppool *p, pworker *pw, int type, const char *payload, size_t len) {
  pjob *j = pw->job;
  pw->job = j->next;
  if (pw->job == NULL) pw->job_tail = NULL;
  pw->njobs--;
  uint64_t now = uv_hrtime();
  pw->busy_ns += now - pw->head_since;
  pw->jobs++;
  if (pw->job == NULL) p->busy--;
  else job_runs(p, pw);
  arm_timer(p, pw);
  const char *kind = payload[8] == 't' ? "timeout" : payload[8] == 'm' ? "marshal" : NULL;
  if (pw->xrefs.len == 0) {
    /* No objects came with it: the future copies the bytes (into itself,
    ** when they are few). */
    sk_buf view = {(char *)payload + 9, len - 9, len - 9, NULL, 0, 0};
    sk_future_finish_copy(j->fut, type != 'R', &view, NULL, kind, 0, 0, 0);
  } else {
    finish_adopting(pw, j->fut, type, payload, len, kind);
  }
  if (type == 'R') p->done++;
  else p->failed++;
  drop_job(p, j);
  if (SK_TRACING() && p->tname) {
    sk_trace_counter(p->tname, "queued", (int64_t)p->queued, "busy", p->busy, 0);
  }
  pw->ntasks++;
  if (p->max_tasks && pw->ntasks >= p->max_tasks && !pw->quitting) send_quit(pw);
}

/* After replies: the freed places take queued jobs, and a closed pool's
** idle workers quit. Once per read, not per reply (a worker answers the
** jobs it had in one write). */
static void after_replies(sk_ppool *p) {
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

/* What a pool worker may send now (the reader asks before the payload is
** in, so a bogus length is never waited for): the type, its length and,
** once in, the job id must fit this worker's state. */
static int frame_check(void *ud, const uint8_t *h, size_t avail) {
  pworker *pw = ud;
  sk_ppool *p = pw->pool;
  size_t len = sk_frame_len(h);
  pjob *j = pw->job;
  const uint8_t *payload = h + SK_FRAME_HEAD;
  if (!sk_frame_type_ok(h, SK_FRAME_TO_PARENT)) return 1;
  switch (h[4]) {
    case 'C':
      return 0;
    case 'O':
      return pw->ready;
    case 'E':
      return pw->ready;
    case 'X':
      return pw->xrefs.len != 0 || !job_started(p, pw, j);
    case 'S':
      if (!pw->ready || p->retries == 0 || j == NULL || j->started) return 1;
      return avail >= 8 && memcmp(payload, &j->id, 8) != 0;
    default:                    /* 'R', 'F': [8-byte job id][kind byte][outcome] */
      if (len < 9 || !job_started(p, pw, j)) return 1;
      if (avail >= 8 && memcmp(payload, &j->id, 8) != 0) return 1;
      return avail >= 9 && payload[8] != 't' && payload[8] != 'm' && payload[8] != '-';
  }
}

/* Kills a worker for a malformed frame: what follows on its socket cannot
** be framed. Its exit fails (or re-runs) its job and replaces it. */
static void malformed(pworker *pw, int type, size_t len) {
  snprintf(pw->bad, sizeof pw->bad, "a malformed frame (type 0x%02x, %zu bytes)", type & 0xff, len);
  close_pipe(pw);
  sk_frame_drop(&pw->in);
  if (pw->running && pw->proc) uv_process_kill(pw->proc, SIGKILL);
}

/* Handles the complete frames read from worker pw. */
static void read_frames(sk_ppool *p, pworker *pw) {
  sk_frame f;
  int rc = SK_FRAME_MORE, replies = 0;
  while (pw->pipe && (rc = sk_frame_next(&pw->in, frame_check, pw, &f)) == SK_FRAME_OK) {
    switch (f.type) {
      case 'C':
        if (pw->conn) sk_conn_request(pw->conn, f.payload, f.len);
        break;
      case 'O':
        on_ready(p, pw);
        break;
      case 'E':
        pw->init_failed = 1;
        sk_buf_free(&p->init_error);
        p->init_error.data = malloc(f.len ? f.len : 1);
        if (p->init_error.data) {
          memcpy(p->init_error.data, f.payload, f.len);
          p->init_error.len = p->init_error.cap = f.len;
        }
        break;
      case 'X':
        pw->xrefs.data = malloc(f.len);
        if (pw->xrefs.data) {
          memcpy(pw->xrefs.data, f.payload, f.len);
          pw->xrefs.len = pw->xrefs.cap = f.len;
        }
        break;
      case 'S':
        pw->job->started = 1;
        pw->job->attempts++;
        arm_timer(p, pw);
        break;
      default:
        on_reply(p, pw, f.type, f.payload, f.len);
        replies++;
    }
  }
  if (pw->pipe && rc == SK_FRAME_BAD) malformed(pw, f.type, f.len);
  if (replies) after_replies(p);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  sk_frame_alloc(&((pworker *)h->data)->in, buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  pworker *pw = s->data;
  (void)buf;
  if (n < 0) {
    close_pipe(pw);
    return;
  }
  sk_frame_fill(&pw->in, (size_t)n);
  read_frames(pw->pool, pw);
}

/* Reads what is waiting on worker pw's socket, without the loop (the
** socket does not block), and handles its frames as on_read would. It
** stops at the end of the bytes, or, when `short_read`, at the first read
** that did not fill its buffer (the socket is then most likely empty: this
** spares a read that would only say so). An end of stream is left to the
** loop's own read, which closes the pipe. */
static void read_now(sk_ppool *p, pworker *pw, int short_read) {
  uv_os_fd_t fd;
  while (pw->pipe && uv_fileno((uv_handle_t *)pw->pipe, &fd) == 0) {
    uv_buf_t b;
    sk_frame_alloc(&pw->in, &b);
    if (b.base == NULL) return;
    ssize_t n = read(fd, b.base, b.len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    sk_frame_fill(&pw->in, (size_t)n);
    read_frames(p, pw);
    if (short_read && (size_t)n < b.len) return;
  }
}

/* Reads what a dead worker left on its socket (its exit may be handled
** before the last reads): a result it sent just before dying counts. */
static void drain_pipe(sk_ppool *p, pworker *pw) { read_now(p, pw, 0); }

/* While a script submits jobs in a row, the loop does not run: the answers
** to the jobs sent ahead wait unread, the places they free take no new
** jobs, and the frames gathered for busy workers stay unsent, so the
** workers would idle until the script first waits. Every PIPELINE submits
** per worker (what the workers can hold ahead: a batch for each) the pump
** does what the loop would, without it: it reads the answers waiting (which
** finishes their futures and hands out the places they free, as on_read
** does), then writes the gathered frames. Everything it calls runs on this
** thread and calls no Lua: it is what the loop's callbacks run, at another
** moment. */
static void pump(sk_ppool *p) {
  p->since_pump = 0;
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->njobs && pw->running) read_now(p, pw, 1);
  }
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->out.len) flush_out(pw);
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

/* Traced: job j failed in the parent (its worker died), with `msg`. */
static void trace_job_failed(pjob *j, const char *msg) {
  if (!SK_TRACING()) return;
  sk_trace_fail("job failed", sk_trace_flow(0, j->id), msg);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig) {
  pworker *pw = h->data;
  sk_ppool *p = pw->pool;
  if (SK_TRACING()) sk_trace_proc(1, h->pid, status, sig);
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
  if (j) {
    p->busy--;
    pw->busy_ns += uv_hrtime() - pw->head_since;
  }
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
      trace_job_failed(j, msg);
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
      trace_job_failed(j, msg);
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
  sk_frame_drop(&pw->in);
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

/* ------------------------------------------------------ the pool's API */

sk_ppool *sk_ppool_new(sk_worker *w, int size, int max_tasks, int retries, const char *name,
                       sk_buf *init, int *rc) {
  /* The 'I' frame: a flags byte, then the initializer (if any). */
  sk_ppool *p = calloc(1, sizeof *p);
  char *frame = malloc(init->len + 1);
  if (p) {
    p->workers = calloc((size_t)size, sizeof *p->workers);
    p->name = strdup(name);
  }
  if (p == NULL || frame == NULL || p->workers == NULL || p->name == NULL) {
    sk_buf_free(init);
    free(frame);
    if (p) {
      free(p->workers);
      free(p->name);
      free(p);
    }
    *rc = UV_ENOMEM;
    return NULL;
  }
  frame[0] = retries > 0 ? SK_POOL_STARTS : 0;
  if (init->len) memcpy(frame + 1, init->data, init->len);
  p->init = *init;              /* keeps the objects the initializer mentions */
  memset(init, 0, sizeof *init);
  free(p->init.data);
  p->init.data = frame;
  p->init.len = p->init.cap = p->init.len + 1;
  p->has_handle = 1;
  p->w = w;
  p->size = size;
  p->max_tasks = max_tasks;
  p->retries = retries;
  sk_watchlist_init(&p->exit_watchers);
  p->next = w->ppools;
  w->ppools = p;
  *rc = 0;
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
      *rc = e;
      snprintf(p->boot_msg, sizeof p->boot_msg, "cannot start a worker process: %s", uv_strerror(e));
      p->boot_failures++;
      replace_worker(p, i, 0);
    }
  }
  if (p->alive == 0) stop_restarts(p);
  else *rc = 0;
  return p;
}

int sk_ppool_submit(sk_ppool *p, sk_buf *code, uint64_t timeout, sk_future **out) {
  size_t len = code->len;
  pjob *j = len <= SIZE_MAX - sizeof *j ? malloc(sizeof *j + len) : NULL;
  sk_future *f = j ? sk_future_new() : NULL;
  if (f == NULL) {
    free(j);
    sk_buf_clear(code);
    return UV_ENOMEM;
  }
  memset(j, 0, sizeof *j);
  memcpy(j->bytes, code->data, len);
  uint64_t t0 = SK_TRACING() ? sk_trace_now() : 0;
  uint64_t id = sk_trace_next_id();   /* unique in the process: a trace's flow id too */
  j->queued_at = uv_hrtime();
  if (timeout) id |= SK_JOB_PROMPT;   /* its clock must not wait on a held reply */
  j->id = id;
  /* The job keeps a copy of the bytes and takes the objects they mention;
  ** the caller keeps the storage (a submit's box serves the next one). */
  j->code = (sk_buf){j->bytes, len, len, code->objs, code->nobjs, code->capobjs};
  code->objs = NULL;
  code->len = code->nobjs = code->capobjs = 0;
  j->fut = f;
  j->timeout = timeout;
  sk_obj_retain(&f->obj);
  if (p->tail) p->tail->next = j;
  else p->head = j;
  p->tail = j;
  p->queued++;
  p->submitted++;
  p->w->live++;                 /* until drop_job: the script waits for it */
  *out = f;
  if (p->stalled) revive(p);   /* no worker could start: try again */
  dispatch_all(p);
  if (++p->since_pump >= PIPELINE * p->size) pump(p);
  if (t0) {
    if (p->tname == NULL) p->tname = sk_trace_intern(p->name);
    sk_trace_submit(p->tname, sk_trace_flow(0, id), t0);
    sk_trace_counter(p->tname, "queued", (int64_t)p->queued, "busy", p->busy, 0);
  }
  return 0;
}

void sk_ppool_close(sk_ppool *p) {
  p->closed = 1;
  /* Idle workers are told to quit now; busy ones after their job. */
  if (p->head == NULL) {
    for (int i = 0; i < p->size; i++) {
      pworker *pw = &p->workers[i];
      if (pw->running && pw->job == NULL && !pw->quitting) send_quit(pw);
    }
  }
  check_exit(p);
}

/* Tells idle workers to quit once the queue has drained after a close. */
static void quit_idle_if_drained(sk_ppool *p) {
  if (!p->closed || p->head) return;
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->running && pw->job == NULL && !pw->quitting) send_quit(pw);
  }
}

void sk_ppool_terminate(sk_ppool *p) {
  p->closed = p->terminating = 1;
  cancel_queued(p);
  stop_restarts(p);
  for (int i = 0; i < p->size; i++) {
    pworker *pw = &p->workers[i];
    if (pw->proc && pw->running) uv_process_kill(pw->proc, SIGKILL);
  }
}

int sk_ppool_exited(sk_ppool *p) {
  quit_idle_if_drained(p);
  return p->alive == 0 && p->pending == 0;
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
      int st = 0, pid = pw->pid;
      uv_process_kill(pw->proc, SIGKILL);
      while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
      if (SK_TRACING()) {
        sk_trace_proc(1, pid, WIFEXITED(st) ? WEXITSTATUS(st) : 0,
                      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
      }
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

void sk_ppool_release(sk_ppool *p) {
  p->has_handle = 0;
  if (p->w->closing) {
    sk_ppool_terminate(p);
    close_all(p);
    unlink_pool(p);
  } else {
    p->closed = 1;
    quit_idle_if_drained(p);
    check_exit(p);
  }
  pool_free_if_unused(p);
}

void sk_ppool_kill_all(sk_worker *w) {
  while (w->ppools) {
    sk_ppool *p = w->ppools;
    w->ppools = p->next;
    sk_ppool_terminate(p);
    close_all(p);
  }
}
