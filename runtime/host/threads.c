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
  free(th);
}

static const sk_objtype thread_type = {SK_THREAD_MT, thread_destroy, NULL};

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
  uv_mutex_unlock(&th->lock);
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
