/*
** alloc.c — the allocator of a worker's Lua state: small blocks come from
** size-class free lists carved out of 2 MiB chunks; larger blocks go to
** malloc.
**
** Why: a task is a few small blocks (coroutine, stack, userdata) that are
** made and dropped in bulk; free lists make each allocation a pointer pop
** with no locking, since a worker's state is only touched by its own
** thread; the one shared thing is the helper that makes the next
** segment's pages present ahead (below). (Asking for transparent huge
** pages on the chunks was measured: it cut page faults twentyfold on a
** fresh machine, but once memory is fragmented the kernel compacts
** synchronously and spawning got slower than with plain pages, so the
** chunks ask for plain pages, MADV_NOHUGEPAGE.)
**
** Lua passes the exact old size with every realloc and free, so a block
** needs no header: its size class follows from that size. Chunks are given
** back when the worker closes (after lua_close has freed every block).
** Sanitizer builds use plain malloc, so ASan sees every block.
*/
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sk_lua.h"

#define SMALL_MAX 1024                /* larger blocks go to malloc */
#define GRAIN 16
#define NCLASSES (SMALL_MAX / GRAIN)
#define CHUNK (2u << 20)
#define POPULATE_STEP (256u << 10)    /* pages made present at once (below) */
#define SEGMENT (1u << 20)            /* what the helper is asked for at once (below) */
_Static_assert(CHUNK % SEGMENT == 0, "a chunk is a whole number of segments");

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23        /* Linux 5.14; older kernels say EINVAL */
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SK_PLAIN_ALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SK_PLAIN_ALLOC 1
#endif
#endif

typedef struct free_block {
  struct free_block *next;
} free_block;

typedef struct chunk {
  struct chunk *next;
  void *base;                         /* what mmap returned, for munmap */
  size_t mapped;
} chunk;

/* A segment (SEGMENT bytes of a chunk) the helper thread is asked to make
** present (below). The helper works from its end down and publishes how
** far it got (`low`); the allocator works from its start up and publishes
** how far it got (`front`); each stops where the other has been. */
typedef struct ahead_req {
  struct ahead_req *next;
  char *addr;                         /* the segment: [addr, addr + SEGMENT) */
  char *low;                          /* atomic: [low, addr + SEGMENT) is present */
  char *front;                        /* atomic: the allocator populated below this */
  int queued, busy;                   /* in the helper's list / being worked on */
} ahead_req;

struct sk_alloc {
  free_block *free[NCLASSES];
  char *bump, *end;                   /* the unused tail of the newest chunk */
  char *present;                      /* [bump, present) has its pages already */
  int no_populate;                    /* the kernel cannot populate ahead */
  chunk *chunks;
  char *spare_base;                   /* the next chunk, mapped ahead (mmap's address) */
  size_t spare_mapped;
  char *spare;                        /* ... its aligned start; NULL: none */
  int helped;                         /* counted among the helper's users */
  ahead_req req[3];                   /* requests (fields but low/front: helper lock) */
  ahead_req *next_req;                /* the next segment's request; NULL: none */
  ahead_req *live;                    /* the current segment's request; NULL: none */
};

#ifndef SK_PLAIN_ALLOC
static int class_of(size_t n) { return (int)((n + GRAIN - 1) / GRAIN) - 1; }

/* Maps 2 MiB at a 2 MiB boundary; NULL on failure. */
static char *map_chunk(char **base_out, size_t *len_out) {
  size_t len = 2 * (size_t)CHUNK;
  char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return NULL;
  /* Not inherited by fork. libuv starts a worker process with fork then
  ** exec, and a fork write-protects every page the parent maps privately:
  ** the parent's next collection would then take one fault per page of
  ** the heap (tens of thousands after a busy phase). No child of a fork
  ** ever runs Lua on this state before it execs, so it needs none of it. */
  (void)madvise(base, len, MADV_DONTFORK);
  /* Plain pages even where transparent huge pages are on for everything
  ** (above: the measured loss), which also keeps what populating ahead
  ** holds to its bound. */
  (void)madvise(base, len, MADV_NOHUGEPAGE);
  *base_out = base;
  *len_out = len;
  return (char *)(((uintptr_t)base + CHUNK - 1) & ~((uintptr_t)CHUNK - 1));
}

/* ---------------------------------------------------- populating ahead
**
** Making pages present is the kernel's work (a trap, or a populate call,
** then zeroing the page), and a burst of tasks in a fresh process spends
** most of its time there. Once a state's heap has outgrown its first
** chunk, its chunks are handed, a segment at a time, to one helper thread
** of the process. When the state enters a segment, the next one (in the
** same chunk, or the first of the next chunk, which is then mapped ahead)
** is asked for; the helper makes it present from its end down while the
** state goes on in the current segment, then in that one from its start
** up: on a machine with a core to spare, the kernel's work is shared by
** two threads, and where the helper keeps ahead the state waits for none
** of it. The work is the same, so CPU time is not saved. An idle worker
** holds at most two segments (2 MiB) of present but unused memory: what is
** left of the current one and the next. Segments of a whole chunk (4 MiB
** then) were 3-4% faster for a burst of tasks in a fresh process, and
** cost about 70 bytes more per pending task at 30 000 of them. A state
** that never outgrows one chunk (most pool threads, short scripts) never
** starts the thread.
**
** The helper takes requests from a list under its lock. A request lives
** in its allocator, which has three, so that the next segment can be asked
** for while the helper may still work on the last two; sk_alloc_free
** takes them back (unlinks them, or waits for the work in progress) before
** it unmaps anything. Populating touches no byte, so a chunk in use while it
** is populated is unharmed. The thread stops, and is joined, when the last
** allocator using it is freed. Lock order: the helper lock is a leaf. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t work, done;
  ahead_req *head, *tail;
  int users;
  unsigned gen;                 /* the running thread's number; a thread whose
                                   number this no longer is leaves */
  int running;
  pthread_t thread;
} helper = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
            NULL, NULL, 0, 0, 0, 0};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define PUBLISH(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Makes r's segment present from its end down, a step at a time, until it
** reaches what the allocator has made present from the start. Each page
** is then read once: on a virtual machine whose host backs guest memory
** lazily, a page the guest kernel has made present still costs its first
** toucher a fault in the host (measured here: about 5 us per page, more
** than the populate itself), and this read takes it on this thread. The
** read is atomic, as the allocator may be writing there meanwhile. */
static void ahead_work(ahead_req *r) {
  char *low = r->addr + SEGMENT;
  while (low > LOAD(&r->front)) {
    size_t step = (size_t)(low - r->addr) < POPULATE_STEP ? (size_t)(low - r->addr) : POPULATE_STEP;
    if (madvise(low - step, step, MADV_POPULATE_WRITE) != 0) return;
    for (char *q = low - step; q < low; q += 4096) (void)__atomic_load_n(q, __ATOMIC_RELAXED);
    low -= step;
    PUBLISH(&r->low, low);
  }
}

static void *helper_main(void *arg) {
  unsigned gen = (unsigned)(uintptr_t)arg;
  pthread_mutex_lock(&helper.lock);
  while (helper.gen == gen) {
    ahead_req *r = helper.head;
    if (r == NULL) {
      pthread_cond_wait(&helper.work, &helper.lock);
      continue;
    }
    helper.head = r->next;
    if (helper.head == NULL) helper.tail = NULL;
    r->queued = 0;
    r->busy = 1;
    pthread_mutex_unlock(&helper.lock);
    ahead_work(r);
    pthread_mutex_lock(&helper.lock);
    r->busy = 0;
    pthread_cond_broadcast(&helper.done);
  }
  pthread_mutex_unlock(&helper.lock);
  return NULL;
}

/* Asks the helper to populate the segment at `addr` with request r; 0 when
** it was queued, -1 when there is no helper (no thread could start). */
static int ahead_post(sk_alloc *a, ahead_req *r, char *addr) {
  int rc = 0;
  pthread_mutex_lock(&helper.lock);
  if (!a->helped) {
    if (!helper.running) {
      /* Started with every signal blocked, so that none meant for the
      ** process (Ctrl-C, SIGCHLD) is ever handled on this thread. */
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      void *gen = (void *)(uintptr_t)++helper.gen;
      if (pthread_create(&helper.thread, NULL, helper_main, gen) != 0) rc = -1;
      else helper.running = 1;
      pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc == 0) {
      a->helped = 1;
      helper.users++;
    }
  }
  if (rc == 0) {
    *r = (ahead_req){NULL, addr, addr + SEGMENT, addr, 1, 0};
    if (helper.tail) helper.tail->next = r;
    else helper.head = r;
    helper.tail = r;
    pthread_cond_signal(&helper.work);
  }
  pthread_mutex_unlock(&helper.lock);
  return rc;
}

/* Whether request r may be posted again (neither queued nor worked on). */
static int ahead_idle(ahead_req *r) {
  pthread_mutex_lock(&helper.lock);
  int idle = !r->queued && !r->busy;
  pthread_mutex_unlock(&helper.lock);
  return idle;
}

/* Tells the helper to stop working on r (it need not finish it): it stops
** where the allocator has been, and the allocator is now everywhere. */
static void ahead_stop(ahead_req *r) { PUBLISH(&r->front, r->addr + SEGMENT); }

/* Takes request r back: tells the helper to stop, unlinks it if still
** queued, waits for the work in progress. */
static void ahead_cancel(ahead_req *r) {
  ahead_stop(r);
  pthread_mutex_lock(&helper.lock);
  if (r->queued) {
    ahead_req **pp = &helper.head, *prev = NULL;
    while (*pp && *pp != r) {
      prev = *pp;
      pp = &(*pp)->next;
    }
    if (*pp) {
      *pp = r->next;
      if (helper.tail == r) helper.tail = prev;
    }
    r->queued = 0;
  }
  while (r->busy) pthread_cond_wait(&helper.done, &helper.lock);
  pthread_mutex_unlock(&helper.lock);
}

/* The allocator is being freed: takes its requests back, and stops and
** joins the thread when it was the last user. */
static void ahead_leave(sk_alloc *a) {
  if (!a->helped) return;
  for (int i = 0; i < 3; i++) {
    if (a->req[i].addr) ahead_cancel(&a->req[i]);
  }
  pthread_t t;
  int join = 0;
  pthread_mutex_lock(&helper.lock);
  a->helped = 0;
  if (--helper.users == 0 && helper.running) {
    helper.gen++;               /* the thread leaves; a new one gets another */
    helper.running = 0;
    pthread_cond_broadcast(&helper.work);
    t = helper.thread;
    join = 1;
  }
  pthread_mutex_unlock(&helper.lock);
  if (join) pthread_join(t, NULL);
}

/* Asks the helper for the segment after the current one (after `from`):
** the next in this chunk, or the first of the next chunk, which is then
** mapped ahead (the spare). Needs a request the helper is done with;
** without one, or without a helper, there is no next request, and the
** allocator populates that segment alone. */
static void post_next(sk_alloc *a, char *from) {
  ahead_req *r = NULL;
  if (a->no_populate) return;
  for (int i = 0; i < 3 && r == NULL; i++) {
    ahead_req *q = &a->req[i];
    if (q != a->live && ahead_idle(q)) r = q;
  }
  if (r == NULL) return;
  char *next = from + SEGMENT;
  if (next == a->end) {
    a->spare = map_chunk(&a->spare_base, &a->spare_mapped);
    if (a->spare == NULL) return;
    next = a->spare;
  }
  if (ahead_post(a, r, next) == 0) {
    a->next_req = r;
  } else if (next == a->spare) {
    munmap(a->spare_base, a->spare_mapped);
    a->spare = NULL;
  }
}

/* Ends the helper's work on the current segment. */
static void drop_live(sk_alloc *a) {
  if (a->live) {
    ahead_stop(a->live);
    a->live = NULL;
  }
}

/* Starts a new chunk (the spare, when there is one) and points the bump
** range at it. */
static int new_chunk(sk_alloc *a) {
  char *aligned, *base;
  size_t len;
  drop_live(a);
  if (a->spare) {
    aligned = a->spare;
    base = a->spare_base;
    len = a->spare_mapped;
    a->spare = NULL;
    a->live = a->next_req;      /* populate() meets the helper in it */
    a->next_req = NULL;
  } else {
    /* A next request is only ever for the spare or for a segment of this
    ** chunk not yet entered, which a state leaving its chunk has entered;
    ** dropped all the same, so that no stale request is met in the new one. */
    if (a->next_req) {
      ahead_stop(a->next_req);
      a->next_req = NULL;
    }
    aligned = map_chunk(&base, &len);
    if (aligned == NULL) return -1;
  }
  /* The chunk's own record lives at its start. */
  chunk *c = (chunk *)(void *)aligned;
  c->base = base;
  c->mapped = len;
  c->next = a->chunks;
  a->chunks = c;
  a->bump = aligned + ((sizeof(chunk) + GRAIN - 1) / GRAIN) * GRAIN;
  a->end = aligned + CHUNK;
  a->present = aligned;
  if (c->next) post_next(a, aligned);   /* the heap has outgrown its first chunk */
  return 0;
}

/* Makes the next pages of the bump range present before they are used.
** A burst of tasks touches fresh pages one after another, and each first
** touch is a trap into the kernel (several microseconds on a VM); asking
** for POPULATE_STEP bytes at once is one call instead of 64 traps. The
** step is bounded, so without the helper an idle worker holds at most
** that much unused memory beyond what it allocated. In a segment the
** helper works on, the rest is present once this reaches where the helper
** got to; on entering the next segment, the helper is asked for the one
** after it. */
static void populate(sk_alloc *a) {
  if (a->next_req && a->present == a->next_req->addr) {
    drop_live(a);
    a->live = a->next_req;
    a->next_req = NULL;
    post_next(a, a->present);
  } else if (a->live && a->present >= a->live->addr + SEGMENT) {
    drop_live(a);               /* a segment the helper was not asked for */
  }
  ahead_req *r = a->live;
  if (r && a->present >= LOAD(&r->low)) {
    a->present = r->addr + SEGMENT;
    return;
  }
  size_t left = (size_t)(a->end - a->present);
  size_t step = left < POPULATE_STEP ? left : POPULATE_STEP;
  if (!a->no_populate && madvise(a->present, step, MADV_POPULATE_WRITE) != 0) {
    a->no_populate = 1;               /* not this kernel: plain faults it is */
  }
  a->present += step;
  if (r) PUBLISH(&r->front, a->present);
}

static void *small_alloc(sk_alloc *a, size_t n) {
  int k = class_of(n);
  free_block *b = a->free[k];
  if (b) {
    a->free[k] = b->next;
    return b;
  }
  size_t size = (size_t)(k + 1) * GRAIN;
  if (a->bump == NULL || (size_t)(a->end - a->bump) < size) {
    if (new_chunk(a) != 0) return NULL;
  }
  void *p = a->bump;
  a->bump += size;
  if (a->bump > a->present) populate(a);
  return p;
}

static void small_free(sk_alloc *a, void *p, size_t n) {
  free_block *b = p;
  int k = class_of(n);
  b->next = a->free[k];
  a->free[k] = b;
}

#endif

void *sk_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  sk_alloc *a = ud;
#ifdef SK_PLAIN_ALLOC
  (void)a;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
#else
  /* When ptr is NULL, osize is a type tag, not a size. */
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    if (ptr == NULL) return NULL;
    if (old <= SMALL_MAX) small_free(a, ptr, old);
    else free(ptr);
    return NULL;
  }
  if (ptr && old > SMALL_MAX && nsize > SMALL_MAX) return realloc(ptr, nsize);
  if (ptr && old <= SMALL_MAX && nsize <= SMALL_MAX && class_of(old) == class_of(nsize)) {
    return ptr;
  }
  void *p = nsize <= SMALL_MAX ? small_alloc(a, nsize) : malloc(nsize);
  if (p == NULL) return NULL;
  if (ptr) {
    memcpy(p, ptr, old < nsize ? old : nsize);
    if (old <= SMALL_MAX) small_free(a, ptr, old);
    else free(ptr);
  }
  return p;
#endif
}

sk_alloc *sk_alloc_new(void) { return calloc(1, sizeof(sk_alloc)); }

void sk_alloc_free(sk_alloc *a) {
  if (a == NULL) return;
#ifndef SK_PLAIN_ALLOC
  ahead_leave(a);
  if (a->spare) munmap(a->spare_base, a->spare_mapped);
#endif
  while (a->chunks) {
    chunk *c = a->chunks;
    a->chunks = c->next;
    munmap(c->base, c->mapped);
  }
  free(a);
}

/* ------------------------------------------- panic and warnings (lauxlib) */

/* luaL_newstate installs these for its own allocator; a state made with
** lua_newstate needs equivalents. */
static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  if (msg == NULL) msg = "error object is not a string";
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg);
  fflush(stderr);
  return 0;
}

static void warn_off(void *ud, const char *msg, int tocont);
static void warn_on(void *ud, const char *msg, int tocont);

/* Control messages ("@on", "@off") switch warnings like lauxlib does. */
static int warn_control(lua_State *L, const char *msg, int tocont) {
  if (tocont || *msg++ != '@') return 0;
  if (strcmp(msg, "off") == 0) lua_setwarnf(L, warn_off, L);
  else if (strcmp(msg, "on") == 0) lua_setwarnf(L, warn_on, L);
  return 1;
}

static void warn_cont(void *ud, const char *msg, int tocont);

static void warn_on(void *ud, const char *msg, int tocont) {
  if (warn_control(ud, msg, tocont)) return;
  fprintf(stderr, "Lua warning: %s", msg);
  if (tocont) {
    lua_setwarnf((lua_State *)ud, warn_cont, ud);
  } else {
    fputc('\n', stderr);
  }
  fflush(stderr);
}

static void warn_cont(void *ud, const char *msg, int tocont) {
  fputs(msg, stderr);
  if (tocont) return;
  fputc('\n', stderr);
  fflush(stderr);
  lua_setwarnf((lua_State *)ud, warn_on, ud);
}

static void warn_off(void *ud, const char *msg, int tocont) {
  warn_control(ud, msg, tocont);
}

lua_State *sk_lua_newstate(sk_alloc *a) {
  lua_State *L = lua_newstate(sk_lua_alloc, a);
  if (L) {
    lua_atpanic(L, panic);
    lua_setwarnf(L, warn_off, L);
  }
  return L;
}
