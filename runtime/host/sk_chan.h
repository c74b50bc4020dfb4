/*
** sk_chan.h — the queue engine (runtime/host/chan.c, shq.c) under
** skein.queue (lua/queue.c) and skein.pipe (lua/pipe.c, where each
** direction is an unbounded FIFO queue).
**
** A queue is an sk_obj any worker may use. Items are copied in on put and
** decoded in the getter's state (sk_item). The FIFO order keeps its items in
** a linked list of chunks (bigger ones while the queue is long) with one
** lock for the putting side and one for the getting side, so a producer and
** a consumer on two threads do not fight over one cache line; LIFO and
** priority queues use the getting side's lock for both. `tail` (items ever put), `head` (items ever taken)
** and `done` (task_done calls) are monotonic counters: size = tail - head,
** and join waits for done == tail.
**
** Waiting: every wait list (getters, putters, joiners) sits under its own
** small lock `wlock` and mirrors its length in an atomic count. A waiter
** registers first and checks the condition after; whoever changes the
** condition publishes the change first and reads the count after (both
** sequentially consistent), so one of the two always sees the other and
** nobody signals a queue nobody waits on.
**
** Lock order: the put lock before the get lock, and either before the lock
** of the spare chunks; `wlock` is never held with any of them, and no lock
** is held while a waiter is fired or Lua runs.
**
** Across processes: the first time a queue is sent to another process it
** moves into the shared-memory segment (sk_queue_share: a shq, shq.c), and
** every sk_queue_* function then goes there; other processes reach it
** through views (sk_queue_view). A queue that never leaves its process
** keeps the fast path above. The two storages sit behind one table of
** operations (sk_qstore.h, the queue protocol): every sk_queue_* function
** dispatches through the queue's current storage, swapped once, by the
** move; nothing outside chan.c and shq.c touches a storage.
*/
#ifndef SK_CHAN_H
#define SK_CHAN_H

#include "sk_lua.h"
#include "sk_shmtypes.h"
#include "../core/sk_shm.h"
#include "../core/sk_view.h"

typedef struct sk_queue sk_queue;
typedef struct shq shq;

enum { SK_QUEUE_FIFO, SK_QUEUE_LIFO, SK_QUEUE_PRIORITY };

/* Results of the non-blocking operations. */
enum { SK_Q_NOMEM = -2, SK_Q_CLOSED = -1, SK_Q_BLOCK = 0, SK_Q_OK = 1 };

/* ----------------------------------------------------------------- items */

#define SK_ITEM_INLINE 24

/* An item's kinds (chan.c and shq.c read them). */
enum { QI_NIL, QI_FALSE, QI_TRUE, QI_INT, QI_FLOAT, QI_SSTR, QI_LSTR, QI_BUF };

/* One value as it sits in a queue: nil, booleans, numbers and strings up to
** SK_ITEM_INLINE bytes inline; longer strings one malloc'd block; anything
** else a marshalled sk_buf. */
typedef struct sk_item {
  uint32_t kind, len;
  union {
    lua_Integer i;
    lua_Number n;
    sk_buf *buf;
    char s[SK_ITEM_INLINE];
  } u;
} sk_item;

/* Copies the value at idx into *it, bound for queue `q`. Returns 0, or -1
** with an error pushed (kind "marshal", its path starting at "item");
** never raises while it owns memory. When q is shared with other
** processes, the objects in the value move to the segment too. An integer,
** the commonest item, is taken inline (two API calls); the rest is
** sk_item_encode_value's. */
int sk_item_encode_value(lua_State *L, int idx, sk_item *it, sk_queue *q);
static inline int sk_item_encode(lua_State *L, int idx, sk_item *it, sk_queue *q) {
  if (lua_isinteger(L, idx)) {
    it->kind = QI_INT;
    it->len = 0;
    it->u.i = lua_tointegerx(L, idx, NULL);
    return 0;
  }
  return sk_item_encode_value(L, idx, it, q);
}
/* Pushes the value and frees the item; raises (after freeing) when it
** cannot be decoded here. Numbers are pushed inline; the rest is
** sk_item_push_value's. */
void sk_item_push_value(lua_State *L, sk_item *it);
static inline void sk_item_push(lua_State *L, sk_item *it) {
  if (it->kind == QI_INT) lua_pushinteger(L, it->u.i);
  else if (it->kind == QI_FLOAT) lua_pushnumber(L, it->u.n);
  else sk_item_push_value(L, it);
}
void sk_item_free(sk_item *it);

/* ------------------------------------------------------- stamped handles */

/* The handles of queues and pipe ends: sk_handle's layout (so that
** sk_handle_check and sk_handle_release work on them) plus a stamp, the
** handle's address mixed with a per-process random key. A method finds its
** object with one API call (the userdata's size) instead of a metatable
** comparison; no userdata made elsewhere carries a valid stamp. */
typedef struct sk_stamped {
  sk_obj *obj;                  /* NULL once released */
  uintptr_t stamp;
} sk_stamped;

/* Pushes a new stamped handle of metatable `mt` for `o` (taking over one
** reference). */
void sk_stamped_push(lua_State *L, sk_obj *o, const char *mt);

/* The per-process key of the stamps (qitem.c); set before the first
** stamped handle is made, never changed after. */
extern uintptr_t sk_stamp_key;

/* The object of the stamped handle at idx, or NULL when the value is not
** one (or was released): the caller then checks it the usual way. Every
** stamped handle of this worker was made by sk_stamped_push on its
** thread, after the key was set, so the key read here is initialised.
** The size is checked before the stamp is read, so a smaller userdata is
** never read past its end. */
static inline sk_obj *sk_stamped_obj(lua_State *L, int idx) {
  sk_stamped *h = lua_touserdata(L, idx);
  if (h && lua_rawlen(L, idx) == sizeof *h && h->obj &&
      h->stamp == ((uintptr_t)h ^ sk_stamp_key)) {
    return h->obj;
  }
  return NULL;
}

/* ---------------------------------------------------------------- queues */

/* A new queue holding one reference (dropped with sk_obj_release on its
** first member); NULL when out of memory. maxsize 0: unbounded. */
sk_queue *sk_queue_new(int order, size_t maxsize);

/* The start of every queue: what its users may read inline (set at birth,
** never changed). The rest of struct sk_queue is chan.c's. */
typedef struct sk_queue_head {
  sk_obj obj;
  int order;
  size_t maxsize;               /* 0: unbounded */
} sk_queue_head;

extern const sk_objtype sk_queue_type;

/* 1 when `o` is a queue. */
static inline int sk_queue_is(const sk_obj *o) { return o->type == &sk_queue_type; }
static inline int sk_queue_order(const sk_queue *q) {
  return ((const sk_queue_head *)q)->order;
}
static inline size_t sk_queue_maxsize(const sk_queue *q) {
  return ((const sk_queue_head *)q)->maxsize;
}
size_t sk_queue_size(sk_queue *q);
int sk_queue_is_closed(sk_queue *q);

/* Moves *it into the queue unless it is closed, or full (ignored with
** `force`). On SK_Q_OK *it is left empty; otherwise the caller still owns
** it. Wakes a getter when one waits. */
int sk_queue_put(sk_queue *q, sk_item *it, lua_Number prio, int prio_int, int force);
/* Takes the next item into *out (with its priority); SK_Q_BLOCK when empty,
** SK_Q_CLOSED when closed and drained. Wakes a putter when one waits. */
int sk_queue_get(sk_queue *q, sk_item *out, lua_Number *prio, int *prio_int);

/* Closes the queue: puts fail, gets drain then fail, every blocked getter
** and putter wakes. With `discard` the items left are dropped too (they
** count as done for join). */
void sk_queue_shut(sk_queue *q, int discard);
/* Counts one item as processed; -1 when more task_done than puts. */
int sk_queue_task_done(sk_queue *q);

/* What a waiter waits for. */
enum { SK_WAIT_GET, SK_WAIT_PUT, SK_WAIT_JOIN };

/* 1 when a wait of this kind would end now (closed counts as ready for
** getting and putting). */
int sk_queue_ready(sk_queue *q, int what);
/* A queue as a wait source (sk_lua.h), for the sources of queue and pipe
** bindings. sk_queue_link registers the context for a wait of kind `what`
** (on round 0 a getter or putter spins first): 0 linked, 1 ready already
** (nothing linked), -1 out of memory. sk_queue_unlink removes it and
** returns 1 when a waker had taken its record (the context was picked);
** with `pass` such a wake goes on at once to the next waiter when the queue
** is still ready (a poll, which takes nothing). sk_queue_pass_on hands a
** picked wake on when the wait ends in a raise, so that no item is left
** unclaimed while another waiter sleeps. */
int sk_queue_link(sk_queue *q, int what, sk_ctx *c, int round);
int sk_queue_unlink(sk_queue *q, int what, sk_ctx *c, int pass);
void sk_queue_pass_on(sk_queue *q, int what);

/* select's waiter records for getting (see sk_selectable). */
int sk_queue_add_getter(sk_queue *q, const sk_waiter *w);
void sk_queue_remove_getter(sk_queue *q, sk_port *port, uint32_t slot);

/* ---------------------------------------------- across processes (shq.c) */

/* Moves a queue into the shared segment (once) and returns its shared
** copy; NULL when the segment cannot hold it. Its handles everywhere keep
** working: every operation goes to the shared copy from then on. */
shq *sk_queue_share(sk_queue *q);
/* Lets queues arrive from other processes (once per process). */
void sk_chan_open(void);
/* This process's queue for a shared one, with a new reference. */
sk_queue *sk_queue_view(shq *s);

/* Closes a queue that only the segment holds (a shared pipe end's, when
** the end goes), as sk_queue_shut does. */
void sk_queue_shut_shared(shq *s, int discard);

#endif
