/*
** sk_exec.h — a subprocess on a worker's loop (subproc.c; no Lua): started
** with uv_spawn, its exit status and terminating signal recorded by the exit
** callback, its waiters (sk_iowait, core/sk_io.h) woken there.
**
** Standard streams: each of stdin, stdout and stderr is inherited, read
** from or written to /dev/null, or a pipe. A pipe is either an sk_stream
** (SK_STREAM_PIPE, core/sk_stream.h) that the caller takes over, or one the
** engine keeps: stdin fed from a string (written, then closed, so the child
** reads its end), stdout or stderr captured into a buffer until the child
** closes it (skein.exec.run).
**
** Timeout: a timer sends SIGTERM when it expires and SIGKILL
** SK_EXEC_GRACE_MS later if the child is still running.
**
** Ownership: sk_exec_start links the child in its owner's list (a
** worker's `execs`). The caller holds one reference (sk_exec_release drops
** it); each libuv handle the engine opened holds the memory too, until its
** close callback: the memory goes when both are gone. sk_exec_kill_all,
** which a worker calls before it closes, kills every child still running
** with SIGKILL and reaps it at once (waitpid), so that none outlives the
** worker and none is left a zombie.
**
** Threading: a child belongs to the thread of its loop.
*/
#ifndef SK_EXEC_H
#define SK_EXEC_H

#include <stdint.h>
#include <uv.h>

#include "sk_io.h"
#include "sk_rbuf.h"
#include "sk_stream.h"

/* How one standard stream of the child is set up. */
enum {
  SK_EXEC_INHERIT,              /* the parent's own */
  SK_EXEC_NULL,                 /* /dev/null */
  SK_EXEC_PIPE,                 /* an sk_stream the caller takes over */
  SK_EXEC_FEED,                 /* stdin only: the engine writes `feed`, then closes */
  SK_EXEC_CAPTURE               /* stdout/stderr only: read into the engine's buffer */
};

/* SIGTERM first, then SIGKILL this many milliseconds later (timeout). */
#define SK_EXEC_GRACE_MS 2000

typedef struct sk_exec_opts {
  const char *file;             /* the program (searched on PATH without a '/') */
  char **args;                  /* argv, args[0] the program's name, NULL-terminated */
  const char *cwd;              /* NULL: the parent's */
  char **env;                   /* "NAME=value", NULL-terminated; NULL: the parent's */
  int stdio[3];                 /* SK_EXEC_* for fds 0, 1, 2 */
  const char *feed;             /* SK_EXEC_FEED: the bytes (copied) */
  size_t feedlen;
  uint64_t timeout_ms;          /* 0: none */
} sk_exec_opts;

typedef struct sk_exec sk_exec;
struct sk_exec {
  uv_loop_t *loop;
  uv_process_t *proc;           /* NULL once its close began */
  uv_timer_t *timer;            /* the timeout, NULL without one or once closed */
  uv_pipe_t *feedp;             /* SK_EXEC_FEED's pipe while open */
  uv_pipe_t *capp[2];           /* SK_EXEC_CAPTURE's pipes (stdout, stderr) while open */
  sk_rbuf cap[2];               /* what they captured */
  char *feed;                   /* the bytes being fed */
  size_t feedlen;
  sk_stream *io[3];             /* SK_EXEC_PIPE's streams, for the caller to take */
  int pid;
  int exited;                   /* the exit callback ran (or the child was reaped) */
  int64_t status;               /* its exit status, when no signal ended it */
  int termsig;                  /* the signal that ended it, or 0 */
  int timed_out;                /* the timeout fired (and signalled the child) */
  int kill_stage;               /* 0, 1 after SIGTERM from the timeout, 2 after SIGKILL */
  int capturing;                /* capture pipes not yet at their end */
  int cap_err;                  /* the first error of a capture pipe (a libuv code) */
  int handles;                  /* engine handles whose close callback is pending or due */
  int released;                 /* the caller dropped its reference */
  sk_iowaitlist waiters;        /* woken at the exit and at the end of each capture */
  sk_exec **owner;              /* the list it is linked in while running */
  sk_exec *prev, *next;
};

/* Starts a child on `loop`, linked in the list `*owner` until it exits.
** 0 with *out set, or a libuv error code (UV_ENOENT: no such program, ...)
** with nothing left open. */
int sk_exec_start(uv_loop_t *loop, sk_exec **owner, const sk_exec_opts *o, sk_exec **out);

/* 1 when the child exited and every capture pipe reached its end. */
int sk_exec_done(const sk_exec *x);

/* Sends signal `sig` to a child still running: 0, UV_ESRCH when it has
** exited, or another libuv error code (UV_EINVAL for a bad signal). */
int sk_exec_kill(sk_exec *x, int sig);

/* The caller's reference goes: the engine frees the child's memory once
** its handles are closed. A child still running keeps running (its
** owner's sk_exec_kill_all ends it). Waiters must be unlinked first. */
void sk_exec_release(sk_exec *x);

/* Kills (SIGKILL) and reaps every child in the list, closes their engine
** handles and empties the list; called when the owner closes, before its
** loop's last run. */
void sk_exec_kill_all(sk_exec **owner);

#endif
