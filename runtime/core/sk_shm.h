/*
** sk_shm.h — the shared-memory segment of a process tree: where objects
** shared by several processes (queues, pipe ends) live.
**
** One segment serves a whole tree of skein processes. The first process
** that starts a worker process creates it (a memfd, mapped MAP_SHARED);
** every worker process inherits the descriptor, maps it and passes it on
** to its own children. The mapping's address differs from process to
** process, so nothing in the segment holds a pointer: every link is an
** offset from the segment's start (sk_shm_ptr/sk_shm_off convert).
**
** What lives here:
**  - an allocator (power-of-two size classes with free lists, then a bump
**    pointer), whose every change is published by one store under a robust
**    mutex, so a process killed inside it leaks a block at worst;
**  - a process table: one record per live process of the tree, with the
**    mailbox through which others wake that process's waiting tasks;
**  - the list of live shared objects, which is walked when a process dies
**    (sk_shm_proc_gone) so that no wake is lost with it.
**
** Locks: every lock in the segment is a process-shared *robust* mutex.
** When its holder dies, the next locker is told (sk_shm_lock returns 1)
** and repairs what the holder may have left half done. Lock order: an
** object's lock, then the allocator's or a mailbox's lock (innermost); the
** object list's lock is never held with an object's lock except in
** sk_shm_proc_gone, which takes it first; the export table's lock is taken
** before the object list's.
**
** Waking across processes: a waiter record names a process slot, that
** slot's generation, a port id (sk_port_id) and the context's wake slot
** and generation. Waking a waiter of this process posts to the port
** directly; waking one of another process appends it to that process's
** mailbox ring and bumps the ring's futex, on which a small dispatcher
** thread of the target sleeps; the dispatcher posts to the port.
*/
#ifndef SK_SHM_H
#define SK_SHM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t sk_off;        /* an offset into the segment; 0 is "none" */

/* A waiter record as it sits in a shared object's wait list. */
typedef struct sk_shm_waiter {
  sk_off next;
  uint32_t proc, proc_gen;      /* the waiting process's slot */
  uint32_t port;                /* sk_port_id of its worker */
  uint32_t slot, gen;           /* the context's wake slot */
  uint32_t pad;
} sk_shm_waiter;

/* Every shared object starts with this header. */
typedef struct sk_shm_obj {
  uint32_t magic;               /* SK_SHM_MAGIC ^ type while alive */
  uint32_t type;
  uint32_t gen;                 /* bumped when the object is freed */
  int32_t refs;                 /* atomic: handles in every process + references in items */
  sk_off prev, next;            /* the list of live objects */
  sk_off holders;               /* which processes hold views (shm.c) */
  uint32_t index;               /* its entry in the object index (shm.c) */
  uint32_t pad;
} sk_shm_obj;

#define SK_SHM_MAGIC 0x736b6d6fu

/* The segment this process uses, creating it when `create` and there is
** none yet (only a process that is not itself a worker creates one).
** NULL when there is none, or it could not be made. Thread-safe.
** The segment reserves 16 GiB of address space, or under an address-space
** limit (RLIMIT_AS, ulimit -v) half the room the limit leaves. */
void *sk_shm_base(int create);
/* A sentence for error messages: why there is no segment, or how big it
** is and what sized it ("the shared-memory segment holds 3.9 GiB, sized
** to fit the address-space limit (ulimit -v) of 8.0 GiB"). */
const char *sk_shm_why(void);
/* The segment's descriptor (for a child to inherit), or -1. */
int sk_shm_fd(void);
/* Called once at a worker process's start: maps the inherited segment
** (descriptor `fd`, made close-on-exec) and claims the process slot
** `slot` its parent reserved for it. -1 (nothing mapped) when that fails:
** the process must not run without an identity. */
int sk_shm_attach_inherited(int fd, int slot);

/* Process slots: a tree has at most sk_shm_max_procs() live processes
** (1024, or fewer when $SKEIN_MAX_PROCS said so where the segment was
** made). A parent reserves a slot for a child before it starts it (-1 when
** the table is full: the child must not be started), names the child's
** pid once started, or gives the slot back when the start failed. */
int sk_shm_slot_reserve(void);
void sk_shm_slot_bind(int slot, int pid);
void sk_shm_slot_cancel(int slot);
int sk_shm_max_procs(void);
/* The segment's use: bytes carved from it so far (its high-water mark;
** freed blocks are reused, not returned), its size, and the processes of
** the tree alive in its table. -1 when this process has no segment. */
int sk_shm_usage(uint64_t *used, uint64_t *size, int *procs);
/* What is live in the segment now: bytes of the blocks handed out (a
** thread's cache of free small blocks does not count) and shared objects.
** -1 when this process has no segment. */
int sk_shm_live(uint64_t *inuse, uint32_t *objects);

static inline void *sk_shm_ptr(sk_off off) {
  extern char *sk_shm_map;
  return off ? sk_shm_map + off : NULL;
}
static inline sk_off sk_shm_off(const void *p) {
  extern char *sk_shm_map;
  return p ? (sk_off)((const char *)p - sk_shm_map) : 0;
}
/* 1 when [off, off+len) lies inside the segment's allocated part. */
int sk_shm_valid(sk_off off, size_t len);

/* Allocation; NULL when the segment is full. Any process may free.
** sk_shm_alloc_zeroed clears only what may hold old bytes (pages never
** used, and those a freed big block gave back, read as zeroes), so a big
** block costs no time until it is touched. */
void *sk_shm_alloc(size_t n);
void *sk_shm_alloc_zeroed(size_t n);
void sk_shm_free(void *p);

/* A robust, process-shared mutex. Locking returns 1 when the previous
** holder died with it held (the caller repairs the data it guards), else 0. */
void sk_shm_mutex_init(pthread_mutex_t *m);
int sk_shm_lock(pthread_mutex_t *m);
void sk_shm_unlock(pthread_mutex_t *m);

/* Shared objects: links a new object (refs = 1, a hold of this process)
** into the live list and gives it an entry in the object index; -1 (the
** object untouched, the caller frees it) when the index is full.
** sk_shm_obj_retain/release count references from every process; the last
** release unlinks it, runs `destroy` (by type) and frees it. */
int sk_shm_obj_link(sk_shm_obj *o, uint32_t type);
void sk_shm_obj_retain(sk_shm_obj *o);
void sk_shm_obj_release(sk_shm_obj *o);
/* The reference of a view (a process's object for it; the one link makes
** is one too): counted per process, so that the references of a process
** that dies are dropped when it is reaped (sk_shm_proc_gone). Other
** references (items, blobs, other objects) use retain/release. */
void sk_shm_obj_hold(sk_shm_obj *o);
void sk_shm_obj_unhold(sk_shm_obj *o);
/* The live object of `type` and generation `gen` that index entry `index`
** names, with a reference the caller releases; NULL otherwise. This is
** how bytes (a marshalled handle: type, index, generation) reach an
** object: only the index, which link and release alone write, says where
** objects are, so no forged bytes can make a block of some other use pass
** for an object. */
sk_shm_obj *sk_shm_obj_find(uint32_t index, uint32_t type, uint32_t gen);
/* Export table: a local object (process pid, handle slot and gen) that
** moved into the segment as `so`, so that bytes written before the move
** (a handle to it inside a queue item) still find it from any process. An
** entry lapses when its object goes; the table may forget the oldest. */
void sk_shm_export(int pid, uint32_t slot, uint32_t gen, sk_shm_obj *so);
/* The live object exported under that handle, with a reference the caller
** releases, or NULL. */
sk_shm_obj *sk_shm_exported(int pid, uint32_t slot, uint32_t gen);

/* Serialises moves into the segment (recursive: moving a queue moves the
** objects its items mention). */
void sk_shm_move_lock(void);
void sk_shm_move_unlock(void);

/* What each object type does when a process dies and when it is freed.
** `gone` runs with no lock held; it drops the dead process's waiter
** records and passes on wakes that may have been lost with it. */
typedef struct sk_shm_type {
  void (*gone)(sk_shm_obj *o);
  void (*destroy)(sk_shm_obj *o);
} sk_shm_type;
void sk_shm_register_type(uint32_t type, const sk_shm_type *t);

/* Waiter records. The caller holds the object's lock for add/remove/pop. */
/* Fills a record for context (port, slot, gen) of this process; -1 when
** this process has no slot (more than 1024 processes in the tree). */
int sk_shm_waiter_self(sk_shm_waiter *w, uint32_t port, uint32_t slot, uint32_t gen);
/* Appends a copy of *w to the list at *head; -1 when the segment is full. */
int sk_shm_waitlist_add(sk_off *head, const sk_shm_waiter *w);
/* Removes the records of this process's (port, slot); returns how many. */
int sk_shm_waitlist_remove(sk_off *head, uint32_t port, uint32_t slot);
/* Takes the oldest record of a live process into *out; 0 when none. */
int sk_shm_waitlist_pop(sk_off *head, sk_shm_waiter *out);
/* Removes every record of processes that are gone; returns how many. */
int sk_shm_waitlist_purge(sk_off *head);
/* Wakes the context a record names (no lock need be held). 0 when the
** record's process and port are still there, -1 when it went. */
int sk_shm_wake(const sk_shm_waiter *w);

/* In the parent, once a worker process has been reaped: frees its slot
** (and those of its own worker processes, which die with it: they are
** killed for certain first) and lets every shared object drop their
** records, release what they held and pass on lost wakes. */
void sk_shm_proc_gone(int pid);
/* 1 while another process of the tree is alive (it could end a wait on a
** shared object). */
int sk_shm_others_alive(void);
/* This process's slot (-1 when it has none) and that slot's generation. */
int sk_shm_self(void);
uint32_t sk_shm_self_gen(void);
/* 1 while the process in `slot` with generation `gen` is alive. */
int sk_shm_proc_live(uint32_t slot, uint32_t gen);

#endif
