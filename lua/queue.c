/*
** queue.c — skein.queue: a FIFO, LIFO or priority queue shared by every
** worker holding a handle (tasks, threads), optionally bounded, with
** task_done/join accounting and close. Also the queue core that pipe.c
** builds pipe ends from (sk_chan.h).
**
** Items are copied on put and decoded on get, in the getter's state. Small
** scalars travel without the marshaller: nil, booleans, integers, floats
** and strings up to INLINE_MAX bytes sit inline in the item; longer strings
** are one malloc'd block; anything else (tables, functions, objects) is an
** sk_buf from sk_marshal_encode. So a put of a number costs one lock and no
** allocation.
**
** Wake-ups: a put wakes one registered getter, a get of a bounded queue
** one registered putter; with nobody registered nothing is signalled. A
** waiter's record is taken out of the list under the queue's lock and
** fired after it is released. A getter that finds the queue empty spins a
** few microseconds first (only on a multi-core machine and when nothing
** else is ready on its worker), which spares a sleep and a cross-thread
** wake per item when producer and consumer run neck and neck.
**
** Lock order: the queue's mutex is held briefly, never while waiting or
** running Lua; a port's lock (taken to fire a waiter) is never taken
** under it.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sk_chan.h"

#define QUEUE_MT "skein.Queue"
#define PENDING_MT "skein.QueuePending"
#define INLINE_MAX 24
#define SPIN_NS 20000           /* how long a getter or putter spins */
#define SHRINK_CAP 1024         /* an emptied ring bigger than this is freed */

/* ---------------------------------------------------------------- items */

enum { QI_NIL, QI_FALSE, QI_TRUE, QI_INT, QI_FLOAT, QI_SSTR, QI_LSTR, QI_BUF };

/* One value in a queue. QI_LSTR: u.buf is a single block whose data
** follows the sk_buf header; QI_BUF: a marshalled sk_buf (malloc'd). */
typedef struct qitem {
  uint32_t kind, len;
  union {
    lua_Integer i;
    lua_Number n;
    sk_buf *buf;
    char s[INLINE_MAX];
  } u;
} qitem;

/* A priority queue's heap entry; `seq` keeps FIFO order among equals. */
typedef struct pentry {
  lua_Number prio;
  uint64_t seq;
  int prio_int;                 /* the priority was an integer */
  qitem it;
} pentry;

static void item_free(qitem *it) {
  if (it->kind == QI_LSTR) {
    free(it->u.buf);
  } else if (it->kind == QI_BUF) {
    sk_buf_free(it->u.buf);
    free(it->u.buf);
  }
  it->kind = QI_NIL;
}

/* Turns the marshaller's "item[1].x" paths into "item.x". */
static void fix_path(lua_State *L) {
  if (!lua_istable(L, -1)) return;
  if (lua_getfield(L, -1, "path") != LUA_TSTRING) {
    lua_pop(L, 1);
    return;
  }
  size_t n;
  const char *p = lua_tolstring(L, -1, &n);
  if (n < 7 || memcmp(p, "item[1]", 7) != 0) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -2, "message");
  const char *msg = lua_tostring(L, -1);
  const char *rest = msg && strncmp(msg, p, n) == 0 ? msg + n : NULL;
  lua_pushfstring(L, "item%s", p + 7);                  /* the new path */
  if (rest) {
    lua_pushfstring(L, "%s%s", lua_tostring(L, -1), rest);
    lua_setfield(L, -5, "message");
  }
  lua_setfield(L, -4, "path");
  lua_pop(L, 2);
}

/* Copies the value at idx into *it. Returns 0, or -1 with an error pushed
** (kind "marshal" naming the path); never raises while owning memory. */
static int item_encode(lua_State *L, int idx, qitem *it) {
  it->len = 0;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: it->kind = QI_NIL; return 0;
    case LUA_TBOOLEAN: it->kind = lua_toboolean(L, idx) ? QI_TRUE : QI_FALSE; return 0;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        it->kind = QI_INT;
        it->u.i = lua_tointeger(L, idx);
      } else {
        it->kind = QI_FLOAT;
        it->u.n = lua_tonumber(L, idx);
      }
      return 0;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      if (n <= INLINE_MAX) {
        it->kind = QI_SSTR;
        it->len = (uint32_t)n;
        memcpy(it->u.s, s, n);
        return 0;
      }
      sk_buf *b = n < SIZE_MAX - sizeof *b ? malloc(sizeof *b + n) : NULL;
      if (b == NULL) break;
      memset(b, 0, sizeof *b);
      b->data = (char *)(b + 1);
      memcpy(b->data, s, n);
      b->len = b->cap = n;
      it->kind = QI_LSTR;
      it->u.buf = b;
      return 0;
    }
    default: {
      sk_buf *b = malloc(sizeof *b);
      if (b == NULL) break;
      if (sk_marshal_encode(L, idx, 1, b, "item") != 0) {
        free(b);
        fix_path(L);
        return -1;
      }
      it->kind = QI_BUF;
      it->u.buf = b;
      return 0;
    }
  }
  it->kind = QI_NIL;
  lua_pushliteral(L, "not enough memory for a queue item");
  return -1;
}

static int p_push_lstr(lua_State *L) {
  sk_buf *b = lua_touserdata(L, 1);
  lua_pushlstring(L, b->data, b->len);
  return 1;
}

/* Pushes the item's value and frees the item (ownership passes here).
** Raises only after freeing: an item that cannot be decoded is lost. */
static void item_push(lua_State *L, qitem *it) {
  sk_buf *b;
  switch (it->kind) {
    case QI_NIL: lua_pushnil(L); break;
    case QI_FALSE: lua_pushboolean(L, 0); break;
    case QI_TRUE: lua_pushboolean(L, 1); break;
    case QI_INT: lua_pushinteger(L, it->u.i); break;
    case QI_FLOAT: lua_pushnumber(L, it->u.n); break;
    case QI_SSTR: lua_pushlstring(L, it->u.s, it->len); break;
    case QI_LSTR: {
      b = it->u.buf;
      it->kind = QI_NIL;
      lua_pushcfunction(L, p_push_lstr);
      lua_pushlightuserdata(L, b);
      int st = lua_pcall(L, 1, 1, 0);
      free(b);
      if (st != LUA_OK) lua_error(L);
      break;
    }
    default: {
      b = it->u.buf;
      it->kind = QI_NIL;
      int top = lua_gettop(L);
      int n = sk_marshal_decode(L, b->data, b->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
      sk_buf_free(b);
      free(b);
      if (n < 0) lua_error(L);
      lua_settop(L, top + 1);
      break;
    }
  }
}

/* ---------------------------------------------------------------- queue */

struct sk_queue {
  sk_obj obj;
  uv_mutex_t lock;
  int order;
  size_t maxsize;               /* 0: unbounded */
  size_t count;                 /* written under the lock, read atomically */
  int closed;                   /* likewise */
  qitem *ring;                  /* FIFO/LIFO: count items from head, mod cap */
  size_t cap, head;
  pentry *heap;                 /* priority: a binary min-heap on (prio, seq) */
  size_t hcap;
  uint64_t seq;
  size_t unfinished;            /* puts not yet matched by task_done */
  sk_waitlist getters, putters, joiners;
};

static int ncpu;

static void queue_destroy(sk_obj *o) {
  sk_queue *q = (sk_queue *)o;
  for (size_t i = 0; i < q->count; i++) {
    if (q->order == SK_QUEUE_PRIORITY) item_free(&q->heap[i].it);
    else item_free(&q->ring[(q->head + i) & (q->cap - 1)]);
  }
  free(q->ring);
  free(q->heap);
  sk_waitlist_free(&q->getters);
  sk_waitlist_free(&q->putters);
  sk_waitlist_free(&q->joiners);
  uv_mutex_destroy(&q->lock);
  free(q);
}

static const sk_objtype queue_type = {QUEUE_MT, queue_destroy};

sk_queue *sk_queue_new(int order, size_t maxsize) {
  sk_queue *q = calloc(1, sizeof *q);
  if (q == NULL || uv_mutex_init(&q->lock) != 0) {
    free(q);
    return NULL;
  }
  if (sk_obj_init(&q->obj, &queue_type) != 0) {
    uv_mutex_destroy(&q->lock);
    free(q);
    return NULL;
  }
  q->order = order;
  q->maxsize = maxsize;
  if (__atomic_load_n(&ncpu, __ATOMIC_RELAXED) == 0) {
    __atomic_store_n(&ncpu, (int)uv_available_parallelism(), __ATOMIC_RELAXED);
  }
  return q;
}

static size_t qcount(sk_queue *q) { return __atomic_load_n(&q->count, __ATOMIC_RELAXED); }
static int qclosed(sk_queue *q) { return __atomic_load_n(&q->closed, __ATOMIC_RELAXED); }
static void set_count(sk_queue *q, size_t n) { __atomic_store_n(&q->count, n, __ATOMIC_RELAXED); }

static int heap_less(const pentry *a, const pentry *b) {
  return a->prio < b->prio || (a->prio == b->prio && a->seq < b->seq);
}

/* Stores an item (moved from *it); -1 when out of memory. Caller holds
** the lock. */
static int store_locked(sk_queue *q, qitem *it, lua_Number prio, int prio_int) {
  size_t n = q->count;
  if (q->order == SK_QUEUE_PRIORITY) {
    if (n == q->hcap) {
      size_t cap = q->hcap ? q->hcap * 2 : 16;
      pentry *h = realloc(q->heap, cap * sizeof *h);
      if (h == NULL) return -1;
      q->heap = h;
      q->hcap = cap;
    }
    pentry e = {prio, q->seq++, prio_int, *it};
    size_t i = n;
    while (i > 0 && heap_less(&e, &q->heap[(i - 1) / 2])) {
      q->heap[i] = q->heap[(i - 1) / 2];
      i = (i - 1) / 2;
    }
    q->heap[i] = e;
  } else {
    if (n == q->cap) {
      size_t cap = q->cap ? q->cap * 2 : 16;
      qitem *r = malloc(cap * sizeof *r);
      if (r == NULL) return -1;
      for (size_t i = 0; i < n; i++) r[i] = q->ring[(q->head + i) & (q->cap - 1)];
      free(q->ring);
      q->ring = r;
      q->cap = cap;
      q->head = 0;
    }
    q->ring[(q->head + n) & (q->cap - 1)] = *it;
  }
  it->kind = QI_NIL;
  set_count(q, n + 1);
  return 0;
}

/* Takes the next item into *out. Caller holds the lock; count > 0. */
static void take_locked(sk_queue *q, qitem *out, lua_Number *prio, int *prio_int) {
  size_t n = q->count - 1;
  if (q->order == SK_QUEUE_PRIORITY) {
    *out = q->heap[0].it;
    *prio = q->heap[0].prio;
    *prio_int = q->heap[0].prio_int;
    pentry last = q->heap[n];
    size_t i = 0;
    for (;;) {
      size_t l = 2 * i + 1, m = i;
      if (l >= n) break;
      m = l + 1 < n && heap_less(&q->heap[l + 1], &q->heap[l]) ? l + 1 : l;
      if (!heap_less(&q->heap[m], &last)) break;
      q->heap[i] = q->heap[m];
      i = m;
    }
    if (n > 0) q->heap[i] = last;
    if (n == 0 && q->hcap > SHRINK_CAP) {
      free(q->heap);
      q->heap = NULL;
      q->hcap = 0;
    }
  } else {
    if (q->order == SK_QUEUE_FIFO) {
      *out = q->ring[q->head];
      q->head = (q->head + 1) & (q->cap - 1);
    } else {
      *out = q->ring[(q->head + n) & (q->cap - 1)];
    }
    if (n == 0 && q->cap > SHRINK_CAP) {
      free(q->ring);
      q->ring = NULL;
      q->cap = q->head = 0;
    }
  }
  set_count(q, n);
}

/* Moves the oldest waiter record of `l` into *out (to fire after the lock
** is released); out->port stays NULL when there is none. */
static void take_waiter(sk_waitlist *l, sk_waiter *out) {
  if (l->n == 0) return;
  *out = l->w[0];
  memmove(l->w, l->w + 1, (l->n - 1) * sizeof *l->w);
  l->n--;
}

/* Moves every record out of `l` into a malloc'd array (*n of them) to fire
** after unlocking; falls back to firing under the lock when out of memory. */
static sk_waiter *take_all(sk_waitlist *l, size_t *n) {
  *n = 0;
  if (l->n == 0) return NULL;
  sk_waiter *a = malloc(l->n * sizeof *a);
  if (a == NULL) {
    sk_waitlist_wake_all(l);
    return NULL;
  }
  memcpy(a, l->w, l->n * sizeof *a);
  *n = l->n;
  l->n = 0;
  return a;
}

static void fire_all(sk_waiter *a, size_t n) {
  for (size_t i = 0; i < n; i++) sk_waiter_fire(&a[i]);
  free(a);
}

/* Non-blocking put of *it (moved into the queue on SK_Q_OK). `force`
** ignores maxsize (pipes). *wake receives a getter to fire. */
static int put_locked(sk_queue *q, qitem *it, lua_Number prio, int prio_int, int force,
                      sk_waiter *wake) {
  if (q->closed) return SK_Q_CLOSED;
  if (!force && q->maxsize && q->count >= q->maxsize) return SK_Q_BLOCK;
  if (store_locked(q, it, prio, prio_int) != 0) return -2;
  q->unfinished++;
  take_waiter(&q->getters, wake);
  return SK_Q_OK;
}

static int get_locked(sk_queue *q, qitem *out, lua_Number *prio, int *prio_int,
                      sk_waiter *wake) {
  if (q->count == 0) return q->closed ? SK_Q_CLOSED : SK_Q_BLOCK;
  take_locked(q, out, prio, prio_int);
  if (q->maxsize) take_waiter(&q->putters, wake);
  return SK_Q_OK;
}

static int get_ready(void *o) {
  sk_queue *q = o;
  return q->count > 0 || q->closed;
}

static int put_ready(void *o) {
  sk_queue *q = o;
  return q->closed || q->maxsize == 0 || q->count < q->maxsize;
}

static int join_ready(void *o) { return ((sk_queue *)o)->unfinished == 0; }

/* Spins until ready(q) or SPIN_NS pass, reading without the lock; 1 when
** it became ready. Skipped on one core and when other tasks are ready. */
static int spin(sk_queue *q, sk_ctx *c, int for_get) {
  if (__atomic_load_n(&ncpu, __ATOMIC_RELAXED) < 2 || c->w->sched.nready) return 0;
  uint64_t t0 = uv_hrtime();
  for (unsigned i = 1;; i++) {
    size_t n = qcount(q);
    if (qclosed(q) || (for_get ? n > 0 : n < q->maxsize)) return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
    if ((i & 63) == 0 && uv_hrtime() - t0 > SPIN_NS) return 0;
  }
}

/* ------------------------------------------------------------ waiting */

static int p_wait_end(lua_State *L) {
  sk_wait_end(L, lua_touserdata(L, 1));
  return 0;
}

/* Ends a wait on `list`. A waiter that was woken (its record is gone) but
** leaves without acting — sk_wait_end raises (cancel, interrupt, an
** expired skein.timeout scope), or `always` — passes the wake on to the
** next waiter when the queue is still ready for it. */
static void wait_end(lua_State *L, sk_ctx *c, sk_queue *q, sk_waitlist *list, sk_ready_fn ready,
                     int always) {
  sk_waiter wk = {0};
  uv_mutex_lock(&q->lock);
  size_t n0 = list->n;
  sk_waitlist_remove(list, c->w->port, c->wslot);
  int woken = list->n == n0;
  if (woken && always && ready(q)) take_waiter(list, &wk);
  uv_mutex_unlock(&q->lock);
  sk_waiter_fire(&wk);
  if (!woken || always) {
    sk_wait_end(L, c);
    return;
  }
  lua_pushcfunction(L, p_wait_end);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK) return;
  uv_mutex_lock(&q->lock);
  if (ready(q)) take_waiter(list, &wk);
  uv_mutex_unlock(&q->lock);
  sk_waiter_fire(&wk);
  lua_error(L);
}

int sk_queue_spin(sk_queue *q, sk_ctx *c) { return spin(q, c, 1); }

int sk_queue_wait_begin(lua_State *L, sk_ctx *c, uint64_t deadline, sk_queue *q) {
  return sk_shared_wait_begin(L, c, deadline, &q->lock, &q->getters, get_ready, q);
}

void sk_queue_wait_end(lua_State *L, sk_ctx *c, sk_queue *q, int always) {
  wait_end(L, c, q, &q->getters, get_ready, always);
}

int sk_queue_add_getter(sk_queue *q, const sk_waiter *w) {
  uv_mutex_lock(&q->lock);
  int rc = get_ready(q) ? 1 : sk_waitlist_add(&q->getters, w);
  uv_mutex_unlock(&q->lock);
  return rc;
}

void sk_queue_remove_getter(sk_queue *q, sk_port *port, uint32_t slot) {
  sk_waiter wk = {0};
  uv_mutex_lock(&q->lock);
  size_t n0 = q->getters.n;
  sk_waitlist_remove(&q->getters, port, slot);
  if (q->getters.n == n0 && get_ready(q)) take_waiter(&q->getters, &wk);
  uv_mutex_unlock(&q->lock);
  sk_waiter_fire(&wk);
}

int sk_queue_readable(sk_queue *q) {
  uv_mutex_lock(&q->lock);
  int r = get_ready(q);
  uv_mutex_unlock(&q->lock);
  return r;
}

void sk_queue_shut(sk_queue *q, int discard) {
  size_t ng = 0, np = 0, nj = 0;
  sk_waiter *g, *p, *j = NULL;
  qitem *items = NULL;
  size_t nitems = 0;
  uv_mutex_lock(&q->lock);
  __atomic_store_n(&q->closed, 1, __ATOMIC_RELAXED);
  if (discard && q->count) {
    /* Move the items out to free them unlocked; drop them from the count. */
    items = malloc(q->count * sizeof *items);
    if (items) {
      lua_Number prio;
      int pi;
      while (q->count) take_locked(q, &items[nitems++], &prio, &pi);
      q->unfinished = q->unfinished > nitems ? q->unfinished - nitems : 0;
      if (q->unfinished == 0) j = take_all(&q->joiners, &nj);
    }
  }
  g = take_all(&q->getters, &ng);
  p = take_all(&q->putters, &np);
  uv_mutex_unlock(&q->lock);
  for (size_t i = 0; i < nitems; i++) item_free(&items[i]);
  free(items);
  fire_all(g, ng);
  fire_all(p, np);
  fire_all(j, nj);
}

/* ------------------------------------------------------- pipes' side */

int sk_queue_send(lua_State *L, sk_queue *q, int idx) {
  qitem it;
  sk_waiter wk = {0};
  if (item_encode(L, idx, &it) != 0) lua_error(L);
  uv_mutex_lock(&q->lock);
  int st = put_locked(q, &it, 0, 0, 1, &wk);
  uv_mutex_unlock(&q->lock);
  sk_waiter_fire(&wk);
  if (st == SK_Q_OK) return st;
  item_free(&it);
  if (st == -2) luaL_error(L, "not enough memory for a queue item");
  return st;
}

/* Pushes a taken item (and a priority queue's priority); returns the
** number of values pushed. */
static int push_got(lua_State *L, sk_queue *q, qitem *it, lua_Number prio, int prio_int) {
  item_push(L, it);
  if (q->order != SK_QUEUE_PRIORITY) return 1;
  if (prio_int) lua_pushinteger(L, (lua_Integer)prio);
  else lua_pushnumber(L, prio);
  return 2;
}

/* Non-blocking get: pushes and returns n >= 1, or SK_Q_BLOCK/SK_Q_CLOSED. */
static int try_get(lua_State *L, sk_queue *q) {
  qitem it;
  lua_Number prio = 0;
  int pi = 0;
  sk_waiter wk = {0};
  uv_mutex_lock(&q->lock);
  int st = get_locked(q, &it, &prio, &pi, &wk);
  uv_mutex_unlock(&q->lock);
  sk_waiter_fire(&wk);
  if (st != SK_Q_OK) return st;
  return push_got(L, q, &it, prio, pi);
}

int sk_queue_recv(lua_State *L, sk_queue *q) { return try_get(L, q); }

/* ------------------------------------------------------ Lua bindings */

static sk_queue *check_queue(lua_State *L, int idx) {
  return (sk_queue *)sk_handle_check(L, idx, QUEUE_MT);
}

/* check_queue for the methods, whose first upvalue is the metatable: a
** pointer comparison instead of a registry lookup by name. */
static sk_queue *self_queue(lua_State *L) {
  sk_handle *h = lua_touserdata(L, 1);
  if (h && h->obj && lua_getmetatable(L, 1)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same) return (sk_queue *)h->obj;
  }
  return check_queue(L, 1);
}

static void push_queue(lua_State *L, sk_obj *o) { sk_handle_push(L, o, QUEUE_MT); }

static int raise_closed(lua_State *L) {
  return sk_error_raise(L, "closed", "the queue is closed");
}

/* The queue a resumed wait works on (its handle is at index 1). A handle
** released while its own worker waited on it ends the wait. */
static sk_queue *waiting_queue(lua_State *L, sk_ctx *c, int status) {
  sk_handle *h = lua_touserdata(L, 1);
  if (h->obj == NULL) {
    if (status == LUA_YIELD) sk_wait_end(L, c);
    luaL_error(L, "cannot use a %s after it was closed", QUEUE_MT);
  }
  return (sk_queue *)h->obj;
}

/* Parses a size: nil -> 0 (unbounded); a non-negative integer. */
static size_t check_maxsize(lua_State *L, int idx, int arg) {
  if (lua_isnoneornil(L, idx)) return 0;
  int isint;
  lua_Integer n = lua_tointegerx(L, idx, &isint);
  if (!isint) {
    if (lua_type(L, idx) == LUA_TNUMBER) luaL_argerror(L, arg, "maxsize must be an integer");
    luaL_typeerror(L, arg, "integer maxsize, options table or nil");
  }
  if (n < 0) luaL_argerror(L, arg, "maxsize must not be negative (0 means unbounded)");
  return (size_t)n;
}

/* skein.queue([maxsize | {maxsize=, order="fifo"|"lifo"|"priority"}]) */
static int l_queue_new(lua_State *L) {
  static const char *const orders[] = {"fifo", "lifo", "priority", NULL};
  size_t maxsize = 0;
  int order = SK_QUEUE_FIFO;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_getfield(L, 1, "maxsize");
    maxsize = check_maxsize(L, -1, 1);
    lua_getfield(L, 1, "order");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, 1, "order must be a string");
      order = luaL_checkoption(L, -1, NULL, orders);
    }
    lua_pop(L, 2);
  } else {
    maxsize = check_maxsize(L, 1, 1);
  }
  sk_queue *q = sk_queue_new(order, maxsize);
  if (q == NULL) return luaL_error(L, "not enough memory for a queue");
  push_queue(L, &q->obj);
  return 1;
}

static lua_Number check_priority(lua_State *L, int idx, int *is_int) {
  if (lua_type(L, idx) != LUA_TNUMBER) {
    luaL_typeerror(L, idx - 1, "number (a priority queue's put takes a priority)");
  }
  *is_int = lua_isinteger(L, idx);
  lua_Number p = lua_tonumber(L, idx);
  if (isnan(p)) luaL_argerror(L, idx - 1, "priority is NaN");
  return p;
}

/* A put that has to wait keeps its encoded item in one of these (stack
** index 4), so that an error or a cancel frees it through __gc. */
typedef struct pending {
  qitem it;
  lua_Number prio;
  int prio_int;
} pending;

static int l_pending_gc(lua_State *L) {
  pending *p = lua_touserdata(L, 1);
  item_free(&p->it);
  return 0;
}

static int put_k(lua_State *L, int status, lua_KContext kctx) {
  sk_ctx *c = sk_current(L);
  sk_queue *q = waiting_queue(L, c, status);
  uint64_t d = sk_to_deadline(L, 3);
  pending *p = lua_touserdata(L, 4);
  int spun = 0;
  for (;;) {
    if (status == LUA_YIELD) wait_end(L, c, q, &q->putters, put_ready, 0);
    sk_waiter wk = {0};
    uv_mutex_lock(&q->lock);
    int st = put_locked(q, &p->it, p->prio, p->prio_int, 0, &wk);
    uv_mutex_unlock(&q->lock);
    sk_waiter_fire(&wk);
    if (st == SK_Q_OK) return 0;
    if (st != SK_Q_BLOCK) {
      item_free(&p->it);
      if (st == -2) return luaL_error(L, "not enough memory for a queue item");
      return raise_closed(L);
    }
    if (sk_expired(d)) {
      item_free(&p->it);
      return sk_error_raise(L, "timeout", "put timed out: the queue stayed full");
    }
    if (!spun) {
      spun = 1;
      if (spin(q, c, 0)) {
        status = LUA_OK;
        continue;
      }
    }
    if (sk_shared_wait_begin(L, c, d, &q->lock, &q->putters, put_ready, q)) {
      status = LUA_OK;
      continue;
    }
    status = sk_wait(L, c, kctx, put_k);
  }
}

/* Shared by put, try_put and put_nowait: checks the arguments, encodes the
** item and tries once. Returns the status; on SK_Q_OK the item is in. */
static int put_once(lua_State *L, sk_queue *q, int targ_pri, lua_Number *prio, int *pi,
                    qitem *it) {
  luaL_checkany(L, 2);
  if (q->order == SK_QUEUE_PRIORITY) *prio = check_priority(L, targ_pri, pi);
  if (item_encode(L, 2, it) != 0) lua_error(L);
  sk_waiter wk = {0};
  uv_mutex_lock(&q->lock);
  int st = put_locked(q, it, *prio, *pi, 0, &wk);
  uv_mutex_unlock(&q->lock);
  sk_waiter_fire(&wk);
  if (st == SK_Q_OK) return st;
  item_free(it);
  if (st == -2) luaL_error(L, "not enough memory for a queue item");
  if (st == SK_Q_CLOSED) raise_closed(L);
  return st;
}

/* q:put(v, [timeout]); priority queues: q:put(v, priority, [timeout]) */
static int l_queue_put(lua_State *L) {
  sk_queue *q = self_queue(L);
  int targ = q->order == SK_QUEUE_PRIORITY ? 4 : 3;
  uint64_t d = sk_check_deadline(L, targ);
  lua_Number prio = 0;
  int pi = 0;
  qitem it;
  if (put_once(L, q, 3, &prio, &pi, &it) == SK_Q_OK) return 0;
  if (sk_expired(d)) return sk_error_raise(L, "timeout", "put timed out: the queue stayed full");
  /* Full: wait, with the item re-encoded into a collectable holder. */
  lua_settop(L, 2);
  sk_push_deadline(L, d);
  pending *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->it.kind = QI_NIL;
  p->prio = prio;
  p->prio_int = pi;
  luaL_setmetatable(L, PENDING_MT);
  if (item_encode(L, 2, &p->it) != 0) return lua_error(L);
  return put_k(L, LUA_OK, 0);
}

/* q:try_put(v, [priority]) -> true, or false when full */
static int l_queue_try_put(lua_State *L) {
  sk_queue *q = self_queue(L);
  lua_Number prio = 0;
  int pi = 0;
  qitem it;
  lua_pushboolean(L, put_once(L, q, 3, &prio, &pi, &it) == SK_Q_OK);
  return 1;
}

/* q:put_nowait(v, [priority]): raises "full" when full */
static int l_queue_put_nowait(lua_State *L) {
  sk_queue *q = self_queue(L);
  lua_Number prio = 0;
  int pi = 0;
  qitem it;
  if (put_once(L, q, 3, &prio, &pi, &it) != SK_Q_OK) {
    return sk_error_raise(L, "full", "the queue is full");
  }
  return 0;
}

enum { MODE_GET, MODE_ITER };

static int get_k(lua_State *L, int status, lua_KContext kctx) {
  sk_ctx *c = sk_current(L);
  sk_queue *q = waiting_queue(L, c, status);
  uint64_t d = sk_to_deadline(L, 2);
  int spun = 0;
  for (;;) {
    if (status == LUA_YIELD) wait_end(L, c, q, &q->getters, get_ready, 0);
    int n = try_get(L, q);
    if (n > 0) return n;
    if (n == SK_Q_CLOSED) {
      if (kctx == MODE_ITER) return 0;
      return raise_closed(L);
    }
    if (sk_expired(d)) return sk_error_raise(L, "timeout", "get timed out: the queue stayed empty");
    if (!spun) {
      spun = 1;
      if (spin(q, c, 1)) {
        status = LUA_OK;
        continue;
      }
    }
    if (sk_shared_wait_begin(L, c, d, &q->lock, &q->getters, get_ready, q)) {
      status = LUA_OK;
      continue;
    }
    status = sk_wait(L, c, kctx, get_k);
  }
}

/* q:get([timeout]) -> item (priority queues: item, priority) */
static int l_queue_get(lua_State *L) {
  sk_queue *q = self_queue(L);
  uint64_t d = sk_check_deadline(L, 2);
  int n = try_get(L, q);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return raise_closed(L);
  lua_settop(L, 1);
  sk_push_deadline(L, d);
  return get_k(L, LUA_OK, MODE_GET);
}

/* q:try_get() -> true, item | false when empty; raises "closed" when
** closed and drained */
static int l_queue_try_get(lua_State *L) {
  sk_queue *q = self_queue(L);
  lua_pushboolean(L, 1);
  int n = try_get(L, q);
  if (n > 0) return n + 1;
  if (n == SK_Q_CLOSED) return raise_closed(L);
  lua_pushboolean(L, 0);
  return 1;
}

/* q:get_nowait() -> item; raises "empty" when empty */
static int l_queue_get_nowait(lua_State *L) {
  sk_queue *q = self_queue(L);
  int n = try_get(L, q);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return raise_closed(L);
  return sk_error_raise(L, "empty", "the queue is empty");
}

static int iter_step(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  sk_queue *q = check_queue(L, 1);
  int n = try_get(L, q);
  if (n > 0) return n;
  if (n == SK_Q_CLOSED) return 0;
  sk_push_deadline(L, SK_NO_DEADLINE);
  return get_k(L, LUA_OK, MODE_ITER);
}

/* q:iter() -> an iterator over items until the queue is closed and drained
** (a nil item also ends a generic for) */
static int l_queue_iter(lua_State *L) {
  self_queue(L);
  lua_settop(L, 1);
  lua_pushcclosure(L, iter_step, 1);
  return 1;
}

static int l_queue_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)qcount(self_queue(L)));
  return 1;
}

static int l_queue_empty(lua_State *L) {
  lua_pushboolean(L, qcount(self_queue(L)) == 0);
  return 1;
}

static int l_queue_full(lua_State *L) {
  sk_queue *q = self_queue(L);
  lua_pushboolean(L, q->maxsize && qcount(q) >= q->maxsize);
  return 1;
}

static int l_queue_closed(lua_State *L) {
  lua_pushboolean(L, qclosed(self_queue(L)));
  return 1;
}

/* q:task_done(): one item put earlier is fully processed */
static int l_queue_task_done(lua_State *L) {
  sk_queue *q = self_queue(L);
  size_t nj = 0;
  sk_waiter *j = NULL;
  uv_mutex_lock(&q->lock);
  int ok = q->unfinished > 0;
  if (ok && --q->unfinished == 0) j = take_all(&q->joiners, &nj);
  uv_mutex_unlock(&q->lock);
  fire_all(j, nj);
  if (!ok) return luaL_error(L, "task_done() called more times than items were put");
  return 0;
}

static int join_k(lua_State *L, int status, lua_KContext kctx) {
  sk_ctx *c = sk_current(L);
  sk_queue *q = waiting_queue(L, c, status);
  uint64_t d = sk_to_deadline(L, 2);
  for (;;) {
    if (status == LUA_YIELD) sk_shared_wait_end(L, c, &q->lock, &q->joiners);
    uv_mutex_lock(&q->lock);
    int done = q->unfinished == 0;
    uv_mutex_unlock(&q->lock);
    if (done) {
      lua_pushboolean(L, 1);
      return 1;
    }
    if (sk_expired(d)) {
      return sk_error_raise(L, "timeout", "join timed out: items are still unfinished");
    }
    if (sk_shared_wait_begin(L, c, d, &q->lock, &q->joiners, join_ready, q)) {
      status = LUA_OK;
      continue;
    }
    status = sk_wait(L, c, kctx, join_k);
  }
}

/* q:join([timeout]) -> true once every item put was marked task_done */
static int l_queue_join(lua_State *L) {
  self_queue(L);
  uint64_t d = sk_check_deadline(L, 2);
  lua_settop(L, 1);
  sk_push_deadline(L, d);
  return join_k(L, LUA_OK, 0);
}

/* q:close(): puts raise "closed"; gets drain what is left, then raise it */
static int l_queue_close(lua_State *L) {
  sk_queue_shut(self_queue(L), 0);
  return 0;
}

static int l_queue_tostring(lua_State *L) {
  static const char *const orders[] = {"fifo", "lifo", "priority"};
  sk_handle *h = luaL_checkudata(L, 1, QUEUE_MT);
  sk_queue *q = (sk_queue *)h->obj;
  if (q == NULL) {
    lua_pushliteral(L, "skein.queue (released)");
    return 1;
  }
  uv_mutex_lock(&q->lock);
  size_t n = q->count;
  int closed = q->closed;
  uv_mutex_unlock(&q->lock);
  if (q->maxsize) {
    lua_pushfstring(L, "skein.queue %s (%I/%I items%s)", orders[q->order], (LUAI_UACINT)n,
                    (LUAI_UACINT)q->maxsize, closed ? ", closed" : "");
  } else {
    lua_pushfstring(L, "skein.queue %s (%I items%s)", orders[q->order], (LUAI_UACINT)n,
                    closed ? ", closed" : "");
  }
  return 1;
}

/* ---------------------------------------------------------------- select */

static int queue_try(lua_State *L, sk_obj *o) {
  int n = try_get(L, (sk_queue *)o);
  if (n == SK_Q_CLOSED) return raise_closed(L);
  return n > 0 ? n : 0;
}

static int queue_add_waiter(sk_obj *o, const sk_waiter *w) {
  return sk_queue_add_getter((sk_queue *)o, w);
}

static void queue_remove_waiter(sk_obj *o, sk_port *port, uint32_t slot) {
  sk_queue_remove_getter((sk_queue *)o, port, slot);
}

static const sk_selectable queue_select = {QUEUE_MT, queue_try, queue_add_waiter,
                                           queue_remove_waiter};

void sk_queue_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"put", l_queue_put},
      {"get", l_queue_get},
      {"try_put", l_queue_try_put},
      {"try_get", l_queue_try_get},
      {"put_nowait", l_queue_put_nowait},
      {"get_nowait", l_queue_get_nowait},
      {"size", l_queue_size},
      {"empty", l_queue_empty},
      {"full", l_queue_full},
      {"closed", l_queue_closed},
      {"task_done", l_queue_task_done},
      {"join", l_queue_join},
      {"close", l_queue_close},
      {"iter", l_queue_iter},
      {NULL, NULL}};
  if (luaL_newmetatable(L, QUEUE_MT)) {
    luaL_newlibtable(L, methods);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sk_handle_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, sk_handle_release);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_queue_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, PENDING_MT)) {
    lua_pushcfunction(L, l_pending_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  sk_marshal_register_type(QUEUE_MT, push_queue);
  sk_select_register(&queue_select);
  lua_pushcfunction(L, l_queue_new);
  lua_setfield(L, -2, "queue");
}
