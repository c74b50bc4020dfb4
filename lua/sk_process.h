/*
** sk_process.h — process workers: the frame protocol between a parent and
** a worker process, starting a worker process, and the child's main.
*/
#ifndef SK_PROCESS_H
#define SK_PROCESS_H

#include "sk_bind.h"
#include "../runtime/core/sk_shm.h"

/* Frames on the parent/child socket: 4-byte little-endian length, a type
** byte, the payload. Blocking helpers for the child; a parser for the
** parent's incremental reads. sk_frame_read fills *out (to free). A
** payload is at most SK_FRAME_MAX bytes: the writers refuse longer ones
** (callers check first and raise kind "marshal"). */
#define SK_FRAME_MAX ((size_t)0xffffffffu)
/* The flags byte that starts a pool worker's 'I' frame (process.c). */
#define SK_POOL_STARTS 1
int sk_frame_write(int fd, int type, const void *data, size_t len);
int sk_frame_read(int fd, int *type, sk_buf *out);
size_t sk_frame_parse(const char *buf, size_t len, int *type, const char **payload, size_t *plen);

/* In a freshly started worker process: arranges to die with the parent and
** checks that the parent is still alive. -1 when it is not. */
int sk_process_child_setup(void);
/* The main of `skein --skein-worker FD MODE`: MODE "once" runs one job
** then exits; "pool" serves jobs until told to quit. */
int sk_process_child_main(int fd, const char *mode);

/* The child's buffered reader of its socket to its parent, and the frames
** set aside while an RPC waited. */
int sk_child_read(int *type, const char **payload, size_t *plen);
/* With nonblock: returns 1 instead of waiting when no whole frame is in. */
int sk_child_read_nb(int *type, const char **payload, size_t *plen, int nonblock);
int sk_child_defer(int type, const char *payload, size_t len);
/* rpc.c: lets the worker `w` of this child reach its parent's objects. */
void sk_rpc_attach(sk_worker *w, int fd);
void sk_rpc_detach(void);

/* Parent side of RPC: a connection to one child (rpc.c). The process or
** pool worker that owns the pipe creates it, hands it every 'C' frame, and
** closes it when the pipe closes. A runnable starts the connection's
** server task (Lua) outside any libuv callback. */
typedef struct sk_conn sk_conn;
sk_conn *sk_conn_new(sk_worker *w, uv_pipe_t *pipe);
void sk_conn_request(sk_conn *c, const char *payload, size_t len);
void sk_conn_close(sk_conn *c);
/* Keeps the objects a buffer sent to the child alive as long as the
** connection (takes them over from *b). */
void sk_conn_keep(sk_conn *c, sk_buf *b);

/* Starts the worker executable (sk_worker_exe) in worker mode with the
** child's end of a new socketpair as its fd 3 and the shared segment as its
** fd 4; opens the parent's end as `pipe`, on which the start frame ('K':
** the marshal key and the child's process slot) goes first. Returns 0 or a
** libuv error: UV_EAGAIN when the process tree has no free slot (the child
** is not started). On error `proc` (malloc'd) is no longer the caller's: it
** is freed, at once or (when libuv already listed it) in its close
** callback; `pipe` is untouched, the caller's to free. */
int sk_spawn_worker(uv_loop_t *loop, uv_process_t *proc, uv_pipe_t *pipe, lua_Integer id,
                    const char *name, const char *mode, uv_exit_cb on_exit);
/* Refuses a marshalled payload that, with `room` more bytes, would not fit
** one frame: frees it and raises kind "marshal" naming `what`. Returns 0
** (nothing done) when it fits. */
int sk_frame_refuse(lua_State *L, sk_buf *b, size_t room, const char *what);
/* Raises a failure to start a worker process as kind "io" with `code` the
** errno name of `rc`: `why` when given (no worker executable), else what
** sk_spawn_worker's `rc` means (UV_EAGAIN: the process tree is at its limit
** of live processes). */
int sk_spawn_error(lua_State *L, int rc, const char *why);
/* Queues a frame (copied) on a worker pipe; 0 or a libuv error: UV_EPIPE
** for a NULL pipe (the child's end is gone), UV_E2BIG for a payload over
** SK_FRAME_MAX. */
int sk_send_frame(uv_pipe_t *pipe, int type, const char *data, size_t len);
/* Writes `data` (a whole frame, malloc'd; freed once written, or now on
** error; the same errors). */
int sk_write_owned(uv_pipe_t *pipe, char *data, size_t len);

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

/* At worker close: kills and reaps every child process still running. */
void sk_process_kill_all(sk_worker *w);
void sk_ppool_kill_all(sk_worker *w);
void sk_ppool_open(lua_State *L);
void sk_process_open(lua_State *L);

#endif
