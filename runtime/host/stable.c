/*
** stable.c — the store of skein.shared.table (sk_stable.h): a compact
** hash in the shared segment, an index of int32 slots pointing into a
** dense array of entries kept in insertion order, whose string keys and
** values are blobs. Its Lua face, with claims and snapshots, is
** lua/shared_table.c. Every function here expects the caller to hold the
** table's lock, runs no Lua and never raises.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_stable.h"

static uint8_t hash_key[16];
static uv_once_t hash_once = UV_ONCE_INIT;

static void hash_init(void) {
  if (uv_random(NULL, NULL, hash_key, sizeof hash_key, 0, NULL) != 0) {
    uint64_t x = uv_hrtime() ^ (uint64_t)(uintptr_t)&x;
    memcpy(hash_key, &x, sizeof x);
  }
}

void sk_stable_hash_key(uint8_t out[16]) {
  uv_once(&hash_once, hash_init);
  memcpy(out, hash_key, sizeof hash_key);
}

int sk_stable_key_eq(const sentry *e, const skey *k) {
  if (e->tag != k->tag) return 0;
  switch (k->tag) {
    case K_INT: return e->key.i == k->u.i;
    case K_FLOAT: return e->key.n == k->u.n;
    case K_BOOL: return e->key.b == k->u.b;
    default:
      return blob_at(e->key.s)->len == k->u.s.len &&
             memcmp(sk_blob_data(blob_at(e->key.s)), k->u.s.p, k->u.s.len) == 0;
  }
}

/* Looks k up. Returns its entry, or -1; *islot (when not NULL) gets the
** index slot of the entry, or the slot a new entry for k would take. */
int32_t sk_stable_find(const sk_table *t, const skey *k, uint32_t *islot) {
  const int32_t *ix = tindex(t);
  const sentry *es = tentries(t);
  uint32_t mask = t->isize - 1, i = (uint32_t)k->hash & mask, free_slot = UINT32_MAX;
  for (uint32_t probes = 0; probes < t->isize; probes++, i = (i + 1) & mask) {
    int32_t e = ix[i];
    if (e == EMPTY) {
      if (free_slot == UINT32_MAX) free_slot = i;
      break;
    }
    if (e == DUMMY) {
      if (free_slot == UINT32_MAX) free_slot = i;
    } else if (es[e].hash == k->hash && sk_stable_key_eq(&es[e], k)) {
      if (islot) *islot = i;
      return e;
    }
  }
  if (islot) *islot = free_slot;
  return -1;
}

/* Allocates a store for `ecap` entries with an empty index. */
char *sk_stable_store_new(uint32_t ecap, uint32_t *isize) {
  uint32_t n = 8;
  while (n < ecap + ecap / 2 + 1) n *= 2;
  char *s = sk_shm_alloc((size_t)n * sizeof(int32_t) + (size_t)ecap * sizeof(sentry));
  if (s == NULL) return NULL;
  memset(s, 0xff, (size_t)n * sizeof(int32_t));  /* every slot EMPTY (-1) */
  *isize = n;
  return s;
}

/* Rebuilds the store with room to grow, dropping dead entries and keeping
** the order of the others. Returns -1 when out of memory (nothing changed). */
int sk_stable_resize(sk_table *t) {
  uint32_t keep = 0;
  sentry *old = tentries(t);
  for (uint32_t e = 0; e < t->nent; e++) keep += old[e].tag != K_DEAD;
  if (keep >= INT32_MAX / 4) return -1;
  uint32_t ecap = keep < 4 ? 8 : keep * 2, isize;
  char *store = sk_stable_store_new(ecap, &isize);
  if (store == NULL) return -1;
  int32_t *ix = (int32_t *)store;
  sentry *es = (sentry *)(store + (size_t)isize * sizeof(int32_t));
  uint32_t n = 0;
  for (uint32_t e = 0; e < t->nent; e++) {
    if (old[e].tag == K_DEAD) continue;
    es[n] = old[e];
    uint32_t i = (uint32_t)es[n].hash & (isize - 1);
    while (ix[i] != EMPTY) i = (i + 1) & (isize - 1);
    ix[i] = (int32_t)n++;
  }
  /* The new store shows with one store of its offset, sizes after: a
  ** holder that dies in between leaves sizes the repair recomputes. */
  char *was = sk_shm_ptr(t->store);
  t->store = sk_shm_off(store);
  t->isize = isize;
  t->ecap = ecap;
  t->nent = n;
  sk_shm_free(was);
  return 0;
}

/* Adds an entry for k (not present) with no value. Returns its index, or
** -1 when out of memory. */
int32_t sk_stable_insert(sk_table *t, const skey *k) {
  uint32_t islot;
  if (t->nent == t->ecap && sk_stable_resize(t) != 0) return -1;
  sk_stable_find(t, k, &islot);
  sentry *e = &tentries(t)[t->nent];
  memset(e, 0, sizeof *e);
  e->hash = k->hash;
  switch (k->tag) {
    case K_INT: e->key.i = k->u.i; break;
    case K_FLOAT: e->key.n = k->u.n; break;
    case K_BOOL: e->key.b = k->u.b; break;
    default: {
      sk_blob *b = sk_blob_bytes(k->u.s.p, k->u.s.len);
      if (b == NULL) return -1;
      e->key.s = sk_shm_off(b);
    }
  }
  e->tag = k->tag;
  tindex(t)[islot] = (int32_t)t->nent;
  return (int32_t)t->nent++;
}

/* Keeps `border` right after entry e got a value. */
void sk_stable_became_live(sk_table *t, const sentry *e) {
  t->nlive++;
  if (e->tag != K_INT || e->key.i != t->border + 1) return;
  t->border++;
  for (skey k = {.tag = K_INT}; t->border < LUA_MAXINTEGER; t->border++) {
    k.u.i = t->border + 1;
    k.hash = mix((uint64_t)k.u.i);
    int32_t next = sk_stable_find(t, &k, NULL);
    if (next < 0 || tentries(t)[next].val == 0) break;
  }
}

/* Removes entry e (found at index slot islot); returns its value for the
** caller to release after unlocking. String keys hold no objects, so
** freeing them here is safe. */
sk_blob *sk_stable_remove(sk_table *t, int32_t e, uint32_t islot) {
  sentry *en = &tentries(t)[e];
  sk_blob *val = blob_at(en->val);
  if (val) {
    t->nlive--;
    if (en->tag == K_INT && en->key.i >= 1 && en->key.i <= t->border) t->border = en->key.i - 1;
  }
  if (en->tag == K_STR) sk_blob_release(blob_at(en->key.s));
  en->tag = K_DEAD;
  en->val = 0;
  en->claim = 0;
  tindex(t)[islot] = DUMMY;
  return val;
}

/* Stores nv (NULL: delete) under k, which no one has claimed. Returns 0 and
** the replaced value in *old, or -1 when out of memory. */
int sk_stable_store(sk_table *t, const skey *k, sk_blob *nv, sk_blob **old) {
  uint32_t islot;
  int32_t e = sk_stable_find(t, k, &islot);
  *old = NULL;
  if (nv == NULL) {
    if (e >= 0) *old = sk_stable_remove(t, e, islot);
    return 0;
  }
  if (e >= 0) {
    *old = blob_at(tentries(t)[e].val);
    tentries(t)[e].val = sk_shm_off(nv);
    return 0;
  }
  e = sk_stable_insert(t, k);
  if (e < 0) return -1;
  tentries(t)[e].val = sk_shm_off(nv);
  sk_stable_became_live(t, &tentries(t)[e]);
  return 0;
}

/* Rebuilds the index and the counts from the entries, after a process died
** holding the lock (an entry may have been half added or half removed). */
void sk_stable_repair(sk_table *t) {
  int32_t *ix = tindex(t);
  sentry *es = tentries(t);
  if (t->nent > t->ecap) t->nent = t->ecap;
  memset(ix, 0xff, (size_t)t->isize * sizeof(int32_t));
  t->nlive = 0;
  t->border = 0;
  for (uint32_t e = 0; e < t->nent; e++) {
    if (es[e].tag == K_DEAD) continue;
    uint32_t i = (uint32_t)es[e].hash & (t->isize - 1);
    while (ix[i] != EMPTY) i = (i + 1) & (t->isize - 1);
    ix[i] = (int32_t)e;
    if (es[e].val) t->nlive++;
  }
  for (skey k = {.tag = K_INT}; t->border < LUA_MAXINTEGER; t->border++) {
    k.u.i = t->border + 1;
    k.hash = mix((uint64_t)k.u.i);
    int32_t next = sk_stable_find(t, &k, NULL);
    if (next < 0 || tentries(t)[next].val == 0) break;
  }
}

