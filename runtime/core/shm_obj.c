/*
** shm_obj.c — objects in the segment: their holds, the object index, moves
** of an object into the segment, and exports of a process's objects
** (sk_shm.h; the layout is shm_seg.h).
*/
#define _GNU_SOURCE
#include "shm_seg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- objects */

void sk_shm_register_type(uint32_t type, const sk_shm_type *t) {
  if (type < SK_SHM_NTYPES) sk_shm_types[type] = t;
}

/* Holds: the references each process's views have, so that a process that
** dies drops them (sk_shm_proc_gone). One node per (process, object), in a
** list under the object list's lock. */
typedef struct holder {
  sk_off next;
  uint32_t proc, gen;
  int32_t count;
  uint32_t pad;
} holder;

/* Under obj_lock: counts one more hold of this process on o. When no node
** can be had the reference stays, untracked (it just never drops on death). */
static void hold_locked(sk_shm_obj *o) {
  if (sk_shm_self_slot < 0) return;
  uint32_t gen = hdr()->procs[sk_shm_self_slot].gen;
  for (sk_off x = o->holders; x; x = ((holder *)sk_shm_ptr(x))->next) {
    holder *hd = sk_shm_ptr(x);
    if (hd->proc == (uint32_t)sk_shm_self_slot && hd->gen == gen) {
      hd->count++;
      return;
    }
  }
  holder *hd = sk_shm_alloc(sizeof *hd);
  if (hd == NULL) return;
  hd->proc = (uint32_t)sk_shm_self_slot;
  hd->gen = gen;
  hd->count = 1;
  hd->next = o->holders;
  o->holders = sk_shm_off(hd);
}

void sk_shm_obj_hold(sk_shm_obj *o) {
  __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
  sk_shm_lock(&hdr()->obj_lock);
  hold_locked(o);
  sk_shm_unlock(&hdr()->obj_lock);
}

void sk_shm_obj_unhold(sk_shm_obj *o) {
  seg_hdr *h = hdr();
  uint32_t gen = sk_shm_self_slot >= 0 ? h->procs[sk_shm_self_slot].gen : 0;
  sk_shm_lock(&h->obj_lock);
  for (sk_off *link = &o->holders; *link; link = &((holder *)sk_shm_ptr(*link))->next) {
    holder *hd = sk_shm_ptr(*link);
    if (hd->proc == (uint32_t)sk_shm_self_slot && hd->gen == gen) {
      if (--hd->count <= 0) {
        *link = hd->next;
        sk_shm_free(hd);
      }
      break;
    }
  }
  sk_shm_unlock(&h->obj_lock);
  sk_shm_obj_release(o);
}

/* Under obj_lock: drops the holds of processes that are gone; returns the
** references they had, for the caller to release after unlocking. */
int32_t sk_shm_drop_dead_holds(sk_shm_obj *o) {
  int32_t n = 0;
  for (sk_off *link = &o->holders; *link;) {
    holder *hd = sk_shm_ptr(*link);
    if (sk_shm_proc_live(hd->proc, hd->gen)) {
      link = &hd->next;
      continue;
    }
    n += hd->count;
    *link = hd->next;
    sk_shm_free(hd);
  }
  return n;
}

/* Under obj_lock: takes a free index entry for `o`; -1 when none is left.
** Each change is one store, so a holder that dies here leaks an entry at
** worst (one that is neither free nor names an object). */
static int index_take(seg_hdr *h, sk_shm_obj *o) {
  uint32_t i;
  if (h->indexfree) {
    i = h->indexfree - 1;
    h->indexfree = (uint32_t)(INDEX(h)[i] >> 1);
  } else {
    if (h->nindex >= h->maxobjs) return -1;
    i = h->nindex++;
  }
  o->index = i;
  INDEX(h)[i] = sk_shm_off(o);
  return 0;
}

int sk_shm_obj_link(sk_shm_obj *o, uint32_t type) {
  seg_hdr *h = hdr();
  o->type = type;
  o->gen = __atomic_add_fetch(&h->objgen, 1, __ATOMIC_RELAXED);
  o->refs = 1;
  o->prev = 0;
  o->holders = 0;
  sk_shm_lock(&h->obj_lock);
  if (index_take(h, o) != 0) {
    sk_shm_unlock(&h->obj_lock);
    return -1;
  }
  hold_locked(o);
  o->next = h->objs;
  if (h->objs) ((sk_shm_obj *)sk_shm_ptr(h->objs))->prev = sk_shm_off(o);
  h->objs = sk_shm_off(o);
  __atomic_add_fetch(&h->nobjs, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&o->magic, SK_SHM_MAGIC ^ type, __ATOMIC_RELEASE);
  sk_shm_unlock(&h->obj_lock);
  return 0;
}

void sk_shm_obj_retain(sk_shm_obj *o) { __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED); }

void sk_shm_obj_release(sk_shm_obj *o) {
  if (__atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  seg_hdr *h = hdr();
  sk_shm_lock(&h->obj_lock);
  if (o->prev) ((sk_shm_obj *)sk_shm_ptr(o->prev))->next = o->next;
  else h->objs = o->next;
  if (o->next) ((sk_shm_obj *)sk_shm_ptr(o->next))->prev = o->prev;
  __atomic_sub_fetch(&h->nobjs, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&o->magic, 0, __ATOMIC_RELEASE);
  if (o->index < h->nindex && INDEX(h)[o->index] == sk_shm_off(o)) {
    INDEX(h)[o->index] = (sk_off)h->indexfree << 1 | 1;
    h->indexfree = o->index + 1;
  }
  for (sk_off x = o->holders; x;) {   /* stale ones, if any */
    holder *hd = sk_shm_ptr(x);
    x = hd->next;
    sk_shm_free(hd);
  }
  o->holders = 0;
  sk_shm_unlock(&h->obj_lock);
  const sk_shm_type *t = o->type < SK_SHM_NTYPES ? sk_shm_types[o->type] : NULL;
  if (t && t->destroy) t->destroy(o);
  sk_shm_free(o);
}

/* Under obj_lock: the live object of that entry, type and generation. An
** object whose last reference went is still linked until its release
** takes this lock, so a live header here is an object not yet freed. */
static sk_shm_obj *index_get(seg_hdr *h, uint32_t index, uint32_t type, uint32_t gen) {
  if (index >= h->nindex) return NULL;
  sk_off off = INDEX(h)[index];
  if (off == 0 || (off & 7) != 0) return NULL;   /* a leaked or a free entry */
  sk_shm_obj *o = sk_shm_ptr(off);
  if (__atomic_load_n(&o->magic, __ATOMIC_ACQUIRE) != (SK_SHM_MAGIC ^ type) || o->type != type ||
      o->gen != gen || o->index != index) {
    return NULL;
  }
  return o;
}

sk_shm_obj *sk_shm_obj_find(uint32_t index, uint32_t type, uint32_t gen) {
  seg_hdr *h = hdr();
  if (sk_shm_map == NULL) return NULL;
  sk_shm_lock(&h->obj_lock);
  sk_shm_obj *o = index_get(h, index, type, gen);
  /* A reference from a count that has not reached 0 only: one that has is
  ** being released, and must not come back. */
  int r = o ? __atomic_load_n(&o->refs, __ATOMIC_RELAXED) : 0;
  while (r > 0 && !__atomic_compare_exchange_n(&o->refs, &r, r + 1, 0, __ATOMIC_ACQ_REL,
                                               __ATOMIC_RELAXED)) {}
  sk_shm_unlock(&h->obj_lock);
  return r > 0 ? o : NULL;
}

/* --------------------------------------------------------------- moves */

static pthread_mutex_t move_lock;
static pthread_once_t move_once = PTHREAD_ONCE_INIT;

static void move_init(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&move_lock, &a);
  pthread_mutexattr_destroy(&a);
}

void sk_shm_move_lock(void) {
  pthread_once(&move_once, move_init);
  pthread_mutex_lock(&move_lock);
}

void sk_shm_move_unlock(void) { pthread_mutex_unlock(&move_lock); }

/* ------------------------------------------------------------- exports */

static unsigned export_hash(int pid, uint32_t slot, uint32_t gen) {
  uint64_t k = ((uint64_t)(uint32_t)pid << 32 | slot) * 0x9e3779b97f4a7c15ull ^ gen;
  return (unsigned)(k >> 40) & (NEXPORTS - 1);
}

/* A slot is free when empty or when the object it names has gone. */
static int export_stale(seg_hdr *h, const struct export *x) {
  if (x->index == 0) return 1;
  sk_shm_lock(&h->obj_lock);
  int gone = index_get(h, x->index - 1, x->type, x->ogen) == NULL;
  sk_shm_unlock(&h->obj_lock);
  return gone;
}

void sk_shm_export(int pid, uint32_t slot, uint32_t gen, sk_shm_obj *so) {
  seg_hdr *h = hdr();
  unsigned i0 = export_hash(pid, slot, gen);
  sk_shm_lock(&h->export_lock);
  struct export *x = &h->exports[i0];
  for (unsigned k = 0; k < EXPORT_PROBE; k++) {
    struct export *y = &h->exports[(i0 + k) & (NEXPORTS - 1)];
    if (export_stale(h, y)) {
      x = y;
      break;
    }
  }
  x->index = 0;
  x->pid = pid;
  x->slot = slot;
  x->gen = gen;
  x->type = so->type;
  x->ogen = so->gen;
  __atomic_store_n(&x->index, so->index + 1, __ATOMIC_RELEASE);
  sk_shm_unlock(&h->export_lock);
}

sk_shm_obj *sk_shm_exported(int pid, uint32_t slot, uint32_t gen) {
  seg_hdr *h = hdr();
  if (sk_shm_map == NULL) return NULL;
  unsigned i0 = export_hash(pid, slot, gen);
  sk_shm_obj *found = NULL;
  sk_shm_lock(&h->export_lock);
  for (unsigned k = 0; k < EXPORT_PROBE && !found; k++) {
    struct export *x = &h->exports[(i0 + k) & (NEXPORTS - 1)];
    if (x->index && x->pid == pid && x->slot == slot && x->gen == gen) {
      found = sk_shm_obj_find(x->index - 1, x->type, x->ogen);
    }
  }
  sk_shm_unlock(&h->export_lock);
  return found;
}

