/*
** shm.c — the shared-memory segment of a process tree (see sk_shm.h for
** the layout rules, the locks and how wakes cross processes).
*/
#define _GNU_SOURCE
#include "sk_shm.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sk_port.h"

#define SEG_SIZE (16ull << 30)  /* address space reserved; pages come on use */
#define SEG_MIN (64ull << 20)   /* the least a segment is made with */
#define MAX_PROCS 1024          /* live processes of one tree */
#define RING 1024               /* pending wakes per process */
#define NCLASS 36               /* blocks of 2^6 .. 2^35 bytes */
#define MIN_CLASS 6
#define PAGE_CLASS 16           /* blocks from here up start on a page */
#define PUNCH_CLASS 20          /* freed blocks from here up give their pages back */
#define BLK_MAGIC 0x626c6bu
#define BLK_FREE 0x667265u
#define SEG_MAGIC 0x736b65696e736d31ull
#define NEXPORTS 4096           /* the export table's slots (a power of two) */
#define MAX_OBJS (1u << 22)     /* live shared objects at most (the object index) */
#define EXPORT_PROBE 16

typedef struct ring_ent {
  uint32_t port, slot, gen, pad;
} ring_ent;

/* A slot is RESERVED by a parent for the child it is starting (sk_shm_slot_
** reserve), which makes it LIVE when it attaches. */
enum { P_FREE, P_LIVE, P_RESERVED };

/* One process of the tree. Its mailbox (the ring) is guarded by `lock`,
** which also guards `state` and `gen` changes (made under the table's lock
** too), so a wake is never appended for a slot's next owner. */
typedef struct proc_rec {
  pthread_mutex_t lock;
  int32_t pid, ppid;            /* the process and the parent that reaps it */
  uint64_t start;               /* its start time (/proc), to tell a reused pid */
  uint32_t gen, state, inited;
  uint32_t bell;                /* futex word: bumped after every append */
  uint32_t sleeping;            /* the dispatcher is (about to be) asleep */
  uint32_t head, tail;
  ring_ent ring[RING];
} proc_rec;

typedef struct seg_hdr {
  uint64_t magic, size;
  pthread_mutex_t alloc_lock;
  uint64_t brk;                 /* the bump pointer */
  sk_off freelist[NCLASS];
  pthread_mutex_t obj_lock;
  sk_off objs;                  /* the live objects, newest first */
  uint32_t objgen;              /* atomic: object generations */
  uint32_t nindex;              /* object index entries handed out so far */
  uint32_t indexfree;           /* the first free entry + 1; 0 when none */
  uint32_t maxobjs;             /* the object index's entries */
  sk_off index;                 /* where the object index starts */
  uint32_t maxprocs;            /* live processes allowed ($SKEIN_MAX_PROCS) */
  uint64_t aslimit;             /* RLIMIT_AS that sized the segment; 0: none */
  uint32_t nprocs;              /* atomic: live processes */
  pthread_mutex_t proc_lock;
  proc_rec procs[MAX_PROCS];
  pthread_mutex_t export_lock;
  struct export {
    int32_t pid;
    uint32_t slot, gen, type, ogen;
    uint32_t index;               /* the object's index entry + 1; 0: empty */
  } exports[NEXPORTS];
} seg_hdr;

/* The object index (maxobjs entries at `index`, right after the header)
** is the allocator's own record of which blocks are live objects, and the
** only way from bytes (a marshalled handle names an entry, never an
** offset) to an object. An entry holds a live object's offset (8-aligned),
** or, when free, the next free entry + 1 shifted left with the low bit
** set. Changed under obj_lock only, by link and release; its pages are
** used only as entries are. */
#define INDEX(h) ((sk_off *)(sk_shm_map + (h)->index))

/* A block's header, before the bytes it gives out. */
typedef struct blk {
  uint32_t magic, cls;
  sk_off next;                  /* in a free list */
} blk;

char *sk_shm_map;
static int shm_fd = -1;
static int self_slot = -1;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static const sk_shm_type *types[16];

static seg_hdr *hdr(void) { return (seg_hdr *)sk_shm_map; }

/* ------------------------------------------------------------- mutexes */

void sk_shm_mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
}

int sk_shm_lock(pthread_mutex_t *m) {
  /* Critical sections here are a few dozen instructions: spin a little
  ** before sleeping, as a futex on shared memory costs a page walk. The
  ** pauses grow to a cap, and every eighth look yields the CPU in case the
  ** holder was preempted (two cores, three busy processes). */
  int rc;
  for (int i = 0; i < 64; i++) {
    rc = pthread_mutex_trylock(m);
    if (rc != EBUSY) goto got;
    if (i % 8 == 7) {
      sched_yield();
      continue;
    }
    for (int k = 0; k < 8 * (i < 16 ? i + 1 : 16); k++) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      __asm__ __volatile__("yield");
#endif
    }
  }
  rc = pthread_mutex_lock(m);
got:
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(m);
    return 1;
  }
  return 0;
}

void sk_shm_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }

/* ------------------------------------------------------------- segment */

/* A process's start time in clock ticks since boot (field 22 of
** /proc/PID/stat), or 0 when it cannot be read. */
static uint64_t start_time(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');    /* the name may hold spaces and parens */
  if (p == NULL) return 0;
  unsigned long long v = 0;
  /* After ") ": state (3), then fields 4..21, then starttime (22). */
  int field = 2;
  for (char *t = p + 1; *t && field < 22; t++) {
    if (*t == ' ') field++;
    if (field == 22) {
      v = strtoull(t + 1, NULL, 10);
      break;
    }
  }
  return (uint64_t)v;
}

static void free_slot(seg_hdr *h, proc_rec *p);

/* Under the table's lock: a free slot below the tree's limit, its mutex
** made; -1 when every one is taken. */
static proc_rec *free_slot_locked(seg_hdr *h, int *slot) {
  uint32_t max = h->maxprocs && h->maxprocs <= MAX_PROCS ? h->maxprocs : MAX_PROCS;
  for (uint32_t i = 0; i < max; i++) {
    proc_rec *p = &h->procs[i];
    if (p->state != P_FREE) continue;
    if (!p->inited) {
      sk_shm_mutex_init(&p->lock);
      p->inited = 1;
    }
    *slot = (int)i;
    return p;
  }
  return NULL;
}

/* Under the table's lock: gives slot p to process `pid` (0: not started
** yet) whose reaper is `ppid`, in `state`. */
static void slot_give(seg_hdr *h, proc_rec *p, pid_t pid, pid_t ppid, uint32_t state) {
  sk_shm_lock(&p->lock);
  p->pid = pid;
  p->ppid = (int32_t)ppid;
  p->start = pid ? start_time(pid) : 0;
  p->gen++;
  p->head = p->tail = 0;
  p->state = state;
  sk_shm_unlock(&p->lock);
  __atomic_add_fetch(&h->nprocs, 1, __ATOMIC_SEQ_CST);
}

/* The tree's first process takes its slot when it makes the segment. */
static int take_slot(pid_t pid) {
  seg_hdr *h = hdr();
  int slot = -1;
  sk_shm_lock(&h->proc_lock);
  proc_rec *p = free_slot_locked(h, &slot);
  if (p) slot_give(h, p, pid, getppid(), P_LIVE);
  sk_shm_unlock(&h->proc_lock);
  return p ? slot : -1;
}

int sk_shm_slot_reserve(void) {
  seg_hdr *h = hdr();
  if (sk_shm_map == NULL) return -1;
  int slot = -1;
  sk_shm_lock(&h->proc_lock);
  proc_rec *p = free_slot_locked(h, &slot);
  if (p) slot_give(h, p, 0, getpid(), P_RESERVED);
  sk_shm_unlock(&h->proc_lock);
  return p ? slot : -1;
}

void sk_shm_slot_bind(int slot, int pid) {
  if (sk_shm_map == NULL || slot < 0 || slot >= MAX_PROCS) return;
  proc_rec *p = &hdr()->procs[slot];
  sk_shm_lock(&p->lock);
  /* The child may have attached already; it wrote the same pid. */
  if (p->state != P_FREE && p->ppid == (int32_t)getpid()) p->pid = pid;
  sk_shm_unlock(&p->lock);
}

void sk_shm_slot_cancel(int slot) {
  seg_hdr *h = hdr();
  if (sk_shm_map == NULL || slot < 0 || slot >= MAX_PROCS) return;
  sk_shm_lock(&h->proc_lock);
  proc_rec *p = &h->procs[slot];
  if (p->state == P_RESERVED && p->ppid == (int32_t)getpid()) free_slot(h, p);
  sk_shm_unlock(&h->proc_lock);
}

int sk_shm_max_procs(void) {
  seg_hdr *h = hdr();
  return sk_shm_map && h->maxprocs ? (int)h->maxprocs : MAX_PROCS;
}

static int map_fd(int fd, uint64_t size) {
  void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (m == MAP_FAILED) return -1;
  sk_shm_map = m;
  shm_fd = fd;
  return 0;
}

/* This process's address space in use, in bytes (0 when unknown). */
static uint64_t vm_used(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long pages = 0;
  if (f == NULL) return 0;
  if (fscanf(f, "%llu", &pages) != 1) pages = 0;
  fclose(f);
  return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Why the segment could not be made, or how its size was chosen. */
static char seg_note[160];

static void note_size(char *out, size_t n, uint64_t v) {
  if (v >= (1ull << 30)) snprintf(out, n, "%.1f GiB", (double)v / (1ull << 30));
  else snprintf(out, n, "%llu MiB", (unsigned long long)(v >> 20));
}

/* The segment reserves SEG_SIZE of address space, or, under an address-
** space limit (ulimit -v), half the room that limit leaves (the rest is
** for the heap, thread stacks and the worker processes' own mappings). */
static uint64_t segment_size(uint64_t *limit) {
  struct rlimit rl;
  *limit = 0;
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return SEG_SIZE;
  *limit = (uint64_t)rl.rlim_cur;
  uint64_t used = vm_used(), room = *limit > used ? *limit - used : 0;
  uint64_t size = (room / 2) & ~((1ull << 20) - 1);
  return size < SEG_SIZE ? size : SEG_SIZE;
}

static int create_segment(void) {
  uint64_t limit, size = segment_size(&limit);
  char lim[32];
  note_size(lim, sizeof lim, limit);
  if (size < SEG_MIN) {
    snprintf(seg_note, sizeof seg_note, "the address-space limit (ulimit -v) of %s leaves no "
             "room for the shared-memory segment", lim);
    return -1;
  }
  int fd = (int)syscall(SYS_memfd_create, "skein", 1u /* MFD_CLOEXEC */);
  if (fd < 0) {
    snprintf(seg_note, sizeof seg_note, "memfd_create failed: %s", strerror(errno));
    return -1;
  }
  /* The mapping may still not fit (the limit is shared with threads that
  ** start meanwhile): try smaller, down to SEG_MIN. */
  int mapped = -1;
  while (ftruncate(fd, (off_t)size) == 0 && (mapped = map_fd(fd, size)) != 0 && size / 2 >= SEG_MIN) {
    size = (size / 2) & ~((1ull << 20) - 1);
  }
  if (mapped != 0) {
    snprintf(seg_note, sizeof seg_note, "cannot map a shared-memory segment: %s%s%s",
             strerror(errno), limit ? " (address-space limit, ulimit -v: " : "", limit ? lim : "");
    if (limit) strncat(seg_note, ")", sizeof seg_note - strlen(seg_note) - 1);
    close(fd);
    return -1;
  }
  seg_hdr *h = hdr();
  h->size = size;
  h->aslimit = limit;
  /* One index entry per KiB of segment, within [4096, MAX_OBJS]. */
  uint64_t nobj = size >> 10;
  h->maxobjs = (uint32_t)(nobj < 4096 ? 4096 : nobj > MAX_OBJS ? MAX_OBJS : nobj);
  h->index = (sizeof *h + 63) & ~(uint64_t)63;
  h->brk = (h->index + (uint64_t)h->maxobjs * sizeof(sk_off) + 4095) & ~(uint64_t)4095;
  const char *mp = getenv("SKEIN_MAX_PROCS");
  long maxprocs = mp ? strtol(mp, NULL, 10) : MAX_PROCS;
  h->maxprocs = (uint32_t)(maxprocs < 2 ? 2 : maxprocs > MAX_PROCS ? MAX_PROCS : maxprocs);
  sk_shm_mutex_init(&h->alloc_lock);
  sk_shm_mutex_init(&h->obj_lock);
  sk_shm_mutex_init(&h->proc_lock);
  sk_shm_mutex_init(&h->export_lock);
  __atomic_store_n(&h->magic, SEG_MAGIC, __ATOMIC_RELEASE);
  self_slot = take_slot(getpid());
  return 0;
}

void *sk_shm_base(int create) {
  if (__atomic_load_n(&sk_shm_map, __ATOMIC_ACQUIRE)) return sk_shm_map;
  if (!create) return NULL;
  pthread_mutex_lock(&init_lock);
  if (sk_shm_map == NULL) create_segment();
  pthread_mutex_unlock(&init_lock);
  return sk_shm_map;
}

const char *sk_shm_why(void) {
  if (sk_shm_map == NULL) return seg_note[0] ? seg_note : "no shared-memory segment";
  seg_hdr *h = hdr();
  char sz[32], lim[32];
  note_size(sz, sizeof sz, h->size);
  note_size(lim, sizeof lim, h->aslimit);
  if (h->aslimit) {
    snprintf(seg_note, sizeof seg_note, "the shared-memory segment holds %s, sized to fit the "
             "address-space limit (ulimit -v) of %s", sz, lim);
  } else {
    snprintf(seg_note, sizeof seg_note, "the shared-memory segment holds %s", sz);
  }
  return seg_note;
}

int sk_shm_fd(void) { return sk_shm_map ? shm_fd : -1; }

int sk_shm_others_alive(void) {
  return sk_shm_map && __atomic_load_n(&hdr()->nprocs, __ATOMIC_SEQ_CST) > 1;
}
int sk_shm_self(void) { return self_slot; }

uint32_t sk_shm_self_gen(void) {
  return self_slot >= 0 && sk_shm_map ? hdr()->procs[self_slot].gen : 0;
}

int sk_shm_attach_inherited(int fd, int slot) {
  struct stat st;
  if (sk_shm_map) return 0;
  if (fd < 3 || fstat(fd, &st) != 0 || (uint64_t)st.st_size < sizeof(seg_hdr)) return -1;
  /* Programs this process runs do not get it; a worker process it starts
  ** gets it explicitly (sk_spawn_worker). */
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  int rc = -1;
  pthread_mutex_lock(&init_lock);
  if (map_fd(fd, (uint64_t)st.st_size) == 0) {
    seg_hdr *h = hdr();
    if (h->magic == SEG_MAGIC && h->size == (uint64_t)st.st_size && slot >= 0 && slot < MAX_PROCS) {
      /* Claim the slot the parent reserved for this very process. */
      proc_rec *p = &h->procs[slot];
      sk_shm_lock(&h->proc_lock);
      sk_shm_lock(&p->lock);
      if (p->state == P_RESERVED && p->ppid == (int32_t)getppid() &&
          (p->pid == 0 || p->pid == (int32_t)getpid())) {
        p->pid = (int32_t)getpid();
        p->start = start_time(getpid());
        p->state = P_LIVE;
        self_slot = slot;
        rc = 0;
      }
      sk_shm_unlock(&p->lock);
      sk_shm_unlock(&h->proc_lock);
    }
    if (rc != 0) {
      munmap(sk_shm_map, (size_t)st.st_size);
      sk_shm_map = NULL;
      close(fd);
      shm_fd = -1;
    }
  }
  pthread_mutex_unlock(&init_lock);
  return rc;
}

int sk_shm_valid(sk_off off, size_t len) {
  seg_hdr *h = hdr();
  uint64_t brk = __atomic_load_n(&h->brk, __ATOMIC_ACQUIRE);
  return sk_shm_map && off >= sizeof *h && (off & 7) == 0 && len <= brk && off <= brk - len;
}

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

/* ------------------------------------------------------------- objects */

void sk_shm_register_type(uint32_t type, const sk_shm_type *t) {
  if (type < sizeof types / sizeof *types) types[type] = t;
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
  if (self_slot < 0) return;
  uint32_t gen = hdr()->procs[self_slot].gen;
  for (sk_off x = o->holders; x; x = ((holder *)sk_shm_ptr(x))->next) {
    holder *hd = sk_shm_ptr(x);
    if (hd->proc == (uint32_t)self_slot && hd->gen == gen) {
      hd->count++;
      return;
    }
  }
  holder *hd = sk_shm_alloc(sizeof *hd);
  if (hd == NULL) return;
  hd->proc = (uint32_t)self_slot;
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
  uint32_t gen = self_slot >= 0 ? h->procs[self_slot].gen : 0;
  sk_shm_lock(&h->obj_lock);
  for (sk_off *link = &o->holders; *link; link = &((holder *)sk_shm_ptr(*link))->next) {
    holder *hd = sk_shm_ptr(*link);
    if (hd->proc == (uint32_t)self_slot && hd->gen == gen) {
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
static int32_t drop_dead_holds(sk_shm_obj *o) {
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
  const sk_shm_type *t = o->type < sizeof types / sizeof *types ? types[o->type] : NULL;
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

/* ---------------------------------------------------------- waiters */

int sk_shm_proc_live(uint32_t slot, uint32_t gen) {
  if (slot >= MAX_PROCS) return 0;
  proc_rec *p = &hdr()->procs[slot];
  return __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == P_LIVE &&
         __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == gen;
}

static void *dispatch_main(void *arg);
static pthread_once_t dispatch_once = PTHREAD_ONCE_INIT;

static void start_dispatcher(void) {
  pthread_t t;
  pthread_attr_t a;
  sigset_t all, old;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&a, 64 * 1024);
  /* The dispatcher takes no signal: Ctrl-C belongs to the workers. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  if (pthread_create(&t, &a, dispatch_main, NULL) != 0) {
    fprintf(stderr, "skein: cannot start the cross-process wake thread\n");
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&a);
}

int sk_shm_waiter_self(sk_shm_waiter *w, uint32_t port, uint32_t slot, uint32_t gen) {
  if (self_slot < 0) return -1;   /* the process table was full */
  pthread_once(&dispatch_once, start_dispatcher);
  memset(w, 0, sizeof *w);
  w->proc = (uint32_t)self_slot;
  w->proc_gen = hdr()->procs[self_slot].gen;
  w->port = port;
  w->slot = slot;
  w->gen = gen;
  return 0;
}

int sk_shm_waitlist_add(sk_off *head, const sk_shm_waiter *w) {
  sk_shm_waiter *n = sk_shm_alloc(sizeof *n);
  if (n == NULL) return -1;
  *n = *w;
  n->next = 0;
  sk_off *link = head;
  while (*link) link = &((sk_shm_waiter *)sk_shm_ptr(*link))->next;
  *link = sk_shm_off(n);
  return 0;
}

/* Unlinks the records `match` accepts; returns how many. */
static int remove_if(sk_off *head, int (*match)(const sk_shm_waiter *, const void *),
                     const void *ud) {
  int n = 0;
  sk_off *link = head;
  while (*link) {
    sk_shm_waiter *w = sk_shm_ptr(*link);
    if (match(w, ud)) {
      *link = w->next;
      sk_shm_free(w);
      n++;
    } else {
      link = &w->next;
    }
  }
  return n;
}

typedef struct who {
  uint32_t port, slot;
} who;

static int match_self(const sk_shm_waiter *w, const void *ud) {
  const who *x = ud;
  return w->proc == (uint32_t)self_slot && w->port == x->port && w->slot == x->slot;
}

static int match_gone(const sk_shm_waiter *w, const void *ud) {
  return !sk_shm_proc_live(w->proc, w->proc_gen);
}

int sk_shm_waitlist_remove(sk_off *head, uint32_t port, uint32_t slot) {
  who x = {port, slot};
  return remove_if(head, match_self, &x);
}

int sk_shm_waitlist_purge(sk_off *head) { return remove_if(head, match_gone, NULL); }

int sk_shm_waitlist_pop(sk_off *head, sk_shm_waiter *out) {
  while (*head) {
    sk_shm_waiter *w = sk_shm_ptr(*head);
    *head = w->next;
    int live = sk_shm_proc_live(w->proc, w->proc_gen);
    if (live) *out = *w;
    sk_shm_free(w);
    if (live) return 1;
  }
  return 0;
}

static void wake_local(uint32_t port, uint32_t slot, uint32_t gen, int *rc) {
  sk_port *p = sk_port_by_id(port);
  if (p == NULL) {
    *rc = -1;
    return;
  }
  *rc = sk_port_wake(p, slot, gen);
  sk_port_release(p);
}

static long futex(uint32_t *addr, int op, uint32_t val) {
  return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

int sk_shm_wake(const sk_shm_waiter *w) {
  int rc;
  if (w->proc == (uint32_t)self_slot) {
    wake_local(w->port, w->slot, w->gen, &rc);
    return rc;
  }
  if (w->proc >= MAX_PROCS) return -1;
  proc_rec *p = &hdr()->procs[w->proc];
  for (int tries = 0;; tries++) {
    sk_shm_lock(&p->lock);
    if (p->state != P_LIVE || p->gen != w->proc_gen) {
      sk_shm_unlock(&p->lock);
      return -1;
    }
    if (p->tail - p->head < RING) {
      ring_ent *e = &p->ring[p->tail % RING];
      e->port = w->port;
      e->slot = w->slot;
      e->gen = w->gen;
      __atomic_store_n(&p->tail, p->tail + 1, __ATOMIC_RELEASE);
      sk_shm_unlock(&p->lock);
      break;
    }
    pid_t pid = p->pid;
    sk_shm_unlock(&p->lock);
    /* Full: its dispatcher drains in microseconds unless the process is
    ** stopped or gone. */
    if (tries % 1000 == 999 && kill(pid, 0) != 0 && errno == ESRCH) return -1;
    if (tries > 200000) return -1;
    struct timespec ts = {0, 5000};
    nanosleep(&ts, NULL);
  }
  __atomic_add_fetch(&p->bell, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&p->sleeping, __ATOMIC_SEQ_CST)) futex(&p->bell, FUTEX_WAKE, 1);
  return 0;
}

/* The dispatcher: moves the wakes other processes append to this process's
** mailbox onto the ports of its workers. */
static void *dispatch_main(void *arg) {
  proc_rec *me = &hdr()->procs[self_slot];
  ring_ent batch[64];
  for (;;) {
    uint32_t bell = __atomic_load_n(&me->bell, __ATOMIC_SEQ_CST);
    unsigned n = 0;
    sk_shm_lock(&me->lock);
    while (me->head != me->tail && n < 64) batch[n++] = me->ring[me->head++ % RING];
    sk_shm_unlock(&me->lock);
    for (unsigned i = 0; i < n; i++) {
      int rc;
      wake_local(batch[i].port, batch[i].slot, batch[i].gen, &rc);
    }
    if (n) continue;
    __atomic_store_n(&me->sleeping, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&me->bell, __ATOMIC_SEQ_CST) == bell) futex(&me->bell, FUTEX_WAIT, bell);
    __atomic_store_n(&me->sleeping, 0, __ATOMIC_SEQ_CST);
  }
  return arg;
}

/* ------------------------------------------------------------ dead ones */

/* Under the table's lock: frees slot i. */
static void free_slot(seg_hdr *h, proc_rec *p) {
  sk_shm_lock(&p->lock);
  p->state = P_FREE;
  p->gen++;
  p->head = p->tail = 0;
  sk_shm_unlock(&p->lock);
  __atomic_sub_fetch(&h->nprocs, 1, __ATOMIC_SEQ_CST);
}

void sk_shm_proc_gone(int pid) {
  seg_hdr *h = hdr();
  if (sk_shm_map == NULL || pid <= 0) return;
  int found = 0;
  /* The dead process's own worker processes die with it (PDEATHSIG), but
  ** their reaper is gone: they are killed for certain and counted gone
  ** here, with theirs in turn. `gone` lists the pids, the first first. */
  int gone[MAX_PROCS], ngone = 1;
  gone[0] = pid;
  sk_shm_lock(&h->proc_lock);
  for (int g = 0; g < ngone; g++) {
    for (int i = 0; i < MAX_PROCS; i++) {
      proc_rec *p = &h->procs[i];
      if (p->state == P_FREE || i == self_slot) continue;
      /* The reaped child is ours (a pid another branch of the tree reused
      ** since would have another parent). */
      if (p->pid == gone[g] && (g > 0 || p->ppid == (int32_t)getpid())) {
        free_slot(h, p);
        found = 1;
      } else if (p->ppid == gone[g] && ngone < MAX_PROCS) {
        /* Kill only that very process: its pid may have been reused. */
        uint64_t st = p->pid > 0 ? start_time(p->pid) : 0;
        if (st != 0 && st == p->start) kill(p->pid, SIGKILL);
        if (p->pid > 0) {
          gone[ngone++] = p->pid;
        } else {
          free_slot(h, p);        /* reserved for a child never started */
          found = 1;
        }
      }
    }
  }
  sk_shm_unlock(&h->proc_lock);
  if (!found) return;
  /* Take a reference to every live object, then let each drop the dead
  ** process's records and pass on a wake it may have swallowed. */
  size_t n = 0, cap = 64;
  sk_shm_obj **objs = malloc(cap * sizeof *objs);
  int32_t *dead = malloc(cap * sizeof *dead);
  if (dead == NULL) {
    free(objs);
    objs = NULL;
  }
  sk_shm_lock(&h->obj_lock);
  for (sk_off off = h->objs; off && objs;) {
    sk_shm_obj *o = sk_shm_ptr(off);
    off = o->next;
    int r = __atomic_load_n(&o->refs, __ATOMIC_RELAXED);
    while (r > 0 && !__atomic_compare_exchange_n(&o->refs, &r, r + 1, 0, __ATOMIC_ACQ_REL,
                                                 __ATOMIC_RELAXED)) {}
    if (r <= 0) continue;
    if (n == cap) {
      sk_shm_obj **a = realloc(objs, 2 * cap * sizeof *objs);
      int32_t *b = a ? realloc(dead, 2 * cap * sizeof *dead) : NULL;
      if (a) objs = a;
      if (b == NULL) {
        __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL);  /* > 1: never the last here */
        break;
      }
      dead = b;
      cap *= 2;
    }
    dead[n] = drop_dead_holds(o);
    objs[n++] = o;
  }
  sk_shm_unlock(&h->obj_lock);
  for (size_t i = 0; i < n; i++) {
    const sk_shm_type *t = objs[i]->type < sizeof types / sizeof *types ? types[objs[i]->type] : NULL;
    if (t && t->gone) t->gone(objs[i]);
    /* The dead's own references go last, with ours: an object only they
    ** held ends here (a pipe end closes, a queue frees its items). */
    for (int32_t k = 0; k < dead[i]; k++) sk_shm_obj_release(objs[i]);
    sk_shm_obj_release(objs[i]);
  }
  free(objs);
  free(dead);
}
