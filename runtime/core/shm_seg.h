/*
** shm_seg.h — the layout of the shared-memory segment, shared by the files
** that implement sk_shm.h and included by nothing else: shm.c (the segment
** and its processes), shm_alloc.c (the allocator), shm_obj.c (objects, the
** object index, moves and exports) and shm_wake.c (wait lists and wakes
** across processes).
*/
#ifndef SK_SHM_SEG_H
#define SK_SHM_SEG_H

#include <pthread.h>
#include <stdint.h>

#include "sk_shm.h"

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
  /* Atomic, changed by this slot's processes only: bytes of the blocks
  ** they were handed, less those they freed (so it may be negative; it is
  ** kept across owners). The sum over every slot and the header's `inuse`
  ** is what the tree has in use; a counter per process keeps a producer
  ** and a consumer in two processes off one cache line. */
  int64_t inuse __attribute__((aligned(64)));
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
  uint64_t inuse;               /* atomic: as a slot's `inuse`, for a process with none */
  uint32_t nobjs;               /* atomic: live shared objects */
  uint32_t slots_used;          /* one past the highest slot ever given (proc_lock) */
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

/* This process's view of the segment (shm.c). `sk_shm_self_slot` is its
** slot in the process table (-1 before it attaches); `sk_shm_types` the
** shared-object types registered in this process (sk_shm_register_ops). */
extern char *sk_shm_map;               /* where the segment is mapped */
extern int sk_shm_self_slot;
#define SK_SHM_NTYPES 16
extern const sk_shm_type *sk_shm_types[SK_SHM_NTYPES];

static inline seg_hdr *hdr(void) { return (seg_hdr *)sk_shm_map; }

/* Under obj_lock: drops the holds of processes that are gone from object
** `o`; returns the references they had, for the caller to release after
** unlocking (shm_obj.c; used by shm.c's cleanup after dead processes). */
int32_t sk_shm_drop_dead_holds(sk_shm_obj *o);

#endif
