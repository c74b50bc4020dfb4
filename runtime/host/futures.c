/*
** futures.c — the future engine (sk_future.h): creation and the state
** transitions a pool's engine drives, from any thread; and the handle a
** pool's binding pushes.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_future.h"

static lua_Integer next_future_id;

static void future_destroy(sk_obj *o) {
  sk_future *f = (sk_future *)o;
  sk_buf_free(&f->result);
  sk_waitlist_free(&f->waiters);
  uv_mutex_destroy(&f->lock);
  free(f->cmsg);
  free(f);
}

static const sk_objtype future_type = {FUTURE_MT, future_destroy, NULL};

sk_future *sk_future_new(void) {
  sk_future *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  if (uv_mutex_init(&f->lock) != 0) {
    free(f);
    return NULL;
  }
  sk_obj_init(&f->obj, &future_type);
  f->id = __atomic_add_fetch(&next_future_id, 1, __ATOMIC_RELAXED);
  return f;
}

int sk_future_start(sk_future *f) {
  uv_mutex_lock(&f->lock);
  int ok = f->state == SK_FUT_PENDING;
  if (ok) f->state = SK_FUT_RUNNING;
  uv_mutex_unlock(&f->lock);
  return ok;
}

void sk_future_finish(sk_future *f, int state, sk_buf *result, const char *cmsg, const char *kind) {
  uv_mutex_lock(&f->lock);
  if (f->state == SK_FUT_PENDING || f->state == SK_FUT_RUNNING) {
    f->state = state;
    if (result) {
      f->result = *result;
      memset(result, 0, sizeof *result);
    }
    if (cmsg) f->cmsg = strdup(cmsg);
    f->kind = kind;
    sk_waitlist_wake_all(&f->waiters);
  }
  uv_mutex_unlock(&f->lock);
  if (result) sk_buf_free(result);
}

void sk_future_fail_exit(sk_future *f, const char *cmsg, const char *kind, int pid, int64_t status,
                         int sig) {
  uv_mutex_lock(&f->lock);
  if (f->state == SK_FUT_PENDING || f->state == SK_FUT_RUNNING) {
    f->pid = pid;
    f->exit_code = status;
    f->signal = sig;
  }
  uv_mutex_unlock(&f->lock);
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
  if (f->state == SK_FUT_PENDING || f->state == SK_FUT_RUNNING) f->prefix = prefix;
  uv_mutex_unlock(&f->lock);
  sk_future_finish(f, SK_FUT_FAILED, &copy, NULL, NULL);
}

int sk_future_cancel(sk_future *f) {
  uv_mutex_lock(&f->lock);
  int ok = f->state == SK_FUT_PENDING;
  if (ok) {
    f->state = SK_FUT_CANCELLED;
    sk_waitlist_wake_all(&f->waiters);
  }
  uv_mutex_unlock(&f->lock);
  return ok;
}

void sk_future_push(lua_State *L, sk_obj *o) { sk_handle_push(L, o, FUTURE_MT); }
