/*
** sk_sync.h — what the synchronisation objects (sync.c, event.c,
** barrier.c) include: the bindings' header and the host's shared wait
** lists and views (runtime/host/sk_xwait.h) they are made of.
*/
#ifndef SK_SYNC_H
#define SK_SYNC_H

#include <stddef.h>

#include "sk_bind.h"
#include "../runtime/host/sk_xwait.h"

#endif
