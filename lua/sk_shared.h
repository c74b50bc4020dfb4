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
#include "../runtime/host/sk_blob.h"

#endif
