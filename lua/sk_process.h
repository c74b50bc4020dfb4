/*
** sk_process.h — what the bindings of worker processes offer one another
** and the embed layer: RPC's two ends (rpc.c), which runtime/embed lends
** the process engine through sk_proc_hooks, and the open functions. The
** engine itself (starting workers, frames, one process, the child's main,
** the process pool) is runtime/host/sk_proc.h and sk_ppool.h.
*/
#ifndef SK_PROCESS_H
#define SK_PROCESS_H

#include "sk_bind.h"
#include "../runtime/host/sk_proc.h"

/* rpc.c: lets the worker `w` of this child reach its parent's objects. */
void sk_rpc_attach(sk_worker *w, int fd);
void sk_rpc_detach(void);

/* Parent side of RPC: a connection to one child (rpc.c). The process or
** pool worker that owns the pipe creates it, hands it every 'C' frame, and
** closes it when the pipe closes. A runnable starts the connection's
** server task (Lua) outside any libuv callback. */
sk_conn *sk_conn_new(sk_worker *w, uv_pipe_t *pipe);
void sk_conn_request(sk_conn *c, const char *payload, size_t len);
void sk_conn_close(sk_conn *c);
/* Keeps the objects a buffer sent to the child alive as long as the
** connection (takes them over from *b). */
void sk_conn_keep(sk_conn *c, sk_buf *b);

void sk_ppool_open(lua_State *L);
void sk_process_open(lua_State *L);

#endif
