/*
** sk_obj.h — shared, reference-counted objects (queues, events, locks,
** shared values…) and the process-wide handle table through which they
** cross workers.
**
** A marshalled buffer never carries a raw pointer: it carries a handle (slot
** index + generation). Decoding looks the handle up under the table's mutex
** and checks the generation and the type name, so a stale, forged or
** corrupted handle yields "no such object" instead of a wild pointer.
**
** Thread safety: sk_obj_retain/release and the table functions may be called
** from any thread. Lock order: the table mutex is never held while calling
** an object's destroy function or taking an object's own lock.
*/
#ifndef SK_OBJ_H
#define SK_OBJ_H

#include <stdint.h>

typedef struct sk_obj sk_obj;

struct sk_shm_obj;

/* What a type that can live in the shared-memory segment (sk_shm.h)
** provides, so that its objects can cross to other processes. */
typedef struct sk_shm_ops {
  uint32_t type;                /* its sk_shm_obj type */
  /* Moves `o` into the segment if it is not there yet (once; safe against
  ** concurrent use) and returns its shared object; NULL when it cannot. */
  struct sk_shm_obj *(*share)(sk_obj *o);
  /* Its shared object when it has moved, else NULL. */
  struct sk_shm_obj *(*shared)(sk_obj *o);
  /* This process's object for a shared one, with a new reference; NULL
  ** when out of memory. */
  sk_obj *(*view)(struct sk_shm_obj *so);
} sk_shm_ops;

typedef struct sk_objtype {
  const char *name;             /* the Lua metatable name, e.g. "skein.Queue" */
  void (*destroy)(sk_obj *o);   /* frees the object once the last ref goes */
  const sk_shm_ops *shm;        /* NULL: the type stays in its process */
} sk_objtype;

/* Embedded first in every shared object. */
struct sk_obj {
  const sk_objtype *type;
  int refs;                     /* atomic */
  uint32_t slot, gen;           /* its handle; slot 0 means unregistered */
};

/* Initialises `o` with one reference. It enters the handle table only when
** first marshalled (sk_obj_register), so objects that never cross a worker
** cost no global lock (and this cannot fail). */
void sk_obj_init(sk_obj *o, const sk_objtype *type);
/* Gives `o` a handle if it has none; 0, or -1 when out of memory. */
int sk_obj_register(sk_obj *o);
void sk_obj_retain(sk_obj *o);
/* Drops a reference; the last one unregisters and destroys the object. */
void sk_obj_release(sk_obj *o);
/* Returns the object behind (slot, gen) with a new reference, or NULL when
** there is none or its type name differs from `type_name`. */
sk_obj *sk_obj_lookup(uint32_t slot, uint32_t gen, const char *type_name);

#endif
