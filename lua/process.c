/*
** process.c — process workers: skein.process(fn, ...) runs fn in a child
** process that is a fresh run of this executable in worker mode (never a
** bare fork of a process that may already run threads).
**
** Parent and child talk over an inherited socketpair (the child's fd 3) in
** frames: a 4-byte little-endian length, a type byte, a payload. The parent
** sends one job ('J': fn and its arguments, marshalled); the child answers
** 'R' (results) or 'F' (failure: message, traceback, value) and exits. A
** child that dies first (a signal, a crash, os.exit) is reported to join as
** kind "worker_died" with its exit code or signal and pid. Anything else on
** the socket (a frame of a type the parent does not expect: bytes some
** program wrote to the child's fd 3) is a malformed frame: the stream can
** no longer be trusted, so the parent stops reading it, kills the child and
** join reports that (unless the answer was already in).
**
** The child asks the kernel to kill it when its parent dies
** (PR_SET_PDEATHSIG) and checks that the parent is still the one that
** started it, so no orphan outlives its parent, even a SIGKILLed one. The
** parent's libuv reaps every child; a runtime that closes with children
** still running kills and reaps them first.
**
** Ownership: the sk_proc is malloc'd. It is freed when its Lua handle is
** gone and both its libuv handles (process, pipe) have closed; callbacks
** only record events and fire watchers, never call Lua.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sk_process.h"

#define PROC_MT "skein.Process"

extern char **environ;

static lua_Integer next_proc_id;

/* ------------------------------------------------------------- frames */

/* Writes a frame whose payload is pre[0..plen) then data[0..len), in one
** system call when the socket takes it all. */
static int frame_write2(int fd, int type, const void *pre, size_t plen, const void *data,
                        size_t len) {
  size_t total = plen + len;
  if (total > SK_FRAME_MAX) return -1;
  uint8_t head[5] = {(uint8_t)total, (uint8_t)(total >> 8), (uint8_t)(total >> 16),
                     (uint8_t)(total >> 24), (uint8_t)type};
  struct iovec iov[3] = {{head, 5}, {(void *)pre, plen}, {(void *)data, len}};
  struct msghdr msg = {0};
  msg.msg_iov = iov;
  msg.msg_iovlen = 3;
  for (;;) {
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {fd, POLLOUT, 0};   /* a non-blocking socket: wait */
      poll(&pfd, 1, -1);
      continue;
    }
    if (n <= 0) return -1;
    /* Skip what went out; stop when nothing is left. */
    size_t left = (size_t)n;
    while (msg.msg_iovlen && left >= msg.msg_iov[0].iov_len) {
      left -= msg.msg_iov[0].iov_len;
      msg.msg_iov++;
      msg.msg_iovlen--;
    }
    if (msg.msg_iovlen == 0) return 0;
    msg.msg_iov[0].iov_base = (char *)msg.msg_iov[0].iov_base + left;
    msg.msg_iov[0].iov_len -= left;
  }
}

int sk_frame_write(int fd, int type, const void *data, size_t len) {
  return frame_write2(fd, type, NULL, 0, data, len);
}

/* Reads exactly n bytes; 0 on success, -1 on EOF or error. */
static int read_full(int fd, void *buf, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t r = read(fd, (char *)buf + off, n - off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    off += (size_t)r;
  }
  return 0;
}

int sk_frame_read(int fd, int *type, sk_buf *out) {
  uint8_t head[5];
  memset(out, 0, sizeof *out);
  if (read_full(fd, head, 5) != 0) return -1;
  size_t len = (size_t)head[0] | (size_t)head[1] << 8 | (size_t)head[2] << 16 | (size_t)head[3] << 24;
  *type = head[4];
  out->data = malloc(len ? len : 1);
  if (out->data == NULL) return -1;
  out->len = out->cap = len;
  if (read_full(fd, out->data, len) != 0) {
    sk_buf_free(out);
    return -1;
  }
  return 0;
}

/* Finds the next complete frame in buf[0..len); returns its total size (or
** 0 when incomplete) and sets *type, *payload, *plen. */
size_t sk_frame_parse(const char *buf, size_t len, int *type, const char **payload, size_t *plen) {
  if (len < 5) return 0;
  const uint8_t *h = (const uint8_t *)buf;
  size_t n = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
  if (len < 5 + n) return 0;
  *type = h[4];
  *payload = buf + 5;
  *plen = n;
  return 5 + n;
}

/* --------------------------------------------------------- child side */

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

/* Runs one marshalled call and sends its reply frame, prefixed by `prefix`
** (a pool's job id; NULL for a single process); with `only_failure`, a
** call that succeeded sends nothing (an initializer). Returns 0, 1 when the
** call failed, -1 when the worker itself broke. */
static int run_and_reply(sk_worker *w, int fd, const char *code, size_t len, const char *prefix,
                         size_t plen, int only_failure) {
  sk_buf out;
  const char *kind;
  int rc = sk_run_call(w, code, len, &out, &kind);
  if (rc < 0) {
    const char *msg = lua_tostring(w->L, -1);
    fprintf(stderr, "skein: worker process failed: %s\n", msg ? msg : "?");
    lua_settop(w->L, 0);
    return -1;
  }
  int reply = rc != 0 || !only_failure;
  if (reply && prefix) {
    char pre[16];
    if (plen > sizeof pre - 1) plen = sizeof pre - 1;
    memcpy(pre, prefix, plen);
    pre[plen] = kind && strcmp(kind, "timeout") == 0 ? 't' : (kind && strcmp(kind, "marshal") == 0 ? 'm' : '-');
    frame_write2(fd, rc ? 'F' : 'R', pre, plen + 1, out.data, out.len);
  } else if (reply) {
    sk_frame_write(fd, rc ? 'F' : 'R', out.data, out.len);
  }
  sk_buf_free(&out);
  return rc;
}

/* The child's side of its socket. Frames are read through one buffer (one
** read() brings in every job the parent sent ahead); frames that arrive
** while an RPC waits for its answer (rpc.c) are set aside here and handed
** out first. A payload stays valid until the next read. */
typedef struct rbuf {
  char *data;
  size_t len, cap, off;
} rbuf;

typedef struct deferred {
  struct deferred *next;
  int type;
  size_t len;
  char data[];
} deferred;

static int child_fd = -1;
static rbuf child_rb;
static deferred *deferred_head, *deferred_tail, *deferred_current;

int sk_child_read_nb(int *type, const char **payload, size_t *plen, int nonblock) {
  rbuf *rb = &child_rb;
  for (;;) {
    size_t used = sk_frame_parse(rb->data + rb->off, rb->len - rb->off, type, payload, plen);
    if (used) {
      rb->off += used;
      return 0;
    }
    if (rb->off) {
      memmove(rb->data, rb->data + rb->off, rb->len - rb->off);
      rb->len -= rb->off;
      rb->off = 0;
    }
    size_t want = 65536;
    if (rb->len >= 5) {   /* make room for the whole frame at once */
      const uint8_t *h = (const uint8_t *)rb->data;
      size_t flen = 5 + ((size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24);
      if (flen > rb->len + want) want = flen - rb->len;
    }
    if (rb->cap - rb->len < want) {
      size_t cap = rb->cap ? rb->cap : 65536;
      while (cap - rb->len < want) cap *= 2;
      char *d = realloc(rb->data, cap);
      if (d == NULL) return -1;
      rb->data = d;
      rb->cap = cap;
    }
    ssize_t n = recv(child_fd, rb->data + rb->len, rb->cap - rb->len, nonblock ? MSG_DONTWAIT : 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (nonblock) return 1;
      /* The socket is non-blocking (libuv watches it for rpc.c): wait. */
      struct pollfd pfd = {child_fd, POLLIN, 0};
      poll(&pfd, 1, -1);
      continue;
    }
    if (n <= 0) return -1;
    rb->len += (size_t)n;
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

/* A pool worker. The parent first sends 'I': a flags byte (SK_POOL_STARTS:
** announce each job), then the initializer's call, if any. The worker
** answers 'O' once it is ready, or 'E' (the initializer's failure, as an
** 'F' payload) and exits with status 3. Then 'J' frames (8-byte job id,
** then the call), each announced by 'S' + id when asked, until 'Q' or the
** end of the stream. */
static int pool_loop(sk_worker *w, int fd) {
  int type, status = 0, starts = 0;
  const char *payload;
  size_t plen;
  while (next_frame(&type, &payload, &plen) == 0) {
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
        int rc = sk_run_call(w, init, plen - 1, &out, &kind);
        free(init);
        if (rc != 0) {
          /* The parent reports it (to every task, once it gives up). */
          if (rc > 0) frame_write2(fd, 'E', NULL, 0, out.data, out.len);
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
    if (starts && frame_write2(fd, 'S', NULL, 0, payload, 8) != 0) {
      status = 1;
      break;
    }
    /* The call may make RPCs that read (and defer) frames, which moves
    ** the read buffer: run a copy. */
    char *job = malloc(plen);
    if (job == NULL) {
      status = 1;
      break;
    }
    memcpy(job, payload, plen);
    int rc = run_and_reply(w, fd, job + 8, plen - 8, job, 8, 0);
    free(job);
    if (rc < 0) {
      status = 1;
      break;
    }
  }
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
  int type;
  sk_buf k;
  if (sk_frame_read(fd, &type, &k) != 0) return -1;
  if (type != 'K' || k.len != 20) {
    sk_buf_free(&k);
    fprintf(stderr, "skein: worker process: bad start frame\n");
    return -1;
  }
  const uint8_t *kb = (const uint8_t *)k.data;
  sk_marshal_set_key(kb);
  int32_t slot = (int32_t)((uint32_t)kb[16] | (uint32_t)kb[17] << 8 | (uint32_t)kb[18] << 16 |
                           (uint32_t)kb[19] << 24);
  memset(k.data, 0, k.len);
  sk_buf_free(&k);
  const char *shm = getenv("SKEIN_SHM_FD");
  if (shm && slot >= 0 && sk_shm_attach_inherited(atoi(shm), slot) != 0) {
    fprintf(stderr, "skein: worker process: cannot attach the shared segment\n");
    return -1;
  }
  unsetenv("SKEIN_SHM_FD");
  unsetenv("SKEIN_PARENT_PID");
  return 0;
}

/* skein.process's init option, in the child before its job is read: a
** failure is the process's outcome (its 'F' reply). Returns 0 when init
** succeeded. */
static int run_init_once(sk_worker *w, int fd, const char *payload, size_t plen) {
  char *init = malloc(plen ? plen : 1);
  if (init == NULL) return 1;
  memcpy(init, payload, plen);
  int rc = run_and_reply(w, fd, init, plen, NULL, 0, 1) != 0;
  free(init);
  return rc;
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
  child_fd = fd;
  sk_worker_parent_linked();
  sk_rpc_attach(w, fd);
  int status = 1, type;
  const char *payload;
  size_t plen;
  if (mode && strcmp(mode, "pool") == 0) {
    status = pool_loop(w, fd);
  } else if (next_frame(&type, &payload, &plen) == 0 &&
             (type != 'I' || (status = run_init_once(w, fd, payload, plen)) == 0)) {
    /* An 'I' frame (the init option) ran first; then comes the job. */
    status = 1;
    if (type == 'J' || (next_frame(&type, &payload, &plen) == 0 && type == 'J')) {
      /* Copy: RPCs made by the call may move the read buffer. */
      sk_buf job = {0};
      job.data = malloc(plen ? plen : 1);
      if (job.data) {
        memcpy(job.data, payload, plen);
        job.len = plen;
        int rc = run_and_reply(w, fd, job.data, job.len, NULL, 0, 0);
        status = rc == 0 ? 0 : 1;
      }
      sk_buf_free(&job);
    }
  }
  sk_task_report_failures(w);
  sk_rpc_detach();
  sk_worker_close(w);
  close(fd);
  free(child_rb.data);
  fflush(NULL);
  return status;
}

/* -------------------------------------------------------- parent side */

typedef struct sk_proc {
  sk_worker *w;
  uv_process_t *proc;
  uv_pipe_t *pipe;
  int open_handles;             /* libuv handles not yet closed */
  int has_handle;               /* a Lua handle still refers to it */
  int pid;
  int exited, eof, done;
  int64_t exit_status;
  int term_signal;
  int reply;                    /* 0, 'R' or 'F' */
  char bad[96];                 /* what was wrong with a malformed frame ("": none) */
  sk_buf in;                    /* bytes read, not yet parsed */
  sk_buf result;                /* the reply's payload */
  sk_watchlist watchers;
  lua_Integer id;
  char *name;
  int daemon;
  sk_conn *conn;                /* serves the child's calls on our objects */
  struct sk_proc *next, *prev;  /* the worker's live processes */
} sk_proc;

static void proc_free_if_unused(sk_proc *p) {
  if (p->open_handles > 0 || p->has_handle) return;
  sk_buf_free(&p->in);
  sk_buf_free(&p->result);
  free(p->name);
  free(p);
}

static void on_handle_closed(uv_handle_t *h) {
  sk_proc *p = h->data;
  free(h);
  p->open_handles--;
  proc_free_if_unused(p);
}

/* Unlinks from the worker's list of live processes. */
static void unlink_proc(sk_proc *p) {
  sk_worker *w = p->w;
  if (p->prev) p->prev->next = p->next;
  else if (w->procs == p) w->procs = p->next;
  if (p->next) p->next->prev = p->prev;
  p->next = p->prev = NULL;
}

/* Both the exit and the end of the reply stream are in: the process is
** over. Wakes joiners and lets the script end. */
static void check_done(sk_proc *p) {
  if (p->done || !p->exited || !p->eof) return;
  p->done = 1;
  unlink_proc(p);
  if (!p->daemon) p->w->live--;
  sk_watchlist_fire(&p->watchers, NULL);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig) {
  sk_proc *p = h->data;
  sk_shm_proc_gone(h->pid);
  sk_worker_recheck_waits(p->w);
  p->exited = 1;
  p->exit_status = status;
  p->term_signal = sig;
  uv_close((uv_handle_t *)h, on_handle_closed);
  p->proc = NULL;
  check_done(p);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  sk_proc *p = h->data;
  (void)hint;
  if (p->in.cap - p->in.len < 65536) {
    size_t cap = p->in.cap ? p->in.cap * 2 : 65536;
    while (cap - p->in.len < 65536) cap *= 2;
    char *d = realloc(p->in.data, cap);
    if (d == NULL) {
      buf->base = NULL;
      buf->len = 0;
      return;
    }
    p->in.data = d;
    p->in.cap = cap;
  }
  buf->base = p->in.data + p->in.len;
  buf->len = p->in.cap - p->in.len;
}

/* A frame the child may not send: from here on the stream is not
** trusted (what follows cannot be framed). Without an answer, the child is
** killed so that join reports the malformed frame instead of waiting. */
static void proc_malformed(sk_proc *p, int type, size_t len) {
  snprintf(p->bad, sizeof p->bad, "a malformed frame (type 0x%02x, %zu bytes)", type & 0xff, len);
  if (!p->reply && p->proc && !p->exited) uv_process_kill(p->proc, SIGKILL);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  sk_proc *p = s->data;
  (void)buf;
  if (n > 0) {
    p->in.len += (size_t)n;
    size_t off = 0, used, plen;
    int type;
    const char *payload;
    /* The type is checked from the header alone, so a bogus length (which
    ** would swallow the real answer) is never waited for. */
    while (!p->bad[0] && p->in.len - off >= 5) {
      type = (uint8_t)p->in.data[off + 4];
      if (type != 'C' && ((type != 'R' && type != 'F') || p->reply)) {
        const uint8_t *h = (const uint8_t *)p->in.data + off;
        proc_malformed(p, type, (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 |
                                    (size_t)h[3] << 24);
        break;
      }
      used = sk_frame_parse(p->in.data + off, p->in.len - off, &type, &payload, &plen);
      if (used == 0) break;
      off += used;
      if (type == 'C') {
        if (p->conn) sk_conn_request(p->conn, payload, plen);
      } else {
        p->result.data = malloc(plen ? plen : 1);
        if (p->result.data) {
          memcpy(p->result.data, payload, plen);
          p->result.len = p->result.cap = plen;
          p->reply = type;
        }
      }
    }
    if (p->bad[0]) off = p->in.len;   /* the rest is read and dropped until the end */
    if (off) {
      memmove(p->in.data, p->in.data + off, p->in.len - off);
      p->in.len -= off;
    }
    return;
  }
  if (n < 0) {
    /* A frame cut short by the end: its header lied about its length. */
    if (!p->bad[0] && !p->reply && p->in.len >= 5) {
      const uint8_t *h = (const uint8_t *)p->in.data;
      proc_malformed(p, h[4], (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24);
    }
    uv_close((uv_handle_t *)s, on_handle_closed);
    p->pipe = NULL;
    if (p->conn) {
      sk_conn_close(p->conn);
      p->conn = NULL;
    }
    p->eof = 1;
    check_done(p);
  }
}

typedef struct write_req {
  uv_write_t req;
  char *frame;
} write_req;

static void on_written(uv_write_t *req, int status) {
  write_req *wr = (write_req *)req;
  (void)status;  /* a child that died early shows up through its exit */
  free(wr->frame);
  free(wr);
}

/* Queues `data` (a whole frame) on the pipe and frees it once written. A
** pipe already closed (NULL: the child closed its end) takes nothing. */
int sk_write_owned(uv_pipe_t *pipe, char *data, size_t len) {
  if (pipe == NULL || len < 5 || len - 5 > SK_FRAME_MAX) {
    free(data);
    return pipe == NULL ? UV_EPIPE : UV_E2BIG;
  }
  write_req *wr = malloc(sizeof *wr);
  if (wr == NULL) {
    free(data);
    return UV_ENOMEM;
  }
  wr->frame = data;
  uv_buf_t b;   /* not uv_buf_init, whose length is an unsigned int */
  b.base = data;
  b.len = len;
  int rc = uv_write(&wr->req, (uv_stream_t *)pipe, &b, 1, on_written);
  if (rc != 0) {
    free(data);
    free(wr);
  }
  return rc;
}

int sk_send_frame(uv_pipe_t *pipe, int type, const char *data, size_t len) {
  if (pipe == NULL) return UV_EPIPE;
  if (len > SK_FRAME_MAX) return UV_E2BIG;
  write_req *wr = malloc(sizeof *wr);
  char *frame = malloc(len + 5);
  if (wr == NULL || frame == NULL) {
    free(wr);
    free(frame);
    return UV_ENOMEM;
  }
  frame[0] = (char)len;
  frame[1] = (char)(len >> 8);
  frame[2] = (char)(len >> 16);
  frame[3] = (char)(len >> 24);
  frame[4] = (char)type;
  memcpy(frame + 5, data, len);
  wr->frame = frame;
  uv_buf_t b;
  b.base = frame;
  b.len = len + 5;
  int rc = uv_write(&wr->req, (uv_stream_t *)pipe, &b, 1, on_written);
  if (rc != 0) {
    free(frame);
    free(wr);
  }
  return rc;
}

/* Builds the child's environment: ours, plus what a worker needs. The
** strings in `extra` must outlive the spawn. */
static char **child_env(char extra[][128], int nextra) {
  int n = 0;
  while (environ[n]) n++;
  char **env = malloc(sizeof *env * (size_t)(n + nextra + 1));
  if (env == NULL) return NULL;
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (strncmp(environ[i], "SKEIN_PARENT_PID=", 17) == 0 ||
        strncmp(environ[i], "SKEIN_WORKER_ID=", 16) == 0 ||
        strncmp(environ[i], "SKEIN_WORKER_NAME=", 18) == 0 ||
        strncmp(environ[i], "SKEIN_SHM_FD=", 13) == 0) {
      continue;
    }
    env[k++] = environ[i];
  }
  for (int i = 0; i < nextra; i++) env[k++] = extra[i];
  env[k] = NULL;
  return env;
}

static void free_closed(uv_handle_t *h) { free(h); }

int sk_spawn_worker(uv_loop_t *loop, uv_process_t *proc, uv_pipe_t *pipe, lua_Integer id,
                    const char *name, const char *mode, uv_exit_cb on_exit) {
  char exe[4096], why[512];
  if (sk_worker_exe(exe, sizeof exe, why, sizeof why) != 0) {
    free(proc);
    return UV_ENOENT;
  }
  /* The shared segment (sk_shm.h) goes to the child as its fd 4, and the
  ** child gets a process slot of its own there, or is not started. */
  sk_shm_base(1);
  int shm = sk_shm_fd(), slot = -1;
  if (shm >= 0 && (slot = sk_shm_slot_reserve()) < 0) {
    free(proc);
    return UV_EAGAIN;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    sk_shm_slot_cancel(slot);
    free(proc);
    return uv_translate_sys_error(errno);
  }
  char extra[4][128];
  snprintf(extra[0], sizeof extra[0], "SKEIN_PARENT_PID=%ld", (long)getpid());
  snprintf(extra[1], sizeof extra[1], "SKEIN_WORKER_ID=%lld", (long long)id);
  snprintf(extra[2], sizeof extra[2], "SKEIN_WORKER_NAME=%.100s", name ? name : "");
  snprintf(extra[3], sizeof extra[3], "SKEIN_SHM_FD=4");
  char **env = child_env(extra, shm >= 0 ? 4 : 3);
  char *args[] = {exe, "--skein-worker", "3", (char *)mode, NULL};
  uv_stdio_container_t stdio[5] = {
      {UV_INHERIT_FD, {.fd = 0}}, {UV_INHERIT_FD, {.fd = 1}},
      {UV_INHERIT_FD, {.fd = 2}}, {UV_INHERIT_FD, {.fd = sv[1]}},
      {UV_INHERIT_FD, {.fd = shm}}};
  uv_process_options_t opts = {0};
  opts.exit_cb = on_exit;
  opts.file = exe;
  opts.args = args;
  opts.env = env;
  opts.stdio = stdio;
  opts.stdio_count = shm >= 0 ? 5 : 4;
  int rc = UV_ENOMEM;
  if (env) {
    rc = uv_spawn(loop, proc, &opts);
    /* libuv lists the handle even when the spawn failed: it must be
    ** closed, and freed only in its close callback. */
    if (rc != 0) {
      uv_close((uv_handle_t *)proc, free_closed);
      proc = NULL;
    }
  }
  free(env);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    sk_shm_slot_cancel(slot);
    free(proc);
    return rc;
  }
  sk_shm_slot_bind(slot, proc->pid);
  /* The start frame: the marshal key and the slot, first on the socket
  ** (still blocking; 25 bytes fit any socket buffer). */
  uint8_t start[20];
  sk_marshal_key(start);
  for (int i = 0; i < 4; i++) start[16 + i] = (uint8_t)((uint32_t)slot >> (8 * i));
  sk_frame_write(sv[0], 'K', start, sizeof start);
  memset(start, 0, sizeof start);
  uv_pipe_init(loop, pipe, 0);
  uv_pipe_open(pipe, sv[0]);
  return 0;
}

int sk_frame_refuse(lua_State *L, sk_buf *b, size_t room, const char *what) {
  if (b->len <= SK_FRAME_MAX - room) return 0;
  size_t n = b->len;
  sk_buf_free(b);
  return sk_error_raise(L, "marshal", "%s: too big to send to a process (%I bytes, over 4 GiB)",
                        what, (LUAI_UACINT)n);
}

int sk_spawn_error(lua_State *L, int rc, const char *why) {
  if (why) {
    sk_error_push(L, "io", "%s", why);
  } else if (rc == UV_EAGAIN && sk_shm_fd() >= 0) {
    sk_error_push(L, "io", "cannot start a worker process: resource temporarily "
                  "unavailable (the process tree already has its limit of %d live "
                  "processes)", sk_shm_max_procs());
  } else {
    sk_error_push(L, "io", "cannot start a worker process: %s", uv_strerror(rc));
  }
  lua_pushstring(L, uv_err_name(rc));
  lua_setfield(L, -2, "code");
  return lua_error(L);
}

static sk_proc *check_proc(lua_State *L, int idx) {
  sk_proc **u = luaL_checkudata(L, idx, PROC_MT);
  return *u;
}

const char *sk_signal_name(int sig) {
  switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGILL: return "SIGILL";
    default: return NULL;
  }
}

void sk_set_exit_fields(lua_State *L, int pid, int64_t status, int sig) {
  if (sig) {
    const char *sname = sk_signal_name(sig);
    lua_pushinteger(L, sig);
    lua_setfield(L, -2, "signal");
    if (sname) {
      lua_pushstring(L, sname);
      lua_setfield(L, -2, "signal_name");
    }
  } else {
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "exit_code");
  }
  lua_pushinteger(L, pid);
  lua_setfield(L, -2, "pid");
}

void sk_push_worker_died(lua_State *L, int pid, int64_t status, int sig, const char *what,
                         const char *why) {
  const char *sname = sig ? sk_signal_name(sig) : NULL;
  if (why) {
    sk_error_push(L, "worker_died", "%s (pid %d) %s", what, pid, why);
  } else if (sig) {
    sk_error_push(L, "worker_died", "%s (pid %d) was killed by signal %d%s%s%s", what, pid, sig,
                  sname ? " (" : "", sname ? sname : "", sname ? ")" : "");
  } else {
    sk_error_push(L, "worker_died", "%s (pid %d) exited with code %d before it answered", what,
                  pid, (int)status);
  }
  sk_set_exit_fields(L, pid, status, sig);
}

void sk_push_remote_failure(lua_State *L, const sk_buf *b, const char *what) {
  int top = lua_gettop(L);
  if (sk_marshal_decode(L, b->data, b->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS) != 3) {
    lua_settop(L, top);
    sk_error_push(L, "remote", "%s failed (its error could not be read)", what);
    return;
  }
  /* A value that could not cross (fn's results, or an item fn sent) is kind
  ** marshal with its path, as a pool's future reports it; the rest is
  ** remote. */
  int marshal = sk_error_is(L, top + 3, "marshal");
  sk_error_push(L, marshal ? "marshal" : "remote", "%s", lua_tostring(L, top + 1));
  if (marshal) {
    lua_getfield(L, top + 3, "path");
    lua_setfield(L, -2, "path");
  }
  lua_pushvalue(L, top + 3);
  lua_setfield(L, -2, "value");
  luaL_traceback(L, L, NULL, 1);
  lua_pushfstring(L, "%s\n(raised in %s, joined here)\n%s", lua_tostring(L, top + 2), what,
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "traceback");
  lua_pop(L, 1);
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

static int push_outcome(lua_State *L, sk_proc *p) {
  char what[64];
  snprintf(what, sizeof what, "process %lld", (long long)p->id);
  if (p->reply == 'R') {
    int n = sk_marshal_decode(L, p->result.data, p->result.len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
    if (n < 0) return lua_error(L);
    return n;
  }
  if (p->reply == 'F') {
    sk_push_remote_failure(L, &p->result, what);
  } else if (p->bad[0]) {
    char why[160];
    snprintf(why, sizeof why, "sent %s before it answered: its answer cannot be read", p->bad);
    sk_push_worker_died(L, p->pid, p->exit_status, p->term_signal, what, why);
  } else {
    sk_push_worker_died(L, p->pid, p->exit_status, p->term_signal, what, NULL);
  }
  return lua_error(L);
}

/* A process as a wait source: ready when it has exited and its result
** is in. */
static int join_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_proc *p = obj;
  (void)round;
  if (p->done) return push_outcome(L, p);
  if (expired) {
    return sk_error_raise(L, "timeout", "join of process %I timed out", (LUAI_UACINT)p->id);
  }
  return SK_WAIT_MORE;
}

static int join_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_link_watch(&((sk_proc *)obj)->watchers, c);
}

static const sk_source join_source = {
    .name = PROC_MT, .attempt = join_attempt, .link = join_link, .unlink = sk_unlink_watch};

/* process:join([timeout]) -> fn's results, or raises remote/worker_died/timeout */
static int l_proc_join(lua_State *L) {
  sk_proc *p = check_proc(L, 1);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  return sk_wait_on(L, &join_source, p, d, 0);
}

static int send_signal(lua_State *L, sk_proc *p, int sig) {
  if (p->exited || p->proc == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, uv_process_kill(p->proc, sig) == 0);
  return 1;
}

static int l_proc_terminate(lua_State *L) { return send_signal(L, check_proc(L, 1), SIGTERM); }
static int l_proc_kill(lua_State *L) { return send_signal(L, check_proc(L, 1), SIGKILL); }

/* process:signal(name_or_number) -> true when sent */
static int l_proc_signal(lua_State *L) {
  sk_proc *p = check_proc(L, 1);
  int sig = 0;
  if (lua_isinteger(L, 2)) {
    sig = (int)lua_tointeger(L, 2);
  } else {
    const char *name = luaL_checkstring(L, 2);
    if (strncmp(name, "SIG", 3) == 0) name += 3;
    static const struct { const char *n; int s; } names[] = {
        {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
        {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP},
        {"CONT", SIGCONT}, {"ABRT", SIGABRT}, {NULL, 0}};
    for (int i = 0; names[i].n; i++) {
      if (strcmp(names[i].n, name) == 0) sig = names[i].s;
    }
  }
  luaL_argcheck(L, sig > 0 && sig < 65, 2, "unknown signal");
  return send_signal(L, p, sig);
}

static int l_proc_alive(lua_State *L) {
  lua_pushboolean(L, !check_proc(L, 1)->exited);
  return 1;
}

static int l_proc_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  sk_proc *p = check_proc(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  if (strcmp(k, "pid") == 0) lua_pushinteger(L, p->pid);
  else if (strcmp(k, "id") == 0) lua_pushinteger(L, p->id);
  else if (strcmp(k, "name") == 0 && p->name) lua_pushstring(L, p->name);
  else if (strcmp(k, "kind") == 0) lua_pushliteral(L, "process");
  else if (strcmp(k, "exit_code") == 0 && p->exited && !p->term_signal) lua_pushinteger(L, p->exit_status);
  /* Not "signal": that name is the method, which the lookup above finds first. */
  else if (strcmp(k, "exit_signal") == 0 && p->exited && p->term_signal) lua_pushinteger(L, p->term_signal);
  else lua_pushnil(L);
  return 1;
}

static int l_proc_tostring(lua_State *L) {
  sk_proc *p = check_proc(L, 1);
  lua_pushfstring(L, "skein.process %I (pid %d, %s)", (LUAI_UACINT)p->id, p->pid,
                  p->exited ? "exited" : "running");
  return 1;
}

static int l_proc_gc(lua_State *L) {
  sk_proc **u = luaL_checkudata(L, 1, PROC_MT);
  sk_proc *p = *u;
  if (p) {
    p->has_handle = 0;
    *u = NULL;
    proc_free_if_unused(p);
  }
  return 0;
}

/* skein.process(fn, ...) or skein.process{fn=, args=, name=, daemon=,
** init=, init_args=} */
static int l_proc_new(lua_State *L) {
  sk_worker *w = sk_worker_of(L);
  char exe[4096], why[512];
  if (sk_worker_exe(exe, sizeof exe, why, sizeof why) != 0) return sk_spawn_error(L, UV_ENOENT, why);
  int daemon, ninit;
  char *name;
  sk_worker_args(L, &daemon, &name, &ninit);
  sk_buf code, init = {0};
  if (ninit > 0 && sk_marshal_encode_xproc(L, 1, ninit, &init, "init+args") != 0) {
    free(name);
    return lua_error(L);
  }
  if (sk_marshal_encode_xproc(L, ninit + 1, lua_gettop(L) - ninit, &code, "fn+args") != 0) {
    sk_buf_free(&init);
    free(name);
    return lua_error(L);
  }
  if (code.len > SK_FRAME_MAX || init.len > SK_FRAME_MAX) {
    free(name);
    sk_frame_refuse(L, &init, 0, "init+args");
    sk_frame_refuse(L, &code, 0, "fn+args");
  }
  sk_proc *p = calloc(1, sizeof *p);
  sk_proc **u = p ? lua_newuserdatauv(L, sizeof *u, 0) : NULL;
  uv_process_t *proc = malloc(sizeof *proc);
  uv_pipe_t *pipe = malloc(sizeof *pipe);
  if (p == NULL || proc == NULL || pipe == NULL) {
    free(p);
    free(proc);
    free(pipe);
    free(name);
    sk_buf_free(&init);
    sk_buf_free(&code);
    return sk_error_raise(L, "memory", "not enough memory for a process");
  }
  *u = NULL;
  luaL_setmetatable(L, PROC_MT);
  p->w = w;
  p->id = __atomic_add_fetch(&next_proc_id, 1, __ATOMIC_RELAXED);
  p->name = name;
  p->daemon = daemon;
  sk_watchlist_init(&p->watchers);
  int rc = sk_spawn_worker(w->sched.loop, proc, pipe, p->id, name, "once", on_exit_cb);
  if (rc != 0) {   /* proc is released */
    free(p);
    free(pipe);
    free(name);
    sk_buf_free(&init);
    sk_buf_free(&code);
    return sk_spawn_error(L, rc, NULL);
  }
  *u = p;
  p->has_handle = 1;
  p->proc = proc;
  p->pipe = pipe;
  proc->data = pipe->data = p;
  p->open_handles = 2;
  p->pid = proc->pid;
  p->conn = sk_conn_new(w, pipe);
  uv_read_start((uv_stream_t *)pipe, on_alloc, on_read);
  if (init.len) sk_send_frame(pipe, 'I', init.data, init.len);
  sk_send_frame(pipe, 'J', code.data, code.len);
  if (p->conn) {                                /* objects the child may call */
    sk_conn_keep(p->conn, &init);
    sk_conn_keep(p->conn, &code);
  }
  sk_buf_free(&init);
  sk_buf_free(&code);
  p->next = w->procs;
  if (w->procs) w->procs->prev = p;
  w->procs = p;
  if (!daemon) w->live++;
  return 1;
}

void sk_process_kill_all(sk_worker *w) {
  for (sk_proc *p = w->procs; p; p = p->next) {
    if (p->proc && !p->exited) {
      int pid = p->pid;
      uv_process_kill(p->proc, SIGKILL);
      /* Reap it now: the loop is about to close. libuv tolerates ECHILD. */
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    if (p->proc) {
      uv_close((uv_handle_t *)p->proc, on_handle_closed);
      p->proc = NULL;
    }
    if (p->pipe) {
      uv_close((uv_handle_t *)p->pipe, on_handle_closed);
      p->pipe = NULL;
    }
    if (p->conn) {
      sk_conn_close(p->conn);
      p->conn = NULL;
    }
  }
  w->procs = NULL;
}

void sk_process_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"join", l_proc_join},     {"terminate", l_proc_terminate}, {"kill", l_proc_kill},
      {"signal", l_proc_signal}, {"alive", l_proc_alive},         {NULL, NULL}};
  static const sk_type type = {.name = PROC_MT, .methods = methods, .index = l_proc_index,
                               .gc = l_proc_gc, .tostring = l_proc_tostring};
  sk_type_register(L, &type);
  lua_pushcfunction(L, l_proc_new);
  lua_setfield(L, -2, "process");
}
