/*
** sk_fs.h — the engine of skein.fs (fsops.c): one file-system job runs on
** libuv's thread pool (uv_queue_work; the work itself uses libuv's fs API,
** uv_fs_* without a loop), so only the task that asked waits.
**
** Ownership: a job is heap memory. The binding that queued it holds it
** until the job's after-work callback ran (`done`); a binding that leaves
** the wait early (cancel, timeout, error) calls sk_fsjob_release, which
** frees a finished job at once and marks a running one an orphan that its
** callback frees. The work never leaves an fd open: every descriptor it
** opens it closes before it returns.
**
** Threading: everything here belongs to the worker thread whose loop ran
** sk_fsjob_start, except the work function, which runs on the pool.
*/
#ifndef SK_FS_H
#define SK_FS_H

#include <stddef.h>
#include <uv.h>

#include "sk_lua.h"

enum {
  SK_FS_READ, SK_FS_WRITE, SK_FS_APPEND, SK_FS_STAT, SK_FS_EXISTS, SK_FS_LIST,
  SK_FS_MKDIR, SK_FS_REMOVE, SK_FS_RENAME,
  SK_FS_OPEN,              /* path with `oflags` -> fd */
  SK_FS_PREAD,             /* fd at `off`, up to `len` bytes -> data/len */
  SK_FS_PWRITE             /* data/len to fd at `off` (-1: the fd's position) */
};

typedef struct sk_fsjob {
  uv_work_t work;
  int op;
  int opt;                 /* mkdir: parents; remove: recursive */
  char *path, *path2;      /* path2: rename's target */
  char *data;              /* write/append: what to write; read: what was read */
  size_t len;
  int err;                 /* 0, or a libuv error code */
  int err_second;          /* the error is about path2 (rename's target) */
  int exists;
  uv_stat_t st;
  char **names;            /* list: sorted, `nnames` of them */
  size_t nnames;
  int fd, oflags, close_fd;  /* close_fd: the callback closes `fd` (its file was
                               closed while this job used it) */
  int64_t off;
  sk_ctx *waiter;          /* linked by the wait source (from link to unlink); NULL when none */
  int done, orphan;
} sk_fsjob;

/* A job for `op` on `path` (copied; path2 and data may be NULL), or NULL
** when out of memory. */
sk_fsjob *sk_fsjob_new(int op, const char *path, const char *path2, const char *data,
                       size_t len, int opt);
/* Queues the job on `loop`'s thread pool; a libuv error code on failure
** (the job is then done with that error). */
int sk_fsjob_start(sk_fsjob *j, uv_loop_t *loop);
/* Gives the job up: frees it when done, else orphans it (its callback
** frees it; an orphaned open closes the fd it got). */
void sk_fsjob_release(sk_fsjob *j);
/* Frees the data a job returned (read's buffer, list's names). */
void sk_fsjob_free(sk_fsjob *j);

#endif
