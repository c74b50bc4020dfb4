/*
** shm.c — the shared-memory segment of a process tree (see sk_shm.h for
** the layout rules, the locks and how wakes cross processes): its robust
** mutexes, making and attaching it, the process table, and cleaning up
** after dead processes. The allocator is shm_alloc.c, objects shm_obj.c,
** wait lists and wakes shm_wake.c; shm_seg.h is the layout they share.
*/
#define _GNU_SOURCE
#include "shm_seg.h"

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

char *sk_shm_map;
static int shm_fd = -1;
int sk_shm_self_slot = -1;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
const sk_shm_type *sk_shm_types[SK_SHM_NTYPES];


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
    if (i >= h->slots_used) h->slots_used = i + 1;
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
  sk_shm_self_slot = take_slot(getpid());
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
int sk_shm_self(void) { return sk_shm_self_slot; }

uint32_t sk_shm_self_gen(void) {
  return sk_shm_self_slot >= 0 && sk_shm_map ? hdr()->procs[sk_shm_self_slot].gen : 0;
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
        sk_shm_self_slot = slot;
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
  /* Only the slots ever given: each record is pages of its own, and
  ** looking at all of them would touch (and fault in) megabytes. */
  int used = h->slots_used < MAX_PROCS ? (int)h->slots_used : MAX_PROCS;
  for (int g = 0; g < ngone; g++) {
    for (int i = 0; i < used; i++) {
      proc_rec *p = &h->procs[i];
      if (p->state == P_FREE || i == sk_shm_self_slot) continue;
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
    dead[n] = sk_shm_drop_dead_holds(o);
    objs[n++] = o;
  }
  sk_shm_unlock(&h->obj_lock);
  for (size_t i = 0; i < n; i++) {
    uint32_t ty = objs[i]->type;
    const sk_shm_type *t = ty < SK_SHM_NTYPES ? sk_shm_types[ty] : NULL;
    if (t && t->gone) t->gone(objs[i]);
    /* The dead's own references go last, with ours: an object only they
    ** held ends here (a pipe end closes, a queue frees its items). */
    for (int32_t k = 0; k < dead[i]; k++) sk_shm_obj_release(objs[i]);
    sk_shm_obj_release(objs[i]);
  }
  free(objs);
  free(dead);
}
