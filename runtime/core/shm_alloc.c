/*
** shm_alloc.c — the segment's allocator: size classes, free lists and a per-
** thread cache of small blocks (sk_shm.h; the layout is shm_seg.h).
*/
#define _GNU_SOURCE
#include "shm_seg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ----------------------------------------------------------- allocator */

/* Small blocks also go through a per-thread cache, so that a producer and
** a consumer in two processes do not meet on the allocator's lock for
** every item: a thread takes CACHE_BATCH blocks at once and gives half its
** cache back when it is full, and all of it when it ends. (A process that
** dies with blocks cached leaks them: at most CACHE_MAX per small class and
** thread.) */
#define CACHE_CLASSES 6           /* 64 B .. 2 KiB */
#define CACHE_MAX 32
#define CACHE_BATCH 16

static _Thread_local struct {
  uint32_t n;
  sk_off off[CACHE_MAX];
} cache[CACHE_CLASSES];

static blk *blk_at(sk_off off) { return (blk *)(sk_shm_map + off); }

/* Counts `delta` bytes of blocks handed out (or, negative, freed) on this
** process's slot (see proc_rec.inuse). */
static void count_inuse(seg_hdr *h, int64_t delta) {
  int slot = sk_shm_self_slot;
  if (slot >= 0 && slot < MAX_PROCS) {
    __atomic_add_fetch(&h->procs[slot].inuse, delta, __ATOMIC_RELAXED);
  } else {
    __atomic_add_fetch(&h->inuse, (uint64_t)delta, __ATOMIC_RELAXED);
  }
}

/* Gives `count` cached blocks of class k (from the cache's start) back to
** the free list: chained first, then published with one store. */
static void cache_return(seg_hdr *h, unsigned k, unsigned count) {
  if (count == 0) return;
  sk_shm_lock(&h->alloc_lock);
  for (unsigned i = 0; i < count; i++) {
    blk_at(cache[k].off[i])->next = i + 1 < count ? cache[k].off[i + 1] : h->freelist[k];
  }
  h->freelist[k] = cache[k].off[0];
  sk_shm_unlock(&h->alloc_lock);
  memmove(cache[k].off, cache[k].off + count, (cache[k].n - count) * sizeof(sk_off));
  cache[k].n -= count;
}

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_flush(void *unused) {
  for (unsigned k = 0; k < CACHE_CLASSES; k++) cache_return(hdr(), k, cache[k].n);
}

static void cache_key_init(void) { pthread_key_create(&cache_key, cache_flush); }

/* Takes up to CACHE_BATCH blocks of class k into the cache, under the lock:
** from the free list, else carved from the bump pointer. */
static void cache_fill(seg_hdr *h, unsigned k) {
  unsigned c = k + MIN_CLASS;
  /* The first fill of a thread arranges the flush at its end. */
  pthread_once(&cache_once, cache_key_init);
  if (pthread_getspecific(cache_key) == NULL) pthread_setspecific(cache_key, &cache_key);
  sk_shm_lock(&h->alloc_lock);
  while (cache[k].n < CACHE_BATCH && h->freelist[k]) {
    sk_off off = h->freelist[k];
    h->freelist[k] = blk_at(off)->next;
    cache[k].off[cache[k].n++] = off;
  }
  if (cache[k].n == 0) {
    uint64_t start = (h->brk + 63) & ~(uint64_t)63, size = (uint64_t)1 << c;
    unsigned m = CACHE_BATCH;
    while (m > 1 && start + m * size > h->size) m--;
    if (start + m * size <= h->size) {
      __atomic_store_n(&h->brk, start + m * size, __ATOMIC_RELEASE);
      for (unsigned i = 0; i < m; i++) cache[k].off[cache[k].n++] = start + i * size;
    }
  }
  sk_shm_unlock(&h->alloc_lock);
}

/* Allocates a block for n bytes; *fresh tells whether it comes from
** never used pages (all zeroes). */
static void *alloc(size_t n, int *fresh) {
  seg_hdr *h = hdr();
  *fresh = 0;
  if (n > ((size_t)1 << (NCLASS + MIN_CLASS - 2))) return NULL;
  unsigned c = MIN_CLASS;
  while (((size_t)1 << c) < n + sizeof(blk)) c++;
  unsigned k = c - MIN_CLASS;
  if (k < CACHE_CLASSES) {
    if (cache[k].n == 0) cache_fill(h, k);
    if (cache[k].n == 0) return NULL;
    count_inuse(h, (int64_t)1 << c);
    blk *b = blk_at(cache[k].off[--cache[k].n]);
    b->magic = BLK_MAGIC;
    b->cls = c;
    b->next = 0;
    return b + 1;
  }
  sk_shm_lock(&h->alloc_lock);
  /* Every change below is one store, so a holder that dies here leaves a
  ** consistent allocator (a block may leak). */
  sk_off off = h->freelist[k];
  if (off) {
    h->freelist[k] = ((blk *)(sk_shm_map + off))->next;
  } else {
    uint64_t align = c >= PAGE_CLASS ? 4096 : 64;
    uint64_t start = (h->brk + align - 1) & ~(align - 1);
    if (start + ((uint64_t)1 << c) > h->size) {
      sk_shm_unlock(&h->alloc_lock);
      return NULL;
    }
    __atomic_store_n(&h->brk, start + ((uint64_t)1 << c), __ATOMIC_RELEASE);
    off = start;
    *fresh = 1;
  }
  sk_shm_unlock(&h->alloc_lock);
  count_inuse(h, (int64_t)1 << c);
  blk *b = (blk *)(sk_shm_map + off);
  b->magic = BLK_MAGIC;
  b->cls = c;
  b->next = 0;
  return b + 1;
}

void *sk_shm_alloc(size_t n) {
  int fresh;
  return alloc(n, &fresh);
}

void *sk_shm_alloc_zeroed(size_t n) {
  int fresh;
  blk *p = alloc(n, &fresh);
  if (p == NULL || fresh) return p;
  /* A reused big block gave back its pages past the first (sk_shm_free). */
  size_t dirty = p[-1].cls >= PUNCH_CLASS ? 4096 - sizeof(blk) : n;
  memset(p, 0, n < dirty ? n : dirty);
  return p;
}

void sk_shm_free(void *p) {
  if (p == NULL) return;
  blk *b = (blk *)p - 1;
  if (b->magic != BLK_MAGIC || b->cls < MIN_CLASS || b->cls >= MIN_CLASS + NCLASS) return;
  b->magic = BLK_FREE;
  count_inuse(hdr(), -((int64_t)1 << b->cls));
  if (b->cls >= PUNCH_CLASS) {
    /* Give a big block's pages back; they read as zeroes when reused
    ** (sk_shm_alloc_zeroed counts on that). */
    if (madvise((char *)b + 4096, ((size_t)1 << b->cls) - 4096, MADV_REMOVE) != 0) {
      memset((char *)b + 4096, 0, ((size_t)1 << b->cls) - 4096);
    }
  }
  seg_hdr *h = hdr();
  unsigned k = b->cls - MIN_CLASS;
  if (k < CACHE_CLASSES) {
    if (cache[k].n == CACHE_MAX) cache_return(h, k, CACHE_MAX / 2);  /* the older half */
    cache[k].off[cache[k].n++] = sk_shm_off(b);
    return;
  }
  sk_shm_lock(&h->alloc_lock);
  b->next = h->freelist[k];
  h->freelist[k] = sk_shm_off(b);
  sk_shm_unlock(&h->alloc_lock);
}

int sk_shm_live(uint64_t *inuse, uint32_t *objects) {
  if (sk_shm_map == NULL) return -1;
  seg_hdr *h = hdr();
  uint64_t sum = __atomic_load_n(&h->inuse, __ATOMIC_ACQUIRE);
  uint32_t used = __atomic_load_n(&h->slots_used, __ATOMIC_ACQUIRE);
  for (uint32_t i = 0; i < used && i < MAX_PROCS; i++) {
    sum += (uint64_t)__atomic_load_n(&h->procs[i].inuse, __ATOMIC_ACQUIRE);
  }
  *inuse = sum;
  *objects = __atomic_load_n(&hdr()->nobjs, __ATOMIC_ACQUIRE);
  return 0;
}

int sk_shm_usage(uint64_t *used, uint64_t *size, int *procs) {
  if (sk_shm_map == NULL) return -1;
  seg_hdr *h = hdr();
  *used = __atomic_load_n(&h->brk, __ATOMIC_ACQUIRE);
  *size = h->size;
  *procs = (int)__atomic_load_n(&h->nprocs, __ATOMIC_SEQ_CST);
  return 0;
}
