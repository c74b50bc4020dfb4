/*
** port.c — a worker's inbox for other threads (see sk_port.h).
*/
#include "sk_port.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

enum { ITEM_WAKE, ITEM_CALL };

typedef struct item {
  int kind;
  uint32_t slot, gen;
  sk_port_call_fn fn, drop;
  void *arg;
} item;

struct sk_port {
  uv_mutex_t lock;              /* guards everything below but `refs` */
  int refs;                     /* atomic */
  int dead;
  item *items;
  size_t n, cap;
  uv_async_t *async;            /* owned by the worker's thread */
  sk_port_wake_fn wake;
  void *ud;
  int holds;                    /* worker thread only */
  uint32_t id;                  /* in the id table, or 0 (ids_lock) */
};

/* Ports that other processes may wake, by id (sk_port_id). Ids are never
** reused, so a stale wake from another process finds no port. The table
** holds a reference to each port until the port closes. */
static uv_mutex_t ids_lock;
static uv_once_t ids_once = UV_ONCE_INIT;
static sk_port **ids;
static uint32_t nids, capids;

static void ids_init(void) { uv_mutex_init(&ids_lock); }

uint32_t sk_port_id(sk_port *p) {
  uv_once(&ids_once, ids_init);
  uv_mutex_lock(&ids_lock);
  if (p->id == 0 && !p->dead) {
    if (nids + 1 >= capids) {
      uint32_t cap = capids ? capids * 2 : 64;
      sk_port **a = realloc(ids, cap * sizeof *a);
      if (a == NULL) {
        uv_mutex_unlock(&ids_lock);
        return 0;
      }
      ids = a;
      capids = cap;
    }
    p->id = ++nids;
    ids[p->id] = p;
    sk_port_retain(p);
  }
  uint32_t id = p->id;
  uv_mutex_unlock(&ids_lock);
  return id;
}

sk_port *sk_port_by_id(uint32_t id) {
  uv_once(&ids_once, ids_init);
  uv_mutex_lock(&ids_lock);
  sk_port *p = id && id <= nids ? ids[id] : NULL;
  if (p) sk_port_retain(p);
  uv_mutex_unlock(&ids_lock);
  return p;
}

/* At close: leaves the table (its reference is dropped by the caller). */
static sk_port *ids_drop(sk_port *p) {
  uv_once(&ids_once, ids_init);
  uv_mutex_lock(&ids_lock);
  sk_port *had = p->id ? p : NULL;
  if (p->id) ids[p->id] = NULL;
  p->id = 0;
  uv_mutex_unlock(&ids_lock);
  return had;
}

static void on_async(uv_async_t *h) { sk_port_flush(h->data); }

size_t sk_port_flush(void *port) {
  sk_port *p = port;
  uv_mutex_lock(&p->lock);
  item *items = p->items;
  size_t n = p->n;
  p->items = NULL;
  p->n = p->cap = 0;
  uv_mutex_unlock(&p->lock);
  for (size_t i = 0; i < n; i++) {
    if (items[i].kind == ITEM_WAKE) p->wake(p->ud, items[i].slot, items[i].gen);
    else items[i].fn(items[i].arg);
  }
  free(items);
  return n;
}

sk_port *sk_port_new(uv_loop_t *loop, sk_port_wake_fn wake, void *ud) {
  sk_port *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->async = malloc(sizeof *p->async);
  if (p->async == NULL || uv_mutex_init(&p->lock) != 0) {
    free(p->async);
    free(p);
    return NULL;
  }
  p->refs = 1;
  p->wake = wake;
  p->ud = ud;
  uv_async_init(loop, p->async, on_async);
  p->async->data = p;
  uv_unref((uv_handle_t *)p->async);
  return p;
}

static void free_handle(uv_handle_t *h) { free(h); }

void sk_port_close(sk_port *p) {
  uv_mutex_lock(&p->lock);
  p->dead = 1;
  item *items = p->items;
  size_t n = p->n;
  p->items = NULL;
  p->n = p->cap = 0;
  uv_async_t *async = p->async;
  p->async = NULL;
  uv_mutex_unlock(&p->lock);
  for (size_t i = 0; i < n; i++) {
    if (items[i].kind == ITEM_CALL && items[i].drop) items[i].drop(items[i].arg);
  }
  free(items);
  uv_close((uv_handle_t *)async, free_handle);
  sk_port *listed = ids_drop(p);
  if (listed) sk_port_release(listed);
  sk_port_release(p);
}

void sk_port_retain(sk_port *p) { __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED); }

void sk_port_release(sk_port *p) {
  if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  uv_mutex_destroy(&p->lock);
  free(p->items);
  free(p);
}

/* Appends an item and pokes the loop; the caller holds p->lock. */
static int post_locked(sk_port *p, const item *it) {
  if (p->dead) return -1;
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    item *items = realloc(p->items, cap * sizeof *items);
    if (items == NULL) return -1;
    p->items = items;
    p->cap = cap;
  }
  p->items[p->n++] = *it;
  uv_async_send(p->async);
  return 0;
}

int sk_port_wake(sk_port *p, uint32_t slot, uint32_t gen) {
  item it = {ITEM_WAKE, slot, gen, NULL, NULL, NULL};
  uv_mutex_lock(&p->lock);
  int rc = post_locked(p, &it);
  uv_mutex_unlock(&p->lock);
  return rc;
}

int sk_port_call(sk_port *p, sk_port_call_fn fn, sk_port_call_fn drop, void *arg) {
  item it = {ITEM_CALL, 0, 0, fn, drop, arg};
  uv_mutex_lock(&p->lock);
  int rc = post_locked(p, &it);
  uv_mutex_unlock(&p->lock);
  if (rc != 0 && drop) drop(arg);
  return rc;
}

void sk_port_hold(sk_port *p, int delta) {
  int before = p->holds;
  p->holds += delta;
  if (p->async == NULL) return;
  if (before <= 0 && p->holds > 0) uv_ref((uv_handle_t *)p->async);
  else if (before > 0 && p->holds <= 0) uv_unref((uv_handle_t *)p->async);
}

void sk_waiter_fire(sk_waiter *w) {
  if (w->port == NULL) return;
  sk_port_wake(w->port, w->slot, w->gen);
  sk_port_release(w->port);
  w->port = NULL;
}

/* ------------------------------------------------------------ waitlists */

int sk_waitlist_add(sk_waitlist *l, const sk_waiter *w) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    sk_waiter *a = realloc(l->w, cap * sizeof *a);
    if (a == NULL) return -1;
    l->w = a;
    l->cap = cap;
  }
  l->w[l->n++] = *w;
  return 0;
}

size_t sk_waitlist_remove(sk_waitlist *l, sk_port *port, uint32_t slot) {
  size_t j = 0, removed;
  for (size_t i = 0; i < l->n; i++) {
    if (l->w[i].port == port && l->w[i].slot == slot) sk_port_release(l->w[i].port);
    else l->w[j++] = l->w[i];
  }
  removed = l->n - j;
  l->n = j;
  return removed;
}

int sk_waitlist_wake_one(sk_waitlist *l) {
  while (l->n > 0) {
    sk_waiter w = l->w[0];
    memmove(l->w, l->w + 1, (l->n - 1) * sizeof *l->w);
    l->n--;
    int rc = sk_port_wake(w.port, w.slot, w.gen);
    sk_port_release(w.port);
    if (rc == 0) return 1;
  }
  return 0;
}

void sk_waitlist_wake_all(sk_waitlist *l) {
  for (size_t i = 0; i < l->n; i++) sk_waiter_fire(&l->w[i]);
  l->n = 0;
}

void sk_waitlist_free(sk_waitlist *l) {
  for (size_t i = 0; i < l->n; i++) sk_port_release(l->w[i].port);
  free(l->w);
  memset(l, 0, sizeof *l);
}

int sk_thread_start(uv_thread_t *t, void (*fn)(void *), void *arg) {
  sigset_t mask, old;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, &old);   /* the new thread inherits it */
  int rc = uv_thread_create(t, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}
