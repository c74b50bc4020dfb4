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
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

/* ---------------------------------------------------------- job loops */

/* Runs one marshalled call and sends its reply frame, prefixed by `prefix`
** (a pool's job id; NULL for a single process); with `only_failure`, a
** call that succeeded sends nothing (an initializer). Returns 0, 1 when the
** call failed, -1 when the worker itself broke. */
static int run_and_reply(sk_worker *w, int fd, const char *code, size_t len, const char *prefix,
                         size_t plen, int only_failure) {
  sk_buf out, refs;
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
  /* The references the reply's objects hold for the parent go first. */
  if (reply && sk_marshal_parent_refs(&refs)) {
    sk_frame_write(fd, 'X', refs.data, refs.len);
    sk_buf_free(&refs);
  }
  if (reply && prefix) {
    char pre[16];
    if (plen > sizeof pre - 1) plen = sizeof pre - 1;
    memcpy(pre, prefix, plen);
    pre[plen] = kind && strcmp(kind, "timeout") == 0 ? 't' : (kind && strcmp(kind, "marshal") == 0 ? 'm' : '-');
    sk_frame_write2(fd, rc ? 'F' : 'R', pre, plen + 1, out.data, out.len);
  } else if (reply) {
    sk_frame_write(fd, rc ? 'F' : 'R', out.data, out.len);
  }
  sk_buf_free(&out);
  return rc;
}

/* Runs a copy of a payload: RPCs the call makes read (and defer) frames,
** which moves the read buffer. */
static int run_copy(sk_worker *w, int fd, const char *payload, size_t plen, size_t prefix,
                    int only_failure) {
  char *copy = malloc(plen ? plen : 1);
  if (copy == NULL) return -1;
  memcpy(copy, payload, plen);
  int rc = run_and_reply(w, fd, copy + prefix, plen - prefix, prefix ? copy : NULL, prefix,
                         only_failure);
  free(copy);
  return rc;
}

/* A pool worker. The parent first sends 'I': a flags byte (SK_POOL_STARTS:
** announce each job), then the initializer's call, if any. The worker
** answers 'O' once it is ready, or 'E' (the initializer's failure, as an
** 'F' payload) and exits with status 3. Then 'J' frames (8-byte job id,
** then the call), each announced by 'S' + id when asked, until 'Q' or the
** end of the stream. */
static int pool_loop(sk_worker *w, int fd) {
  int type, status = 0, starts = 0, rc;
  const char *tname = NULL;     /* the pool's name in a trace */
  const char *payload;
  size_t plen;
  while ((rc = next_frame(&type, &payload, &plen)) == 0) {
    if (type == 'Q') break;
    if (type == 'I') {
      if (plen < 1) {
        status = 2;
        break;
      }
      starts = (payload[0] & SK_POOL_STARTS) != 0;
      if (plen > 1) {
        sk_buf out;
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
          if (rc > 0) sk_frame_write(fd, 'E', out.data, out.len);
          sk_buf_free(&out);
          lua_settop(w->L, 0);
          status = 3;
          break;
        }
        sk_buf_free(&out);
      }
      if (sk_frame_write(fd, 'O', NULL, 0) != 0) {
        status = 1;
        break;
      }
      continue;
    }
    if (type != 'J' || plen < 8) {
      status = 2;
      break;
    }
    if (starts && sk_frame_write(fd, 'S', payload, 8) != 0) {
      status = 1;
      break;
    }
    uint64_t t0 = SK_TRACING() ? sk_trace_now() : 0, id;
    memcpy(&id, payload, 8);    /* the parent's job id: the flow's */
    int jr = run_copy(w, fd, payload, plen, 8, 0);
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
static int once(sk_worker *w, int fd) {
  int type;
  const char *payload;
  size_t plen;
  if (next_frame(&type, &payload, &plen) != 0) return 1;
  if (type == 'I' && run_copy(w, fd, payload, plen, 0, 1) != 0) return 1;
  if (type != 'J' && (next_frame(&type, &payload, &plen) != 0 || type != 'J')) return 1;
  return run_copy(w, fd, payload, plen, 0, 0) == 0 ? 0 : 1;
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
  int status = mode && strcmp(mode, "pool") == 0 ? pool_loop(w, fd) : once(w, fd);
  sk_task_report_failures(w);
  sk_rpc_detach();
  sk_worker_close(w);
  close(fd);
  sk_frame_reader_free(&child_rb);
  fflush(NULL);
  return status;
}
