/*
** subproc.c — subprocesses on a worker's loop (sk_exec.h).
**
** A child's memory is shared by its caller's reference and the engine's
** handles (`handles` counts those whose close callback has not run): the
** last of them frees it (exec_maybe_free). Callbacks only record and wake.
*/
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "sk_exec.h"

#define CAPTURE_CHUNK (64 * 1024)

static void exec_maybe_free(sk_exec *x) {
  if (!x->released || x->handles > 0) return;
  sk_rbuf_free(&x->cap[0]);
  sk_rbuf_free(&x->cap[1]);
  free(x->feed);
  free(x);
}

static void on_closed(uv_handle_t *h) {
  sk_exec *x = h->data;
  free(h);
  x->handles--;
  exec_maybe_free(x);
}

static void free_closed(uv_handle_t *h) { free(h); }

static void exec_unlink(sk_exec *x) {
  if (x->owner == NULL) return;
  if (x->prev) x->prev->next = x->next;
  else *x->owner = x->next;
  if (x->next) x->next->prev = x->prev;
  x->prev = x->next = NULL;
  x->owner = NULL;
}

static void close_timer(sk_exec *x) {
  if (x->timer == NULL) return;
  uv_close((uv_handle_t *)x->timer, on_closed);
  x->timer = NULL;
}

static void close_feed(sk_exec *x) {
  if (x->feedp == NULL) return;
  uv_close((uv_handle_t *)x->feedp, on_closed);
  x->feedp = NULL;
}

/* Ends capture `i` (its end, an error, or the owner giving up on it). */
static void close_capture(sk_exec *x, int i) {
  if (x->capp[i] == NULL) return;
  uv_close((uv_handle_t *)x->capp[i], on_closed);
  x->capp[i] = NULL;
  x->capturing--;
}

int sk_exec_done(const sk_exec *x) { return x->exited && x->capturing == 0; }

/* ------------------------------------------------------------ callbacks */

static void on_exit_cb(uv_process_t *h, int64_t status, int sig) {
  sk_exec *x = h->data;
  x->exited = 1;
  x->status = status;
  x->termsig = sig;
  uv_close((uv_handle_t *)h, on_closed);
  x->proc = NULL;
  close_timer(x);
  exec_unlink(x);
  /* A child the timeout ended may have left a grandchild holding its
  ** output pipes: what they captured so far is the output. */
  if (x->timed_out) {
    close_capture(x, 0);
    close_capture(x, 1);
  }
  sk_iowaitlist_wake(&x->waiters);
}

static void on_timeout(uv_timer_t *t) {
  sk_exec *x = t->data;
  if (x->proc == NULL || x->exited) return;
  x->timed_out = 1;
  if (x->kill_stage == 0) {
    x->kill_stage = 1;
    uv_process_kill(x->proc, SIGTERM);
    uv_timer_start(t, on_timeout, SK_EXEC_GRACE_MS, 0);
  } else {
    x->kill_stage = 2;
    uv_process_kill(x->proc, SIGKILL);
  }
}

static void on_fed(uv_write_t *req, int status) {
  sk_exec *x = req->data;
  (void)status;                 /* a child that stopped reading: its loss */
  free(req);
  close_feed(x);
}

static int capture_index(sk_exec *x, uv_handle_t *h) { return h == (uv_handle_t *)x->capp[1]; }

static void on_cap_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  sk_exec *x = h->data;
  size_t room = 0;
  (void)hint;
  char *p = sk_rbuf_space(&x->cap[capture_index(x, h)], CAPTURE_CHUNK, &room);
  *buf = uv_buf_init(p, p ? (unsigned)(room > 0x40000000 ? 0x40000000 : room) : 0);
}

static void on_cap_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  sk_exec *x = s->data;
  int i = capture_index(x, (uv_handle_t *)s);
  (void)buf;
  if (n > 0) {
    sk_rbuf_commit(&x->cap[i], (size_t)n);
    return;
  }
  if (n == 0) return;
  if (n != UV_EOF && x->cap_err == 0) x->cap_err = (int)n;
  close_capture(x, i);
  if (sk_exec_done(x)) sk_iowaitlist_wake(&x->waiters);
}

/* ------------------------------------------------------------ start */

/* Makes the container of fd `fd`; 0 or a libuv error code. */
static int setup_stdio(sk_exec *x, const sk_exec_opts *o, int fd, uv_stdio_container_t *c,
                       uv_pipe_t **pipes) {
  int child_reads = fd == 0;
  switch (o->stdio[fd]) {
  case SK_EXEC_INHERIT:
    c->flags = UV_INHERIT_FD;
    c->data.fd = fd;
    return 0;
  case SK_EXEC_NULL:
    c->flags = UV_IGNORE;       /* libuv opens /dev/null for fds 0 to 2 */
    return 0;
  case SK_EXEC_PIPE: {
    int err = 0;
    x->io[fd] = sk_stream_new(x->loop, SK_STREAM_PIPE, &err);
    if (x->io[fd] == NULL) return err ? err : UV_ENOMEM;
    c->flags = UV_CREATE_PIPE | (child_reads ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
    c->data.stream = &x->io[fd]->u.stream;
    return 0;
  }
  case SK_EXEC_FEED:
  case SK_EXEC_CAPTURE: {
    if ((o->stdio[fd] == SK_EXEC_FEED) != child_reads) return UV_EINVAL;
    uv_pipe_t *p = malloc(sizeof *p);
    if (p == NULL) return UV_ENOMEM;
    uv_pipe_init(x->loop, p, 0);
    p->data = x;
    pipes[fd] = p;
    c->flags = UV_CREATE_PIPE | (child_reads ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
    c->data.stream = (uv_stream_t *)p;
    return 0;
  }
  default: return UV_EINVAL;
  }
}

/* A copy of a NULL-terminated string array in one block (NULL for NULL):
** the caller's strings may sit in memory a forked child cannot read (a
** Lua state's chunks are MADV_DONTFORK, host/alloc.c). *ok is 0 when out
** of memory. */
static char **copy_strv(char *const *v, int *ok) {
  if (v == NULL) return NULL;
  size_t n = 0, bytes = 0;
  for (; v[n]; n++) bytes += strlen(v[n]) + 1;
  char **out = malloc((n + 1) * sizeof *out + bytes);
  if (out == NULL) {
    *ok = 0;
    return NULL;
  }
  char *p = (char *)(out + n + 1);
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(v[i]) + 1;
    memcpy(p, v[i], len);
    out[i] = p;
    p += len;
  }
  out[n] = NULL;
  return out;
}

/* Undoes a start that failed: every handle made is closed (and freed in
** its close callback), the memory goes. */
static void start_failed(sk_exec *x, uv_pipe_t **pipes) {
  for (int i = 0; i < 3; i++) {
    if (pipes[i]) uv_close((uv_handle_t *)pipes[i], free_closed);
    if (x->io[i]) sk_stream_close(x->io[i]);
  }
  free(x->feed);
  free(x);
}

int sk_exec_start(uv_loop_t *loop, sk_exec **owner, const sk_exec_opts *o, sk_exec **out) {
  uv_pipe_t *pipes[3] = {NULL, NULL, NULL};
  uv_stdio_container_t stdio[3];
  sk_exec *x = calloc(1, sizeof *x);
  if (x == NULL) return UV_ENOMEM;
  x->loop = loop;
  sk_iowaitlist_init(&x->waiters);
  memset(stdio, 0, sizeof stdio);
  int rc = 0;
  for (int fd = 0; fd < 3 && rc == 0; fd++) rc = setup_stdio(x, o, fd, &stdio[fd], pipes);
  if (rc == 0 && o->stdio[0] == SK_EXEC_FEED && o->feedlen > 0) {
    x->feed = malloc(o->feedlen);
    if (x->feed == NULL) rc = UV_ENOMEM;
    else memcpy(x->feed, o->feed, o->feedlen);
    x->feedlen = o->feedlen;
  }
  uv_process_t *proc = rc == 0 ? malloc(sizeof *proc) : NULL;
  uv_timer_t *timer = rc == 0 && o->timeout_ms ? malloc(sizeof *timer) : NULL;
  if (rc == 0 && (proc == NULL || (o->timeout_ms && timer == NULL))) rc = UV_ENOMEM;
  if (rc != 0) {
    free(proc);
    free(timer);
    start_failed(x, pipes);
    return rc;
  }
  /* Everything the child reads is copied into memory it inherits. */
  int ok = 1;
  char *const names[] = {(char *)o->file, (char *)(o->cwd ? o->cwd : ""), NULL};
  char **strs = copy_strv(names, &ok);
  char **args = copy_strv(o->args, &ok);
  char **env = copy_strv(o->env, &ok);
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.exit_cb = on_exit_cb;
  po.file = strs ? strs[0] : NULL;
  po.cwd = strs && o->cwd ? strs[1] : NULL;
  po.args = args;
  po.env = env;
  po.stdio = stdio;
  po.stdio_count = 3;
  rc = ok ? uv_spawn(loop, proc, &po) : UV_ENOMEM;
  free(strs);
  free(args);
  free(env);
  if (rc != 0 && !ok) {
    free(proc);
    free(timer);
    start_failed(x, pipes);
    return rc;
  }
  if (rc != 0) {
    /* libuv lists the handle even when the spawn failed: it is closed,
    ** and freed in its close callback. */
    uv_close((uv_handle_t *)proc, free_closed);
    free(timer);
    start_failed(x, pipes);
    return rc;
  }
  proc->data = x;
  x->proc = proc;
  x->pid = proc->pid;
  x->handles = 1;
  if (pipes[0]) {
    x->feedp = pipes[0];
    x->handles++;
    uv_write_t *req = x->feedlen ? malloc(sizeof *req) : NULL;
    uv_buf_t b = uv_buf_init(x->feed, (unsigned)x->feedlen);
    if (req) req->data = x;
    if (req == NULL || uv_write(req, (uv_stream_t *)x->feedp, &b, 1, on_fed) != 0) {
      free(req);                /* nothing to feed, or it cannot be: the child reads the end */
      close_feed(x);
    }
  }
  for (int i = 0; i < 2; i++) {
    if (pipes[i + 1] == NULL) continue;
    x->capp[i] = pipes[i + 1];
    x->handles++;
    x->capturing++;
    int err = uv_read_start((uv_stream_t *)x->capp[i], on_cap_alloc, on_cap_read);
    if (err) {
      x->cap_err = err;
      close_capture(x, i);
    }
  }
  if (timer) {
    uv_timer_init(loop, timer);
    timer->data = x;
    x->timer = timer;
    x->handles++;
    uv_timer_start(timer, on_timeout, o->timeout_ms, 0);
  }
  x->owner = owner;
  x->next = *owner;
  if (*owner) (*owner)->prev = x;
  *owner = x;
  *out = x;
  return 0;
}

/* ------------------------------------------------------------ control */

int sk_exec_kill(sk_exec *x, int sig) {
  if (x->exited || x->proc == NULL) return UV_ESRCH;
  return uv_process_kill(x->proc, sig);
}

void sk_exec_release(sk_exec *x) {
  x->released = 1;
  exec_maybe_free(x);
}

void sk_exec_kill_all(sk_exec **owner) {
  while (*owner) {
    sk_exec *x = *owner;
    exec_unlink(x);
    if (x->proc && !x->exited) {
      uv_process_kill(x->proc, SIGKILL);
      /* Reaped now: the loop is about to close. */
      while (waitpid(x->pid, NULL, 0) < 0 && errno == EINTR) {}
      x->exited = 1;
      x->termsig = SIGKILL;
    }
    if (x->proc) {
      uv_close((uv_handle_t *)x->proc, on_closed);
      x->proc = NULL;
    }
    close_timer(x);
    close_feed(x);
    close_capture(x, 0);
    close_capture(x, 1);
    sk_iowaitlist_wake(&x->waiters);
  }
}
