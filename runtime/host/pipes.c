/*
** pipes.c — the ends of skein.pipe (sk_pipe.h): each an object over the
** queue it receives from and the one it sends to (sk_chan.h), closing
** once, and moving with its queues to the shared segment the first time
** it crosses to another process. Its Lua face is lua/pipe.c.
*/
#include <stdlib.h>
#include <unistd.h>

#include "sk_pipe.h"

/* An end in the shared segment. */
typedef struct shm_end {
  sk_shm_obj obj;
  sk_off in, out;               /* shq, a reference each; 0 for a missing side */
  int32_t closed;               /* atomic */
  int32_t duplex;
} shm_end;

int sk_pipe_end_closed(sk_pipe_end *e) {
  return __atomic_load_n(__atomic_load_n(&e->closed, __ATOMIC_ACQUIRE), __ATOMIC_ACQUIRE);
}

/* Closes the end once: the peer sees EOF after draining, its sends fail. */
void sk_pipe_end_shut(sk_pipe_end *e) {
  if (__atomic_exchange_n(__atomic_load_n(&e->closed, __ATOMIC_ACQUIRE), 1, __ATOMIC_ACQ_REL)) {
    return;
  }
  if (e->out) sk_queue_shut(e->out, 0);
  if (e->in) sk_queue_shut(e->in, 1);
}

static void end_destroy(sk_obj *o) {
  sk_pipe_end *e = (sk_pipe_end *)o;
  if (e->shm) {
    /* The shared end closes with its last reference, in any process. */
    sk_shm_view_forget(&e->shm->obj, o);
    sk_shm_obj_unhold(&e->shm->obj);
  } else {
    sk_pipe_end_shut(e);
  }
  if (e->in) sk_obj_release((sk_obj *)e->in);
  if (e->out) sk_obj_release((sk_obj *)e->out);
  free(e);
}

static void shm_end_destroy(sk_shm_obj *o) {
  shm_end *se = (shm_end *)o;
  shq *in = sk_shm_ptr(se->in), *out = sk_shm_ptr(se->out);
  if (!__atomic_exchange_n(&se->closed, 1, __ATOMIC_ACQ_REL)) {
    if (out) sk_queue_shut_shared(out, 0);
    if (in) sk_queue_shut_shared(in, 1);
  }
  if (in) sk_shm_obj_release((sk_shm_obj *)in);
  if (out) sk_shm_obj_release((sk_shm_obj *)out);
}

static const sk_shm_type shm_end_type = {NULL, shm_end_destroy};

static sk_shm_obj *end_share(sk_obj *o);
static sk_shm_obj *end_shared(sk_obj *o) {
  return (sk_shm_obj *)__atomic_load_n(&((sk_pipe_end *)o)->shm, __ATOMIC_ACQUIRE);
}
static sk_obj *end_view(sk_shm_obj *so);

static const sk_shm_ops end_shm = {SK_SHM_PIPE_END, end_share, end_shared, end_view};
static const sk_objtype end_type = {SK_PIPE_MT, end_destroy, &end_shm};

static sk_shm_obj *end_share(sk_obj *o) {
  sk_pipe_end *e = (sk_pipe_end *)o;
  shm_end *se = e->shm;
  if (se) return &se->obj;
  sk_shm_move_lock();
  se = e->shm;
  shq *in = NULL, *out = NULL;
  if (se == NULL && (!e->in || (in = sk_queue_share(e->in))) &&
      (!e->out || (out = sk_queue_share(e->out))) && (se = sk_shm_alloc(sizeof *se))) {
    se->in = sk_shm_off(in);
    se->out = sk_shm_off(out);
    se->duplex = e->duplex;
    se->closed = __atomic_load_n(&e->closed_here, __ATOMIC_ACQUIRE);
    if (sk_shm_obj_link(&se->obj, SK_SHM_PIPE_END) != 0) {
      /* No index entry left: the end stays local (its queues moved). */
      sk_shm_free(se);
      sk_shm_move_unlock();
      return NULL;
    }
    if (in) sk_shm_obj_retain((sk_shm_obj *)in);
    if (out) sk_shm_obj_retain((sk_shm_obj *)out);
    __atomic_store_n(&e->closed, &se->closed, __ATOMIC_RELEASE);
    /* A close that raced the move set the old flag: carry it over. */
    if (__atomic_load_n(&e->closed_here, __ATOMIC_ACQUIRE)) __atomic_store_n(&se->closed, 1, __ATOMIC_RELEASE);
    sk_shm_view_remember(&se->obj, o);
    __atomic_store_n(&e->shm, se, __ATOMIC_RELEASE);
    if (sk_obj_register(o) == 0) sk_shm_export((int)getpid(), o->slot, o->gen, &se->obj);
  }
  sk_shm_move_unlock();
  return se ? &se->obj : NULL;
}

static sk_obj *make_end_view(sk_shm_obj *so) {
  shm_end *se = (shm_end *)so;
  sk_queue *in = se->in ? sk_queue_view(sk_shm_ptr(se->in)) : NULL;
  sk_queue *out = se->out ? sk_queue_view(sk_shm_ptr(se->out)) : NULL;
  sk_pipe_end *e = (!se->in || in) && (!se->out || out) ? sk_pipe_end_new(in, out, se->duplex) : NULL;
  /* The end holds its own references now. */
  if (in) sk_obj_release((sk_obj *)in);
  if (out) sk_obj_release((sk_obj *)out);
  if (e == NULL) return NULL;
  e->closed = &se->closed;
  sk_shm_obj_hold(so);
  e->shm = se;
  return &e->obj;
}

static sk_obj *end_view(sk_shm_obj *so) { return sk_shm_view_get(so, make_end_view); }

/* A new end over `in` and `out`, taking a reference to each; NULL when out
** of memory. */
sk_pipe_end *sk_pipe_end_new(sk_queue *in, sk_queue *out, int duplex) {
  sk_pipe_end *e = calloc(1, sizeof *e);
  if (e == NULL) return NULL;
  sk_obj_init(&e->obj, &end_type);
  e->closed = &e->closed_here;
  e->in = in;
  e->out = out;
  e->duplex = duplex;
  if (in) sk_obj_retain((sk_obj *)in);
  if (out) sk_obj_retain((sk_obj *)out);
  return e;
}

int sk_pipe_end_is(const sk_obj *o) { return o->type == &end_type; }

void sk_pipe_engine_open(void) {
  sk_shm_register_ops(&end_shm);
  sk_shm_register_type(SK_SHM_PIPE_END, &shm_end_type);
}
