/*
** proc_child.c — the child's side of a worker process: its start (dying
** with its parent, the start frame, the shared segment), the reader of its
** socket, and the job loops of a one-job process and of a pool worker.
**
** The socket to the parent is fd 3 (its end of a socketpair). Frames
** (runtime/core/sk_frame.h) are read through one sk_frame_reader: one
** read brings in every job the parent sent ahead. Frames that arrive while
** an RPC waits for its answer (rpc_engine.c) are set
** aside here and handed to the job loop first.
**
** Every frame the child writes goes out through one writer (sk_child_write
** and the held replies below), under one mutex: the frames of the job
** loop, of an RPC call and of the flusher thread never interleave.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sk_proc.h"
#include "sk_rpc.h"
#include "sk_task.h"

static void ignore_signal(int sig) { (void)sig; }

int sk_process_child_setup(void) {
  struct sigaction sa;
  const char *pp = getenv("SKEIN_PARENT_PID");
#ifdef PR_SET_PDEATHSIG
  prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
  /* The parent may have died before the line above took effect. */
  if (pp && (long)getppid() != atol(pp)) return -1;
  signal(SIGPIPE, SIG_IGN);
  /* Ctrl-C at a terminal reaches the whole process group. The parent
  ** decides what an interrupt means (its script may catch it and clean up
  ** with its workers still there); it stops its workers itself, and they
  ** die with it. A handler that does nothing, not SIG_IGN, so that programs
  ** a worker starts get the default action back at exec. */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = ignore_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  return 0;
}

/* ------------------------------------------------------------ reader */

typedef struct deferred {
  struct deferred *next;
  int type;
  size_t len;
  char data[];
} deferred;

static int child_fd = -1;
static sk_frame_reader child_rb;
static deferred *deferred_head, *deferred_tail, *deferred_current;

/* A frame the parent may send at all (its state is the job loop's to
** check). */
static int child_check(void *ud, const uint8_t *head, size_t avail) {
  (void)ud;
  (void)avail;
  return !sk_frame_type_ok(head, SK_FRAME_TO_CHILD);
}

int sk_child_read_nb(int *type, const char **payload, size_t *plen, int nonblock) {
  for (;;) {
    sk_frame f;
    int rc = sk_frame_next(&child_rb, child_check, NULL, &f);
    if (rc == SK_FRAME_BAD) return -2;
    if (rc == SK_FRAME_OK) {
      *type = f.type;
      *payload = f.payload;
      *plen = f.len;
      return 0;
    }
    size_t room;
    char *to = sk_frame_space(&child_rb, 65536, &room);
    if (to == NULL) return -1;
    ssize_t n = recv(child_fd, to, room, nonblock ? MSG_DONTWAIT : 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (nonblock) return 1;
      /* The socket is non-blocking (libuv watches it for rpc_engine.c): wait. */
      struct pollfd pfd = {child_fd, POLLIN, 0};
      poll(&pfd, 1, -1);
      continue;
    }
    if (n <= 0) return -1;
    sk_frame_fill(&child_rb, (size_t)n);
  }
}

int sk_child_read(int *type, const char **payload, size_t *plen) {
  return sk_child_read_nb(type, payload, plen, 0);
}

int sk_child_defer(int type, const char *payload, size_t len) {
  deferred *d = malloc(sizeof *d + len);
  if (d == NULL) return -1;
  d->next = NULL;
  d->type = type;
  d->len = len;
  memcpy(d->data, payload, len);
  if (deferred_tail) deferred_tail->next = d;
  else deferred_head = d;
  deferred_tail = d;
  return 0;
}

/* The next frame for the job loop: a deferred one first. */
static int next_frame(int *type, const char **payload, size_t *plen) {
  /* The wait for the next frame may be long, or the last: the trace gets
  ** what this worker recorded first. */
  if (SK_TRACING()) sk_trace_idle(1);
  free(deferred_current);
  deferred_current = NULL;
  if (deferred_head) {
    deferred *d = deferred_head;
    deferred_head = d->next;
    if (deferred_head == NULL) deferred_tail = NULL;
    deferred_current = d;
    *type = d->type;
    *payload = d->data;
    *plen = d->len;
    return 0;
  }
  return sk_child_read(type, payload, plen);
}

/* ------------------------------------------------------------ writer
**
** A pool worker holds the replies of jobs that were sent ahead: while the
** next job is already in (in the read buffer, or deferred), a reply joins
** the held ones instead of costing a system call of its own, and the
** held replies go out in one write when no whole job is left to run. What
** keeps a held reply from waiting on the jobs after it:
**
**  - the worker writes everything held before it reads (blocks) for more,
**    and before any other frame ('S', 'O', 'E', an RPC call's 'C': a call
**    waits for the parent, which may wait for a held result);
**  - a job sent with SK_JOB_PROMPT (a task with a timeout, whose clock runs
**    in the parent from the reply before it) runs with nothing held and is
**    answered at once;
**  - the flusher thread writes what a running job has held for HOLD_NS (a
**    long job, a job blocked in C or waiting on another process): a reply
**    is late by at most that, whatever the job after it does;
**  - the worker's exit (os.exit in a job) and the faults a process dies of
**    (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, unless a handler is already
**    there, as a sanitizer's) write what is held first, so a finished job
**    is not lost with the one that killed its worker. Only a kill no
**    process can catch (SIGKILL from outside) within HOLD_NS of the next
**    job's start loses the held replies; their jobs then count as the
**    worker's running one when it dies.
**
** Ownership: held.data is the writer's, under held.mu; the flusher thread
** is started once (pool mode) and lives as long as the process. */

#define HOLD_NS 1000000ull
/* The flusher keeps watching (waking every HOLD_NS) this long after the
** last hold it saw, so that a stream of jobs does not wake it for each
** batch; then it sleeps until a job runs with replies held again. */
#define WATCH_NS 50000000ull

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;            /* wakes the flusher: a hold to watch, or quit */
  char *data;
  size_t len, cap;
  uint64_t since;               /* when the oldest held reply was added */
  int armed;                    /* the flusher watches the current hold */
  int sleeping;                 /* the flusher waits for armed */
  int thread;                   /* the flusher runs: holding is allowed */
  int quit;
} held = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0, 0, 0, 0};

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Writes buf[0..n) whole (the socket is non-blocking: waits for room).
** Async-signal-safe. 0, or -1 when the parent is gone. */
static int write_all(const char *buf, size_t n) {
  while (n > 0) {
    ssize_t k = send(child_fd, buf, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {child_fd, POLLOUT, 0};
      poll(&pfd, 1, -1);
      continue;
    }
    if (k <= 0) return -1;
    buf += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Appends a frame to the held bytes; -1 when out of memory or too big.
** Under held.mu. The length is set last: what a fault handler writes is
** whole frames. */
static int held_add(int type, const void *pre, size_t plen, const void *data, size_t len) {
  if (plen > SK_FRAME_MAX || len > SK_FRAME_MAX - plen) return -1;
  size_t need = held.len + SK_FRAME_HEAD + plen + len;
  if (need > held.cap) {
    size_t cap = held.cap ? held.cap * 2 : 4096;
    while (cap < need) cap *= 2;
    char *d = realloc(held.data, cap);
    if (d == NULL) return -1;
    held.data = d;
    held.cap = cap;
  }
  char *h = held.data + held.len;
  sk_frame_head((uint8_t *)h, type, plen + len);
  if (plen) memcpy(h + SK_FRAME_HEAD, pre, plen);
  if (len) memcpy(h + SK_FRAME_HEAD + plen, data, len);
  if (held.len == 0) held.since = mono_ns();
  held.len = need;
  return 0;
}

/* Writes what is held. Under held.mu. */
static int held_flush(void) {
  int rc = held.len ? write_all(held.data, held.len) : 0;
  held.len = 0;
  return rc;
}

/* Writes the held replies, then a frame of `type` (payload pre, then
** data), in one write when they fit the buffer. 0 or -1 (the parent is
** gone, or out of memory). */
static int child_write(int type, const void *pre, size_t plen, const void *data, size_t len) {
  pthread_mutex_lock(&held.mu);
  int rc;
  if (held_add(type, pre, plen, data, len) == 0) {
    rc = held_flush();
  } else {
    rc = held_flush();
    if (rc == 0) rc = sk_frame_write2(child_fd, type, pre, plen, data, len);
  }
  pthread_mutex_unlock(&held.mu);
  return rc;
}

int sk_child_write(int type, const void *pre, size_t plen, const void *data, size_t len) {
  return child_write(type, pre, plen, data, len);
}

/* A reply of the job loop: held while `more` (the next job is in and the
** flusher runs), else written with what was held. */
static int child_reply(int more, int type, const void *pre, size_t plen, const void *data,
                       size_t len) {
  if (!more || !held.thread) return child_write(type, pre, plen, data, len);
  pthread_mutex_lock(&held.mu);
  int rc = held_add(type, pre, plen, data, len);
  pthread_mutex_unlock(&held.mu);
  return rc == 0 ? 0 : child_write(type, pre, plen, data, len);
}

/* Before a job runs: with `prompt` what is held goes out now; otherwise
** the flusher watches it. */
static int before_job(int prompt) {
  int rc = 0;
  pthread_mutex_lock(&held.mu);
  if (held.len && prompt) {
    rc = held_flush();
  } else if (held.len && !held.armed) {
    held.armed = 1;
    if (held.sleeping) pthread_cond_signal(&held.cv);
  }
  pthread_mutex_unlock(&held.mu);
  return rc;
}

static int child_flush(void) {
  pthread_mutex_lock(&held.mu);
  int rc = held_flush();
  pthread_mutex_unlock(&held.mu);
  return rc;
}

/* The flusher: sleeps until a job runs with replies held, then writes them
** once they were held HOLD_NS. A failed write is the parent gone: the job
** loop finds that out itself. */
static void *flusher_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&held.mu);
  while (!held.quit) {
    if (!held.armed) {
      held.sleeping = 1;
      pthread_cond_wait(&held.cv, &held.mu);
      held.sleeping = 0;
      continue;
    }
    uint64_t now = mono_ns(), due = held.since + HOLD_NS;
    if (held.len == 0) {
      if (now - held.since >= WATCH_NS) {
        held.armed = 0;
        continue;
      }
      due = now + HOLD_NS;      /* a hold that begins meanwhile is due no earlier */
    }
    if (now < due) {
      struct timespec ts = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
      pthread_cond_timedwait(&held.cv, &held.mu, &ts);
      continue;
    }
    held_flush();
    held.armed = 0;
  }
  pthread_mutex_unlock(&held.mu);
  return NULL;
}

/* At exit (os.exit in a job): what is held goes first. */
static void flush_at_exit(void) { child_flush(); }

static const int fault_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

/* A fault: writes what is held (unless the writer is mid-write, which
** then finishes it), then dies of the signal as it would have. */
static void on_fault(int sig) {
  int saved = errno;
  if (pthread_mutex_trylock(&held.mu) == 0) {
    if (held.len) write_all(held.data, held.len);
    held.len = 0;
    pthread_mutex_unlock(&held.mu);
  }
  signal(sig, SIG_DFL);
  raise(sig);                   /* delivered as this handler returns */
  errno = saved;
}

/* Starts the flusher (holding replies needs it) and the exit and fault
** hooks; without them every reply is written at once. */
static void start_flusher(void) {
  pthread_condattr_t ca;
  pthread_attr_t ta;
  pthread_t t;
  if (pthread_condattr_init(&ca) != 0) return;
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_destroy(&held.cv);
  int ok = pthread_cond_init(&held.cv, &ca) == 0;
  pthread_condattr_destroy(&ca);
  if (!ok || pthread_attr_init(&ta) != 0) return;
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&ta, 64 * 1024);
  /* The thread takes no signal meant for the process. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  ok = pthread_create(&t, &ta, flusher_main, NULL) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&ta);
  if (!ok || atexit(flush_at_exit) != 0) return;
  for (size_t i = 0; i < sizeof fault_signals / sizeof *fault_signals; i++) {
    struct sigaction sa, prev;
    if (sigaction(fault_signals[i], NULL, &prev) != 0 || prev.sa_handler != SIG_DFL ||
        (prev.sa_flags & SA_SIGINFO)) {
      continue;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(fault_signals[i], &sa, NULL);
  }
  held.thread = 1;
}

/* Stops the flusher after a last write of what is held. */
static void stop_flusher(void) {
  pthread_mutex_lock(&held.mu);
  held_flush();
  held.quit = 1;
  held.thread = 0;
  pthread_cond_signal(&held.cv);
  pthread_mutex_unlock(&held.mu);
}

/* Whether a whole frame is in (deferred, or in the read buffer): the job
** loop will not block for it. */
static int frame_in(void) {
  if (deferred_head) return 1;
  size_t in = child_rb.len - child_rb.off;
  if (in < SK_FRAME_HEAD) return 0;
  return in - SK_FRAME_HEAD >= sk_frame_len((const uint8_t *)child_rb.data + child_rb.off);
}

/* ---------------------------------------------------------- job loops */

/* Runs one marshalled call and sends its reply frame, prefixed by `prefix`
** (a pool's job id; NULL for a single process); with `only_failure`, a
** call that succeeded sends nothing (an initializer). Returns 0, 1 when the
** call failed, -1 when the worker itself broke. */
static int run_and_reply(sk_worker *w, const char *code, size_t len, const char *prefix,
                         size_t plen, int only_failure) {
  sk_buf out = {0}, refs;
  const char *kind;
  sk_marshal_parent_refs_forget();
  int rc = sk_run_call(w, code, len, &out, &kind);
  if (rc < 0) {
    const char *msg = lua_tostring(w->L, -1);
    fprintf(stderr, "skein: worker process failed: %s\n", msg ? msg : "?");
    lua_settop(w->L, 0);
    return -1;
  }
  int reply = rc != 0 || !only_failure;
  /* A pool's reply is held while the next job is in, unless this one is
  ** prompt; the 'X' frame of the references its objects hold for the
  ** parent goes just before it, held or written the same way. */
  int hold = 0;
  if (reply && prefix) {
    uint64_t id;
    memcpy(&id, prefix, 8);
    hold = !(id & SK_JOB_PROMPT) && frame_in();
  }
  if (reply && sk_marshal_parent_refs(&refs)) {
    child_reply(hold, 'X', NULL, 0, refs.data, refs.len);
    sk_buf_free(&refs);
  }
  if (reply && prefix) {
    char pre[16];
    if (plen > sizeof pre - 1) plen = sizeof pre - 1;
    memcpy(pre, prefix, plen);
    pre[plen] = kind && strcmp(kind, "timeout") == 0 ? 't' : (kind && strcmp(kind, "marshal") == 0 ? 'm' : '-');
    child_reply(hold, rc ? 'F' : 'R', pre, plen + 1, out.data, out.len);
  } else if (reply) {
    child_write(rc ? 'F' : 'R', NULL, 0, out.data, out.len);
  }
  sk_buf_free(&out);
  return rc;
}

/* Runs a copy of a payload: RPCs the call makes read (and defer) frames,
** which moves the read buffer. */
static int run_copy(sk_worker *w, const char *payload, size_t plen, size_t prefix,
                    int only_failure) {
  char *copy = malloc(plen ? plen : 1);
  if (copy == NULL) return -1;
  memcpy(copy, payload, plen);
  int rc = run_and_reply(w, copy + prefix, plen - prefix, prefix ? copy : NULL, prefix,
                         only_failure);
  free(copy);
  return rc;
}

/* The next frame for a pool worker. While its loop has work of its own
** (tasks its initializer started: a timer, a socket, a wait on another
** worker) it waits for the frame in that loop, so that work goes on
** between jobs: the RPC engine's watch on the socket sets aside the frames
** it reads, and the deferred list is where they come from. Otherwise it
** blocks on the socket alone. */
static int next_job_frame(sk_worker *w, int *type, const char **payload, size_t *plen) {
  while (deferred_head == NULL && !sk_rpc_eof() && sk_sched_alive(&w->sched)) {
    sk_rpc_pump();              /* frames already read, or readable now */
    if (deferred_head || sk_rpc_eof()) break;
    sk_rpc_watch(1);
    sk_sched_step(&w->sched, SK_STEP_WAIT);
    sk_rpc_watch(0);
  }
  return next_frame(type, payload, plen);
}

/* A pool worker. The parent first sends 'I': a flags byte (SK_POOL_STARTS:
** announce each job), then the initializer's call, if any. The worker
** answers 'O' once it is ready, or 'E' (the initializer's failure, as an
** 'F' payload) and exits with status 3. Then 'J' frames (8-byte job id,
** then the call), each announced by 'S' + id when asked, until 'Q' or the
** end of the stream. Replies may be held (see the writer above): what is
** held goes out before the loop blocks for the next frame. */
static int pool_loop(sk_worker *w) {
  int type, status = 0, starts = 0, rc;
  const char *tname = NULL;     /* the pool's name in a trace */
  const char *payload;
  size_t plen;
  for (;;) {
    if (!frame_in() && child_flush() != 0) {
      rc = -1;
      break;
    }
    if ((rc = next_job_frame(w, &type, &payload, &plen)) != 0) break;
    if (type == 'Q') break;
    if (type == 'I') {
      if (plen < 1) {
        status = 2;
        break;
      }
      starts = (payload[0] & SK_POOL_STARTS) != 0;
      if (plen > 1) {
        sk_buf out = {0};
        const char *kind;
        char *init = malloc(plen - 1);
        if (init == NULL) {
          status = 1;
          break;
        }
        memcpy(init, payload + 1, plen - 1);
        w->spawn_background = 1;  /* its tasks are the worker's background (tasks.c) */
        int rc = sk_run_call(w, init, plen - 1, &out, &kind);
        w->spawn_background = 0;
        free(init);
        if (rc != 0) {
          /* The parent reports it (to every task, once it gives up). */
          if (rc > 0) child_write('E', NULL, 0, out.data, out.len);
          sk_buf_free(&out);
          lua_settop(w->L, 0);
          status = 3;
          break;
        }
        sk_buf_free(&out);
      }
      if (child_write('O', NULL, 0, NULL, 0) != 0) {
        status = 1;
        break;
      }
      continue;
    }
    if (type != 'J' || plen < 8) {
      status = 2;
      break;
    }
    uint64_t t0 = SK_TRACING() ? sk_trace_now() : 0, id;
    memcpy(&id, payload, 8);    /* the parent's job id: the flow's */
    /* A start announced goes out with what is held, before the job runs. */
    int sent = starts ? child_write('S', NULL, 0, payload, 8)
                      : before_job((id & SK_JOB_PROMPT) != 0);
    if (sent != 0) {
      status = 1;
      break;
    }
    int jr = run_copy(w, payload, plen, 8, 0);
    if (t0 && SK_TRACING()) {
      if (tname == NULL) tname = sk_trace_intern(w->self_name ? w->self_name : "pool");
      sk_trace_job(tname, sk_trace_flow((long)getppid(), id), t0, 0, jr != 0);
    }
    if (jr < 0) {
      status = 1;
      break;
    }
  }
  if (rc == -2) status = 2;     /* a frame the parent may not send */
  return status;
}

/* The start of a worker process, before any user code: its socket and the
** segment become close-on-exec (programs the worker runs inherit neither),
** the parent's first frame ('K': the marshal key, then the process slot
** reserved for this child, int32 little-endian; -1 for none) is read, the
** segment is attached with that slot, and the variables the parent set
** leave the environment. -1 when the worker must not run. */
static int child_start(int fd) {
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  child_fd = fd;
  int type;
  const char *k;
  size_t klen;
  if (sk_child_read(&type, &k, &klen) != 0 || type != 'K') {
    fprintf(stderr, "skein: worker process: bad start frame\n");
    return -1;
  }
  const uint8_t *kb = (const uint8_t *)k;
  sk_marshal_set_key(kb);
  int32_t slot = (int32_t)((uint32_t)kb[16] | (uint32_t)kb[17] << 8 | (uint32_t)kb[18] << 16 |
                           (uint32_t)kb[19] << 24);
  memset((char *)k, 0, klen);
  const char *shm = getenv("SKEIN_SHM_FD");
  if (shm && slot >= 0 && sk_shm_attach_inherited(atoi(shm), slot) != 0) {
    fprintf(stderr, "skein: worker process: cannot attach the shared segment\n");
    return -1;
  }
  unsetenv("SKEIN_SHM_FD");
  unsetenv("SKEIN_PARENT_PID");
  return 0;
}

/* A one-job process: an optional 'I' (skein.process's init option, run
** before the job is read: a failure is the process's outcome, its 'F'
** reply), then one 'J'. Returns the exit status. */
static int once(sk_worker *w) {
  int type;
  const char *payload;
  size_t plen;
  if (next_frame(&type, &payload, &plen) != 0) return 1;
  if (type == 'I' && run_copy(w, payload, plen, 0, 1) != 0) return 1;
  if (type != 'J' && (next_frame(&type, &payload, &plen) != 0 || type != 'J')) return 1;
  return run_copy(w, payload, plen, 0, 0) == 0 ? 0 : 1;
}

int sk_process_child_main(int fd, const char *mode) {
  const char *err;
  if (sk_process_child_setup() != 0) return 1;
  if (child_start(fd) != 0) return 1;
  /* What this worker sends goes to its parent: objects move to the
  ** shared segment (sk_marshal_xproc). */
  sk_marshal_xproc = 1;
  /* The worker is named from the environment, and the names are taken out
  ** of it once its init ran: programs the worker runs are not workers. */
  const char *id = getenv("SKEIN_WORKER_ID"), *name = getenv("SKEIN_WORKER_NAME");
  char pname[160];
  snprintf(pname, sizeof pname, "skein %s worker %s", mode ? mode : "once",
           name ? name : "");
  sk_trace_process_name(pname);
  sk_worker *w = sk_worker_become(SK_WORKER_PROCESS, id ? atoll(id) : 0,
                                  name && *name ? strdup(name) : NULL, NULL, &err);
  unsetenv("SKEIN_WORKER_ID");
  unsetenv("SKEIN_WORKER_NAME");
  if (w == NULL) {
    fprintf(stderr, "skein: worker process: %s\n", err);
    return 1;
  }
  if (err) {
    fprintf(stderr, "skein: worker process: the host's init hook failed: %s\n", err);
    sk_worker_close(w);
    return 1;
  }
  w->results_to_parent = 1;
  sk_worker_parent_linked();
  sk_rpc_attach(w, fd);
  int pool = mode && strcmp(mode, "pool") == 0;
  if (pool) start_flusher();
  int status = pool ? pool_loop(w) : once(w);
  if (pool) stop_flusher();
  sk_task_report_failures(w);
  sk_rpc_detach();
  sk_worker_close(w);
  close(fd);
  sk_frame_reader_free(&child_rb);
  fflush(NULL);
  return status;
}
