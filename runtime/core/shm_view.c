/*
** shm_view.c — this process's side of the shared-memory segment: the view
** table (one local object per shared object in use) and the pinned local
** objects (sk_view.h). Nothing here knows what the objects are: each
** shared type registers how to make its view (sk_shm_register_ops).
*/
#include <stdlib.h>

#include <uv.h>

#include "sk_view.h"

/* ---------------------------------------------------------- pinning */

/* Objects of this process that an item bound for other processes mentions
** but that cannot move to the segment keep one reference here for good:
** a reader in another process reaches them through its parent, and a
** reader in this one by handle. */
static uv_mutex_t pin_lock;
static uv_once_t pin_once = UV_ONCE_INIT;
static sk_obj **pinned;
static size_t npinned, cappinned;

static void pin_init(void) { uv_mutex_init(&pin_lock); }

void sk_shm_pin(sk_obj *o) {
  uv_once(&pin_once, pin_init);
  uv_mutex_lock(&pin_lock);
  for (size_t i = 0; i < npinned; i++) {
    if (pinned[i] == o) {
      uv_mutex_unlock(&pin_lock);
      return;
    }
  }
  if (npinned == cappinned) {
    size_t cap = cappinned ? cappinned * 2 : 16;
    sk_obj **a = realloc(pinned, cap * sizeof *a);
    if (a == NULL) {
      uv_mutex_unlock(&pin_lock);
      sk_obj_retain(o);         /* leaked rather than lost */
      return;
    }
    pinned = a;
    cappinned = cap;
  }
  sk_obj_retain(o);
  pinned[npinned++] = o;
  uv_mutex_unlock(&pin_lock);
}

/* ---------------------------------------------- views of shared objects */

/* Each process keeps one local object per shared object it uses (so that
** handles compare equal and wait lists are per object), found here by the
** shared object's address. An entry is dropped by its object's destroy;
** a lookup that meets an object whose last reference is going skips it. */
typedef struct view {
  sk_shm_obj *so;
  sk_obj *o;
} view;

static uv_mutex_t views_lock;
static uv_once_t views_once = UV_ONCE_INIT;
static view *views;
static size_t nviews, capviews;
static const sk_shm_ops *ops_by_type[16];

static void views_init(void) { uv_mutex_init(&views_lock); }

void sk_shm_register_ops(const sk_shm_ops *ops) {
  if (ops->type < sizeof ops_by_type / sizeof *ops_by_type) ops_by_type[ops->type] = ops;
}

/* Takes a reference unless the last one is already gone. */
static int retain_live(sk_obj *o) {
  int r = __atomic_load_n(&o->refs, __ATOMIC_RELAXED);
  while (r > 0 && !__atomic_compare_exchange_n(&o->refs, &r, r + 1, 0, __ATOMIC_ACQ_REL,
                                               __ATOMIC_RELAXED)) {}
  return r > 0;
}

static int views_add(sk_shm_obj *so, sk_obj *o) {
  if (nviews == capviews) {
    size_t cap = capviews ? capviews * 2 : 16;
    view *a = realloc(views, cap * sizeof *a);
    if (a == NULL) return -1;
    views = a;
    capviews = cap;
  }
  views[nviews].so = so;
  views[nviews++].o = o;
  return 0;
}

/* The view of `so` in the table, retained, or NULL; under views_lock. */
static sk_obj *views_find(sk_shm_obj *so) {
  for (size_t i = 0; i < nviews; i++) {
    if (views[i].so == so && retain_live(views[i].o)) return views[i].o;
  }
  return NULL;
}

/* `make` runs without the lock (a pipe end's view makes its queues'). */
sk_obj *sk_shm_view_get(sk_shm_obj *so, sk_obj *(*make)(sk_shm_obj *so)) {
  uv_once(&views_once, views_init);
  uv_mutex_lock(&views_lock);
  sk_obj *o = views_find(so);
  uv_mutex_unlock(&views_lock);
  if (o) return o;
  sk_obj *made = make(so);
  if (made == NULL) return NULL;
  uv_mutex_lock(&views_lock);
  o = views_find(so);           /* another thread may have been first */
  if (o == NULL && views_add(so, made) == 0) o = made, made = NULL;
  uv_mutex_unlock(&views_lock);
  if (made) sk_obj_release(made);
  return o;
}

void sk_shm_view_remember(sk_shm_obj *so, sk_obj *o) {
  uv_once(&views_once, views_init);
  uv_mutex_lock(&views_lock);
  views_add(so, o);             /* out of memory: later views are separate objects */
  uv_mutex_unlock(&views_lock);
}

void sk_shm_view_forget(sk_shm_obj *so, sk_obj *o) {
  uv_once(&views_once, views_init);
  uv_mutex_lock(&views_lock);
  for (size_t i = 0; i < nviews; i++) {
    if (views[i].so == so && views[i].o == o) {
      views[i] = views[--nviews];
      break;
    }
  }
  uv_mutex_unlock(&views_lock);
}

sk_obj *sk_shm_view_of(sk_shm_obj *so) {
  const sk_shm_ops *ops = so->type < sizeof ops_by_type / sizeof *ops_by_type
                              ? ops_by_type[so->type] : NULL;
  return ops ? ops->view(so) : NULL;
}
