/*
** sk_pipe.h — pipe ends (runtime/host/pipes.c), the objects behind
** skein.pipe (lua/pipe.c). Each direction of a pipe is an unbounded FIFO
** queue (sk_chan.h); an end holds the queue it receives from and the one it
** sends to (one missing on a one-way pipe). An end closes once: its
** outgoing queue closes (the peer drains, then gets "closed") and its
** incoming one shuts with what is left (the peer's sends raise "closed").
** The first time an end crosses to another process it and its queues move
** to the shared segment, and it closes when close() is called anywhere or
** its last reference in any process goes.
*/
#ifndef SK_PIPE_H
#define SK_PIPE_H

#include "sk_chan.h"

#define SK_PIPE_MT "skein.PipeEnd"

typedef struct shm_end shm_end;

typedef struct sk_pipe_end {
  sk_obj obj;
  sk_queue *in, *out;           /* counted; NULL for a one-way end's missing side */
  int closed_here;              /* the flag while the end is this process's alone */
  int *closed;                  /* atomic: &closed_here, or the shared end's flag */
  int duplex;
  shm_end *shm;                 /* atomic: set once, when the end moved */
} sk_pipe_end;

/* A new end over `in` and `out`, taking a reference to each; NULL when out
** of memory. */
sk_pipe_end *sk_pipe_end_new(sk_queue *in, sk_queue *out, int duplex);
/* Whether o is a pipe end (of this process). */
int sk_pipe_end_is(const sk_obj *o);
int sk_pipe_end_closed(sk_pipe_end *e);
/* Closes the end once (see above); any thread. */
void sk_pipe_end_shut(sk_pipe_end *e);
/* Registers the ends' shared-segment operations (once per process). */
void sk_pipe_engine_open(void);

#endif
