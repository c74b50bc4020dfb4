/*
** marshal_auth.c — what the marshaller trusts. The key that authenticates
** bytecode and module names (a SipHash tag travels with each, so a worker
** loads code, or `require`s a module, only when a process of its own tree
** wrote it), and the registry of object types that may be sent by
** reference, with the stand-ins of another process's objects.
**
** Threading: the key is made once per process (uv_once) and set before any
** decoding in a worker process; the type registry has its own lock.
*/
#include <stdlib.h>
#include <string.h>

#include "../core/sk_siphash.h"
#include "sk_marshal.h"

#define MAX_TYPES 64

/* ------------------------------------------------------------ the key */

/* The key that authenticates bytecode (and module names, below): random
** in the first process of a tree; a worker process is given its parent's
** before anything is decoded (sk_marshal_set_key: it comes on the worker's
** socket, never through the environment, so programs a worker runs
** cannot learn it). */
static uint8_t mac_key[16];
static int key_given;
static uv_once_t key_once = UV_ONCE_INIT;

static void key_init(void) {
  if (key_given) return;
  if (uv_random(NULL, NULL, mac_key, sizeof mac_key, 0, NULL) != 0) {
    uint64_t t = uv_hrtime() ^ (uint64_t)(uintptr_t)&t;
    memcpy(mac_key, &t, 8);
  }
}

void sk_marshal_key(uint8_t out[16]) {
  uv_once(&key_once, key_init);
  memcpy(out, mac_key, 16);
}

void sk_marshal_set_key(const uint8_t key[16]) {
  memcpy(mac_key, key, 16);
  key_given = 1;
  uv_once(&key_once, key_init);
}

static uint64_t mac(const void *data, size_t len) {
  uv_once(&key_once, key_init);
  return sk_siphash(mac_key, data, len);
}

/* Module names (a MODULE tag's, a CFUNC tag's "module.name") carry a tag
** too, under a key of their own derived from the bytecode key (so that no
** tag of one kind is ever one of the other): the decoder `require`s a
** module that is not loaded yet only when its name was written by a
** process of this tree. */
static uint8_t name_key[16];
static uv_once_t name_once = UV_ONCE_INIT;

static void name_key_init(void) {
  static const char label[] = "skein module names";
  uint64_t a = mac(label, sizeof label - 1), b = mac(label, sizeof label);
  for (int i = 0; i < 8; i++) {
    name_key[i] = (uint8_t)(a >> (8 * i));
    name_key[8 + i] = (uint8_t)(b >> (8 * i));
  }
}

static uint64_t name_mac(const char *name, size_t len) {
  uv_once(&name_once, name_key_init);
  return sk_siphash(name_key, name, len);
}

uint64_t sk_marshal_code_tag(const void *code, size_t len) { return mac(code, len); }
uint64_t sk_marshal_name_tag(const char *name, size_t len) { return name_mac(name, len); }

/* ------------------------------------------------------ sendable types */

static struct {
  const char *name;
  sk_obj_push push;
} types[MAX_TYPES];
static int ntypes;
static uv_mutex_t types_lock;
static uv_once_t types_once = UV_ONCE_INIT;

static void types_init(void) { uv_mutex_init(&types_lock); }

void sk_marshal_register_type(const char *name, sk_obj_push push) {
  uv_once(&types_once, types_init);
  uv_mutex_lock(&types_lock);
  int i;
  for (i = 0; i < ntypes; i++) {
    if (strcmp(types[i].name, name) == 0) break;
  }
  if (i == ntypes && ntypes < MAX_TYPES) ntypes++;
  if (i < MAX_TYPES) {
    types[i].name = name;
    types[i].push = push;
  }
  uv_mutex_unlock(&types_lock);
}

const sk_marshal_proxy *sk_marshal_stand_ins;

void sk_marshal_set_proxy(const sk_marshal_proxy *p) { sk_marshal_stand_ins = p; }

sk_obj_push sk_marshal_find_type(const char *name, const char **canonical) {
  sk_obj_push push = NULL;
  uv_once(&types_once, types_init);
  uv_mutex_lock(&types_lock);
  for (int i = 0; i < ntypes; i++) {
    if (strcmp(types[i].name, name) == 0) {
      push = types[i].push;
      if (canonical) *canonical = types[i].name;
      break;
    }
  }
  uv_mutex_unlock(&types_lock);
  return push;
}


/* ---------------------------------------------------------- host types */

/* Host types (skein_register_type) in a table of their own: their values
** are the host's userdata, not sk_obj handles, and go as T_HOST
** (marshal.c). An entry is written in full before `nhosts` counts it, under
** the lock, and never changes afterwards, so a found entry is read without
** the lock. The copied names live as long as the process. */
#define MAX_HOSTS 64

static sk_hosttype hosts[MAX_HOSTS];
static int nhosts;

/* What travels in a buffer for one pointer sent by reference. */
typedef struct host_ref {
  sk_obj obj;
  void *p;
} host_ref;

static void host_ref_destroy(sk_obj *o) {
  host_ref *r = (host_ref *)o;
  const sk_hosttype *t = (const sk_hosttype *)o->type;  /* wrap is first */
  t->ops.release(r->p);
  free(r);
}

static int same_ops(const skein_type_ops *a, const skein_type_ops *b) {
  return strcmp(a->metatable, b->metatable) == 0 && a->encode == b->encode &&
         a->decode == b->decode && a->pointer == b->pointer && a->retain == b->retain &&
         a->release == b->release && a->push == b->push;
}

int sk_marshal_register_host(const skein_type_ops *ops, const char **why) {
  skein_type_ops copy = *ops;
  if (copy.metatable == NULL) copy.metatable = copy.name;
  uv_once(&types_once, types_init);
  uv_mutex_lock(&types_lock);
  int rc = 0;
  for (int i = 0; i < nhosts; i++) {
    if (strcmp(hosts[i].ops.name, copy.name) == 0) {
      if (!same_ops(&hosts[i].ops, &copy)) {
        *why = "a host type of that name is registered with other callbacks";
        rc = -1;
      }
      goto done;
    }
    if (strcmp(hosts[i].ops.metatable, copy.metatable) == 0) {
      *why = "another host type has that metatable";
      rc = -1;
      goto done;
    }
  }
  if (nhosts == MAX_HOSTS) {
    *why = "too many host types (64)";
    rc = -1;
    goto done;
  }
  char *name = strdup(copy.name), *mt = strdup(copy.metatable);
  if (name == NULL || mt == NULL) {
    free(name);
    free(mt);
    *why = "out of memory";
    rc = -1;
    goto done;
  }
  copy.name = name;
  copy.metatable = mt;
  sk_hosttype *t = &hosts[nhosts];
  t->wrap = (sk_objtype){name, host_ref_destroy, NULL};
  t->ops = copy;
  nhosts++;
done:
  uv_mutex_unlock(&types_lock);
  return rc;
}

const sk_hosttype *sk_marshal_find_host(const char *name, int by_metatable) {
  const sk_hosttype *found = NULL;
  uv_once(&types_once, types_init);
  uv_mutex_lock(&types_lock);
  for (int i = 0; i < nhosts && !found; i++) {
    if (strcmp(by_metatable ? hosts[i].ops.metatable : hosts[i].ops.name, name) == 0) {
      found = &hosts[i];
    }
  }
  uv_mutex_unlock(&types_lock);
  return found;
}

sk_obj *sk_marshal_host_ref(const sk_hosttype *t, void *p) {
  host_ref *r = malloc(sizeof *r);
  if (r == NULL) return NULL;
  sk_obj_init(&r->obj, &t->wrap);
  r->p = p;
  t->ops.retain(p);
  return &r->obj;
}

void *sk_marshal_host_pointer(sk_obj *o) { return ((host_ref *)o)->p; }
