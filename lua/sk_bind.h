/*
** sk_bind.h — what the bindings in lua/ offer the embed layer above them
** (a binding never calls another binding: tools/check-layers.sh): the
** open functions of the object families, select's view of a selectable
** type, proxies of another process's objects and the module entry. The
** host layer (runtime/host/) never includes this header: where the host
** must reach a binding, the binding side is registered at start-up by
** runtime/embed/runtime.c (sk_worker_set_hooks, sk_marshal_set_proxy) or
** through a registry (sk_type_register).
**
** Threading: as in sk_lua.h, everything here belongs to the calling
** worker's own OS thread unless it says otherwise.
*/
#ifndef SK_BIND_H
#define SK_BIND_H

#include "../runtime/core/sk_view.h"
#include "../runtime/host/sk_lua.h"
#include "../runtime/host/sk_task.h"

/* The open functions of the task and group bindings (task.c, group.c). */
void sk_task_open(lua_State *L);
void sk_group_open(lua_State *L);

/* skein.marshal and skein.register_metatable (marshal_lua.c). */
void sk_marshal_open(lua_State *L);

/* What skein.select needs of an object it can wait on: the select hook of
** its type (sk_type). */
typedef struct sk_selectable {
  /* Tries the operation without blocking: pushes its results and returns
  ** their count (>= 1), or returns 0 when it would block. May raise. */
  int (*try_op)(lua_State *L, sk_obj *o);
  /* Adds a waiter record (taking over its port reference), or returns 1 if
  ** the object is ready already (nothing added), or -1 when out of memory. */
  int (*add_waiter)(sk_obj *o, const sk_waiter *w);
  void (*remove_waiter)(sk_obj *o, sk_port *port, uint32_t slot);
} sk_selectable;
void sk_select_open(lua_State *L);
const sk_selectable *sk_select_find(lua_State *L, int idx);

/* Channels, synchronisation and shared state. */
void sk_sync_open(lua_State *L);
void sk_queue_open(lua_State *L);
void sk_pipe_open(lua_State *L);
void sk_shared_open(lua_State *L);
/* After sk_sync_open: skein.event and skein.barrier. After sk_shared_open:
** skein.shared.table (in the `shared` table it made). */
void sk_event_open(lua_State *L);
void sk_barrier_open(lua_State *L);
void sk_shared_table_open(lua_State *L);

/* Pools and futures (pool.c, future.c). */
void sk_pool_open(lua_State *L);
void sk_future_open(lua_State *L);

/* Thread workers (thread.c). */
void sk_thread_open(lua_State *L);

/* skein.fs (fs.c). */
void sk_fs_open(lua_State *L);
/* skein.trace (trace.c). */
void sk_trace_open(lua_State *L);

/* skein.net (net.c). A stream userdata is one `sk_stream *` (NULL once
** closed) with the metatable SK_STREAM_MT; a binding that hands Lua a
** stream of its own (a subprocess's pipe) makes that userdata and sets the
** metatable by name, after sk_net_open ran. */
#define SK_STREAM_MT "skein.Stream"
void sk_net_open(lua_State *L);

/* skein.exec (exec.c) and skein.signal (signal.c). */
void sk_exec_open(lua_State *L);
void sk_signal_open(lua_State *L);

/* skein.http's client (httpc.c): its C half, in the skein.http table
** (luaL_getsubtable: the server's open function shares it). */
void sk_httpc_open(lua_State *L);
/* skein._redis, the Redis connection under skein.broker (broker.c). */
void sk_broker_open(lua_State *L);

/* skein.http's server (httpd.c), after sk_net_open: it serves streams. */
void sk_httpd_open(lua_State *L);

/* Objects of another process (rpc.c). In a worker process, an object of
** its parent arrives as a proxy that forwards every operation to the
** parent. sk_proxy_info tells whether the value at idx is such a proxy;
** sk_proxy_push makes one (0), or returns -1 when `pid` is not the parent
** this process can reach. The marshaller reaches both through
** sk_marshal_set_proxy. */
int sk_proxy_info(lua_State *L, int idx, const char **name, uint32_t *slot, uint32_t *gen,
                  long *pid);
int sk_proxy_push(lua_State *L, const char *name, uint32_t slot, uint32_t gen, long pid);
void sk_rpc_open(lua_State *L);

/* Module entry (runtime/embed/module.c, which calls every binding's open
** function). Only runtime/embed/ names it: it hands it to every worker
** through sk_worker_set_hooks. */
int luaopen_skein(lua_State *L);

#endif
