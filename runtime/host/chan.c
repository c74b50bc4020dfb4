/*
** chan.c — the queue engine behind skein.queue and skein.pipe: the
** local storage (the two-lock FIFO, LIFO and priority orders), the wait
** lists, the queue protocol's dispatch and the move to the shared segment
** (see sk_chan.h and sk_qstore.h for the design; items and stamped
** handles are qitem.c, the segment's storage shq.c).
*/
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "../core/sk_cpu.h"
#include "sk_qstore.h"

#define CHUNK 128               /* FIFO items in a queue's first chunks */
#define CHUNK_MAX 2048          /* the most in one (64 KiB: below malloc's mmap threshold) */
#define SPIN_NS 20000           /* how long a getter or putter may spin */
#define SPIN_MAX_PAUSES 64      /* the longest pause between two looks */
#define SHRINK_CAP 1024         /* an emptied LIFO/priority array above this is freed */
#define SPARE_BYTES (1u << 20) /* emptied FIFO chunks kept for reuse, at most */

/* ---------------------------------------------------------------- queues */

/* A FIFO's items sit in a list of chunks. A chunk holds `cap` items (a
** power of two), item `base` of the queue first; a queue's chunks start at
** CHUNK items and double, up to CHUNK_MAX, while the queue is longer than
** the chunk being filled, so a long queue costs few allocations. */
typedef struct chunk {
  struct chunk *next;           /* written once by the put side (release) */
  uint64_t base;
  size_t cap;
  sk_item it[];
} chunk;

static size_t chunk_size(size_t cap) { return sizeof(chunk) + cap * sizeof(sk_item); }

/* A priority queue's heap entry; `seq` keeps FIFO order among equals. */
typedef struct pentry {
  lua_Number prio;
  uint64_t seq;
  int prio_int;                 /* the priority was an integer */
  sk_item it;
} pentry;

#define ALIGNED _Alignas(64)


/* The put and get sides' locks: test-and-test-and-set. Their critical
** sections are a few dozen instructions (a malloc or realloc at most), so
** spinning costs less than a futex; a waiter that spins long yields its
** CPU, in case the holder was preempted. */
typedef struct spinlock {
  int locked;
} spinlock;

static void __attribute__((noinline)) spin_lock_slow(spinlock *l) {
  while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_SEQ_CST)) {
    for (unsigned n = 1; __atomic_load_n(&l->locked, __ATOMIC_RELAXED); n++) {
      if (n % 128 == 0) sched_yield();
      else sk_cpu_relax();
    }
  }
}

/* The uncontended case inline: one exchange (sequentially consistent, for
** wait_unlocked's sake; on x86 the same instruction as an acquire). */
static inline void spin_lock(spinlock *l) {
  if (__builtin_expect(__atomic_exchange_n(&l->locked, 1, __ATOMIC_SEQ_CST), 0)) {
    spin_lock_slow(l);
  }
}

/* Returns once the lock has been seen free (without taking it). */
static void wait_unlocked(spinlock *l) {
  for (unsigned n = 1; __atomic_load_n(&l->locked, __ATOMIC_SEQ_CST); n++) {
    if (n % 128 == 0) sched_yield();
    else sk_cpu_relax();
  }
}

static void spin_unlock(spinlock *l) { __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE); }

struct sk_queue {
  sk_queue_head h;              /* obj, order, maxsize (sk_chan.h) */
  /* The storage every operation goes to (the queue protocol, sk_qstore.h):
  ** `local`, this struct's own two-lock queue, until the queue moves to
  ** the segment; then `shared`, its shq. Swapped once, under both side
  ** locks, together with `shm`. */
  sk_qstore *st;                /* atomic */
  sk_qstore local, shared;
  int closed;                   /* atomic; set under the put lock */
  unsigned nwait[3];            /* atomic mirrors of the wait lists' lengths */
  uv_mutex_t wlock;             /* guards the wait lists */
  sk_waitlist lists[3];         /* getters, putters, joiners */

  /* The put side (FIFO): only putters touch these. */
  ALIGNED spinlock plock;
  uint64_t head_seen;           /* the put side's last look at `head` */
  chunk *tchunk;
  /* A line of its own: getters read it, and the put lock's line then
  ** stays with the putting core. A FIFO put publishes it with a release
  ** store (see local_add_waiter for the getters' side). */
  ALIGNED uint64_t tail;        /* atomic: items ever put */

  /* Emptied chunks kept for the put side to reuse (a stack by `next`, up
  ** to SPARE_BYTES), so that a queue whose length swings does not make and
  ** free a chunk at every turn, nor make the allocator grow and trim its
  ** heap (a system call and page faults each time). Under `slock`, which
  ** the put side takes (inside the put lock) when it needs a chunk and the
  ** get side (inside the get lock) when it empties one; no other lock is
  ** taken inside it. */
  ALIGNED spinlock slock;
  size_t spare_bytes;
  chunk *spare;

  /* The get side; also the only lock of LIFO and priority queues. */
  ALIGNED spinlock glock;
  uint64_t head;                /* atomic: items ever taken */
  uint64_t tail_seen;           /* the get side's last look at `tail` */
  chunk *hchunk;
  sk_item *stack;               /* LIFO */
  pentry *heap;                 /* priority: a binary min-heap on (prio, seq) */
  size_t cap;                   /* of stack or heap */
  uint64_t seq;

  ALIGNED uint64_t done;        /* atomic: task_done calls and discarded items */

  /* Set once, when the queue moves to the shared segment (under both
  ** side locks); from then on every operation goes there. */
  shq *shm;                     /* atomic */
  int moving;                   /* being moved (under the move lock) */
};

/* `done` once the queue has moved: a task_done racing the move sees it. */
#define DONE_MOVED (UINT64_C(1) << 62)
#define SHM(q) __atomic_load_n(&(q)->shm, __ATOMIC_ACQUIRE)
#define ST(q) __atomic_load_n(&(q)->st, __ATOMIC_ACQUIRE)

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

static int ncpu;

static spinlock *put_lock(sk_queue *q) {
  return q->h.order == SK_QUEUE_FIFO ? &q->plock : &q->glock;
}

static void queue_destroy(sk_obj *o) {
  sk_queue *q = (sk_queue *)o;
  if (q->shm) {
    sk_shm_view_forget((sk_shm_obj *)q->shm, o);
    sk_shm_obj_unhold((sk_shm_obj *)q->shm);
  }
  uint64_t h = q->head, t = q->tail, n = t - h;
  if (q->h.order == SK_QUEUE_FIFO) {
    /* hchunk holds item `head` (or ends just before it). */
    chunk *c = q->hchunk;
    for (uint64_t i = h; i < t; i++) {
      while (i - c->base >= c->cap) c = c->next;
      sk_item_free(&c->it[i - c->base]);
    }
    for (int list = 0; list < 2; list++) {
      for (c = list ? q->spare : q->hchunk; c;) {
        chunk *next = c->next;
        free(c);
        c = next;
      }
    }
  } else {
    for (uint64_t i = 0; i < n; i++) {
      sk_item_free(q->h.order == SK_QUEUE_LIFO ? &q->stack[i] : &q->heap[i].it);
    }
  }
  free(q->stack);
  free(q->heap);
  for (int i = 0; i < 3; i++) sk_waitlist_free(&q->lists[i]);
  uv_mutex_destroy(&q->wlock);
  free(q);
}

static sk_shm_obj *queue_share(sk_obj *o) { return (sk_shm_obj *)sk_queue_share((sk_queue *)o); }
static sk_shm_obj *queue_shared(sk_obj *o) { return (sk_shm_obj *)SHM((sk_queue *)o); }

int sk_queue_crossed(sk_queue *q) { return SHM(q) != NULL; }
static sk_obj *queue_view(sk_shm_obj *so) { return (sk_obj *)sk_queue_view((shq *)so); }

static const sk_shm_ops queue_shm = {SK_SHM_QUEUE, queue_share, queue_shared, queue_view};
const sk_objtype sk_queue_type = {"skein.Queue", queue_destroy, &queue_shm};
static const sk_queue_ops local_ops;

/* A new queue with one reference; a FIFO gets its first chunk unless it is
** a view of a shared queue (`chunked` 0), which never holds items itself. */
static sk_queue *queue_alloc(int order, size_t maxsize, int chunked) {
  size_t size = (sizeof(sk_queue) + 63) & ~(size_t)63;
  sk_queue *q = aligned_alloc(64, size);
  if (q == NULL) return NULL;
  memset(q, 0, sizeof *q);
  q->local = (sk_qstore){&local_ops, q};
  q->shared = (sk_qstore){&sk_shq_ops, NULL};
  q->st = &q->local;
  q->h.order = order;
  q->h.maxsize = maxsize;
  if (order == SK_QUEUE_FIFO && chunked) {
    q->hchunk = q->tchunk = calloc(1, chunk_size(CHUNK));
    if (q->hchunk == NULL) goto fail;
    q->hchunk->cap = CHUNK;
  }
  if (uv_mutex_init(&q->wlock) != 0) goto fail;
  sk_obj_init(&q->h.obj, &sk_queue_type);
  if (__atomic_load_n(&ncpu, __ATOMIC_RELAXED) == 0) {
    __atomic_store_n(&ncpu, (int)uv_available_parallelism(), __ATOMIC_RELAXED);
  }
  return q;
fail:
  free(q->hchunk);
  free(q);
  return NULL;
}

sk_queue *sk_queue_new(int order, size_t maxsize) { return queue_alloc(order, maxsize, 1); }

static int local_is_closed(void *self) { return LOAD(&((sk_queue *)self)->closed); }

static size_t local_size(void *self) {
  sk_queue *q = self;
  uint64_t h = LOAD(&q->head);  /* head first: tail never falls behind it */
  return (size_t)(LOAD(&q->tail) - h);
}

/* --------------------------------------------------------- wait lists */

/* Under wlock: publishes the lists' lengths for the lock-free checks. */
static void publish(sk_queue *q, int what) { STORE(&q->nwait[what], (unsigned)q->lists[what].n); }

/* Under wlock: moves the oldest record of a list into *out, to fire once
** the lock is released (out->port stays NULL when there is none). */
static void take_one(sk_queue *q, int what, sk_waiter *out) {
  sk_waitlist *l = &q->lists[what];
  if (l->n == 0) return;
  *out = l->w[0];
  memmove(l->w, l->w + 1, (l->n - 1) * sizeof *l->w);
  l->n--;
  publish(q, what);
}

/* Wakes the oldest waiter of a kind, when there is one. A record whose
** worker has closed (a daemon task left waiting) is dropped and the next
** one is tried, so that it does not swallow the wake. */
static void wake_one(sk_queue *q, int what) {
  while (LOAD(&q->nwait[what])) {
    sk_waiter w = {0};
    uv_mutex_lock(&q->wlock);
    take_one(q, what, &w);
    uv_mutex_unlock(&q->wlock);
    if (w.port == NULL) return;
    int rc = sk_port_wake(w.port, w.slot, w.gen);
    sk_port_release(w.port);
    if (rc == 0) return;
  }
}

/* wake_one's look at the count inline: a queue nobody waits on costs one
** load, not a call. */
static inline void wake_waiting(sk_queue *q, int what) {
  if (LOAD(&q->nwait[what])) wake_one(q, what);
}

/* Wakes every waiter of a kind. */
static void wake_all(sk_queue *q, int what) {
  if (LOAD(&q->nwait[what]) == 0) return;
  uv_mutex_lock(&q->wlock);
  sk_waitlist *l = &q->lists[what];
  size_t n = l->n;
  sk_waiter *a = n ? malloc(n * sizeof *a) : NULL;
  if (a) {
    memcpy(a, l->w, n * sizeof *a);
    l->n = 0;
  } else {
    sk_waitlist_wake_all(l);    /* out of memory: fire under the lock */
  }
  publish(q, what);
  uv_mutex_unlock(&q->wlock);
  if (a) {
    for (size_t i = 0; i < n; i++) sk_waiter_fire(&a[i]);
    free(a);
  }
}

static int local_ready(void *self, int what) {
  sk_queue *q = self;
  switch (what) {
    case SK_WAIT_GET: return LOAD(&q->tail) != LOAD(&q->head) || LOAD(&q->closed);
    case SK_WAIT_PUT: return LOAD(&q->closed) || q->h.maxsize == 0 || local_size(q) < q->h.maxsize;
    default: return LOAD(&q->done) == LOAD(&q->tail);
  }
}

/* Registers a record; 0, or -1 when out of memory (the record is then the
** caller's to release). */
static int add_record(sk_queue *q, int what, const sk_waiter *w) {
  uv_mutex_lock(&q->wlock);
  int rc = sk_waitlist_add(&q->lists[what], w);
  publish(q, what);
  uv_mutex_unlock(&q->wlock);
  return rc;
}

/* Removes the records of (port, slot). When none was there, the context had
** been woken; with `pass`, that wake then goes on to the next waiter if the
** queue is still ready for it. Returns 1 when a record was removed. */
static int remove_record(sk_queue *q, int what, sk_port *port, uint32_t slot, int pass) {
  uv_mutex_lock(&q->wlock);
  sk_waitlist *l = &q->lists[what];
  size_t n0 = l->n;
  sk_waitlist_remove(l, port, slot);
  int removed = l->n != n0;
  publish(q, what);
  uv_mutex_unlock(&q->wlock);
  if (!removed && pass && local_ready(q, what)) wake_one(q, what);
  return removed;
}

/* ----------------------------------------------------- put and get */

/* Under the put lock, the chunk being filled full: links and returns the
** next one, for item `t` (a spare one, or a new one twice as big while the
** queue is longer than the full one); NULL when out of memory. */
static chunk *__attribute__((noinline)) next_chunk(sk_queue *q, uint64_t t) {
  chunk *full = q->tchunk, *c;
  spin_lock(&q->slock);
  if ((c = q->spare) != NULL) {
    q->spare = c->next;
    q->spare_bytes -= chunk_size(c->cap);
  }
  spin_unlock(&q->slock);
  if (c == NULL) {
    size_t cap = full->cap;
    q->head_seen = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
    if (t - q->head_seen > cap && cap < CHUNK_MAX) cap *= 2;
    else if (t - q->head_seen <= CHUNK && cap > CHUNK) cap = CHUNK;
    if ((c = malloc(chunk_size(cap))) == NULL) return NULL;
    c->cap = cap;
  }
  c->next = NULL;
  c->base = t;
  __atomic_store_n(&full->next, c, __ATOMIC_RELEASE);
  q->tchunk = c;
  return c;
}

/* Under the get lock: keeps an emptied chunk for reuse, or frees it. */
static void __attribute__((noinline)) retire_chunk(sk_queue *q, chunk *old) {
  size_t size = chunk_size(old->cap);
  spin_lock(&q->slock);
  int kept = q->spare_bytes + size <= SPARE_BYTES;
  if (kept) {
    old->next = q->spare;
    q->spare = old;
    q->spare_bytes += size;
  }
  spin_unlock(&q->slock);
  if (!kept) free(old);
}

/* FIFO put: the put lock only. */
static inline __attribute__((always_inline)) int put_fifo(sk_queue *q, sk_item *it, int force) {
  spin_lock(&q->plock);
  if (q->shm) {
    spin_unlock(&q->plock);
    return SK_Q_MOVED;
  }
  if (LOAD(&q->closed)) {
    spin_unlock(&q->plock);
    return SK_Q_CLOSED;
  }
  uint64_t t = q->tail;
  if (!force && q->h.maxsize && t - q->head_seen >= q->h.maxsize) {
    q->head_seen = LOAD(&q->head);
    if (t - q->head_seen >= q->h.maxsize) {
      spin_unlock(&q->plock);
      return SK_Q_BLOCK;
    }
  }
  chunk *tc = q->tchunk;
  if (__builtin_expect(t - tc->base == tc->cap, 0)) {
    tc = next_chunk(q, t);
    if (tc == NULL) {
      spin_unlock(&q->plock);
      return SK_Q_NOMEM;
    }
  }
  tc->it[t - tc->base] = *it;
  /* No full fence: the look at the getters' count that follows is
  ** ordered against a getter's registration by the put lock (see
  ** local_add_waiter). */
  __atomic_store_n(&q->tail, t + 1, __ATOMIC_RELEASE);
  spin_unlock(&q->plock);
  return SK_Q_OK;
}

static int heap_less(const pentry *a, const pentry *b) {
  return a->prio < b->prio || (a->prio == b->prio && a->seq < b->seq);
}

/* LIFO and priority put: everything under the get lock. */
static int put_locked(sk_queue *q, sk_item *it, lua_Number prio, int prio_int, int force) {
  spin_lock(&q->glock);
  uint64_t t = q->tail, n = t - q->head;
  int st = SK_Q_OK;
  if (q->shm) st = SK_Q_MOVED;
  else if (q->closed) st = SK_Q_CLOSED;
  else if (!force && q->h.maxsize && n >= q->h.maxsize) st = SK_Q_BLOCK;
  else if (n == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 16;
    void *a = q->h.order == SK_QUEUE_LIFO ? realloc(q->stack, cap * sizeof *q->stack)
                                        : realloc(q->heap, cap * sizeof *q->heap);
    if (a == NULL) st = SK_Q_NOMEM;
    else if (q->h.order == SK_QUEUE_LIFO) q->stack = a;
    else q->heap = a;
    if (a) q->cap = cap;
  }
  if (st == SK_Q_OK) {
    if (q->h.order == SK_QUEUE_LIFO) {
      q->stack[n] = *it;
    } else {
      pentry e = {prio, q->seq++, prio_int, *it};
      size_t i = n;
      while (i > 0 && heap_less(&e, &q->heap[(i - 1) / 2])) {
        q->heap[i] = q->heap[(i - 1) / 2];
        i = (i - 1) / 2;
      }
      q->heap[i] = e;
    }
    STORE(&q->tail, t + 1);
  }
  spin_unlock(&q->glock);
  return st;
}

static int local_put(void *self, sk_item *it, lua_Number prio, int prio_int, int force) {
  sk_queue *q = self;
  int st = q->h.order == SK_QUEUE_FIFO ? put_fifo(q, it, force)
                                     : put_locked(q, it, prio, prio_int, force);
  if (st != SK_Q_OK) return st;
  it->kind = QI_NIL;
  wake_waiting(q, SK_WAIT_GET);
  return SK_Q_OK;
}

/* FIFO get: the get lock only. `tail` is read again only when the items
** seen last time are used up. */
static inline __attribute__((always_inline)) int get_fifo(sk_queue *q, sk_item *out) {
  spin_lock(&q->glock);
  if (q->shm) {
    spin_unlock(&q->glock);
    return SK_Q_MOVED;
  }
  uint64_t h = q->head;
  if (h == q->tail_seen) {
    q->tail_seen = LOAD(&q->tail);
    if (h == q->tail_seen) {
      /* Empty. Closed counts only once every put before the close shows. */
      int closed = LOAD(&q->closed);
      if (closed) q->tail_seen = LOAD(&q->tail);
      if (!closed || h == q->tail_seen) {
        spin_unlock(&q->glock);
        return closed ? SK_Q_CLOSED : SK_Q_BLOCK;
      }
    }
  }
  chunk *hc = q->hchunk;
  if (__builtin_expect(h - hc->base == hc->cap, 0)) {
    /* Item h exists, so the put side linked the next chunk before it. */
    chunk *old = hc;
    q->hchunk = hc = __atomic_load_n(&old->next, __ATOMIC_ACQUIRE);
    retire_chunk(q, old);
  }
  *out = hc->it[h - hc->base];
  /* Only a bounded queue's putters wait on `head` (and need the fence). */
  if (q->h.maxsize) STORE(&q->head, h + 1);
  else __atomic_store_n(&q->head, h + 1, __ATOMIC_RELEASE);
  spin_unlock(&q->glock);
  return SK_Q_OK;
}

static int get_locked(sk_queue *q, sk_item *out, lua_Number *prio, int *prio_int) {
  spin_lock(&q->glock);
  if (q->shm) {
    spin_unlock(&q->glock);
    return SK_Q_MOVED;
  }
  uint64_t h = q->head, n = q->tail - h;
  if (n == 0) {
    int closed = q->closed;
    spin_unlock(&q->glock);
    return closed ? SK_Q_CLOSED : SK_Q_BLOCK;
  }
  n--;
  if (q->h.order == SK_QUEUE_LIFO) {
    *out = q->stack[n];
  } else {
    *out = q->heap[0].it;
    *prio = q->heap[0].prio;
    *prio_int = q->heap[0].prio_int;
    pentry last = q->heap[n];
    size_t i = 0;
    for (;;) {
      size_t l = 2 * i + 1;
      if (l >= n) break;
      size_t m = l + 1 < n && heap_less(&q->heap[l + 1], &q->heap[l]) ? l + 1 : l;
      if (!heap_less(&q->heap[m], &last)) break;
      q->heap[i] = q->heap[m];
      i = m;
    }
    if (n > 0) q->heap[i] = last;
  }
  if (n == 0 && q->cap > SHRINK_CAP) {
    free(q->stack);
    free(q->heap);
    q->stack = NULL;
    q->heap = NULL;
    q->cap = 0;
  }
  STORE(&q->head, h + 1);
  spin_unlock(&q->glock);
  return SK_Q_OK;
}

static int local_get(void *self, sk_item *out, lua_Number *prio, int *prio_int) {
  sk_queue *q = self;
  int st = q->h.order == SK_QUEUE_FIFO ? get_fifo(q, out) : get_locked(q, out, prio, prio_int);
  if (st == SK_Q_OK && q->h.maxsize) wake_waiting(q, SK_WAIT_PUT);
  return st;
}

static int local_shut(void *self, int discard) {
  sk_queue *q = self;
  spinlock *pl = put_lock(q);
  spin_lock(pl);
  int moved = q->shm != NULL;
  if (!moved) STORE(&q->closed, 1);
  spin_unlock(pl);
  if (moved) return SK_Q_MOVED;
  if (discard) {
    sk_item it;
    lua_Number prio;
    int pi;
    uint64_t n = 0;
    while (sk_queue_get(q, &it, &prio, &pi) == SK_Q_OK) {
      sk_item_free(&it);
      n++;
    }
    if (n) {
      __atomic_add_fetch(&q->done, n, __ATOMIC_SEQ_CST);
      wake_all(q, SK_WAIT_JOIN);
    }
  }
  wake_all(q, SK_WAIT_GET);
  wake_all(q, SK_WAIT_PUT);
  return 0;
}

/* A task_done that meets DONE_MOVED raced the move: the mover, holding
** both side locks, publishes the shared storage in a moment. */
static int local_task_done(void *self) {
  sk_queue *q = self;
  uint64_t d = LOAD(&q->done);
  do {
    if (d >= DONE_MOVED) {
      sk_cpu_relax();
      return SK_Q_MOVED;
    }
    if (d >= LOAD(&q->tail)) return -1;
  } while (!__atomic_compare_exchange_n(&q->done, &d, d + 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST));
  if (LOAD(&q->nwait[SK_WAIT_JOIN]) && local_ready(q, SK_WAIT_JOIN)) wake_all(q, SK_WAIT_JOIN);
  return 0;
}

/* ---------------------------------------------------------------- waiting */

/* Spins a few microseconds for readiness when that may spare a sleep
** (another core, nothing else ready on this worker); 1 when ready. */
static int queue_spin(sk_queue *q, sk_ctx *c, int what) {
  if (__atomic_load_n(&ncpu, __ATOMIC_RELAXED) < 2 || c->w->sched.nready) return 0;
  uint64_t t0 = uv_hrtime();
  /* Back off between looks: each look steals the line the other side
  ** writes, and letting it run ahead a little lets the next get take
  ** several items without looking again. */
  for (unsigned i = 1, pauses = 1;; i++) {
    if (sk_queue_ready(q, what)) return 1;
    for (unsigned k = 0; k < pauses; k++) sk_cpu_relax();
    if (pauses < SPIN_MAX_PAUSES) pauses *= 2;
    if ((i & 7) == 0 && uv_hrtime() - t0 > SPIN_NS) return 0;
  }
}

/* Registered first, checked after: a change made meanwhile is seen here
** or its maker saw the record. A move meanwhile woke the local records
** (or will, and find this one): the caller looks again, and then waits on
** the shared storage. */
static int local_add_waiter(void *self, int what, const sk_waiter *w, int pass) {
  sk_queue *q = self;
  if (add_record(q, what, w) != 0) return -1;
  if (what == SK_WAIT_GET && q->h.order == SK_QUEUE_FIFO) {
    /* A FIFO put publishes `tail` and then reads the getters' count with
    ** no full fence between (put_fifo), which alone could miss this
    ** record while this look misses the item. Seeing the put lock free
    ** once closes that: the put whose unlock was seen shows in the look
    ** below (and every put before it); a put that takes the lock after
    ** it comes later in the single order of sequentially consistent
    ** operations than the registration, and so does its look at the
    ** count, which sees the record. A put costs one locked instruction
    ** less; a getter going to sleep waits at most for one put's
    ** critical section, without writing the putters' line. */
    wait_unlocked(&q->plock);
  }
  if (!local_ready(q, what) && !SHM(q)) return 0;
  /* Ready after all: take the record back (removing it releases the port
  ** reference the list held; the caller keeps its own). */
  sk_port_retain(w->port);
  remove_record(q, what, w->port, w->slot, pass);
  return 1;
}

static int local_remove_waiter(void *self, int what, sk_port *port, uint32_t slot, int pass) {
  return remove_record(self, what, port, slot, pass);
}

static void local_pass_wake(void *self, int what) {
  if (local_ready(self, what)) wake_one(self, what);
}

static const sk_queue_ops local_ops = {
    .put = local_put, .get = local_get, .shut = local_shut, .task_done = local_task_done,
    .ready = local_ready, .size = local_size, .is_closed = local_is_closed,
    .add_waiter = local_add_waiter, .remove_waiter = local_remove_waiter,
    .pass_wake = local_pass_wake};

/* ------------------------------------------------ the queue protocol */

/* Every operation goes to the queue's current storage; one that raced the
** move (SK_Q_MOVED) goes again, to the shared storage. Put and get, the
** hot pair, call the local FIFO's own functions inline while that is the
** storage (what local_ops would call, without the indirect call and its
** frames); the table does the rest. */

int sk_queue_put(sk_queue *q, sk_item *it, lua_Number prio, int prio_int, int force) {
  sk_qstore *st = ST(q);
  if (st == &q->local && q->h.order == SK_QUEUE_FIFO) {
    int rc = put_fifo(q, it, force);
    if (rc == SK_Q_OK) {
      it->kind = QI_NIL;
      wake_waiting(q, SK_WAIT_GET);
      return rc;
    }
    if (rc != SK_Q_MOVED) return rc;
  }
  for (;;) {
    st = ST(q);
    int rc = st->ops->put(st->self, it, prio, prio_int, force);
    if (rc != SK_Q_MOVED) return rc;
  }
}

int sk_queue_get(sk_queue *q, sk_item *out, lua_Number *prio, int *prio_int) {
  sk_qstore *st = ST(q);
  if (st == &q->local && q->h.order == SK_QUEUE_FIFO) {
    int rc = get_fifo(q, out);
    if (rc == SK_Q_OK && q->h.maxsize) wake_waiting(q, SK_WAIT_PUT);
    if (rc != SK_Q_MOVED) return rc;
  }
  for (;;) {
    st = ST(q);
    int rc = st->ops->get(st->self, out, prio, prio_int);
    if (rc != SK_Q_MOVED) return rc;
  }
}

void sk_queue_shut(sk_queue *q, int discard) {
  sk_qstore *st;
  do st = ST(q);
  while (st->ops->shut(st->self, discard) == SK_Q_MOVED);
}

void sk_queue_shut_shared(shq *s, int discard) { sk_shq_ops.shut(s, discard); }

int sk_queue_task_done(sk_queue *q) {
  for (;;) {
    sk_qstore *st = ST(q);
    int rc = st->ops->task_done(st->self);
    if (rc != SK_Q_MOVED) return rc;
  }
}

int sk_queue_ready(sk_queue *q, int what) {
  sk_qstore *st = ST(q);
  return st->ops->ready(st->self, what);
}

size_t sk_queue_size(sk_queue *q) {
  sk_qstore *st = ST(q);
  return st->ops->size(st->self);
}

int sk_queue_is_closed(sk_queue *q) {
  sk_qstore *st = ST(q);
  return st->ops->is_closed(st->self);
}

/* The queue as a wait source (sk_lua.h). On its first round a getter or
** putter spins a little before it registers (queue_spin). */
int sk_queue_link(sk_queue *q, int what, sk_ctx *c, int round) {
  if (round == 0 && what != SK_WAIT_JOIN && queue_spin(q, c, what)) return 1;
  sk_waiter wr;
  if (sk_ctx_waiter(c, &wr) != 0) return -1;
  sk_qstore *st = ST(q);
  int rc = st->ops->add_waiter(st->self, what, &wr, 0);
  if (rc != 0) sk_port_release(wr.port);
  return rc;
}

/* A record linked before a move is in the local lists until the move's
** wake takes it out (the move wakes every local waiter after publishing
** the shared storage, and a record added after it sees the move and is
** taken back), so the current storage holds whatever is left to remove. */
int sk_queue_unlink(sk_queue *q, int what, sk_ctx *c, int pass) {
  sk_qstore *st = ST(q);
  return !st->ops->remove_waiter(st->self, what, c->w->port, c->wslot, pass);
}

void sk_queue_pass_on(sk_queue *q, int what) {
  sk_qstore *st = ST(q);
  st->ops->pass_wake(st->self, what);
}

int sk_queue_add_getter(sk_queue *q, const sk_waiter *w) {
  if (sk_queue_ready(q, SK_WAIT_GET)) return 1;
  sk_qstore *st = ST(q);
  return st->ops->add_waiter(st->self, SK_WAIT_GET, w, 1);
}

void sk_queue_remove_getter(sk_queue *q, sk_port *port, uint32_t slot) {
  sk_qstore *st = ST(q);
  st->ops->remove_waiter(st->self, SK_WAIT_GET, port, slot, 1);
}

/* ------------------------------------------------------ moving to shm */

/* The items of q in the order they were put (FIFO, LIFO: bottom first;
** priority: heap order, each with its sequence number); calls fn on each. */
static int each_item(sk_queue *q, int (*fn)(void *ud, sk_item *it, lua_Number prio, int pi,
                                            uint64_t seq), void *ud) {
  uint64_t h = q->head, t = q->tail;
  if (q->h.order == SK_QUEUE_FIFO) {
    chunk *c = q->hchunk;
    for (uint64_t i = h; i < t; i++) {
      while (i - c->base >= c->cap) c = c->next;
      if (fn(ud, &c->it[i - c->base], 0, 0, i) != 0) return -1;
    }
  } else {
    for (uint64_t i = 0; i < t - h; i++) {
      int rc = q->h.order == SK_QUEUE_LIFO
                   ? fn(ud, &q->stack[i], 0, 0, i)
                   : fn(ud, &q->heap[i].it, q->heap[i].prio, q->heap[i].prio_int, q->heap[i].seq);
      if (rc != 0) return -1;
    }
  }
  return 0;
}

typedef struct moving {
  shitem **items;
  size_t n;
  uint64_t *seqs;
} moving;

static int copy_one(void *ud, sk_item *it, lua_Number prio, int pi, uint64_t seq) {
  moving *m = ud;
  shitem *s = shq_item_new(it, prio, pi);
  if (s == NULL) return -1;
  m->seqs[m->n] = seq;
  m->items[m->n++] = s;
  return 0;
}

static int free_one(void *ud, sk_item *it, lua_Number prio, int pi, uint64_t seq) {
  sk_item_free(it);
  return 0;
}

/* Under both side locks: copies every item into the segment first (so a
** full segment changes nothing), then links the copies and frees the
** originals. */
static shq *move(sk_queue *q) {
  shq *s = shq_new(q->h.order, q->h.maxsize);
  if (s == NULL) return NULL;
  /* Its items' objects move too (shq_item_new); a queue inside itself
  ** stays behind, by handle. */
  q->moving = 1;
  spinlock *pl = put_lock(q);
  spin_lock(pl);
  if (pl != &q->glock) spin_lock(&q->glock);
  uint64_t n = q->tail - q->head;
  moving m = {malloc((n ? n : 1) * sizeof *m.items), 0, malloc((n ? n : 1) * sizeof *m.seqs)};
  int ok = m.items && m.seqs && each_item(q, copy_one, &m) == 0;
  if (ok) {
    for (size_t i = 0; i < m.n; i++) shq_item_link(s, m.items[i], m.seqs[i]);
    each_item(q, free_one, NULL);
    uint64_t done = __atomic_exchange_n(&q->done, DONE_MOVED, __ATOMIC_SEQ_CST);
    shq_set_counters(s, q->tail, q->head, done, q->closed, q->seq);
    q->head = q->tail;
    if (q->h.order == SK_QUEUE_FIFO) {
      /* Nothing is left: the get side's chunk is the put side's. */
      for (chunk *c = q->hchunk; c != q->tchunk;) {
        chunk *next = c->next;
        free(c);
        c = next;
      }
      q->hchunk = q->tchunk;
    }
    q->shared.self = s;
    __atomic_store_n(&q->shm, s, __ATOMIC_SEQ_CST);
    __atomic_store_n(&q->st, &q->shared, __ATOMIC_SEQ_CST);
  } else {
    for (size_t i = 0; i < m.n; i++) shq_item_drop(m.items[i]);
  }
  if (pl != &q->glock) spin_unlock(&q->glock);
  spin_unlock(pl);
  free(m.items);
  free(m.seqs);
  q->moving = 0;
  if (!ok) {
    sk_shm_obj_unhold((sk_shm_obj *)s);
    return NULL;
  }
  sk_shm_view_remember((sk_shm_obj *)s, &q->h.obj);
  /* Handles to it written before the move (in items) find it from any
  ** process. */
  if (sk_obj_register(&q->h.obj) == 0) {
    sk_shm_export((int)getpid(), q->h.obj.slot, q->h.obj.gen, (sk_shm_obj *)s);
  }
  /* Waiters on the local lists try again and find the shared copy. */
  wake_all(q, SK_WAIT_GET);
  wake_all(q, SK_WAIT_PUT);
  wake_all(q, SK_WAIT_JOIN);
  return s;
}

shq *sk_queue_share(sk_queue *q) {
  shq *s = SHM(q);
  if (s) return s;
  sk_shm_move_lock();
  s = SHM(q);
  if (s == NULL && !q->moving) s = move(q);
  sk_shm_move_unlock();
  return s;
}

static sk_obj *make_view(sk_shm_obj *so) {
  shq *s = (shq *)so;
  sk_queue *q = queue_alloc(shq_order(s), shq_maxsize(s), 0);
  if (q == NULL) return NULL;
  sk_shm_obj_hold(so);
  q->shm = s;
  q->shared.self = s;
  q->st = &q->shared;
  q->done = DONE_MOVED;
  return &q->h.obj;
}

void sk_chan_open(void) {
  sk_shm_register_ops(&queue_shm);
  shq_attach_type();
}

sk_queue *sk_queue_view(shq *s) { return (sk_queue *)sk_shm_view_get((sk_shm_obj *)s, make_view); }
