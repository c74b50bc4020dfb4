/*
** sk_lua.h — the host layer (runtime/host/): the worker (one Lua state +
** one loop + one scheduler), execution contexts (tasks and the root
** context), the wait protocol every blocking call follows, the error
** constructor, marshalling and the Lua allocator. It includes only core/
** headers, skein.h and Lua's; the bindings' own declarations are in
** lua/sk_bind.h, which the host never includes.
**
** Threading: everything declared here belongs to the worker's own OS thread.
** The only member another thread or a signal handler may touch is
** `interrupted`, through sk_worker_interrupt().
*/
#ifndef SK_LUA_H
#define SK_LUA_H

#include <signal.h>
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#include "../include/skein.h"
#include "../core/sk_io.h"
#include "../core/sk_obj.h"
#include "../core/sk_port.h"
#include "../core/sk_sched.h"
#include "../core/sk_trace.h"

#define SK_NO_DEADLINE UINT64_MAX

typedef struct sk_worker sk_worker;
typedef struct sk_ctx sk_ctx;
typedef struct sk_watch sk_watch;
typedef struct sk_scope sk_scope;
typedef struct sk_group sk_group;
typedef struct sk_alloc sk_alloc;
typedef struct sk_source sk_source;

/* A watcher sits in a waitable's list (a task's `watchers`) and fires once
** when the waitable completes; firing unlinks it first. `fire` must not call
** into Lua: it wakes contexts or records the event. */
struct sk_watch {
  sk_watch *prev, *next;        /* NULL when not linked */
  void (*fire)(sk_watch *w, sk_ctx *source);
};

/* Circular list head for watchers. */
typedef struct sk_watchlist {
  sk_watch head;
} sk_watchlist;

void sk_watchlist_init(sk_watchlist *l);
void sk_watch_link(sk_watchlist *l, sk_watch *w);
void sk_watch_unlink(sk_watch *w);
/* Fires and unlinks every watcher, in link order. */
void sk_watchlist_fire(sk_watchlist *l, sk_ctx *source);

/* Where a context is in its life. */
enum {
  SK_NEW,        /* spawned, never resumed */
  SK_READY,      /* in the ready queue */
  SK_RUNNING,    /* its code is on the CPU (maybe inside a nested pump) */
  SK_WAITING,    /* yielded to the scheduler, waiting for a wake */
  SK_PUMPING,    /* blocked where it cannot yield: drives the loop itself */
  SK_DONE
};

/* How a finished task ended. */
enum { SK_RES_NONE, SK_RES_OK, SK_RES_FAILED, SK_RES_CANCELLED };

/* A deadline set by skein.timeout. Scopes nest; `eff`/`owner` are the
** earliest deadline of this scope and its parents and the scope it belongs
** to, so checking the effective deadline is O(1). */
struct sk_scope {
  sk_scope *parent;
  uint64_t deadline, eff;
  sk_scope *owner;
  double seconds;
};

/* An execution context: a task (its own coroutine) or the worker's root
** context (main chunk, REPL lines, host calls). Task contexts live inside
** their Lua userdata, which a slot of the worker's anchor table keeps
** alive until the task finishes (tasks.c); that is what makes it safe for
** the ready queue, the timer heap and watcher lists to hold raw pointers to
** them. */
struct sk_ctx {
  sk_runnable run;              /* must stay first: the ready-queue node */
  sk_worker *w;
  lua_State *co;                /* the task's coroutine; NULL for the root */
  lua_Integer id;
  /* The small fields are packed (state, result and wflags in bytes, the
  ** flags in bits) because every pending task carries this struct. */
  unsigned char state, result;  /* SK_NEW..SK_DONE, SK_RES_* */
  unsigned char wflags;         /* the current wait's SK_WAIT_* flags (wait.c) */
  int ref;                      /* slot in the worker's anchor table while
                                   unfinished (tasks.c); LUA_NOREF otherwise */
  int nres;                     /* results stored in the userdata */
  unsigned woken : 1, timed_out : 1, cancel_requested : 1, daemon : 1,
      observed : 1, deadlock : 1, interrupt : 1, reported : 1,
      wait_shield : 1,          /* this wait ignores cancels and scopes */
      wait_alone : 1,           /* the next waiter record is for an object only
                                   this worker reaches: no port hold */
      unparked : 1,             /* skein._unpark reached it (see task.c) */
      relook : 1,               /* this wait was woken only to look again: nothing
                                   else could end it (worker.c, worker_flush) */
      background : 1,           /* a pool worker's background task (tasks.c) */
      exposed : 1,              /* its code took its coroutine (coroutine.running):
                                   the coroutine is not reused (tasks.c) */
      ext_hold : 1,             /* this wait holds the port (outside wakers) */
      xwait : 1;                /* this wait gave out a waiter record (sk_ctx_waiter) */
  int shield;                   /* >0: cancels and scope deadlines wait */
  uint32_t wslot, wgen;         /* slot in the worker's wake table, wait number */
  int wround;                   /* the current wait's attempt round (wait.c) */
  sk_timer timer;               /* the deadline of the current wait */
  const sk_source *wsrc;        /* what the current sk_wait_on waits on (wait.c) */
  void *wobj;
  uint64_t wdeadline;
  uint64_t wts;                 /* traced: when this wait last suspended (wait.c) */
  sk_watch joinw;               /* what this context links for one-object waits */
  sk_iowait iow;                /* what it links on an I/O object (core/sk_io.h) */
  sk_watchlist watchers;        /* fired when this task finishes */
  sk_scope *scope;              /* innermost skein.timeout scope */
  sk_group *group;              /* the group this task belongs to, if any */
  sk_ctx *gprev, *gnext;        /* live members of that group */
};

struct sk_worker {
  lua_State *L;                 /* the main state */
  int results_to_parent;        /* a worker process's main worker (marshal.c) */
  sk_alloc *alloc;              /* its allocator (alloc.c) */
  lua_State *cur_L;             /* the state whose code drives the worker now */
  sk_sched sched;
  sk_ctx root;
  sk_ctx *current;              /* whose code runs now */
  lua_Integer next_id;
  const void *task_mt;           /* the task metatable, for fast type checks */
  int task_mt_ref;              /* ... and a registry reference to it */
  int co_cache_ref;             /* registry ref: finished coroutines kept for reuse */
  int co_cached;                /* ... how many it holds (tasks.c) */
  int anchor_ref;               /* registry ref: the table that keeps live tasks (tasks.c) */
  int anchor_top;               /* ... its highest slot handed out */
  int anchor_nfree, anchor_cap; /* ... slots up to the top free again, and the */
  int *anchor_free;             /* ... stack of them (malloc; room for anchor_top) */
  const void *sent_proto;       /* the prototype the encoder sent last (marshal_enc.c) */
  int sent_ref;                 /* ... registry ref: {its closure (weak), its dump}; 0: none */
  const void *plain_fn;         /* the plain function the encoder wrote last (marshal_enc.c) */
  const char *plain_enc;        /* ... its whole encoding, plain_len bytes, held by: */
  size_t plain_len;
  int plain_ref;                /* ... registry ref: {the function, its encoding}; 0: none */
  size_t live;                  /* unfinished non-daemon tasks, threads, processes, pool jobs */
  size_t failures;              /* failed tasks reported as never joined */
  /* An interrupt (Ctrl-C, skein_interrupt, pool:terminate) sets both flags.
  ** `interrupted` is the request as the host sees it: it stays set until
  ** skein_interrupted clears it, and skein_run refuses to run while it is.
  ** `int_owed` is the one `interrupted` error owed to the root context: the
  ** root's next wait, or the hook in its running code, raises it once and
  ** clears it, so code that catches it can wait again to clean up. The
  ** message handler of sk_pcall notes in `int_escaped` whether the error
  ** that last left a protected call uncaught was that one. */
  volatile sig_atomic_t interrupted, int_owed;
  int int_escaped;
  uv_async_t *wakeup;           /* signal-safe wake-up; freed in its close cb */
  sk_port *port;                /* the inbox other threads post to */
  sk_ctx **slots;               /* wake table: slot -> waiting context */
  uint32_t nslots, free_slot;
  uint32_t wait_seq;             /* numbers every wait of every context */
  const char *kind;             /* "main", "thread" or "process" */
  lua_Integer self_id;
  char *self_name;
  void *job_clock;              /* a pool job's deadline (thread_pool.c) */
  void *pool;                   /* the thread pool it is a worker of (thread_pool.c) */
  unsigned submits;             /* thread-pool submits since its port last delivered */
  void *job_cache;              /* finished thread-pool jobs kept for its next */
  int job_cached;               /* ... submits, and how many (thread_pool.c) */
  struct sk_proc *procs;        /* running child processes (proc.c) */
  struct sk_ppool *ppools;      /* process pools it owns (proc_pool.c) */
  struct sk_exec *execs;        /* running skein.exec children (core/subproc.c) */
  struct {                      /* metatables of handle types, by name */
    const char *name;
    const void *ptr;
    int ref;
  } mts[24];
  int nmts;
  int closing;                  /* set while the worker closes */
  int counted;                  /* counted by sk_worker_new (not a thread's) */
  uint64_t relooked;            /* 1 + the loop turn of the last look again (worker_flush) */
  int spawn_background;         /* set while a pool's init runs (tasks.c) */
};

/* The allocator of a worker's state (alloc.c): free lists over 2 MiB
** chunks for small blocks, malloc for the rest. */
sk_alloc *sk_alloc_new(void);
void sk_alloc_free(sk_alloc *a);
lua_State *sk_lua_newstate(sk_alloc *a);

/* The process's count of workers, which tells a wait whether another worker
** could end it. Whoever starts a worker thread counts it first
** (sk_worker_count(1)); the thread becomes its worker with sk_worker_become
** (which tells sk_worker_new that it was counted), and calls
** sk_worker_count(-1) as the very last thing it does, after its final
** wake-ups (so no waiter is ever left uncounted). */
void sk_worker_count(int delta);
/* The workers of this process now (main, threads, pool threads). */
int sk_worker_total(void);

/* What the layers above the host lend every worker. The worker names no
** binding: the embed layer registers these once, at start-up, before the
** first worker is made (runtime/embed/runtime.c, sk_embed_init), and they
** never change after. */
typedef struct sk_worker_hooks {
  /* Opens the `skein` module (luaopen_skein): every worker state preloads
  ** it under that name and sets the global `skein` to it. Required. */
  lua_CFunction open_module;
  /* Becoming a worker (sk_worker_become). `lend` runs on the spawning
  ** worker's thread: what a thread worker started from state `parent`
  ** inherits of it (the host's init hooks, skein_add_init), owned by the
  ** caller until `unlend` frees it; NULL: nothing. `init` runs in the new
  ** worker's state before anything else: a thread's inherited `lent`, or
  ** for a worker process (lent NULL) what its executable lends it (the hook
  ** given to skein_worker_main). 0, or -1 with the message on L's stack.
  ** All three may be NULL (nothing is lent). */
  void *(*lend)(lua_State *parent);
  void (*unlend)(void *lent);
  int (*init)(lua_State *L, int process, void *lent);
  /* The executable worker processes run (the rules are in skein.h): 0 with
  ** its path in `out`, or -1 with the reason, which names the fix, in
  ** `err`. Any thread. NULL: worker processes cannot be started. */
  int (*exe)(char *out, size_t n, char *err, size_t errn);
} sk_worker_hooks;
void sk_worker_set_hooks(const sk_worker_hooks *h);

/* What a new worker is (sk_worker_become). */
typedef enum sk_worker_kind {
  SK_WORKER_THREAD,             /* skein.thread */
  SK_WORKER_POOL_THREAD,        /* one thread of a thread pool */
  SK_WORKER_PROCESS             /* the worker of a worker process */
} sk_worker_kind;

/* The one way a thread or process becomes a worker: makes the worker of
** the calling thread (a thread kind was counted by its starter:
** sk_worker_count), names it (kind, skein.self's id, and `name`, a
** malloc'd string it takes over, or NULL) and runs what the layers above
** lend it (sk_worker_hooks.init: `lent` from sk_worker_lend for a thread
** kind, NULL for a process). Returns NULL with *err set when no worker
** could be made (`name` freed). Otherwise the worker, and *err NULL, or
** the message of a failed init (on the worker's stack): the worker is
** made and must be closed, but must run no user code. */
sk_worker *sk_worker_become(sk_worker_kind kind, lua_Integer id, char *name, void *lent,
                            const char **err);
/* On the spawning worker's thread: what a thread worker started from L
** inherits (sk_worker_hooks.lend), for sk_worker_become; freed, by
** whoever holds it once the worker no longer needs it, with
** sk_worker_unlend (NULL is fine). */
void *sk_worker_lend(lua_State *L);
void sk_worker_unlend(void *lent);
/* The init step of sk_worker_become on its own: runs in L what the layers
** above lend a new worker (sk_worker_hooks.init). 0, or -1 with the
** message on L's stack. */
int sk_worker_init(lua_State *L, int process, void *lent);
/* The executable a worker process runs (sk_worker_hooks.exe): 0 with its
** path in `out`, or -1 with the reason in `err`. Any thread. */
int sk_worker_exe(char *out, size_t n, char *err, size_t errn);

/* A worker process has a link to its parent, which may end its waits on
** shared objects (rpc): from then on those waits hold the loop. Called
** once, by the process's main thread before it runs any user code. */
void sk_worker_parent_linked(void);

/* Worker lifecycle (worker.c). sk_worker_new opens the standard libraries
** and preloads `skein` (sk_worker_hooks); it returns NULL with *err set to
** a message. */
sk_worker *sk_worker_new(uv_loop_t *host_loop, const char **err);
int sk_worker_close(sk_worker *w);
sk_worker *sk_worker_of(lua_State *L);
/* Calls the function below `nargs` arguments with a traceback handler;
** the one path from C into Lua. On error the message (with traceback) is
** left on the stack. */
int sk_pcall(lua_State *L, int nargs, int nres);
/* Async-signal-safe: asks the worker to stop what it is waiting for. */
void sk_worker_interrupt(sk_worker *w);
/* Runs until no non-daemon task is left. Returns 0, or -1 with an error
** object pushed (deadlock or interrupt). */
int sk_worker_drain(sk_worker *w);

/* The primitives of the wait protocol, which the one loop of wait.c
** (sk_wait_on, below) calls in order; a binding waits through sk_wait_on
** and never calls these itself. sk_wait_begin raises what a suspension
** point owes and arms the deadline; sk_wait suspends the task (yielding to
** the scheduler, which later calls `k` with LUA_YIELD) or, where the code
** cannot yield, drives the loop until the context is woken and returns
** LUA_YIELD; sk_wait_end undoes sk_wait_begin and raises for
** cancellation, interrupts, deadlock and expired skein.timeout scopes,
** returning 1 when the wait's own deadline has passed; sk_wait_abort
** undoes sk_wait_begin when the source turned ready before the wait. */
sk_ctx *sk_current(lua_State *L);
/* Prepares a context of worker `w` (a task's, inside its userdata). */
void sk_ctx_init(sk_ctx *c, sk_worker *w);
/* Whether the value at idx can be called (a function, or __call). */
int sk_callable(lua_State *L, int idx);
/* Reads integer argument `arg` >= `min`; an absent one gives `def` when
** def >= min, else raises "bad argument" naming `what`. */
lua_Integer sk_check_count(lua_State *L, int arg, lua_Integer def, lua_Integer min,
                           const char *what);
/* Raises a type error unless argument `arg` is callable. */
void sk_check_callable(lua_State *L, int arg);
/* The identity of context `c` across threads: its worker's port and its
** wake slot (given one now if it has none); raises when out of memory. */
void sk_ctx_identity(lua_State *L, sk_ctx *c, sk_port **port, uint32_t *slot);
void sk_wait_begin(lua_State *L, sk_ctx *c, uint64_t deadline);
int sk_wait(lua_State *L, sk_ctx *c, lua_KContext kctx, lua_KFunction k);
int sk_wait_end(lua_State *L, sk_ctx *c);
void sk_ctx_wake(sk_ctx *c);
/* Undoes sk_wait_begin when the condition turned true before waiting. */
void sk_wait_abort(sk_ctx *c);
/* Fills *out with a record that wakes `c`'s current wait from any thread
** (call between sk_wait_begin and sk_wait). While the wait lasts the
** worker's loop counts as alive: another worker may end it. Returns -1 when
** out of memory. */
int sk_ctx_waiter(sk_ctx *c, sk_waiter *out);
/* After a worker process of `w` has gone: when no one else could now end a
** wait on a shared object, wakes the waits that began while someone could,
** so that they look again (and report a deadlock instead of hanging). */
void sk_worker_recheck_waits(sk_worker *w);
/* Gives the context a wake slot if it has none: (port, slot) identifies a
** context across threads (lock owners). -1 when out of memory. */
int sk_ctx_slot(sk_ctx *c);
/* Frees the context's wake slot (when a task finishes). */
void sk_ctx_drop_slot(sk_ctx *c);
/* Converts an optional timeout argument to an absolute deadline; raises a
** clear error for negative, NaN or non-numeric values. */
uint64_t sk_check_deadline(lua_State *L, int arg);
/* Pushes a deadline saved by sk_check_deadline back as a Lua value. */
void sk_push_deadline(lua_State *L, uint64_t deadline);
uint64_t sk_to_deadline(lua_State *L, int idx);
int sk_expired(uint64_t deadline);

/* Errors (error.c). sk_error_push leaves a new error object on the stack;
** sk_error_raise raises it. Callers own no C resources when raising. */
void sk_error_push(lua_State *L, const char *kind, const char *fmt, ...);
int sk_error_raise(lua_State *L, const char *kind, const char *fmt, ...);
int sk_error_is(lua_State *L, int idx, const char *kind);
void sk_error_open(lua_State *L);
/* The errors that carry a machine-readable `code` and what they are about
** (a path, an address, a URL). sk_error_push_coded pushes one of `kind`
** whose message is fmt's text, setting `code` when it is not NULL and
** `field` = `value` when both are not NULL. sk_io_error_raise raises kind
** "io" for libuv error `uv_err`: the message is fmt's text, ": " and
** uv_strerror(uv_err); `code` is uv_err_name(uv_err); `field` = `value` as
** above. Callers own no C resources when raising (a text a released object
** owned is pushed first, and passed from the stack). */
void sk_error_push_coded(lua_State *L, const char *kind, const char *code, const char *field,
                         const char *value, const char *fmt, ...);
int sk_io_error_raise(lua_State *L, int uv_err, const char *field, const char *value,
                      const char *fmt, ...);

/* Marshalling (marshal.c). A buffer owns a reference to every shared
** object it mentions until it is freed. */
typedef struct sk_buf {
  char *data;
  size_t len, cap;
  sk_obj **objs;
  size_t nobjs, capobjs;
} sk_buf;

/* Decoder permissions: functions/_G and shared objects. Data from outside
** the process (the broker) is decoded with neither. */
enum { SK_MARSHAL_CODE = 1, SK_MARSHAL_OBJECTS = 2 };

/* Pushes a new Lua handle for `o`, taking over one reference. */
typedef void (*sk_obj_push)(lua_State *L, sk_obj *o);

/* Makes userdata whose metatable is named `name` sendable by reference;
** its memory must start with the sk_obj pointer (NULL once closed). */
void sk_marshal_register_type(const char *name, sk_obj_push push);
/* A host's userdata type (skein_register_type, skein.h): a copy of its
** descriptor, and the sk_objtype of the objects that carry one of its
** pointers by reference through the handle table while a send is in
** flight (marshal_auth.c). Never freed or changed once registered. */
typedef struct sk_hosttype {
  sk_objtype wrap;              /* wrap.name is ops.name */
  skein_type_ops ops;           /* name and metatable are copies */
} sk_hosttype;
/* Registers a host type. Returns 0 (also when the same name is registered
** with the same callbacks), or -1 with *why set to a static message. The
** descriptor is assumed complete (the embed layer checks it). Any thread. */
int sk_marshal_register_host(const skein_type_ops *ops, const char **why);
/* The host type registered under `name` (by_metatable: whose metatable is
** `name`), or NULL. Any thread. */
const sk_hosttype *sk_marshal_find_host(const char *name, int by_metatable);
/* A new reference to host pointer p of type t, for a buffer to hold while
** in flight: retains p, and releases it when the last reference goes.
** NULL when out of memory (nothing retained). */
sk_obj *sk_marshal_host_ref(const sk_hosttype *t, void *p);
/* The host pointer such a reference carries. */
void *sk_marshal_host_pointer(sk_obj *o);
/* Where skein_write appends (skein.h): the buffer being encoded. */
struct skein_writer {
  sk_buf *b;
  int failed;                   /* a write ran out of memory */
};
/* Appends n bytes to b; 0, or -1 when out of memory. Never raises. */
int sk_buf_append(sk_buf *b, const void *p, size_t n);
/* An object family's Lua type, registered in one call (sk_type_register,
** types.c) when the module opens in a worker. The descriptor is static and
** outlives every worker: the process-wide tables below keep pointers to it.
** Fields left out (NULL) add nothing:
**   name      the metatable's registry name, also its __name;
**   methods   the methods table; it is __index unless `index` is set;
**   index     an __index function, given the methods table as upvalue 1;
**   methods_key  a registry field that keeps the methods table too (so that
**             methods written in Lua can be added to it);
**   gc, close, tostring  __gc, __close, __tostring;
**   meta      any other metamethods, set as they are (__eq, __len, ...; or
**             __index itself for a type without `methods`);
**   push      makes the type sendable by reference (sk_marshal_register_type);
**   select    what skein.select needs of the type (an sk_selectable of
**             lua/sk_bind.h, opaque here); found again by sk_type_select. */
typedef struct sk_type {
  const char *name;
  const luaL_Reg *methods;
  lua_CFunction index;
  const char *methods_key;
  lua_CFunction gc, close, tostring;
  const luaL_Reg *meta;
  sk_obj_push push;
  const void *select;
} sk_type;
/* Makes the metatable `t->name` in this state (once: a metatable of that
** name already there is left as it is), and records the process-wide hooks
** (marshal, select). Leaves the stack as it found it. */
void sk_type_register(lua_State *L, const sk_type *t);
/* The select hook of the value at idx (by its metatable's __name), or NULL
** when it has none or is not a registered type. Any thread. */
const void *sk_type_select(lua_State *L, int idx);
/* __eq for handles (sk_handle): equal when they reach the same object. */
int sk_handle_eq(lua_State *L);

/* How the marshaller meets objects of another process, lent by the bindings
** (rpc.c) and registered once at start-up by the embed layer, before the
** first worker is made. `info` tells whether the value at idx is a
** stand-in for such an object (1, filling in its type name and its handle
** in process `pid`) or not (0); `push` pushes a new stand-in and returns 0,
** or returns -1 (nothing pushed) when process `pid` cannot be reached from
** here. `info` never raises; `push` only when Lua runs out of memory.
** Unregistered: no value is a stand-in and none can be made. */
typedef struct sk_marshal_proxy {
  int (*info)(lua_State *L, int idx, const char **name, uint32_t *slot, uint32_t *gen,
              long *pid);
  int (*push)(lua_State *L, const char *name, uint32_t slot, uint32_t gen, long pid);
} sk_marshal_proxy;
void sk_marshal_set_proxy(const sk_marshal_proxy *p);

/* Encodes `n` values from `first` into *out. Returns 0, or -1 with an error
** of kind "marshal" (naming the path under `root`) pushed; never raises. */
int sk_marshal_encode(lua_State *L, int first, int n, sk_buf *out, const char *root);
/* Pushes the decoded values and returns their count, or -1 with an error
** pushed; never raises. */
int sk_marshal_decode(lua_State *L, const char *data, size_t len, int flags);
/* The same two without their protected call, for a caller that is in one
** already and holds nothing an error would leak: they raise the error
** instead of returning it. The encoder appends to *out (its len and nobjs
** 0 on entry; storage it has is reused); what it wrote before it raised
** stays there, and the caller frees it in either case. */
int sk_marshal_encode_raw(lua_State *L, int first, int n, sk_buf *out, const char *root);
int sk_marshal_decode_raw(lua_State *L, const char *data, size_t len, int flags);
/* The same for a list: encodes t[i..j] (t at stack index t) as j-i+1
** values, named root[1], root[2]... in errors; and decodes a buffer's
** values into t[at], t[at+1]... (raw sets; a nil leaves its place alone),
** returning their count or -1 with an error pushed. Neither raises. */
int sk_marshal_encode_list(lua_State *L, int t, lua_Integer i, lua_Integer j, sk_buf *out,
                           const char *root);
int sk_marshal_decode_into(lua_State *L, const char *data, size_t len, int flags, int t,
                           lua_Integer at);
void sk_buf_free(sk_buf *b);
/* Releases the objects a buffer mentions and empties it (len 0); its
** storage stays with it. */
void sk_buf_clear(sk_buf *b);

/* Objects across processes. While set on a thread, encoding moves every
** object whose type can live in the shared segment there (sk_shm.h) and
** refers to it by its place in the segment; objects already there are
** always sent that way. Set around encodes bound for another process. */
extern _Thread_local int sk_marshal_xproc;
/* sk_marshal_xproc while a worker process encodes a result for its parent,
** which may read it after the process is gone (see marshal.c). */
#define SK_XPROC_TO_PARENT 2
/* A worker process's results may be read by its parent after the process
** is gone, so every shared object they mention gets a reference for the
** parent. Those references are handed over with the reply: the child sends
** sk_marshal_parent_refs's bytes (type, index, generation, uint32 each) in
** an 'X' frame before its 'R' or 'F', and the parent, which keeps the
** reply's bytes in an sk_buf, adopts them there (sk_marshal_adopt_refs:
** views in b->objs), so they go when the bytes go. parent_refs_forget
** drops the notes of references taken outside a job's reply (they stay
** taken for good). */
size_t sk_marshal_parent_refs(sk_buf *out);
void sk_marshal_parent_refs_forget(void);
void sk_marshal_adopt_refs(sk_buf *b, const char *x, size_t len);
/* sk_marshal_encode with sk_marshal_xproc set. */
int sk_marshal_encode_xproc(lua_State *L, int first, int n, sk_buf *out, const char *root);

/* The key that authenticates marshalled code: sk_marshal_key copies it
** (for a worker process being started); a worker process installs its
** parent's with sk_marshal_set_key before it decodes anything. */
void sk_marshal_key(uint8_t out[16]);
void sk_marshal_set_key(const uint8_t key[16]);
/* The tags the format carries after bytecode and after a module or C
** function's name (the fuzz target makes valid ones). */
uint64_t sk_marshal_code_tag(const void *code, size_t len);
uint64_t sk_marshal_name_tag(const char *name, size_t len);

/* ------------------------------------------------ the one way to wait
**
** Every blocking call waits on a *source*: something that can tell whether
** the call can complete now, and that can link the waiting context so that
** a change wakes it. A binding describes its source once (an sk_source of
** three functions) and returns sk_wait_on(L, &source, obj, deadline, 0)
** from its lua_CFunction. The loop in wait.c does the rest, the same way
** for every source:
**
**   attempt -> done?  return its results
**   arm the deadline (the call's own or the enclosing skein.timeout
**   scope's), link, then suspend the task (or pump the loop where the
**   code cannot yield); after the wake: unlink, raise what the wait owes
**   (cancellation, Ctrl-C, deadlock, an expired scope), attempt again.
**
** Between a yield and its resumption nothing lives on the C stack: the
** loop keeps (source, obj, deadline, flags, round) in the context, and
** `obj` must stay alive through the wait (the binding keeps its userdata
** on the Lua stack). */
typedef int (*sk_ready_fn)(void *obj);

struct sk_source {
  const char *name;             /* the object's type, for messages */
  const char *what;             /* what a trace calls this wait ("queue get"); NULL: name */
  /* Tries to complete the call: pushes its results and returns their count
  ** (>= 0), or returns SK_WAIT_MORE when it has to wait. `round` counts the
  ** wakes of this call so far (0 on the first look); `expired` says the
  ** call's own deadline has passed, and then the call must complete (a
  ** result saying so, or a raise of kind "timeout"). May raise, holding
  ** nothing. */
  int (*attempt)(lua_State *L, void *obj, int round, int expired);
  /* Links the context so that a change of the source wakes it. Returns 0
  ** when linked, 1 when the source turned ready meanwhile (nothing linked:
  ** the loop attempts again at once), -1 when out of memory (nothing
  ** linked). NULL for a source that only a deadline ends (sleep). Runs no
  ** Lua and never raises. */
  int (*link)(void *obj, sk_ctx *c, int round);
  /* Unlinks what link linked. Returns 1 when a waker had already taken
  ** this context's link (the context was picked: a wake-one source owes
  ** that wake to another waiter if this one leaves without acting), else
  ** 0. Runs no Lua and never raises. */
  int (*unlink)(void *obj, sk_ctx *c);
  /* For a wake-one source (a lock, a semaphore, a queue's getters): hands
  ** a wake this context was picked for to the next waiter, called when the
  ** wait ends in a raise (cancelled, interrupted, a scope's deadline)
  ** instead of another attempt. NULL for sources that wake every waiter. */
  void (*pass_on)(void *obj);
  /* For an object whose handle another task may close while this one
  ** waits (a handle with __close): finds the object again from the Lua
  ** stack after every wake, before anything touches it, or returns NULL
  ** when it is gone (the loop ends the wait and raises kind "closed").
  ** Never raises. NULL when `obj` stays valid through the wait (its
  ** userdata sits on the stack and nothing else can free it). */
  void *(*check)(lua_State *L);
  /* For a wait that must act before an error leaves it (a condition takes
  ** its lock back first): called when the end of a wait raises after a
  ** wake (cancelled, interrupted, deadlock, a scope's deadline), with that
  ** error on top of the stack and the context unlinked (a picked wake
  ** already passed on). Returns like attempt (it may chain another
  ** sk_wait_on) or raises. NULL: the error goes through. */
  int (*raised)(lua_State *L, void *obj);
};

#define SK_WAIT_MORE (-1)
/* sk_wait_on flags. SK_WAIT_SHIELD: the wait goes on through cancels and
** scope deadlines (cleanup waits: closing a group, answering the parent). */
enum { SK_WAIT_SHIELD = 1 };

/* Waits until src->attempt completes; returns what it returned (use as the
** return value of the calling lua_CFunction). */
int sk_wait_on(lua_State *L, const sk_source *src, void *obj, uint64_t deadline,
               unsigned flags);

/* Links for the common kinds of source, for use in a source's `link` and
** `unlink`:
** - a watcher list in this worker (a task's or a group's): the context's
**   own watcher `joinw` is linked;
** - a list of waiter records under a mutex, for an object other threads
**   (workers) reach: `ready` is called with the lock held, and a waiter
**   record is added only when it says no. Whoever changes the object wakes
**   waiters (sk_waitlist_wake_one/all) under the same lock. */
int sk_link_watch(sk_watchlist *l, sk_ctx *c);
/* (sk_unlink_watch has a source's `unlink` shape: use it as one.) */
int sk_unlink_watch(void *obj, sk_ctx *c);
int sk_link_shared(sk_ctx *c, uv_mutex_t *lock, sk_waitlist *list, sk_ready_fn ready,
                   void *obj);
int sk_unlink_shared(sk_ctx *c, uv_mutex_t *lock, sk_waitlist *list);

/* Shared object handles: every such userdata starts with this struct. */
typedef struct sk_handle {
  sk_obj *obj;                  /* NULL once closed */
} sk_handle;

/* Checks a handle of metatable `mt` and returns its (open) object. */
sk_obj *sk_handle_check(lua_State *L, int idx, const char *mt);
/* Pushes a new handle for `o` (taking over one reference). */
void sk_handle_push(lua_State *L, sk_obj *o, const char *mt);
/* __gc/__close for handles: drops the handle's reference. */
int sk_handle_release(lua_State *L);

/* Failures that cross workers (worker.c). sk_capture is a message handler
** turning an error into {value=, message=, traceback=}. sk_encode_failure
** pops the failure at the top (a captured table or any error value),
** encodes it as (message, traceback, value) into *out and returns the skein
** error kind it stands for ("timeout", "cancelled", "marshal") or NULL. */
int sk_capture(lua_State *L);
const char *sk_encode_failure(lua_State *L, sk_buf *out);
/* Runs a marshalled call (fn, args...) at worker w's root: decodes it,
** calls fn under sk_capture, drains the tasks it spawned, and encodes the
** results (or the failure) into *out, which arrives empty (no bytes, no
** objects; storage it has is used again). Returns 0 on success, 1 when *out
** holds a failure (*kind: its skein kind or NULL), -1 when even that failed
** (the message is left on w's stack). */
int sk_run_call(sk_worker *w, const char *code, size_t len, sk_buf *out, const char **kind);
/* A pool's submit: encodes the call whose function is at `first` (its
** arguments above it, to the top) and returns the buffer holding it, which
** the engine copies; pushes one value, which sk_call_encode_done pops. A
** call of scalars goes into a box kept in the calling C function's upvalue
** `up` (the box's metatable, whose __gc is sk_call_box_gc, in upvalue
** `up + 1`), without a protected call; any other into *local, under
** sk_marshal_encode's protection (sk_marshal_encode_xproc when `xproc`).
** Raises the encoder's error. */
sk_buf *sk_call_encode(lua_State *L, int first, int up, int xproc, sk_buf *local);
/* After the engine copied the call: gives the box back to its upvalue, or
** frees *local; pops what sk_call_encode pushed. */
void sk_call_encode_done(lua_State *L, int up, sk_buf *code, sk_buf *local);
int sk_call_box_gc(lua_State *L);

/* The arguments of skein.thread and skein.process: (fn, ...) or the table
** form {fn=, args=, name=, daemon=, init=, init_args=}, which is rewritten
** in place to [init, init_args...] fn and its arguments; *ninit counts the
** init values (0 without init). A table with __call is a function, not the
** options form. *name is a malloc'd copy (or NULL) for the caller. */
int sk_worker_args(lua_State *L, int *daemon, char **name, int *ninit);
/* Raises a bad-argument error for `arg` naming the first key of the
** options table there that is not in `known` (NULL-terminated). */
void sk_check_options(lua_State *L, int arg, const char *const *known);

#endif
