/*
** sk_proc.h — the worker-process engine: starting a worker process (the
** worker executable in worker mode, a socketpair, the shared segment),
** the parent's frame writers on its pipe, one child process run to its
** end (sk_proc), the child's main and its reader of the socket, and the
** error objects a dead or failed worker becomes. The frames themselves are
** runtime/core/sk_frame.h; the process pool engine is sk_ppool.h.
**
** Threads: everything belongs to the calling worker's own OS thread;
** libuv callbacks record events and fire watchers, never call Lua.
*/
#ifndef SK_PROC_H
#define SK_PROC_H

#include "sk_lua.h"
#include "../core/sk_frame.h"
#include "../core/sk_shm.h"

/* The flags byte that starts a pool worker's 'I' frame. */
#define SK_POOL_STARTS 1
/* The top bit of a pool job's id (its 'J' payload's first 8 bytes, which
** its reply repeats): the worker runs it with no earlier reply held and
** answers it at once (a task with a timeout: its clock in the parent
** starts with the reply before it). Ids are counters far below it. */
#define SK_JOB_PROMPT ((uint64_t)1 << 63)

/* Parent side of RPC: a connection that serves one child's calls on this
** process's objects (rpc_engine.c, sk_rpc.h). Opaque here. */
typedef struct sk_conn sk_conn;

/* ------------------------------------------------------- child side */

/* In a freshly started worker process: arranges to die with the parent and
** checks that the parent is still alive. -1 when it is not. */
int sk_process_child_setup(void);
/* The main of `skein --skein-worker FD MODE`: MODE "once" runs one job
** then exits; "pool" serves jobs until told to quit. */
int sk_process_child_main(int fd, const char *mode);
/* The child's reader of its socket to its parent (one sk_frame_reader),
** and the frames set aside while an RPC waited. A payload stays valid
** until the next read. 0 with a frame; -1 at the end of the stream or on
** error; -2 for a frame the parent may not send (the stream cannot be
** read past it); with nonblock, 1 when no whole frame is in. */
int sk_child_read(int *type, const char **payload, size_t *plen);
int sk_child_read_nb(int *type, const char **payload, size_t *plen, int nonblock);
int sk_child_defer(int type, const char *payload, size_t len);
/* Writes a frame to the parent (payload pre, then data) after the replies
** a pool worker held, under the writer's lock (proc_child.c): how an RPC
** call goes out. 0, or -1 when the parent is gone. */
int sk_child_write(int type, const void *pre, size_t plen, const void *data, size_t len);

/* ------------------------------------------------------ parent side */

/* Starts the worker executable in worker mode with the child's end of a
** new socketpair as its fd 3 and the shared segment as its fd 4; opens the
** parent's end as `pipe`, on which the start frame ('K': the marshal key
** and the child's process slot) goes first. Returns 0 or a libuv error:
** UV_EAGAIN when the process tree has no free slot (the child is not
** started). On error `proc` (malloc'd) is no longer the caller's: it is
** freed, at once or (when libuv already listed it) in its close callback;
** `pipe` is untouched, the caller's to free. */
int sk_spawn_worker(uv_loop_t *loop, uv_process_t *proc, uv_pipe_t *pipe, lua_Integer id,
                    const char *name, const char *mode, uv_exit_cb on_exit);
/* Queues a frame (copied) on a worker pipe; 0 or a libuv error: UV_EPIPE
** for a NULL pipe (the child's end is gone), UV_E2BIG for a payload over
** SK_FRAME_MAX. */
int sk_send_frame(uv_pipe_t *pipe, int type, const char *data, size_t len);
/* Queues `pre` then `data` as one frame's payload (copied). */
int sk_send_frame2(uv_pipe_t *pipe, int type, const char *pre, size_t plen, const char *data,
                   size_t len);
/* Writes `data` (whole frames, malloc'd; freed once written, or now on
** error; the same errors). */
int sk_write_owned(uv_pipe_t *pipe, char *data, size_t len);
/* A libuv alloc callback's answer for reading into `r`: room for at least
** 64 KiB (and for the whole frame whose header is in); an empty buffer
** when out of memory, which libuv reports to the read callback. */
void sk_frame_alloc(sk_frame_reader *r, uv_buf_t *buf);

/* Refuses a marshalled payload that, with `room` more bytes, would not fit
** one frame: frees it and raises kind "marshal" naming `what`. Returns 0
** (nothing done) when it fits. */
int sk_frame_refuse(lua_State *L, sk_buf *b, size_t room, const char *what);
/* Raises a failure to start a worker process as kind "io" with `code` the
** errno name of `rc`: `why` when given (no worker executable), else what
** sk_spawn_worker's `rc` means (UV_EAGAIN: the process tree is at its limit
** of live processes). */
int sk_spawn_error(lua_State *L, int rc, const char *why);
/* 0 when a worker executable can be found, else raises as sk_spawn_error. */
int sk_check_worker_exe(lua_State *L);

/* Error objects for a worker that died (kind worker_died, with exit_code
** or signal, and pid; `why`, when not NULL, says what happened instead of
** the exit) and for a failure it reported (kind remote).
** sk_set_exit_fields sets pid and exit_code or signal (+ signal_name) on
** the table at the top; sk_signal_name is NULL for an unusual signal. */
void sk_push_worker_died(lua_State *L, int pid, int64_t status, int sig, const char *what,
                         const char *why);
void sk_set_exit_fields(lua_State *L, int pid, int64_t status, int sig);
const char *sk_signal_name(int sig);
void sk_push_remote_failure(lua_State *L, const sk_buf *b, const char *what);

/* One worker process run to its end (skein.process): the parent sends an
** optional 'I' (the init option) and one 'J'; the child answers 'R' or
** 'F', may make RPCs ('C') meanwhile, and exits. It is over (`done`) once
** both its exit and the end of its stream are in; then its watchers fire.
** Anything else the child sends is a malformed frame: `bad` says what, the
** stream is read no further and, without an answer, the child is killed.
**
** Ownership: malloc'd; freed when its handle is released (sk_proc_release)
** and both its libuv handles (process, pipe) have closed. */
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
  sk_frame_reader in;           /* bytes read, not yet framed */
  sk_buf result;                /* the reply's payload */
  sk_buf xrefs;                 /* an 'X' frame's references, for the reply */
  struct sk_future *anchor;     /* counted: finished with the outcome (sk_future.h) */
  sk_watchlist watchers;
  lua_Integer id;
  char *name;
  int daemon;
  sk_conn *conn;                /* serves the child's calls on our objects */
  struct sk_proc *next, *prev;  /* the worker's live processes */
} sk_proc;

/* Starts a process running `code` (fn+args, marshalled), after `init`
** (may be empty) when given; `name` (malloc'd or NULL) becomes the
** process's. Takes over name, init and code in every case. 0 with *out
** set (counted as live work of w unless daemon), 1 when out of memory
** before anything started, or sk_spawn_worker's libuv error. */
int sk_proc_start(sk_worker *w, char *name, int daemon, sk_buf *init, sk_buf *code, sk_proc **out);
/* The Lua handle is gone: frees the process once its handles closed. */
void sk_proc_release(sk_proc *p);
/* Sends `sig`; 1 when sent, 0 when the process is gone. */
int sk_proc_signal(sk_proc *p, int sig);
/* At worker close: kills and reaps every child process still running. */
void sk_process_kill_all(sk_worker *w);

#endif
