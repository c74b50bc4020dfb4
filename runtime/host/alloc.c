/*
** alloc.c — the allocator of a worker's Lua state: small blocks come from
** size-class free lists carved out of 2 MiB chunks; larger blocks go to
** malloc.
**
** Why: a task is a few small blocks (coroutine, stack, userdata) that are
** made and dropped in bulk; free lists make each allocation a pointer pop
** with no locking, since a worker's state is only touched by its own
** thread. (Asking for transparent huge pages on the chunks was measured:
** it cut page faults twentyfold on a fresh machine, but once memory is
** fragmented the kernel compacts synchronously and spawning got slower
** than with plain pages, so the chunks use plain pages.)
**
** Lua passes the exact old size with every realloc and free, so a block
** needs no header: its size class follows from that size. Chunks are given
** back when the worker closes (after lua_close has freed every block).
** Sanitizer builds use plain malloc, so ASan sees every block.
*/
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

struct sk_alloc {
  free_block *free[NCLASSES];
  char *bump, *end;                   /* the unused tail of the newest chunk */
  char *present;                      /* [bump, present) has its pages already */
  int no_populate;                    /* the kernel cannot populate ahead */
  chunk *chunks;
};

#ifndef SK_PLAIN_ALLOC
static int class_of(size_t n) { return (int)((n + GRAIN - 1) / GRAIN) - 1; }

/* Maps a new 2 MiB-aligned chunk and points the bump range at it. */
static int new_chunk(sk_alloc *a) {
  size_t len = 2 * (size_t)CHUNK;
  char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return -1;
  /* Not inherited by fork. libuv starts a worker process with fork then
  ** exec, and a fork write-protects every page the parent maps privately:
  ** the parent's next collection would then take one fault per page of
  ** the heap (tens of thousands after a busy phase). No child of a fork
  ** ever runs Lua on this state before it execs, so it needs none of it. */
  (void)madvise(base, len, MADV_DONTFORK);
  char *aligned = (char *)(((uintptr_t)base + CHUNK - 1) & ~((uintptr_t)CHUNK - 1));
  /* The chunk's own record lives at its start. */
  chunk *c = (chunk *)(void *)aligned;
  c->base = base;
  c->mapped = len;
  c->next = a->chunks;
  a->chunks = c;
  a->bump = aligned + ((sizeof(chunk) + GRAIN - 1) / GRAIN) * GRAIN;
  a->end = aligned + CHUNK;
  a->present = aligned;
  return 0;
}

/* Makes the next pages of the bump range present before they are used.
** A burst of tasks touches fresh pages one after another, and each first
** touch is a trap into the kernel (several microseconds on a VM); asking
** for POPULATE_STEP bytes at once is one call instead of 64 traps. The
** step is bounded, so an idle worker holds at most that much unused
** memory beyond what it allocated. */
static void populate(sk_alloc *a) {
  size_t left = (size_t)(a->end - a->present);
  size_t step = left < POPULATE_STEP ? left : POPULATE_STEP;
  if (!a->no_populate && madvise(a->present, step, MADV_POPULATE_WRITE) != 0) {
    a->no_populate = 1;               /* not this kernel: plain faults it is */
  }
  a->present += step;
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
