/*
** xwait.c — the core the synchronisation objects share (sk_xwait.h): a wait
** list and its mutex in the shared segment (sk_xw), the links of a wait
** source (sk_lua.h) on it, identities that hold across processes, and the
** per-process objects (views) through which Lua reaches the shared state.
**
** Why everything lives in the segment: an event, lock, semaphore,
** condition or barrier may be handed to a worker process at any time, and
** then the same state must serve every process. Keeping it in the segment
** from the start gives one implementation, no move, and the same costs
** between threads (a robust mutex costs what a plain one does when it is
** free).
**
** Lock order: an object's mutex, then (to wake a waiter) the port table's
** lock and a port's, or the target process's mailbox lock; all innermost.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_xwait.h"

/* ---------------------------------------------------------- wait lists */

void sk_xw_init(sk_xw *x) {
  sk_shm_mutex_init(&x->lock);
  x->head = 0;
}

void sk_xw_lock(sk_xw *x) {
  /* Every change to the list is one store, so a holder that died left it
  ** whole; the object's own state is mended by its `gone` handler. */
  sk_shm_lock(&x->lock);
}

void sk_xw_unlock(sk_xw *x) { sk_shm_unlock(&x->lock); }

int sk_xw_add(sk_xw *x, const sk_waiter *w) {
  uint32_t id = sk_port_id(w->port);
  if (id == 0) return -1;
  sk_shm_waiter rec;
  if (sk_shm_waiter_self(&rec, id, w->slot, w->gen) != 0) return -1;
  if (sk_shm_waitlist_add(&x->head, &rec) != 0) return -1;
  sk_port_release(w->port);     /* the record names the port by id */
  return 0;
}

int sk_xw_remove(sk_xw *x, sk_port *port, uint32_t slot) {
  return sk_shm_waitlist_remove(&x->head, sk_port_id(port), slot);
}

int sk_xw_wake_one(sk_xw *x) {
  sk_shm_waiter w;
  while (sk_shm_waitlist_pop(&x->head, &w)) {
    if (sk_shm_wake(&w) == 0) return 1;
  }
  return 0;
}

void sk_xw_wake_all(sk_xw *x) {
  while (sk_xw_wake_one(x)) {}
}

void sk_xw_purge(sk_xw *x) { sk_shm_waitlist_purge(&x->head); }

size_t sk_xw_count(sk_xw *x) {
  size_t n = 0;
  for (sk_off o = x->head; o; o = ((sk_shm_waiter *)sk_shm_ptr(o))->next) n++;
  return n;
}

void sk_xw_free(sk_xw *x) {
  sk_shm_waiter w;
  while (sk_shm_waitlist_pop(&x->head, &w)) {}
}

/* ------------------------------------------------------ wait protocol */

int sk_xw_link(sk_ctx *c, sk_xw *x, sk_ready_fn ready, void *st) {
  sk_waiter wr;
  if (sk_ctx_waiter(c, &wr) != 0) return -1;
  sk_xw_lock(x);
  int now_ready = ready(st);
  int added = !now_ready && sk_xw_add(x, &wr) == 0;
  sk_xw_unlock(x);
  if (added) return 0;
  sk_port_release(wr.port);
  return now_ready ? 1 : -1;
}

int sk_xw_unlink(sk_ctx *c, sk_xw *x) {
  sk_xw_lock(x);
  int removed = sk_xw_remove(x, c->w->port, c->wslot);
  sk_xw_unlock(x);
  return removed == 0;
}

void sk_xw_pass_on(sk_xw *x, sk_ready_fn ready, void *st) {
  sk_xw_lock(x);
  if (ready == NULL || ready(st)) sk_xw_wake_one(x);
  sk_xw_unlock(x);
}

/* ---------------------------------------------------------- identities */

void sk_who_of(sk_ctx *c, sk_who *out) {
  memset(out, 0, sizeof *out);
  out->proc = (uint32_t)sk_shm_self();
  out->pgen = sk_shm_self_gen();
  out->port = sk_port_id(c->w->port);
  out->id = c->id;
}

int sk_who_eq(const sk_who *a, const sk_who *b) {
  return a->proc == b->proc && a->pgen == b->pgen && a->port == b->port && a->id == b->id;
}

int sk_who_alive(const sk_who *w) { return sk_shm_proc_live(w->proc, w->pgen); }

/* ---------------------------------------------------------------- views */

void sk_xobj_destroy(sk_obj *o) {
  sk_xobj *x = (sk_xobj *)o;
  sk_shm_view_forget(x->s, o);
  if (x->extra) sk_obj_release(x->extra);
  sk_shm_obj_unhold(x->s);
  free(x);
}

sk_obj *sk_xobj_make(sk_shm_obj *so, const sk_objtype *type) {
  sk_xobj *x = calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  sk_obj_init(&x->obj, type);
  sk_shm_obj_hold(so);
  x->s = so;
  return &x->obj;
}

sk_shm_obj *sk_xobj_shared(sk_obj *o) { return ((sk_xobj *)o)->s; }

int sk_xobj_alone(sk_obj *o) {
  sk_xobj *x = (sk_xobj *)o;
  return __atomic_load_n(&o->refs, __ATOMIC_ACQUIRE) == 1 &&
         __atomic_load_n(&x->s->refs, __ATOMIC_ACQUIRE) == 1;
}

/* The types whose views sk_xobj_view makes, by shared-object type. */
static const sk_objtype *xtypes[16];

void sk_xobj_register(const sk_objtype *t) {
  if (t->shm->type < sizeof xtypes / sizeof *xtypes) xtypes[t->shm->type] = t;
  sk_shm_register_ops(t->shm);
}

static sk_obj *make_view(sk_shm_obj *so) {
  const sk_objtype *t = so->type < sizeof xtypes / sizeof *xtypes ? xtypes[so->type] : NULL;
  return t ? sk_xobj_make(so, t) : NULL;
}

sk_obj *sk_xobj_view(sk_shm_obj *so) { return sk_shm_view_get(so, make_view); }

void *sk_xobj_new(lua_State *L, const sk_objtype *type, size_t size) {
  if (sk_shm_base(1) == NULL) {
    sk_error_raise(L, "memory", "cannot create a %s: %s", type->name, sk_shm_why());
  }
  sk_shm_obj *so = sk_shm_alloc_zeroed(size);
  if (so == NULL) {
    sk_error_raise(L, "memory", "not enough shared memory for a %s of %I bytes (%s)", type->name,
                   (LUAI_UACINT)size, sk_shm_why());
  }
  if (sk_shm_obj_link(so, type->shm->type) != 0) {
    sk_shm_free(so);
    sk_error_raise(L, "memory", "cannot create a %s: too many live shared objects", type->name);
  }
  sk_obj *o = sk_xobj_make(so, type);
  sk_shm_obj_unhold(so);        /* the view holds it now */
  if (o == NULL) sk_error_raise(L, "memory", "not enough memory for a %s", type->name);
  sk_shm_view_remember(so, o);
  return o;
}
