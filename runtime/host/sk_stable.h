/*
** sk_stable.h — the store of a shared table (runtime/host/stable.c): the
** layout of skein.shared.table's header, index and entries in the shared
** segment, and the hash operations on them. The Lua face is
** lua/shared_table.c.
**
** Layout: a fixed-size header (the shared object, its lock and wait list,
** counters, the hash key) and one *store* block holding the index then the
** entries; each entry's string key and value are immutable blobs
** (sk_blob.h). Everything is linked by offsets, so every process of the
** tree works on the same table. All functions expect the table's lock
** held; none runs Lua or raises.
*/
#ifndef SK_STABLE_H
#define SK_STABLE_H

#include <stdint.h>

#include "sk_blob.h"
#include "sk_xwait.h"

enum { K_DEAD, K_INT, K_FLOAT, K_BOOL, K_STR };

/* A key as looked up: strings point into the Lua string. */
typedef struct skey {
  int tag;
  uint64_t hash;
  union {
    lua_Integer i;
    lua_Number n;
    int b;
    struct {
      const char *p;
      size_t len;
    } s;
  } u;
} skey;

/* A stored entry. `val` is NULL only while an update holds a claim on a key
** that had no value; such an entry is invisible to readers. */
typedef struct sentry {
  uint64_t hash;
  int tag;                      /* K_DEAD once removed */
  union {
    lua_Integer i;
    lua_Number n;
    int b;
    sk_off s;                   /* an sk_blob */
  } key;
  sk_off val;                   /* an sk_blob, or 0 */
  uint64_t claim;               /* 0, or the token of the claiming update */
  uint32_t claim_proc, claim_pgen;  /* who claimed: its process, */
  uint32_t claim_port, claim_slot;  /* its worker's port id and its wake slot */
} sentry;

static inline sk_blob *blob_at(sk_off o) { return sk_shm_ptr(o); }

#define EMPTY (-1)
#define DUMMY (-2)

typedef struct sk_table {
  sk_shm_obj obj;
  sk_xw w;                      /* the lock, guarding everything below; its
                                ** waiters: writers waiting for a claimed key */
  uint8_t hkey[16];             /* string hash key */
  uint32_t isize;               /* index slots: a power of two > ecap */
  uint32_t ecap, nent;          /* entries allocated, used (incl. dead) */
  uint32_t nlive;               /* entries with a value */
  lua_Integer border;           /* keys 1..border all have values */
  uint64_t tokens;              /* last claim token given out */
  sk_off store;                 /* int32_t index[isize], sentry entries[ecap] */
} sk_table;

static inline int32_t *tindex(const sk_table *t) { return sk_shm_ptr(t->store); }
static inline sentry *tentries(const sk_table *t) {
  return (sentry *)((char *)sk_shm_ptr(t->store) + (size_t)t->isize * sizeof(int32_t));
}

static inline uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}


/* A new table's string hash key (random per process tree's first user). */
void sk_stable_hash_key(uint8_t out[16]);
int sk_stable_key_eq(const sentry *e, const skey *k);
/* Looks k up. Returns its entry, or -1; *islot (when not NULL) gets the
** index slot of the entry, or the slot a new entry for k would take. */
int32_t sk_stable_find(const sk_table *t, const skey *k, uint32_t *islot);
/* Allocates a store for `ecap` entries with an empty index (its slot count
** in *isize); NULL when out of memory. */
char *sk_stable_store_new(uint32_t ecap, uint32_t *isize);
/* Rebuilds the store with room to grow, dropping dead entries and keeping
** the order of the others. Returns -1 when out of memory (nothing changed). */
int sk_stable_resize(sk_table *t);
/* Adds an entry for k (not present) with no value. Returns its index, or
** -1 when out of memory. */
int32_t sk_stable_insert(sk_table *t, const skey *k);
/* Keeps `border` right after entry e got a value. */
void sk_stable_became_live(sk_table *t, const sentry *e);
/* Removes entry e (found at index slot islot); returns its value for the
** caller to release after unlocking. */
sk_blob *sk_stable_remove(sk_table *t, int32_t e, uint32_t islot);
/* Stores nv (NULL: delete) under k, which no one has claimed. Returns 0 and
** the replaced value in *old, or -1 when out of memory. */
int sk_stable_store(sk_table *t, const skey *k, sk_blob *nv, sk_blob **old);
/* Rebuilds the index and the counts from the entries, after a process died
** holding the lock (an entry may have been half added or half removed). */
void sk_stable_repair(sk_table *t);

#endif
