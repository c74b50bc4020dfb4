/*
** proc.c — the parent's side of worker processes: starting one (the
** worker executable, a socketpair, the shared segment, the start frame),
** writing frames to its pipe, the error objects a dead or failed worker
** becomes, and one child process run to its end (sk_proc, below).
**
** skein.process runs fn in a child process that is a fresh run of the
** worker executable in worker mode (never a bare fork of a process that
** may already run threads). The parent sends one job ('J': fn and its
** arguments, marshalled), after an 'I' frame when an init function was
** given; the child answers 'R' (results) or 'F' (failure: message,
** traceback, value) and exits. A child that dies first (a signal, a crash,
** os.exit) is reported to join as kind "worker_died" with its exit code or
** signal and pid. Anything else on the socket (a frame of a type the
** parent does not expect: bytes some program wrote to the child's fd 3) is
** a malformed frame: the stream can no longer be trusted, so the parent
** stops reading it, kills the child and join reports that (unless the
** answer was already in).
**
** The child asks the kernel to kill it when its parent dies
** (PR_SET_PDEATHSIG, proc_child.c) and checks that the parent is still the
** one that started it, so no orphan outlives its parent, even a SIGKILLed
** one. The parent's libuv reaps every child; a worker that closes with
** children still running kills and reaps them first.
*/
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sk_future.h"
#include "sk_proc.h"
#include "sk_rpc.h"

extern char **environ;

static lua_Integer next_proc_id;

/* ------------------------------------------------------------ writing */

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

/* Writes `data` (whole frames) to the pipe and frees it once written. A
** pipe already closed (NULL: the child closed its end) takes nothing.
** Bytes go out at once when nothing is queued before them (one write
** system call, no request, no change to the loop's poll set); what the
** socket does not take is queued behind, in order: uv_try_write refuses
** while a queued write is pending. */
int sk_write_owned(uv_pipe_t *pipe, char *data, size_t len) {
  if (pipe == NULL || len < 5 || len - 5 > SK_FRAME_MAX) {
    free(data);
    return pipe == NULL ? UV_EPIPE : UV_E2BIG;
  }
  uv_buf_t b;   /* not uv_buf_init, whose length is an unsigned int */
  b.base = data;
  b.len = len;
  int n = uv_try_write((uv_stream_t *)pipe, &b, 1);
  if (n > 0 && (size_t)n == len) {
    free(data);
    return 0;
  }
  if (n > 0) {
    b.base += n;
    b.len -= (size_t)n;
  }
  write_req *wr = malloc(sizeof *wr);
  if (wr == NULL) {
    free(data);
    return UV_ENOMEM;
  }
  wr->frame = data;             /* the whole allocation, freed once written */
  int rc = uv_write(&wr->req, (uv_stream_t *)pipe, &b, 1, on_written);
  if (rc != 0) {
    free(data);
    free(wr);
  }
  return rc;
}

/* Queues `pre` then `data` as one frame (copied). */
int sk_send_frame2(uv_pipe_t *pipe, int type, const char *pre, size_t plen, const char *data,
                   size_t len) {
  if (pipe == NULL) return UV_EPIPE;
  if (plen > SK_FRAME_MAX || len > SK_FRAME_MAX - plen) return UV_E2BIG;
  char *frame = malloc(SK_FRAME_HEAD + plen + len);
  if (frame == NULL) return UV_ENOMEM;
  sk_frame_head((uint8_t *)frame, type, plen + len);
  if (plen) memcpy(frame + SK_FRAME_HEAD, pre, plen);
  if (len) memcpy(frame + SK_FRAME_HEAD + plen, data, len);
  return sk_write_owned(pipe, frame, SK_FRAME_HEAD + plen + len);
}

int sk_send_frame(uv_pipe_t *pipe, int type, const char *data, size_t len) {
  return sk_send_frame2(pipe, type, NULL, 0, data, len);
}

void sk_frame_alloc(sk_frame_reader *r, uv_buf_t *buf) {
  size_t room;
  buf->base = sk_frame_space(r, 65536, &room);
  buf->len = buf->base ? room : 0;   /* not uv_buf_init, whose length is an unsigned int */
}

/* ----------------------------------------------------------- starting */

/* Builds the child's environment: ours, plus what a worker needs. The
** strings in `extra` and `trace` must outlive the spawn. A worker records
** into this process's trace, if one runs (`trace`: its variables, else
** NULL), and into none otherwise: the trace variables are this process's
** to give. */
static char **child_env(char extra[][128], int nextra, char **trace) {
  int n = 0;
  while (environ[n]) n++;
  char **env = malloc(sizeof *env * (size_t)(n + nextra + 3));
  if (env == NULL) return NULL;
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (strncmp(environ[i], "SKEIN_PARENT_PID=", 17) == 0 ||
        strncmp(environ[i], "SKEIN_WORKER_ID=", 16) == 0 ||
        strncmp(environ[i], "SKEIN_WORKER_NAME=", 18) == 0 ||
        strncmp(environ[i], "SKEIN_SHM_FD=", 13) == 0 ||
        strncmp(environ[i], "SKEIN_TRACE=", 12) == 0 ||
        strncmp(environ[i], "SKEIN_TRACE_APPEND=", 19) == 0) {
      continue;
    }
    env[k++] = environ[i];
  }
  for (int i = 0; i < nextra; i++) env[k++] = extra[i];
  for (int i = 0; trace && trace[i]; i++) env[k++] = trace[i];
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
  char tpath[PATH_MAX + 16], *trace[3] = {tpath, "SKEIN_TRACE_APPEND=1", NULL};
  int traced = SK_TRACING() && sk_trace_path(tpath + 12, PATH_MAX) == 0;
  if (traced) memcpy(tpath, "SKEIN_TRACE=", 12);
  char **env = child_env(extra, shm >= 0 ? 4 : 3, traced ? trace : NULL);
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
  if (SK_TRACING()) sk_trace_proc(0, proc->pid, 0, 0);
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
    sk_error_push_coded(L, "io", uv_err_name(rc), NULL, NULL, "%s", why);
  } else if (rc == UV_EAGAIN && sk_shm_fd() >= 0) {
    sk_error_push_coded(L, "io", uv_err_name(rc), NULL, NULL,
                        "cannot start a worker process: resource temporarily unavailable (the "
                        "process tree already has its limit of %d live processes)",
                        sk_shm_max_procs());
  } else {
    return sk_io_error_raise(L, rc, NULL, NULL, "cannot start a worker process");
  }
  return lua_error(L);
}

int sk_check_worker_exe(lua_State *L) {
  char exe[4096], why[512];
  if (sk_worker_exe(exe, sizeof exe, why, sizeof why) != 0) return sk_spawn_error(L, UV_ENOENT, why);
  return 0;
}

/* ------------------------------------------------------------- errors */

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


/* ------------------------------------------------ one process (sk_proc) */

static void proc_free_if_unused(sk_proc *p) {
  if (p->open_handles > 0 || p->has_handle) return;
  sk_frame_reader_free(&p->in);
  sk_buf_free(&p->result);
  if (p->xrefs.len) {           /* handed over, but no reply took them */
    sk_buf gone = {0};
    sk_marshal_adopt_refs(&gone, p->xrefs.data, p->xrefs.len);
    sk_buf_free(&gone);
  }
  sk_buf_free(&p->xrefs);
  if (p->anchor) sk_obj_release(&p->anchor->obj);
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
/* Finishes the anchor (the future a handle sent to another worker waits
** on) with what a join here would give. */
static void finish_anchor(sk_proc *p) {
  sk_future *a = p->anchor;
  if (p->reply) {
    sk_future_finish_copy(a, p->reply == 'F', &p->result, NULL, NULL, p->pid, p->exit_status,
                          p->term_signal);
  } else {
    char why[160] = "";
    if (p->bad[0]) {
      snprintf(why, sizeof why, "sent %s before it answered: its answer cannot be read", p->bad);
    }
    sk_future_finish_copy(a, 1, NULL, why, "worker_died", p->pid, p->exit_status, p->term_signal);
  }
}

static void check_done(sk_proc *p) {
  if (p->done || !p->exited || !p->eof) return;
  p->done = 1;
  if (p->anchor) finish_anchor(p);
  unlink_proc(p);
  if (!p->daemon) p->w->live--;
  sk_watchlist_fire(&p->watchers, NULL);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig) {
  sk_proc *p = h->data;
  if (SK_TRACING()) sk_trace_proc(1, h->pid, status, sig);
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
  (void)hint;
  sk_frame_alloc(&((sk_proc *)h->data)->in, buf);
}

/* What a one-job child may send: RPC calls, and one answer. */
static int proc_check(void *ud, const uint8_t *head, size_t avail) {
  sk_proc *p = ud;
  (void)avail;
  if (!sk_frame_type_ok(head, SK_FRAME_TO_PARENT)) return 1;
  if (head[4] == 'X') return p->reply || p->xrefs.len;
  return head[4] != 'C' && ((head[4] != 'R' && head[4] != 'F') || p->reply);
}

/* A frame the child may not send: from here on the stream is not
** trusted (what follows cannot be framed). Without an answer, the child is
** killed so that join reports the malformed frame instead of waiting. */
static void proc_malformed(sk_proc *p, int type, size_t len) {
  snprintf(p->bad, sizeof p->bad, "a malformed frame (type 0x%02x, %zu bytes)", type & 0xff, len);
  sk_frame_drop(&p->in);
  if (!p->reply && p->proc && !p->exited) uv_process_kill(p->proc, SIGKILL);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  sk_proc *p = s->data;
  (void)buf;
  if (n > 0) {
    sk_frame_fill(&p->in, (size_t)n);
    if (p->bad[0]) {              /* the rest is read and dropped until the end */
      sk_frame_drop(&p->in);
      return;
    }
    sk_frame f;
    int rc;
    while ((rc = sk_frame_next(&p->in, proc_check, p, &f)) == SK_FRAME_OK) {
      if (f.type == 'C') {
        if (p->conn) sk_conn_request(p->conn, f.payload, f.len);
        continue;
      }
      if (f.type == 'X') {
        p->xrefs.data = malloc(f.len);
        if (p->xrefs.data) {
          memcpy(p->xrefs.data, f.payload, f.len);
          p->xrefs.len = p->xrefs.cap = f.len;
        }
        continue;
      }
      p->result.data = malloc(f.len ? f.len : 1);
      if (p->result.data) {
        memcpy(p->result.data, f.payload, f.len);
        p->result.len = p->result.cap = f.len;
        sk_marshal_adopt_refs(&p->result, p->xrefs.data, p->xrefs.len);
        sk_buf_free(&p->xrefs);
        p->reply = f.type;
      }
    }
    if (rc == SK_FRAME_BAD) proc_malformed(p, f.type, f.len);
    return;
  }
  if (n < 0) {
    /* A frame cut short by the end: its header lied about its length. */
    const uint8_t *h = sk_frame_partial(&p->in);
    if (!p->bad[0] && !p->reply && h) proc_malformed(p, h[4], sk_frame_len(h));
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

int sk_proc_start(sk_worker *w, char *name, int daemon, sk_buf *init, sk_buf *code, sk_proc **out) {
  sk_proc *p = calloc(1, sizeof *p);
  uv_process_t *proc = malloc(sizeof *proc);
  uv_pipe_t *pipe = malloc(sizeof *pipe);
  lua_Integer id = __atomic_add_fetch(&next_proc_id, 1, __ATOMIC_RELAXED);
  int rc = 1;                   /* out of memory before any start */
  if (p && proc && pipe) {
    rc = sk_spawn_worker(w->sched.loop, proc, pipe, id, name, "once", on_exit_cb);
    if (rc != 0) proc = NULL;   /* sk_spawn_worker released it */
  }
  if (rc != 0) {
    free(p);
    free(proc);
    free(pipe);
    free(name);
    sk_buf_free(init);
    sk_buf_free(code);
    return rc;
  }
  p->w = w;
  p->id = id;
  p->name = name;
  p->daemon = daemon;
  p->has_handle = 1;
  sk_watchlist_init(&p->watchers);
  p->proc = proc;
  p->pipe = pipe;
  proc->data = pipe->data = p;
  p->open_handles = 2;
  p->pid = proc->pid;
  p->conn = sk_conn_new(w, pipe);
  uv_read_start((uv_stream_t *)pipe, on_alloc, on_read);
  if (init->len) sk_send_frame(pipe, 'I', init->data, init->len);
  sk_send_frame(pipe, 'J', code->data, code->len);
  if (p->conn) {                                /* objects the child may call */
    sk_conn_keep(p->conn, init);
    sk_conn_keep(p->conn, code);
  }
  sk_buf_free(init);
  sk_buf_free(code);
  p->next = w->procs;
  if (w->procs) w->procs->prev = p;
  w->procs = p;
  if (!daemon) w->live++;
  *out = p;
  return 0;
}

void sk_proc_release(sk_proc *p) {
  p->has_handle = 0;
  proc_free_if_unused(p);
}

int sk_proc_signal(sk_proc *p, int sig) {
  if (p->exited || p->proc == NULL) return 0;
  return uv_process_kill(p->proc, sig) == 0;
}

void sk_process_kill_all(sk_worker *w) {
  for (sk_proc *p = w->procs; p; p = p->next) {
    if (p->proc && !p->exited) {
      int st = 0, pid = p->pid;
      uv_process_kill(p->proc, SIGKILL);
      /* Reap it now: the loop is about to close. libuv tolerates ECHILD. */
      while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
      if (SK_TRACING()) {
        sk_trace_proc(1, pid, WIFEXITED(st) ? WEXITSTATUS(st) : 0,
                      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
      }
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
