/*
** futures.c — the future engine (sk_future.h): creation and the state
** transitions a pool's engine drives, from any thread; a future's move into
** the shared segment and the views other processes have of it; and the
** handle a pool's binding pushes.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sk_blob.h"
#include "sk_future.h"
#include "sk_proc.h"
#include "sk_shmtypes.h"
#include "sk_xwait.h"

static lua_Integer next_future_id;

/* A future in the shared segment. `w`'s lock guards every field below it;
** the blobs are immutable and each is held by the future. */
typedef struct sk_fut_shared {
  sk_shm_obj obj;
  sk_xw w;
  int32_t state;
  uint32_t owner, owner_gen;    /* the process whose engine finishes it */
  int32_t pid, signal;
  int64_t exit_code;
  int64_t id;
  sk_off result;                /* a blob: the outcome's bytes; 0: none */
  sk_off cmsg;                  /* a blob: the engine's message, with its NUL */
  char kind[24], prefix[64];
  int32_t face;                 /* SK_FACE_*: what views of it are (set once) */
  int32_t wpid;                 /* a worker process's pid (a process handle) */
  char label[48];               /* a worker's name ("": none) */
} sk_fut_shared;

#define SEG(f) __atomic_load_n(&(f)->seg, __ATOMIC_ACQUIRE)

static int unfinished(int state) { return state == SK_FUT_PENDING || state == SK_FUT_RUNNING; }

static void future_destroy(sk_obj *o) {
  sk_future *f = (sk_future *)o;
  if (f->seg) {
    sk_shm_view_forget(&f->seg->obj, o);
    sk_shm_obj_unhold(&f->seg->obj);
  }
  if (f->result.data == f->small) f->result.data = NULL;   /* not an allocation */
  sk_buf_free(&f->result);
  sk_waitlist_free(&f->waiters);
  uv_mutex_destroy(&f->lock);
  free(f->cmsg);
  free(f->label);
  free(f);
}

static sk_shm_obj *future_share(sk_obj *o);
static sk_shm_obj *future_shared(sk_obj *o) { return (sk_shm_obj *)SEG((sk_future *)o); }
static sk_obj *future_view(sk_shm_obj *so);

/* One object type per face, so that a view decodes as what was sent (a
** thread handle as a skein.Thread); all are sk_futures underneath. */
static const sk_shm_ops future_shm = {SK_SHM_FUTURE, future_share, future_shared, future_view};
static const sk_objtype face_types[3] = {
    {FUTURE_MT, future_destroy, &future_shm},
    {"skein.Thread", future_destroy, &future_shm},
    {"skein.Process", future_destroy, &future_shm}};

static sk_future *future_alloc(int face) {
  sk_future *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  if (uv_mutex_init(&f->lock) != 0) {
    free(f);
    return NULL;
  }
  sk_obj_init(&f->obj, &face_types[face]);
  f->face = face;
  return f;
}

sk_future *sk_future_new(void) {
  sk_future *f = future_alloc(SK_FACE_FUTURE);
  if (f) f->id = __atomic_add_fetch(&next_future_id, 1, __ATOMIC_RELAXED);
  return f;
}

sk_future *sk_future_new_face(int face, lua_Integer id, int wpid, const char *label) {
  sk_future *f = future_alloc(face);
  if (f == NULL) return NULL;
  f->id = id;
  f->wpid = wpid;
  if (label && (f->label = strdup(label)) == NULL) {
    sk_obj_release(&f->obj);
    return NULL;
  }
  return f;
}

int sk_future_is(const sk_obj *o) {
  return o->type == &face_types[0] || o->type == &face_types[1] || o->type == &face_types[2];
}

sk_shm_obj *sk_future_share(sk_future *f) { return future_share(&f->obj); }
sk_shm_obj *sk_future_shared(sk_future *f) { return future_shared(&f->obj); }
sk_obj *sk_future_view_of(sk_shm_obj *so) { return future_view(so); }

/* ------------------------------------------------- the segment's side */

static void copy_text(char *dst, size_t cap, const char *src) {
  if (src == NULL) {
    dst[0] = '\0';
    return;
  }
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Copies a marshalled buffer (its bytes, and a reference to each object it
** mentions) into *out; -1 (nothing held) when out of memory. */
static int buf_copy(const sk_buf *r, sk_buf *out) {
  memset(out, 0, sizeof *out);
  out->data = malloc(r->len ? r->len : 1);
  out->objs = r->nobjs ? malloc(r->nobjs * sizeof *out->objs) : NULL;
  if (out->data == NULL || (r->nobjs && out->objs == NULL)) {
    free(out->data);
    free(out->objs);
    memset(out, 0, sizeof *out);
    return -1;
  }
  memcpy(out->data, r->data, r->len);
  out->len = out->cap = r->len;
  for (size_t i = 0; i < r->nobjs; i++) sk_obj_retain(out->objs[i] = r->objs[i]);
  out->nobjs = out->capobjs = r->nobjs;
  return 0;
}

/* A blob with a copy of a finished future's result (its bytes and the
** objects they mention); NULL for none or when out of memory. */
static sk_blob *result_blob(const sk_buf *r) {
  sk_buf copy;
  if (r->data == NULL || buf_copy(r, &copy) != 0) return NULL;
  return sk_blob_from_buf(&copy);
}

static sk_blob *text_blob(const char *s) { return s ? sk_blob_bytes(s, strlen(s) + 1) : NULL; }

/* Writes a finished local future's outcome into the segment, unless the
** segment's state already finished (a cancel from another process). Runs
** with no lock held: the local outcome no longer changes. */
static void publish(sk_future *f, sk_fut_shared *s) {
  sk_blob *res = result_blob(&f->result), *msg = text_blob(f->cmsg);
  sk_xw_lock(&s->w);
  if (unfinished(s->state)) {
    s->state = f->state;
    s->pid = f->pid;
    s->signal = f->signal;
    s->exit_code = f->exit_code;
    copy_text(s->kind, sizeof s->kind, f->kind);
    copy_text(s->prefix, sizeof s->prefix, f->prefix);
    s->result = sk_shm_off(res);
    s->cmsg = sk_shm_off(msg);
    res = msg = NULL;
    if (f->state == SK_FUT_DONE && f->result.data && s->result == 0) {
      s->state = SK_FUT_FAILED;   /* its results could not be copied */
      copy_text(s->kind, sizeof s->kind, "memory");
    }
    sk_xw_wake_all(&s->w);
  }
  sk_xw_unlock(&s->w);
  sk_blob_release(res);
  sk_blob_release(msg);
}

/* A process of the tree ended: drop its waiters; a future whose owner it
** was can never finish, so it fails (its waiters are woken). */
static void seg_gone(sk_shm_obj *o) {
  sk_fut_shared *s = (sk_fut_shared *)o;
  sk_xw_lock(&s->w);
  sk_xw_purge(&s->w);
  if (unfinished(s->state) && s->owner != UINT32_MAX &&
      !sk_shm_proc_live(s->owner, s->owner_gen)) {
    s->state = SK_FUT_FAILED;
    copy_text(s->kind, sizeof s->kind, "worker_died");
    s->cmsg = sk_shm_off(text_blob("the process that owned this future ended before it finished"));
    sk_xw_wake_all(&s->w);
  }
  sk_xw_unlock(&s->w);
}

static void seg_free(sk_shm_obj *o) {
  sk_fut_shared *s = (sk_fut_shared *)o;
  sk_xw_free(&s->w);
  sk_blob_release(sk_shm_ptr(s->result));
  sk_blob_release(sk_shm_ptr(s->cmsg));
}

static const sk_shm_type seg_type = {seg_gone, seg_free};

/* Moves `o` into the segment (once; moves are serialised by the move lock).
** A finished future takes a copy of its outcome along; an unfinished one
** is finished there later by publish(). Local waiters are woken so that
** they wait on the segment from now on. */
static sk_shm_obj *future_share(sk_obj *o) {
  sk_future *f = (sk_future *)o;
  sk_fut_shared *s = SEG(f);
  if (s || sk_shm_base(1) == NULL) return (sk_shm_obj *)s;
  sk_shm_move_lock();
  s = SEG(f);
  if (s) {
    sk_shm_move_unlock();
    return &s->obj;
  }
  s = sk_shm_alloc_zeroed(sizeof *s);
  if (s == NULL || sk_shm_obj_link(&s->obj, SK_SHM_FUTURE) != 0) {
    sk_shm_free(s);
    sk_shm_move_unlock();
    return NULL;
  }
  sk_xw_init(&s->w);
  s->owner = (uint32_t)sk_shm_self();
  s->owner_gen = sk_shm_self_gen();
  s->id = f->id;
  s->face = f->face;
  s->wpid = f->wpid;
  copy_text(s->label, sizeof s->label, f->label);
  s->state = SK_FUT_PENDING;
  uv_mutex_lock(&f->lock);
  int state = f->state;
  /* A finished one is RUNNING until publish() writes its outcome, so that
  ** no cancel slips in between. */
  s->state = unfinished(state) ? state : SK_FUT_RUNNING;
  __atomic_store_n(&f->seg, s, __ATOMIC_RELEASE);   /* the link's hold is the future's */
  sk_waitlist_wake_all(&f->waiters);
  uv_mutex_unlock(&f->lock);
  if (!unfinished(state)) publish(f, s);
  sk_shm_view_remember(&s->obj, o);
  if (sk_obj_register(o) == 0) sk_shm_export((int)getpid(), o->slot, o->gen, &s->obj);
  sk_shm_move_unlock();
  return &s->obj;
}

static sk_obj *make_view(sk_shm_obj *so) {
  sk_fut_shared *s = (sk_fut_shared *)so;
  int face = s->face >= SK_FACE_FUTURE && s->face <= SK_FACE_PROCESS ? s->face : SK_FACE_FUTURE;
  sk_future *f = future_alloc(face);
  if (f == NULL) return NULL;
  if (s->label[0] && (f->label = strndup(s->label, sizeof s->label)) == NULL) {
    sk_obj_release(&f->obj);
    return NULL;
  }
  sk_shm_obj_hold(so);
  f->remote = 1;
  f->id = s->id;
  f->wpid = s->wpid;
  f->seg = s;
  return &f->obj;
}

static sk_obj *future_view(sk_shm_obj *so) { return sk_shm_view_get(so, make_view); }

void sk_future_attach(void) {
  sk_shm_register_ops(&future_shm);
  sk_shm_register_type(SK_SHM_FUTURE, &seg_type);
}

/* ----------------------------------------------------- transitions */

int sk_future_start(sk_future *f) {
  uv_mutex_lock(&f->lock);
  sk_fut_shared *s = f->seg;
  int ok = f->state == SK_FUT_PENDING;
  if (ok && s) {
    /* Another process may have cancelled it. */
    sk_xw_lock(&s->w);
    ok = s->state == SK_FUT_PENDING;
    if (ok) s->state = SK_FUT_RUNNING;
    sk_xw_unlock(&s->w);
    if (!ok) f->state = SK_FUT_CANCELLED;
  }
  if (ok) f->state = SK_FUT_RUNNING;
  uv_mutex_unlock(&f->lock);
  return ok;
}

/* The transition: the outcome is `moved` (taken over) or, when `small`,
** a copy of its `len` bytes into the future (at most SK_FUT_SMALL, no
** objects), or neither; `cmsg` is copied. A future that already finished
** is left as it is (and `moved` with its owner). */
static void finish(sk_future *f, int state, sk_buf *moved, const char *small, size_t len,
                   const char *cmsg, const char *kind) {
  uv_mutex_lock(&f->lock);
  sk_fut_shared *s = NULL;
  if (unfinished(f->state)) {
    f->state = state;
    if (moved) {
      f->result = *moved;
      memset(moved, 0, sizeof *moved);
    } else if (small) {
      memcpy(f->small, small, len);
      f->result = (sk_buf){f->small, len, 0, NULL, 0, 0};
    }
    if (cmsg) f->cmsg = strdup(cmsg);
    f->kind = kind;
    sk_waitlist_wake_all(&f->waiters);
    s = f->seg;
  }
  uv_mutex_unlock(&f->lock);
  if (s) publish(f, s);
}

void sk_future_finish(sk_future *f, int state, sk_buf *result, const char *cmsg, const char *kind) {
  finish(f, state, result, NULL, 0, cmsg, kind);
  if (result) sk_buf_free(result);
}

/* Records how the worker process running it ended, unless it finished. */
static void set_exit(sk_future *f, int pid, int64_t status, int sig) {
  uv_mutex_lock(&f->lock);
  if (unfinished(f->state)) {
    f->pid = pid;
    f->exit_code = status;
    f->signal = sig;
  }
  uv_mutex_unlock(&f->lock);
}

void sk_future_fail_exit(sk_future *f, const char *cmsg, const char *kind, int pid, int64_t status,
                         int sig) {
  set_exit(f, pid, status, sig);
  sk_future_finish(f, SK_FUT_FAILED, NULL, cmsg, kind);
}

void sk_future_fail_remote(sk_future *f, const sk_buf *failure, const char *prefix) {
  sk_buf copy = {0};
  copy.data = malloc(failure->len ? failure->len : 1);
  if (copy.data == NULL) {
    sk_future_finish(f, SK_FUT_FAILED, NULL, prefix, NULL);
    return;
  }
  memcpy(copy.data, failure->data, failure->len);
  copy.len = copy.cap = failure->len;
  uv_mutex_lock(&f->lock);
  if (unfinished(f->state)) f->prefix = prefix;
  uv_mutex_unlock(&f->lock);
  sk_future_finish(f, SK_FUT_FAILED, &copy, NULL, NULL);
}

void sk_future_finish_copy(sk_future *f, int failed, const sk_buf *result, const char *cmsg,
                           const char *kind, int pid, int64_t status, int sig) {
  int state = failed ? SK_FUT_FAILED : SK_FUT_DONE;
  if (result && cmsg == NULL && sk_future_fits(result)) {
    /* It fits in the future itself: copied there under its lock. */
    if (pid) set_exit(f, pid, status, sig);
    finish(f, state, NULL, result->data, result->len, NULL, kind);
    return;
  }
  sk_buf copy = {0};
  if (result && result->data && cmsg == NULL && buf_copy(result, &copy) != 0) {
    sk_future_finish(f, SK_FUT_FAILED, NULL, "out of memory", "memory");
    return;
  }
  if (pid) set_exit(f, pid, status, sig);
  sk_future_finish(f, state, copy.data ? &copy : NULL, cmsg, kind);
}

int sk_future_cancel(sk_future *f) {
  sk_fut_shared *s = NULL;
  int ok = 0;
  if (!f->remote) {
    uv_mutex_lock(&f->lock);
    s = f->seg;
    ok = f->state == SK_FUT_PENDING;
    if (ok && s == NULL) {
      f->state = SK_FUT_CANCELLED;
      sk_waitlist_wake_all(&f->waiters);
    }
    uv_mutex_unlock(&f->lock);
    if (s == NULL || !ok) return ok;
  }
  /* In the segment, the segment decides; the owner's engine finds it
  ** cancelled when it would start it (sk_future_start). */
  s = SEG(f);
  sk_xw_lock(&s->w);
  ok = s->state == SK_FUT_PENDING;
  if (ok) {
    s->state = SK_FUT_CANCELLED;
    sk_xw_wake_all(&s->w);
  }
  sk_xw_unlock(&s->w);
  return ok;
}

/* ------------------------------------------------------------ reading */

int sk_future_state(sk_future *f) {
  sk_fut_shared *s = SEG(f);
  int state;
  if (s) {
    sk_xw_lock(&s->w);
    state = s->state;
    sk_xw_unlock(&s->w);
  } else {
    uv_mutex_lock(&f->lock);
    state = f->state;
    uv_mutex_unlock(&f->lock);
    /* It may have moved meanwhile; then the segment says. */
    if ((s = SEG(f)) != NULL) return sk_future_state(f);
  }
  return state;
}

void sk_future_read(sk_future *f, sk_future_outcome *o) {
  memset(o, 0, sizeof *o);
  sk_fut_shared *s = SEG(f);
  if (s == NULL) {
    uv_mutex_lock(&f->lock);
    s = f->seg;
    if (s == NULL) {
      /* A finished local outcome never changes, so it is read unlocked. */
      o->state = f->state;
      o->data = f->result.data;
      o->len = f->result.len;
      o->cmsg = f->cmsg;
      o->kind = f->kind;
      o->prefix = f->prefix;
      o->pid = f->pid;
      o->signal = f->signal;
      o->exit_code = f->exit_code;
    }
    uv_mutex_unlock(&f->lock);
    if (s == NULL) return;
  }
  sk_xw_lock(&s->w);
  o->state = s->state;
  if (!unfinished(s->state)) {
    o->blob = sk_shm_ptr(s->result);
    o->cblob = sk_shm_ptr(s->cmsg);
    if (o->blob) sk_blob_retain(o->blob);
    if (o->cblob) sk_blob_retain(o->cblob);
    memcpy(o->kbuf, s->kind, sizeof o->kbuf);
    memcpy(o->pbuf, s->prefix, sizeof o->pbuf);
    o->pid = s->pid;
    o->signal = s->signal;
    o->exit_code = s->exit_code;
  }
  sk_xw_unlock(&s->w);
  if (o->blob) {
    o->data = sk_blob_data(o->blob);
    o->len = o->blob->len;
  }
  if (o->cblob) o->cmsg = sk_blob_data(o->cblob);
  o->kind = o->kbuf[0] ? o->kbuf : NULL;
  o->prefix = o->pbuf[0] ? o->pbuf : NULL;
}

void sk_future_read_done(sk_future_outcome *o) {
  sk_blob_release(o->blob);
  sk_blob_release(o->cblob);
  o->blob = o->cblob = NULL;
}

/* ---------------------------------------------------------- waiting */

static int seg_ready(void *obj) { return !unfinished(((sk_fut_shared *)obj)->state); }

/* Under the local lock: finished, or moved (the waiter goes to the
** segment's list instead). */
static int local_ready(void *obj) {
  sk_future *f = obj;
  return !unfinished(f->state) || f->seg != NULL;
}

int sk_future_link(sk_future *f, sk_ctx *c) {
  sk_fut_shared *s = SEG(f);
  if (s == NULL) {
    int rc = sk_link_shared(c, &f->lock, &f->waiters, local_ready, f);
    if (rc != 1 || (s = SEG(f)) == NULL) return rc;
  }
  return sk_xw_link(c, &s->w, seg_ready, s);
}

int sk_future_unlink(sk_future *f, sk_ctx *c) {
  uv_mutex_lock(&f->lock);
  size_t removed = sk_waitlist_remove(&f->waiters, c->w->port, c->wslot);
  sk_fut_shared *s = f->seg;
  uv_mutex_unlock(&f->lock);
  if (s) {
    sk_xw_lock(&s->w);
    removed += (size_t)sk_xw_remove(&s->w, c->w->port, c->wslot);
    sk_xw_unlock(&s->w);
  }
  return removed == 0;
}

int sk_future_add_waiter(sk_future *f, const sk_waiter *w) {
  uv_mutex_lock(&f->lock);
  sk_fut_shared *s = f->seg;
  int rc = 0;
  if (s == NULL) rc = !unfinished(f->state) ? 1 : sk_waitlist_add(&f->waiters, w);
  uv_mutex_unlock(&f->lock);
  if (s == NULL) return rc;
  sk_xw_lock(&s->w);
  rc = seg_ready(s) ? 1 : sk_xw_add(&s->w, w);
  sk_xw_unlock(&s->w);
  return rc;
}

void sk_future_remove_waiter(sk_future *f, sk_port *port, uint32_t slot) {
  uv_mutex_lock(&f->lock);
  sk_waitlist_remove(&f->waiters, port, slot);
  sk_fut_shared *s = f->seg;
  uv_mutex_unlock(&f->lock);
  if (s) {
    sk_xw_lock(&s->w);
    sk_xw_remove(&s->w, port, slot);
    sk_xw_unlock(&s->w);
  }
}

void sk_future_push(lua_State *L, sk_obj *o) { sk_handle_push(L, o, FUTURE_MT); }

/* ---------------------------------------------- a worker's anchor */

/* Pushes a finished worker's results, or raises its failure as its own
** handle's join would; `o` is released before anything is raised. */
static int push_worker_end(lua_State *L, sk_future *f, sk_future_outcome *o) {
  char what[64];
  snprintf(what, sizeof what, "%s %lld", f->face == SK_FACE_PROCESS ? "process" : "thread",
           (long long)f->id);
  if (o->state == SK_FUT_DONE) {
    int n = o->data ? sk_marshal_decode(L, o->data, o->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS) : 0;
    sk_future_read_done(o);
    return n < 0 ? lua_error(L) : n;
  }
  if (o->kind && strcmp(o->kind, "worker_died") == 0 && o->pid) {
    sk_push_worker_died(L, o->pid, o->exit_code, o->signal, what,
                        o->cmsg && o->cmsg[0] ? o->cmsg : NULL);
  } else if (o->cmsg || o->data == NULL) {
    sk_error_push(L, o->kind ? o->kind : "remote", "%s: %s", what, o->cmsg ? o->cmsg : "failed");
  } else {
    sk_buf b = {0};
    b.data = (char *)o->data;
    b.len = o->len;
    sk_push_remote_failure(L, &b, what);
  }
  sk_future_read_done(o);
  return lua_error(L);
}

static int worker_join_attempt(lua_State *L, void *obj, int round, int expired) {
  sk_future *f = obj;
  (void)round;
  sk_future_outcome o;
  sk_future_read(f, &o);
  if (o.state >= SK_FUT_DONE) return push_worker_end(L, f, &o);
  sk_future_read_done(&o);
  if (expired) {
    return sk_error_raise(L, "timeout", "join of %s %I timed out",
                          f->face == SK_FACE_PROCESS ? "process" : "thread", (LUAI_UACINT)f->id);
  }
  return SK_WAIT_MORE;
}

static int worker_join_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  return sk_future_link(obj, c);
}

static int worker_join_unlink(void *obj, sk_ctx *c) { return sk_future_unlink(obj, c); }

int sk_worker_end_try(lua_State *L, sk_obj *o) {
  sk_future *f = (sk_future *)o;
  sk_future_outcome out;
  sk_future_read(f, &out);
  if (out.state < SK_FUT_DONE) {
    sk_future_read_done(&out);
    return 0;
  }
  int n = push_worker_end(L, f, &out);
  if (n == 0) lua_pushnil(L);
  return n ? n : 1;
}

const sk_source sk_worker_join_source = {
    .name = "skein.Worker", .what = "worker join",
    .attempt = worker_join_attempt, .link = worker_join_link, .unlink = worker_join_unlink};
