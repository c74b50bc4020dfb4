/*
** sk_embed.h — what the embed layer (runtime.c) offers beyond skein.h: to
** the command (runtime/cli/) a few questions about its runtime, and to
** programs that make workers without skein_new (the fuzz target) the
** start-up step that skein_new and skein_worker_main take first.
*/
#ifndef SK_EMBED_H
#define SK_EMBED_H

#include <stddef.h>

#include "../include/skein.h"

/* Registers what the host layer must reach of the layers above it: the
** module opener and what becoming a worker needs (the init hooks, the
** worker executable) with sk_worker_set_hooks, and marshal's stand-ins for
** another process's objects with sk_marshal_set_proxy.
** Idempotent and thread-safe; must run before the first worker is made. */
void sk_embed_init(void);

/* The embedded stdlib, one entry per chunk, ending with a NULL name:
** generated from stdlib/ by tools/embed.lua at build time (its layout must
** match the one written there); module.c loads it, and
** spec/c/test_stdlib_source.c checks its source fallback. */
typedef struct sk_embedded {
  const char *name, *chunkname, *src;
  size_t len;
  const char *code;             /* the same chunk as bytecode, with debug info */
  size_t clen;
} sk_embedded;
extern const sk_embedded sk_stdlib[];

/* Records `msg` as the last failure of rt (NULL: of this thread, for
** skein_errmsg(NULL)) and returns -1 (hosttype.c). */
int sk_runtime_fail(skein_runtime *rt, const char *msg);

/* After a chunk: whether it ended because of an interrupt its code did not
** catch (the error reached the top, or the interrupt is still owed to code
** that never took it). */
int sk_runtime_interrupt_escaped(skein_runtime *rt);
/* When the script returned normally: an interrupt its code caught and
** handled no longer stops what follows (the wait for its remaining tasks).
** One not yet delivered still does. */
void sk_runtime_interrupt_handled(skein_runtime *rt);
/* Unfinished non-daemon tasks and workers, which the REPL's end of input
** must not drop without a word. */
size_t sk_runtime_live(skein_runtime *rt);

#endif
