/*
** sk_shared.h — internals shared by the files of skein.shared (shared.c:
** blobs, value, array; shared_table.c: table).
**
** Layout rule for every shared-state object, so that it can later move into
** a shared-memory segment: a fixed-size header (the sk_obj, one mutex, plain
** numbers) holds no pointer into a Lua state; every variable-size part is a
** separately allocated block that is immutable once published (a *blob*) or
** owned by exactly one header (the table's store), reached through one field.
** Moving to a segment replaces those fields by offsets and malloc by the
** segment's allocator; nothing else in the layout changes.
*/
#ifndef SK_SHARED_H
#define SK_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "sk_bind.h"
#include "sk_sync.h"

/* An immutable, reference-counted byte block in the shared segment: a
** string (no objects) or a marshalled value with the shared objects it
** mentions. Readers retain it under the owner's lock and decode it after
** unlocking, so no Lua call (and so no raise) ever happens with an
** object's mutex held. Any process may retain or release it; a structure
** in the segment stores it as an offset (sk_shm_off). */
typedef struct sk_blob {
  int32_t refs;                 /* atomic */
  uint32_t nobjs;               /* shared objects this value keeps alive */
  size_t len;
  sk_off objs[];                /* (references) then `len` bytes */
} sk_blob;

static inline const char *sk_blob_data(const sk_blob *b) {
  return (const char *)(b->objs + b->nobjs);
}

/* A blob holding a copy of `len` bytes; NULL when out of memory. */
sk_blob *sk_blob_bytes(const char *data, size_t len);
/* Moves a marshalled buffer into a new blob (the blob takes over the
** buffer's object references); frees the buffer either way. NULL when out of
** memory. */
sk_blob *sk_blob_from_buf(sk_buf *b);
void sk_blob_retain(sk_blob *b);
/* Drops a reference; the last one releases the objects and frees it. Never
** call with the owner's mutex held (it may destroy other shared objects). */
void sk_blob_release(sk_blob *b);
/* Encodes the value at idx into *out, naming it `name` in errors. Returns 0,
** or -1 with an error of kind "marshal" pushed; never raises. */
int sk_blob_encode(lua_State *L, int idx, const char *name, sk_blob **out);
/* Pushes the value a blob holds, consuming the caller's reference; raises
** (kind "marshal") if it cannot be decoded. Call with no lock held. */
void sk_blob_push_value(lua_State *L, sk_blob *b);
/* Pushes a string blob's bytes, consuming the caller's reference (released
** before any raise). */
void sk_blob_push_string(lua_State *L, sk_blob *b);

/* The identity of the calling context (its worker's port and wake slot);
** raises when out of memory. */
void sk_shared_identity(lua_State *L, sk_ctx *c, sk_port **port, uint32_t *slot);


void sk_shared_table_open(lua_State *L);

#endif
