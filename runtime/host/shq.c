/*
** shq.c — a queue in the shared-memory segment (sk_shm.h), for queues and
** pipes used by several processes. A queue moves here the first time it
** is sent to another process (chan.c, sk_queue_share); from then on every
** process, and every worker in it, works on this one copy through its own
** sk_queue (a *view*, whose `shm` field points here).
**
** Layout: a header with one robust mutex guarding everything; items are
** separately allocated blocks (shitem) holding their bytes and the shared
** objects they mention. FIFO: a linked list from `head` to `tail`; LIFO: a
** linked stack from `head`; priority: a binary min-heap of item offsets on
** (priority, sequence). An item is encoded into its block before the lock
** is taken and decoded after it is released, so the critical sections are
** a few dozen instructions.
**
** A process killed inside a critical section: the next locker is told
** (sk_shm_lock returns 1) and repairs the queue (shq_repair): it recounts
** the list, or rebuilds the heap from the entries a journal says may be
** live, dropping duplicates. An item is linked by the putter's last steps
** and unlinked by the getter's first, so a put that dies before the link
** never shows, and no item shows torn.
**
** Waiting: three lists of sk_shm_waiter records (getters, putters,
** joiners) under the same mutex; a waiter registers and checks readiness
** under the lock, so no wake is lost (task_done, which counts without the
** lock, takes it once before it looks for joiners). The waker takes a record under the
** lock and fires it after (sk_shm_wake). When a process dies its records
** are dropped and, as its wake may have been lost with it, one waiter of
** each kind that could now proceed is woken (shq_gone).
*/
#include <stdlib.h>
#include <string.h>

#include "sk_qstore.h"

#define HEAP_MIN 16

struct shq {
  sk_shm_obj obj;
  pthread_mutex_t lock;
  int32_t order;
  int32_t closed;               /* atomic */
  uint64_t maxsize;
  uint64_t count;               /* atomic mirror of the items held */
  uint64_t puts, gets, done;    /* atomic: items ever put, taken; task_done calls */
  sk_off head, tail;            /* FIFO list, LIFO stack (head is the top) */
  sk_off heap;                  /* priority: an array of `cap` item offsets */
  uint64_t cap;
  uint64_t journal;             /* heap entries that may be live while it changes */
  uint64_t seq;
  sk_off waits[3];              /* wait lists, changed under the lock only */
};

/* One item: its value as sk_item keeps it, flattened. */
typedef struct shitem {
  sk_off next;
  lua_Number prio;
  uint64_t seq;
  int32_t prio_int;
  uint32_t kind, len, nobjs;
  /* then nobjs sk_off (a reference each), then len bytes */
} shitem;

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
/* A counter changed by a put or a get, under the lock. A release store is
** enough there (a plain move on x86, where a sequentially consistent store
** is an xchg that drains the store buffer, twice per item on each side).
** Of the reads outside the lock, a get's or put's first look and size are
** hints that the lock then confirms; task_done's bound comes after the get
** of its item, whose lock made that put's counts visible; and whoever
** sleeps on the state checks it under the lock (shq_add_waiter), which
** orders that check after every critical section before it. */
#define PUB(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static sk_off *item_objs(shitem *s) { return (sk_off *)(s + 1); }
static char *item_data(shitem *s) { return (char *)(item_objs(s) + s->nobjs); }

/* ---------------------------------------------------------- items */

/* Whether an item of this kind is a scalar (nil, a boolean, a number, a
** string of up to SK_ITEM_INLINE bytes): held whole in its block, with
** nothing of this process's to allocate or free on the way in or out. */
static int scalar(uint32_t kind) { return kind <= QI_SSTR; }

/* A new block of `extra` bytes past its header, the header filled (no
** objects yet); NULL when the segment is full. */
static shitem *item_block(size_t extra, lua_Number prio, int prio_int, uint32_t kind,
                          uint32_t len) {
  shitem *s = sk_shm_alloc(sizeof *s + extra);
  if (s == NULL) return NULL;
  s->next = 0;
  s->prio = prio;
  s->prio_int = prio_int;
  s->kind = kind;
  s->len = len;
  s->nobjs = 0;
  return s;
}

/* Copies *it into a new block, freeing *it when `consume`; NULL (the item
** left alone) when the segment is full. */
static shitem *item_in(sk_item *it, lua_Number prio, int prio_int, int consume) {
  if (scalar(it->kind)) {
    uint32_t len = it->kind == QI_SSTR ? it->len : it->kind >= QI_INT ? 8 : 0;
    shitem *s = item_block(len, prio, prio_int, it->kind, len);
    if (s == NULL) return NULL;
    if (it->kind == QI_SSTR) memcpy(item_data(s), it->u.s, len);
    else if (len) memcpy(item_data(s), &it->u, 8);
    if (consume) it->kind = QI_NIL;
    return s;
  }
  const char *data;
  uint32_t len;
  sk_buf *b = NULL;
  switch (it->kind) {
    case QI_INT: case QI_FLOAT: data = (const char *)&it->u; len = 8; break;
    case QI_SSTR: data = it->u.s; len = it->len; break;
    case QI_LSTR: case QI_BUF:
      b = it->u.buf;
      data = b->data;
      len = (uint32_t)b->len;
      if (b->len > UINT32_MAX) return NULL;
      break;
    default: data = NULL; len = 0; break;
  }
  size_t nobjs = it->kind == QI_BUF ? b->nobjs : 0;
  shitem *s = item_block(nobjs * sizeof(sk_off) + len, prio, prio_int, it->kind, len);
  if (s == NULL) return NULL;
  for (size_t i = 0; i < nobjs; i++) {
    sk_obj *o = b->objs[i];
    sk_shm_obj *so = o->type->shm ? o->type->shm->share(o) : NULL;
    if (so) {
      sk_shm_obj_retain(so);
      item_objs(s)[s->nobjs++] = sk_shm_off(so);
    } else {
      sk_shm_pin(o);
    }
  }
  if (len) memcpy(item_data(s), data, len);
  if (consume) sk_item_free(it);
  return s;
}

static void item_free(shitem *s) {
  for (uint32_t i = 0; i < s->nobjs; i++) sk_shm_obj_release(sk_shm_ptr(item_objs(s)[i]));
  sk_shm_free(s);
}

/* Turns a block back into an sk_item of this process and frees it. The
** objects it mentions get a view here first (held by the item's buffer),
** so that decoding finds them alive. SK_Q_NOMEM leaves the block alone. */
static int item_out(shitem *s, sk_item *out) {
  if (scalar(s->kind)) {
    out->kind = s->kind;
    out->len = s->kind == QI_SSTR ? s->len : 0;
    if (s->kind == QI_SSTR) memcpy(out->u.s, item_data(s), s->len);
    else if (s->len) memcpy(&out->u, item_data(s), 8);
    item_free(s);
    return SK_Q_OK;
  }
  memset(out, 0, sizeof *out);
  out->kind = s->kind;
  out->len = s->len;
  switch (s->kind) {
    case QI_INT: case QI_FLOAT: memcpy(&out->u, item_data(s), 8); break;
    case QI_SSTR: memcpy(out->u.s, item_data(s), s->len); break;
    case QI_LSTR: case QI_BUF: {
      /* chan.c's layouts: a long string's bytes follow its sk_buf; a
      ** marshalled value's are a block of their own (sk_buf_free). */
      int lstr = s->kind == QI_LSTR;
      sk_buf *b = malloc(sizeof *b + (lstr ? s->len : 0));
      sk_obj **objs = s->nobjs ? calloc(s->nobjs, sizeof *objs) : NULL;
      char *data = lstr ? NULL : malloc(s->len ? s->len : 1);
      if (b == NULL || (s->nobjs && objs == NULL) || (!lstr && data == NULL)) {
        free(b);
        free(objs);
        free(data);
        return SK_Q_NOMEM;
      }
      memset(b, 0, sizeof *b);
      b->data = lstr ? (char *)(b + 1) : data;
      memcpy(b->data, item_data(s), s->len);
      b->len = b->cap = s->len;
      for (uint32_t i = 0; i < s->nobjs; i++) {
        sk_obj *v = sk_shm_view_of(sk_shm_ptr(item_objs(s)[i]));
        if (v) objs[b->nobjs++] = v;
      }
      b->objs = objs;
      b->capobjs = s->nobjs;
      out->u.buf = b;
      break;
    }
    default: break;
  }
  item_free(s);
  return SK_Q_OK;
}

/* ---------------------------------------------------------- the heap */

static sk_off *heap_at(shq *q) { return sk_shm_ptr(q->heap); }

static int less(sk_off a, sk_off b) {
  shitem *x = sk_shm_ptr(a), *y = sk_shm_ptr(b);
  return x->prio < y->prio || (x->prio == y->prio && x->seq < y->seq);
}

static void sift_down(sk_off *h, uint64_t n, uint64_t i, sk_off e) {
  for (;;) {
    uint64_t l = 2 * i + 1;
    if (l >= n) break;
    uint64_t m = l + 1 < n && less(h[l + 1], h[l]) ? l + 1 : l;
    if (!less(h[m], e)) break;
    h[i] = h[m];
    i = m;
  }
  h[i] = e;
}

static int cmp_off(const void *a, const void *b) {
  sk_off x = *(const sk_off *)a, y = *(const sk_off *)b;
  return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------- repair */

/* Called with the lock held after its previous holder died in it. */
static void shq_repair(shq *q) {
  uint64_t n = 0;
  if (q->order == SK_QUEUE_PRIORITY) {
    sk_off *h = heap_at(q);
    uint64_t m = q->journal ? q->journal : q->count;
    if (h && m <= q->cap) {
      qsort(h, m, sizeof *h, cmp_off);
      for (uint64_t i = 0; i < m; i++) {
        if (h[i] && (n == 0 || h[n - 1] != h[i]) && sk_shm_valid(h[i], sizeof(shitem))) h[n++] = h[i];
      }
      for (uint64_t i = n / 2; i-- > 0;) sift_down(h, n, i, h[i]);
    }
  } else {
    sk_off last = 0;
    for (sk_off o = q->head; o; o = ((shitem *)sk_shm_ptr(o))->next) {
      last = o;
      n++;
    }
    q->tail = last;
  }
  q->journal = 0;
  STORE(&q->count, n);
  STORE(&q->puts, LOAD(&q->gets) + n);
}

static void lock(shq *q) {
  if (sk_shm_lock(&q->lock)) shq_repair(q);
}

static void unlock(shq *q) { sk_shm_unlock(&q->lock); }

/* ---------------------------------------------------------- life */

static void shq_destroy(sk_shm_obj *o) {
  shq *q = (shq *)o;
  if (q->order == SK_QUEUE_PRIORITY) {
    sk_off *h = heap_at(q);
    for (uint64_t i = 0; h && i < q->count; i++) item_free(sk_shm_ptr(h[i]));
    sk_shm_free(h);
  } else {
    for (sk_off off = q->head; off;) {
      shitem *s = sk_shm_ptr(off);
      off = s->next;
      item_free(s);
    }
  }
  for (int w = 0; w < 3; w++) {
    sk_shm_waiter x;
    while (sk_shm_waitlist_pop(&q->waits[w], &x)) {}
  }
}

/* Whether anyone waits, read without the lock: a look made after the state
** change it follows was published under the lock (a waiter registers, and
** checks the state, under the lock). */
static int waiting(shq *q, int what) {
  return __atomic_load_n(&q->waits[what], __ATOMIC_ACQUIRE) != 0;
}

/* Under the lock: takes the oldest record of a live process. */
static int take_waiter(shq *q, int what, sk_shm_waiter *out) {
  return sk_shm_waitlist_pop(&q->waits[what], out);
}

/* Wakes one waiter of a kind, passing over records whose process or worker
** has gone. */
static void wake_one(shq *q, int what) {
  while (waiting(q, what)) {
    sk_shm_waiter w;
    lock(q);
    int got = take_waiter(q, what, &w);
    unlock(q);
    if (!got || sk_shm_wake(&w) == 0) return;
  }
}

static void wake_all(shq *q, int what) {
  while (waiting(q, what)) {
    sk_shm_waiter w;
    lock(q);
    int got = take_waiter(q, what, &w);
    unlock(q);
    if (!got) return;
    sk_shm_wake(&w);
  }
}

static int shq_ready(void *self, int what);

static void shq_gone(sk_shm_obj *o) {
  shq *q = (shq *)o;
  lock(q);
  for (int w = 0; w < 3; w++) sk_shm_waitlist_purge(&q->waits[w]);
  unlock(q);
  if (shq_ready(q, SK_WAIT_GET)) wake_one(q, SK_WAIT_GET);
  if (shq_ready(q, SK_WAIT_PUT)) wake_one(q, SK_WAIT_PUT);
  if (shq_ready(q, SK_WAIT_JOIN)) wake_all(q, SK_WAIT_JOIN);
}

static const sk_shm_type shq_type = {shq_gone, shq_destroy};

shq *shq_new(int order, size_t maxsize) {
  if (sk_shm_base(1) == NULL) return NULL;   /* (the type: sk_chan_open) */
  shq *q = sk_shm_alloc(sizeof *q);
  if (q == NULL) return NULL;
  memset((char *)q + sizeof q->obj, 0, sizeof *q - sizeof q->obj);
  sk_shm_mutex_init(&q->lock);
  q->order = order;
  q->maxsize = maxsize;
  if (sk_shm_obj_link(&q->obj, SK_SHM_QUEUE) != 0) {
    sk_shm_free(q);
    return NULL;
  }
  return q;
}

void shq_attach_type(void) { sk_shm_register_type(SK_SHM_QUEUE, &shq_type); }

/* ---------------------------------------------------------- operations */

static size_t shq_size(void *self) { return (size_t)LOAD(&((shq *)self)->count); }
static int shq_is_closed(void *self) { return LOAD(&((shq *)self)->closed); }

static int shq_ready(void *self, int what) {
  shq *q = self;
  switch (what) {
    case SK_WAIT_GET: return LOAD(&q->count) != 0 || LOAD(&q->closed);
    case SK_WAIT_PUT: return LOAD(&q->closed) || q->maxsize == 0 || LOAD(&q->count) < q->maxsize;
    default: return LOAD(&q->done) == LOAD(&q->puts);
  }
}

/* Links a block; the lock is held and there is room. */
static int link_item(shq *q, shitem *s, uint64_t seq) {
  uint64_t n = q->count;
  s->seq = seq;
  s->next = 0;
  sk_off off = sk_shm_off(s);
  if (q->order == SK_QUEUE_FIFO) {
    if (q->tail) ((shitem *)sk_shm_ptr(q->tail))->next = off;
    else q->head = off;
    q->tail = off;
  } else if (q->order == SK_QUEUE_LIFO) {
    s->next = q->head;
    q->head = off;
  } else {
    if (n == q->cap) {
      uint64_t cap = q->cap ? q->cap * 2 : HEAP_MIN;
      sk_off *a = sk_shm_alloc(cap * sizeof *a);
      if (a == NULL) return SK_Q_NOMEM;
      if (n) memcpy(a, heap_at(q), n * sizeof *a);
      sk_off old = q->heap;
      q->heap = sk_shm_off(a);  /* one store: the old array stays valid until here */
      q->cap = cap;
      sk_shm_free(sk_shm_ptr(old));
    }
    sk_off *h = heap_at(q);
    q->journal = n + 1;
    uint64_t i = n;
    while (i > 0 && less(off, h[(i - 1) / 2])) {
      h[i] = h[(i - 1) / 2];
      i = (i - 1) / 2;
    }
    h[i] = off;
    q->journal = 0;
  }
  PUB(&q->count, n + 1);
  PUB(&q->puts, q->puts + 1);
  return SK_Q_OK;
}

static int shq_put(void *self, sk_item *it, lua_Number prio, int prio_int, int force) {
  shq *q = self;
  if (LOAD(&q->closed)) return SK_Q_CLOSED;
  if (!force && q->maxsize && LOAD(&q->count) >= q->maxsize) return SK_Q_BLOCK;
  shitem *s = item_in(it, prio, prio_int, 1);
  if (s == NULL) return SK_Q_NOMEM;
  sk_shm_waiter w;
  int st, woke = 0;
  lock(q);
  if (q->closed) st = SK_Q_CLOSED;
  else if (!force && q->maxsize && q->count >= q->maxsize) st = SK_Q_BLOCK;
  else st = link_item(q, s, q->seq++);
  if (st == SK_Q_OK) woke = take_waiter(q, SK_WAIT_GET, &w);
  unlock(q);
  if (st != SK_Q_OK) {
    /* The value is gone into the block: bring it back for the caller. */
    if (item_out(s, it) != SK_Q_OK) {
      item_free(s);
      it->kind = QI_NIL;
      return SK_Q_NOMEM;
    }
    return st;
  }
  if (woke && sk_shm_wake(&w) != 0) wake_one(q, SK_WAIT_GET);
  return SK_Q_OK;
}

/* Unlinks the next item; the lock is held and there is one. */
static shitem *unlink_item(shq *q) {
  uint64_t n = q->count;
  shitem *s;
  if (q->order == SK_QUEUE_PRIORITY) {
    sk_off *h = heap_at(q);
    s = sk_shm_ptr(h[0]);
    q->journal = n;
    sift_down(h, n - 1, 0, h[n - 1]);
    q->journal = 0;
  } else {
    s = sk_shm_ptr(q->head);
    q->head = s->next;
    if (q->head == 0) q->tail = 0;
    /* The next get reads the next block: a long queue's blocks were
    ** written long ago by another process and have left the cache. */
    else __builtin_prefetch(sk_shm_ptr(q->head));
  }
  PUB(&q->count, n - 1);
  PUB(&q->gets, q->gets + 1);
  return s;
}

static int shq_get(void *self, sk_item *out, lua_Number *prio, int *prio_int) {
  shq *q = self;
  if (LOAD(&q->count) == 0 && !LOAD(&q->closed)) return SK_Q_BLOCK;
  sk_shm_waiter w;
  int woke = 0;
  shitem *s = NULL;
  lock(q);
  if (q->count) {
    s = unlink_item(q);
    if (q->maxsize) woke = take_waiter(q, SK_WAIT_PUT, &w);
  }
  int closed = q->closed;
  unlock(q);
  if (s == NULL) return closed ? SK_Q_CLOSED : SK_Q_BLOCK;
  if (woke && sk_shm_wake(&w) != 0) wake_one(q, SK_WAIT_PUT);
  *prio = s->prio;
  *prio_int = s->prio_int;
  if (item_out(s, out) != SK_Q_OK) {
    item_free(s);               /* lost for want of memory here */
    return SK_Q_NOMEM;
  }
  return SK_Q_OK;
}

shitem *shq_item_new(sk_item *it, lua_Number prio, int prio_int) {
  return item_in(it, prio, prio_int, 0);
}

void shq_item_drop(shitem *s) { item_free(s); }

void shq_item_link(shq *q, shitem *s, uint64_t seq) {
  lock(q);
  if (link_item(q, s, seq) != SK_Q_OK) {
    /* Only a heap can fail to grow: the item is dropped, as by a put
    ** that found no memory. */
    item_free(s);
  }
  unlock(q);
}

void shq_set_counters(shq *q, uint64_t puts, uint64_t gets, uint64_t done, int closed,
                      uint64_t seq) {
  lock(q);
  STORE(&q->puts, puts);
  STORE(&q->gets, gets);
  STORE(&q->done, done);
  STORE(&q->closed, closed);
  if (seq > q->seq) q->seq = seq;
  unlock(q);
}

int shq_order(shq *q) { return q->order; }
size_t shq_maxsize(shq *q) { return (size_t)q->maxsize; }

static int shq_shut(void *self, int discard) {
  shq *q = self;
  lock(q);
  STORE(&q->closed, 1);
  unlock(q);
  if (discard) {
    uint64_t n = 0;
    for (;;) {
      shitem *s = NULL;
      lock(q);
      if (q->count) s = unlink_item(q);
      unlock(q);
      if (s == NULL) break;
      item_free(s);
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

static int shq_task_done(void *self) {
  shq *q = self;
  uint64_t d = LOAD(&q->done);
  do {
    if (d >= LOAD(&q->puts)) return -1;
  } while (!__atomic_compare_exchange_n(&q->done, &d, d + 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST));
  /* `done` changed outside the lock: take it once before looking for
  ** joiners, so that a joiner checking under the lock either sees the
  ** count or is seen here. */
  if (shq_ready(q, SK_WAIT_JOIN)) {
    lock(q);
    unlock(q);
    wake_all(q, SK_WAIT_JOIN);
  }
  return 0;
}

/* ---------------------------------------------------------- waiting */

/* The record names its port by id (any process can wake it): the port
** reference the caller passed is released once the record is in. */
static int shq_add_waiter(void *self, int what, const sk_waiter *wr, int pass) {
  (void)pass;                   /* checked under the lock: never taken back */
  shq *q = self;
  uint32_t id = sk_port_id(wr->port);
  if (id == 0) return -1;
  sk_shm_waiter w;
  if (sk_shm_waiter_self(&w, id, wr->slot, wr->gen) != 0) return -1;
  lock(q);
  if (shq_ready(q, what)) {
    unlock(q);
    return 1;
  }
  int rc = sk_shm_waitlist_add(&q->waits[what], &w);
  unlock(q);
  if (rc == 0) sk_port_release(wr->port);
  return rc;
}

static int shq_remove_waiter(void *self, int what, sk_port *port, uint32_t slot, int pass) {
  shq *q = self;
  uint32_t id = sk_port_id(port);
  lock(q);
  int removed = sk_shm_waitlist_remove(&q->waits[what], id, slot);
  unlock(q);
  if (!removed && pass && shq_ready(q, what)) {
    if (what == SK_WAIT_JOIN) wake_all(q, what);
    else wake_one(q, what);
  }
  return removed > 0;
}

static void shq_pass_wake(void *self, int what) {
  if (shq_ready(self, what)) wake_one(self, what);
}

const sk_queue_ops sk_shq_ops = {
    .put = shq_put, .get = shq_get, .shut = shq_shut, .task_done = shq_task_done,
    .ready = shq_ready, .size = shq_size, .is_closed = shq_is_closed,
    .add_waiter = shq_add_waiter, .remove_waiter = shq_remove_waiter,
    .pass_wake = shq_pass_wake};
