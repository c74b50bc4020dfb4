/*
** obj.c — the process-wide handle table of shared objects.
*/
#include "sk_obj.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct slot {
  sk_obj *obj;                  /* NULL when free */
  uint32_t gen;
  uint32_t next_free;
} slot;

/* Slot 0 is never used, so a zeroed handle is always invalid. */
static slot *slots;
static uint32_t nslots, free_head;
static uv_mutex_t table_lock;
static uv_once_t table_once = UV_ONCE_INIT;

static void table_init(void) { uv_mutex_init(&table_lock); }

void sk_obj_init(sk_obj *o, const sk_objtype *type) {
  o->type = type;
  o->slot = o->gen = 0;
  __atomic_store_n(&o->refs, 1, __ATOMIC_RELAXED);
}

int sk_obj_register(sk_obj *o) {
  uv_once(&table_once, table_init);
  uv_mutex_lock(&table_lock);
  if (o->slot) {
    uv_mutex_unlock(&table_lock);
    return 0;
  }
  if (free_head == 0) {
    uint32_t n = nslots ? nslots * 2 : 64;
    slot *s = realloc(slots, n * sizeof *s);
    if (s == NULL) {
      uv_mutex_unlock(&table_lock);
      return -1;
    }
    memset(s + nslots, 0, (n - nslots) * sizeof *s);
    for (uint32_t i = n - 1; i >= (nslots ? nslots : 1); i--) {
      s[i].next_free = free_head;
      free_head = i;
    }
    slots = s;
    nslots = n;
  }
  uint32_t i = free_head;
  free_head = slots[i].next_free;
  slots[i].obj = o;
  slots[i].gen++;
  o->gen = slots[i].gen;
  __atomic_store_n(&o->slot, i, __ATOMIC_RELEASE);
  uv_mutex_unlock(&table_lock);
  return 0;
}

void sk_obj_retain(sk_obj *o) {
  __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
}

void sk_obj_release(sk_obj *o) {
  if (__atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  /* No one holds a reference now and sk_obj_lookup never revives an object
  ** whose count reached zero, so nothing can reach it once unregistered. */
  if (__atomic_load_n(&o->slot, __ATOMIC_ACQUIRE) == 0) {
    o->type->destroy(o);            /* never marshalled: not in the table */
    return;
  }
  uv_mutex_lock(&table_lock);
  if (o->slot) {
    slots[o->slot].obj = NULL;
    slots[o->slot].next_free = free_head;
    free_head = o->slot;
    o->slot = 0;
  }
  uv_mutex_unlock(&table_lock);
  o->type->destroy(o);
}

sk_obj *sk_obj_lookup(uint32_t slot_i, uint32_t gen, const char *type_name) {
  sk_obj *o = NULL;
  uv_once(&table_once, table_init);
  uv_mutex_lock(&table_lock);
  if (slot_i > 0 && slot_i < nslots && slots[slot_i].obj &&
      slots[slot_i].gen == gen && strcmp(slots[slot_i].obj->type->name, type_name) == 0) {
    o = slots[slot_i].obj;
    /* Refs may be 0 here (being released); only revive a live object. */
    if (__atomic_load_n(&o->refs, __ATOMIC_ACQUIRE) == 0) o = NULL;
    else sk_obj_retain(o);
  }
  uv_mutex_unlock(&table_lock);
  return o;
}
