/*
** sk_rpc.h — RPC's two ends (rpc_engine.c): a worker process reaching its
** parent's objects, and the parent serving one child's calls on them. The
** Lua faces (the proxy type, the connection's handle) are lua/rpc.c; the
** process engines (proc.c, proc_pool.c, proc_child.c) open and close the
** ends.
**
** Threads: everything here belongs to the owning worker's own OS thread:
** the child's process's main worker, or the worker that owns the child's
** pipe.
*/
#ifndef SK_RPC_H
#define SK_RPC_H

#include "sk_proc.h"

/* The metatables of a proxy and of a connection's handle; the types are
** registered by lua/rpc.c. */
#define SK_PROXY_MT "skein.Proxy"
#define SK_CONN_MT "skein.Connection"

/* ------------------------------------------------------- child side */

/* Lets the worker `w` of this child reach its parent's objects over `fd`,
** and lets go of it at the end. */
void sk_rpc_attach(sk_worker *w, int fd);
void sk_rpc_detach(void);
/* For a pool worker that waits for its next job in its own loop (it has
** work of its own between jobs): sk_rpc_pump reads what the socket holds
** now, without blocking (answers go to their callers, other frames are set
** aside with sk_child_defer); sk_rpc_watch(1) has the loop do the same
** whenever the socket becomes readable, until sk_rpc_watch(0) (which
** leaves the watch on while calls wait for answers); sk_rpc_eof says
** whether the parent's end is gone. */
void sk_rpc_pump(void);
void sk_rpc_watch(int on);
int sk_rpc_eof(void);
/* 1 when a proxy of an object of process `pid` can be used here: this
** process is attached to its parent and `pid` is that parent. */
int sk_rpc_can_proxy(long pid);
/* Sends op(name, the proxy at 1, the arguments from `first`) to the
** parent and waits (shielded: SK_WAIT_SHIELD) for the answer; returns its
** values or raises its error (kind closed when the parent is gone, usage
** on a worker other than the attached one). */
int sk_rpc_call(lua_State *L, const char *op, const char *name, int first);

/* ------------------------------------------------------ parent side */

/* A connection to one child: the process or pool worker that owns the
** pipe creates it (w: the owning worker), hands it every 'C' frame, and
** closes it when the pipe closes. The first request pushes a runnable that
** starts the connection's server task (the Lua function registered as
** "skein.rpc.serve") outside any libuv callback, with the connection's
** handle (SK_CONN_MT) as its argument. NULL when out of memory. */
sk_conn *sk_conn_new(sk_worker *w, uv_pipe_t *pipe);
void sk_conn_request(sk_conn *c, const char *payload, size_t len);
/* The child is gone: a request of it waiting here is cancelled, requests
** not yet started are dropped. */
void sk_conn_close(sk_conn *c);
/* Keeps the objects a buffer sent to the child alive as long as the
** connection (takes them over from *b). */
void sk_conn_keep(sk_conn *c, sk_buf *b);
/* For the server task: waits for the next request; pushes (id, request)
** and returns 2, or returns 0 once the child is gone. */
int sk_conn_next(lua_State *L, sk_conn *c);
/* 1 while the child's pipe is open. */
int sk_conn_alive(const sk_conn *c);
/* Sends the answer to request `id` (8 bytes): 0, UV_EPIPE when the pipe
** has closed, or what sk_send_frame2 says (UV_ENOMEM). */
int sk_conn_reply(sk_conn *c, const char *id, const char *body, size_t len);
/* The handle is collected: lets go of the connection. */
void sk_conn_drop(sk_conn *c);

#endif
