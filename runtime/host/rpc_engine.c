/*
** rpc_engine.c — RPC's two ends (sk_rpc.h): shared objects across
** processes. An object (queue, event, lock,
** semaphore, condition, barrier, pipe end, shared value/array/table, future)
** lives in the process that created it. A worker process that receives one
** from its parent gets a *proxy*: every method call, field read or write on
** the proxy is sent to the parent over the child's socket ('C' frames) and
** performed there by a server task of that child's connection, which
** answers with the results or the error ('A' frames).
**
** Why this shape: the objects keep one implementation and their exact
** semantics (timeouts, close, priorities, atomic updates) in every process,
** and a child that dies mid-operation cannot tear anything: the operation
** happens whole in the parent, or not at all. Locks and semaphores a dead
** child held are released by its server task when the connection closes;
** a call of the dead child that was waiting here (a get, an acquire, a
** barrier wait, an update) is cancelled, and calls not yet started are
** dropped, so nothing is taken on behalf of a process that is gone.
**
** In the child, a call sends its frame and waits like any other wait: only
** the calling task is suspended (or the root drives the loop), and a poll
** handle on the socket hands answers to their callers; other frames (jobs
** sent ahead) are set aside for the job loop.
**
** Limits (documented in docs/): only the process's main worker may use
** proxies; a proxy cannot be passed on to a grandchild; select does not
** take proxies; a waiting call is shielded from cancellation.
**
** The proxy type (the Lua face of a parent's object in the child) and
** the connection's handle are lua/rpc.c; this file is what they and the
** process engines run on.
**
** Frames: 'C' = [8-byte request id][marshalled: op, name, object, args...],
** 'A' = [8-byte request id][marshalled: ok, values...].
*/
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sk_rpc.h"
#include "sk_task.h"

/* ----------------------------------------------------------- child side */

static int rpc_fd = -1;
static sk_worker *rpc_worker;
static uint64_t rpc_next_id;

/* A call waiting for its answer. It lives in a userdata on the caller's
** stack, linked in `pending` only while the caller waits. */
typedef struct pcall {
  struct pcall *next;
  uint64_t id;
  sk_ctx *c;
  char *reply;
  size_t len;
  int done;
} pcall;

static pcall *pending;
static uv_poll_t *rpc_poll;       /* watches the socket while calls wait */
static int rpc_eof;

static void unlink_call(pcall *pc) {
  for (pcall **q = &pending; *q; q = &(*q)->next) {
    if (*q == pc) {
      *q = pc->next;
      break;
    }
  }
  pc->next = NULL;
  if (pending == NULL && rpc_poll) uv_poll_stop(rpc_poll);
}

/* Reads what the socket holds: answers go to their callers (woken),
** anything else (jobs sent ahead) is set aside for the job loop. Runs in a
** libuv callback: no Lua. */
static void on_socket(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)events;
  for (;;) {
    int type, rc = status < 0 ? -1 : 0;
    const char *payload = NULL;
    size_t plen = 0;
    if (rc == 0) rc = sk_child_read_nb(&type, &payload, &plen, 1);
    if (rc == 1) return;
    if (rc < 0) {                 /* the parent is gone: fail every caller */
      rpc_eof = 1;
      while (pending) {
        pcall *pc = pending;
        pending = pc->next;
        pc->next = NULL;
        pc->done = 1;
        sk_ctx_wake(pc->c);
      }
      uv_poll_stop(rpc_poll);
      return;
    }
    if (type != 'A') {
      sk_child_defer(type, payload, plen);
      continue;
    }
    for (pcall *pc = pending; pc; pc = pc->next) {
      if (plen >= 8 && memcmp(payload, &pc->id, 8) == 0) {
        pc->reply = malloc(plen - 8 ? plen - 8 : 1);
        if (pc->reply) {
          memcpy(pc->reply, payload + 8, plen - 8);
          pc->len = plen - 8;
        }
        pc->done = 1;
        unlink_call(pc);
        sk_ctx_wake(pc->c);
        break;
      }
    }
  }
}

void sk_rpc_pump(void) {
  if (rpc_poll && !rpc_eof) on_socket(rpc_poll, 0, 0);
}

void sk_rpc_watch(int on) {
  if (rpc_poll == NULL || rpc_eof) return;
  if (on) uv_poll_start(rpc_poll, UV_READABLE, on_socket);
  else if (pending == NULL) uv_poll_stop(rpc_poll);
}

int sk_rpc_eof(void) { return rpc_eof; }

static void free_poll(uv_handle_t *h) { free(h); }

void sk_rpc_attach(sk_worker *w, int fd) {
  rpc_fd = fd;
  rpc_worker = w;
  rpc_poll = malloc(sizeof *rpc_poll);
  if (rpc_poll && uv_poll_init_socket(w->sched.loop, rpc_poll, fd) != 0) {
    free(rpc_poll);
    rpc_poll = NULL;
  }
}

void sk_rpc_detach(void) {
  if (rpc_poll) uv_close((uv_handle_t *)rpc_poll, free_poll);
  rpc_poll = NULL;
  rpc_worker = NULL;
}

int sk_rpc_can_proxy(long pid) { return rpc_fd >= 0 && pid == (long)getppid(); }

/* A call as a wait source: done once its answer came (or the parent went).
** The wait is shielded from cancellation and skein.timeout (SK_WAIT_SHIELD):
** the call runs in the parent whatever happens here, so leaving early would
** lose what it did (an item taken from a queue); a cancel is raised at the
** next suspension instead (it is sticky). Other tasks of this process run
** meanwhile. The pcall lives in a userdata on the caller's stack. */
static int rpc_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  (void)expired;
  pcall *pc = obj;
  if (!pc->done) return SK_WAIT_MORE;
  if (pc->reply == NULL) return sk_error_raise(L, "closed", "the parent process is gone");
  int top = lua_gettop(L);
  int n = sk_marshal_decode(L, pc->reply, pc->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  free(pc->reply);
  pc->reply = NULL;
  if (n < 0) return lua_error(L);
  if (!lua_toboolean(L, top + 1)) {
    lua_pushvalue(L, top + 2);
    return lua_error(L);
  }
  return n - 1;
}

static int rpc_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  pcall *pc = obj;
  pc->c = c;
  pc->next = pending;
  pending = pc;
  uv_poll_start(rpc_poll, UV_READABLE, on_socket);
  return 0;
}

static int rpc_unlink(void *obj, sk_ctx *c) {
  (void)c;
  pcall *pc = obj;
  if (!pc->done) unlink_call(pc);
  return 0;
}

static const sk_source rpc_source = {
    .name = SK_PROXY_MT, .attempt = rpc_attempt, .link = rpc_link, .unlink = rpc_unlink};

int sk_rpc_call(lua_State *L, const char *op, const char *name, int first) {
  if (rpc_fd < 0 || sk_worker_of(L) != rpc_worker) {
    return sk_error_raise(L, "usage", "objects of the parent process can only be used by this "
                         "process's main worker");
  }
  int nargs = lua_gettop(L) - first + 1;
  luaL_checkstack(L, nargs + 4, "too many arguments");
  lua_pushstring(L, op);
  lua_pushstring(L, name);
  lua_pushvalue(L, 1);
  for (int i = 0; i < nargs; i++) lua_pushvalue(L, first + i);
  sk_buf body;
  if (sk_marshal_encode(L, -(nargs + 3), nargs + 3, &body, "args") != 0) return lua_error(L);
  lua_pop(L, nargs + 3);
  uint64_t id = ++rpc_next_id;
  int rc = sk_child_write('C', &id, 8, body.data, body.len);   /* after held replies */
  sk_buf_free(&body);
  if (rc != 0 || rpc_eof) return sk_error_raise(L, "closed", "the parent process is gone");
  if (rpc_poll == NULL) return sk_error_raise(L, "memory", "cannot wait for the parent process");
  pcall *pc = lua_newuserdatauv(L, sizeof *pc, 0);
  memset(pc, 0, sizeof *pc);
  pc->id = id;
  return sk_wait_on(L, &rpc_source, pc, SK_NO_DEADLINE, SK_WAIT_SHIELD);
}

/* ---------------------------------------------------------- parent side */

typedef struct creq {
  struct creq *next;
  size_t len;
  char data[];
} creq;

struct sk_conn {
  sk_runnable start;            /* first: starts the server task */
  sk_worker *w;
  uv_pipe_t *pipe;              /* NULL once closed */
  int refs;                     /* the pipe's owner, the Lua handle */
  int closed;
  int started;                  /* the server task was asked for */
  creq *head, *tail;
  sk_ctx *waiter;               /* the server task, while it waits */
  sk_ctx *server;               /* the server task, until it finishes */
  sk_watch server_done;         /* in its watchers: clears `server` */
  int busy;                     /* it is performing a request */
  sk_obj **kept;
  size_t nkept, capkept;
};

static void conn_release(sk_conn *c) {
  if (--c->refs > 0) return;
  while (c->head) {
    creq *r = c->head;
    c->head = r->next;
    free(r);
  }
  for (size_t i = 0; i < c->nkept; i++) sk_obj_release(c->kept[i]);
  free(c->kept);
  free(c);
}

static void server_finished(sk_watch *wt, sk_ctx *task) {
  sk_conn *c = (sk_conn *)((char *)wt - offsetof(sk_conn, server_done));
  (void)task;
  c->server = NULL;
  c->busy = 0;
}

/* The runnable: spawns the connection's server task (stdlib/skein/rpc.lua)
** as a daemon task; it owns the connection's Lua handle. A child already
** gone has nobody to answer: its requests are not performed. */
static void start_server(sk_runnable *r) {
  sk_conn *c = (sk_conn *)r;
  lua_State *L = c->w->cur_L;
  if (c->closed) {
    conn_release(c);              /* the reference meant for the handle */
    return;
  }
  luaL_checkstack(L, 4, "rpc");
  lua_getfield(L, LUA_REGISTRYINDEX, "skein.rpc.serve");
  sk_conn **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = c;
  luaL_setmetatable(L, SK_CONN_MT);
  c->server = sk_task_spawn(L, -2, 1, 1);
  c->server_done.fire = server_finished;
  sk_watch_link(&c->server->watchers, &c->server_done);
  lua_pop(L, 3);
}

sk_conn *sk_conn_new(sk_worker *w, uv_pipe_t *pipe) {
  sk_conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->w = w;
  c->pipe = pipe;
  c->refs = 2;
  c->start.run = start_server;
  return c;
}

void sk_conn_request(sk_conn *c, const char *payload, size_t len) {
  if (!c->started) {              /* the first request starts the server */
    c->started = 1;
    sk_sched_push(&c->w->sched, &c->start);
  }
  creq *r = malloc(sizeof *r + len);
  if (r == NULL) return;          /* the child waits; its pipe closing ends it */
  r->next = NULL;
  r->len = len;
  memcpy(r->data, payload, len);
  if (c->tail) c->tail->next = r;
  else c->head = r;
  c->tail = r;
  if (c->waiter) sk_ctx_wake(c->waiter);
}

/* The child is gone. A request of it that waits here (a get, an acquire)
** is cancelled, so it cannot go on to take an item or a lock for nobody;
** requests not yet started are dropped (next_attempt). */
void sk_conn_close(sk_conn *c) {
  c->closed = 1;
  c->pipe = NULL;
  if (c->waiter) sk_ctx_wake(c->waiter);
  else if (c->busy && c->server) sk_task_cancel(c->server);
  if (!c->started) {              /* never served: nobody will take the handle ref */
    c->started = 1;
    conn_release(c);
  }
  conn_release(c);
}

void sk_conn_keep(sk_conn *c, sk_buf *b) {
  if (b->nobjs == 0) return;
  if (c->nkept + b->nobjs > c->capkept) {
    size_t cap = c->capkept ? c->capkept * 2 : 8;
    while (cap < c->nkept + b->nobjs) cap *= 2;
    sk_obj **k = realloc(c->kept, cap * sizeof *k);
    if (k == NULL) return;         /* the buffer keeps them then */
    c->kept = k;
    c->capkept = cap;
  }
  memcpy(c->kept + c->nkept, b->objs, b->nobjs * sizeof *b->objs);
  c->nkept += b->nobjs;
  b->nobjs = 0;
}

/* The connection as a wait source for its server task: ready when a
** request came or the child is gone. Requests of a child that is gone are
** dropped, not performed. */
static int next_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  (void)expired;
  sk_conn *c = obj;
  if (c->closed) {
    while (c->head) {
      creq *r = c->head;
      c->head = r->next;
      free(r);
    }
    c->tail = NULL;
    return 0;
  }
  while (c->head) {
    creq *r = c->head;
    c->head = r->next;
    if (c->head == NULL) c->tail = NULL;
    if (r->len < 8) {
      free(r);
      continue;
    }
    lua_pushlstring(L, r->data, 8);
    lua_pushlstring(L, r->data + 8, r->len - 8);
    free(r);
    c->busy = 1;
    return 2;
  }
  return SK_WAIT_MORE;
}

static int next_link(void *obj, sk_ctx *ctx, int round) {
  (void)round;
  ((sk_conn *)obj)->waiter = ctx;
  return 0;
}

static int next_unlink(void *obj, sk_ctx *ctx) {
  (void)ctx;
  ((sk_conn *)obj)->waiter = NULL;
  return 0;
}

static const sk_source next_source = {
    .name = SK_CONN_MT, .attempt = next_attempt, .link = next_link, .unlink = next_unlink};

int sk_conn_next(lua_State *L, sk_conn *c) {
  c->busy = 0;
  return sk_wait_on(L, &next_source, c, SK_NO_DEADLINE, 0);
}

int sk_conn_alive(const sk_conn *c) { return c->pipe != NULL; }

int sk_conn_reply(sk_conn *c, const char *id, const char *body, size_t len) {
  if (c->pipe == NULL) return UV_EPIPE;
  return sk_send_frame2(c->pipe, 'A', id, 8, body, len);
}

void sk_conn_drop(sk_conn *c) {
  c->waiter = NULL;
  sk_watch_unlink(&c->server_done);   /* the task may not have finished (lua_close) */
  c->server = NULL;
  c->busy = 0;
  conn_release(c);
}
