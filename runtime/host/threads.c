/*
** threads.c — thread workers (sk_thread.h): skein.thread(fn, ...) runs fn
** in a new OS thread with its own worker (Lua state, loop, scheduler), so
** it can spawn tasks, threads and pools of its own. Its Lua face is
** lua/thread.c.
**
** The function and its arguments were marshalled in the caller (a value
** that cannot cross fails there, naming its path); results and errors go
** back the same way. A thread is a shared object: its handle can itself be
** sent to other workers, and any of them may join it. Its lifetime is told
** in sk_thread.h.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sk_shm.h"
#include "sk_future.h"
#include "sk_shmtypes.h"
#include "sk_task.h"
#include "sk_thread.h"

static lua_Integer next_worker_id;

static void thread_destroy(sk_obj *o) {
  sk_thread *th = (sk_thread *)o;
  sk_buf_free(&th->code);
  sk_buf_free(&th->init);
  sk_buf_free(&th->result);
  sk_waitlist_free(&th->waiters);
  uv_mutex_destroy(&th->lock);
  sk_worker_unlend(th->lent);
  free(th->cmsg);
  free(th->name);
  if (th->anchor) sk_obj_release(&th->anchor->obj);
  free(th);
}

/* Finishes the anchor with the thread's outcome (any thread). */
static void finish_anchor(sk_thread *th, sk_future *a) {
  if (th->cmsg) {
    char msg[256];
    snprintf(msg, sizeof msg, "thread %lld could not start: %s", (long long)th->id, th->cmsg);
    sk_future_finish_copy(a, 1, NULL, msg, "remote", 0, 0, 0);
  } else {
    sk_future_finish_copy(a, th->failed, &th->result, NULL, NULL, 0, 0, 0);
  }
}

/* A handle bound for another process goes as the thread's anchor: a
** future finished with the thread's outcome, which moves to the segment;
** the view there is a skein.Thread whose join waits on it (sk_future.h). */
static sk_shm_obj *thread_share(sk_obj *o) {
  sk_thread *th = (sk_thread *)o;
  uv_mutex_lock(&th->lock);
  sk_future *a = th->anchor;
  int fresh = a == NULL;
  if (fresh) a = th->anchor = sk_future_new_face(SK_FACE_THREAD, th->id, 0, th->name);
  int done = th->done;
  uv_mutex_unlock(&th->lock);
  if (a == NULL) return NULL;
  /* The outcome, when in, never changes: it is copied unlocked. */
  if (fresh && done) finish_anchor(th, a);
  return sk_future_share(a);
}

static sk_shm_obj *thread_shared(sk_obj *o) {
  sk_thread *th = (sk_thread *)o;
  uv_mutex_lock(&th->lock);
  sk_future *a = th->anchor;
  uv_mutex_unlock(&th->lock);
  return a ? sk_future_shared(a) : NULL;
}

/* Views are made by the future's type (its registered ops), never here. */
static const sk_shm_ops thread_shm = {SK_SHM_FUTURE, thread_share, thread_shared, sk_future_view_of};
static const sk_objtype thread_type = {SK_THREAD_MT, thread_destroy, &thread_shm};

int sk_thread_is(const sk_obj *o) { return o->type == &thread_type; }

/* -------------------------------------------------- the thread's side */

static void reap(void *arg);
static void reap_orphan(void *arg);

static void thread_main(void *arg) {
  sk_thread *th = arg;
  const char *err = NULL;
  sk_buf out = {0};
  int failed = 0;
  char *cmsg = NULL;
  sk_worker *w = sk_worker_become(SK_WORKER_THREAD, th->id, th->name ? strdup(th->name) : NULL,
                                  th->lent, &err);
  if (w == NULL) {
    failed = 1;
    cmsg = strdup(err);
  } else {
    const char *kind = NULL;
    int rc = -1;
    if (err == NULL) {
      /* The init option runs first (it may register metatables the
      ** arguments need); when it fails, its failure is the outcome. */
      rc = th->init.len ? sk_run_call(w, th->init.data, th->init.len, &out, &kind) : 0;
      if (rc == 0) {
        sk_buf_free(&out);
        rc = sk_run_call(w, th->code.data, th->code.len, &out, &kind);
      }
    }
    sk_buf_free(&th->init);
    sk_buf_free(&th->code);
    if (rc < 0) {
      const char *msg = lua_tostring(w->L, -1);
      cmsg = strdup(msg ? msg : "the thread failed to start");
    }
    failed = rc != 0;
    sk_task_report_failures(w);
    if (sk_worker_close(w) != 0 && !failed) {
      fprintf(stderr, "skein: thread %lld closed with handles still open\n", (long long)th->id);
    }
  }
  uv_mutex_lock(&th->lock);
  th->done = 1;
  th->failed = failed;
  th->result = out;
  th->cmsg = cmsg;
  sk_waitlist_wake_all(&th->waiters);
  sk_future *anchor = th->anchor;
  uv_mutex_unlock(&th->lock);
  if (anchor) finish_anchor(th, anchor);
  sk_port_call(th->parent, reap, reap_orphan, th);
  sk_worker_count(-1);
}

/* On the parent's thread, after the thread posted its end. */
static void reap(void *arg) {
  sk_thread *th = arg;
  uv_thread_join(&th->tid);
  if (!th->daemon) th->pw->live--;
  sk_port_hold(th->parent, -1);
  sk_port_release(th->parent);
  sk_obj_release(&th->obj);
}

/* On the thread itself, when its parent has already closed. */
static void reap_orphan(void *arg) {
  sk_thread *th = arg;
  pthread_detach(pthread_self());
  sk_port_release(th->parent);
  sk_obj_release(&th->obj);
}

/* ------------------------------------------------- the parent's side */

sk_thread *sk_thread_new(sk_worker *w, sk_buf *init, sk_buf *code, char *name, int daemon,
                         void *lent) {
  sk_thread *th = calloc(1, sizeof *th);
  if (th == NULL || uv_mutex_init(&th->lock) != 0) {
    sk_buf_free(init);
    sk_buf_free(code);
    sk_worker_unlend(lent);
    free(name);
    free(th);
    return NULL;
  }
  sk_obj_init(&th->obj, &thread_type);
  th->init = *init;
  th->code = *code;
  *init = *code = (sk_buf){0};
  th->id = __atomic_add_fetch(&next_worker_id, 1, __ATOMIC_RELAXED);
  th->name = name;
  th->daemon = daemon;
  th->parent = w->port;
  sk_port_retain(w->port);
  th->pw = w;
  th->lent = lent;
  return th;
}

int sk_thread_launch(sk_thread *th) {
  sk_worker *w = th->pw;
  sk_obj_retain(&th->obj);                      /* the running thread's ref */
  if (!th->daemon) w->live++;
  sk_port_hold(w->port, 1);
  sk_worker_count(1);
  if (sk_thread_start(&th->tid, thread_main, th) != 0) {
    sk_worker_count(-1);
    if (!th->daemon) w->live--;
    sk_port_hold(w->port, -1);
    sk_port_release(th->parent);
    sk_obj_release(&th->obj);
    return -1;
  }
  return 0;
}
