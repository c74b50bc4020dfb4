/*
** sched.c — ready queue, timer heap and the step that drives them.
**
** Invariant: libuv callbacks registered here never run user code directly
** when the scheduler drives its own loop; they only move work to the ready
** queue. sk_sched_step runs that queue outside uv_run, which is what lets a
** blocking call made from a non-yieldable context drive the loop again
** (uv_run is not re-entrant).
*/
#include "sk_sched.h"
#include "sk_trace.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- heap */

static int timer_less(const sk_timer *a, const sk_timer *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(sk_sched *s, size_t i, sk_timer *t) {
  s->heap[i] = t;
  t->index = (long)i;
}

static void heap_up(sk_sched *s, size_t i) {
  sk_timer *t = s->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!timer_less(t, s->heap[parent])) break;
    heap_set(s, i, s->heap[parent]);
    i = parent;
  }
  heap_set(s, i, t);
}

static void heap_down(sk_sched *s, size_t i) {
  sk_timer *t = s->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const sk_timer *best = t;
    if (l < s->nheap && timer_less(s->heap[l], best)) { m = l; best = s->heap[l]; }
    if (r < s->nheap && timer_less(s->heap[r], best)) m = r;
    if (m == i) break;
    heap_set(s, i, s->heap[m]);
    i = m;
  }
  heap_set(s, i, t);
}

static void heap_remove(sk_sched *s, sk_timer *t) {
  size_t i = (size_t)t->index;
  sk_timer *last = s->heap[--s->nheap];
  t->index = -1;
  if (last == t) return;
  heap_set(s, i, last);
  if (i > 0 && timer_less(last, s->heap[(i - 1) / 2])) heap_up(s, i);
  else heap_down(s, i);
}

/* ------------------------------------------------------- libuv timer */

static void on_uvtimer(uv_timer_t *h);

/* Points the libuv timer at the earliest deadline, or stops it. */
static void update_uvtimer(sk_sched *s) {
  if (s->uvtimer == NULL) return;
  if (s->nheap == 0) {
    uv_timer_stop(s->uvtimer);
    return;
  }
  uint64_t now = uv_hrtime(), due = s->heap[0]->deadline;
  uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
  uv_update_time(s->loop);
  uv_timer_start(s->uvtimer, on_uvtimer, ms, 0);
}

static void on_uvtimer(uv_timer_t *h) {
  sk_sched *s = h->data;
  uint64_t now = uv_hrtime();
  while (s->nheap > 0 && s->heap[0]->deadline <= now) {
    sk_timer *t = s->heap[0];
    heap_remove(s, t);
    t->fire(t);
  }
  update_uvtimer(s);
}

void sk_timer_arm(sk_sched *s, sk_timer *t, uint64_t deadline) {
  if (t->index >= 0) heap_remove(s, t);
  if (s->nheap == s->capheap) {
    size_t cap = s->capheap ? s->capheap * 2 : 64;
    sk_timer **h = realloc(s->heap, cap * sizeof *h);
    if (h == NULL) abort();  /* out of memory: nothing sane to do */
    s->heap = h;
    s->capheap = cap;
  }
  t->deadline = deadline;
  t->seq = s->seq++;
  s->heap[s->nheap] = t;
  t->index = (long)s->nheap++;
  heap_up(s, (size_t)t->index);
  if (s->heap[0] == t) update_uvtimer(s);
}

void sk_timer_disarm(sk_sched *s, sk_timer *t) {
  if (t->index >= 0) heap_remove(s, t);
}

/* --------------------------------------------------------- ready queue */

static void on_idle(uv_idle_t *h) { (void)h; }

void sk_sched_push(sk_sched *s, sk_runnable *r) {
  if (r->queued) return;
  r->queued = 1;
  r->next = NULL;
  if (s->tail) s->tail->next = r;
  else s->head = r;
  s->tail = r;
  if (s->nready++ == 0 && s->idle) uv_idle_start(s->idle, on_idle);
}

size_t sk_sched_run_ready(sk_sched *s) {
  size_t n = s->nready, ran = 0;
  if (n == 0) return 0;
  if (s->batch_hook) s->batch_hook(s->batch_ud, 0);
  while (ran < n && s->head) {
    sk_runnable *r = s->head;
    s->head = r->next;
    if (s->head == NULL) s->tail = NULL;
    s->nready--;
    r->queued = 0;
    r->next = NULL;
    ran++;
    r->run(r);
  }
  if (s->nready == 0 && s->idle) uv_idle_stop(s->idle);
  if (s->batch_hook) s->batch_hook(s->batch_ud, 1);
  return ran;
}

/* Host-loop mode: the host calls uv_run, so tasks run from this check
** callback; in_callback tells blocking calls that they may not pump. */
static void on_check(uv_check_t *h) {
  sk_sched *s = h->data;
  s->in_callback++;
  sk_sched_run_ready(s);
  s->in_callback--;
  update_uvtimer(s);
}

/* ------------------------------------------------------------ lifetime */

static void free_handle(uv_handle_t *h) { free(h); }

/* Closes a handle that was still open when the loop had to close. Its
** memory belongs to whoever opened it, so no close callback frees it. */
static void close_leftover(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int sk_sched_init(sk_sched *s, uv_loop_t *host_loop) {
  int rc;
  *s = (sk_sched){0};
  if (host_loop) {
    s->loop = host_loop;
  } else {
    s->loop = malloc(sizeof *s->loop);
    if (s->loop == NULL) return UV_ENOMEM;
    if ((rc = uv_loop_init(s->loop)) < 0) {
      free(s->loop);
      return rc;
    }
    s->own_loop = 1;
  }
  s->uvtimer = malloc(sizeof *s->uvtimer);
  s->idle = malloc(sizeof *s->idle);
  s->check = host_loop ? malloc(sizeof *s->check) : NULL;
  if (s->uvtimer == NULL || s->idle == NULL || (host_loop && s->check == NULL)) {
    free(s->uvtimer);
    free(s->idle);
    free(s->check);
    if (s->own_loop) {
      uv_loop_close(s->loop);
      free(s->loop);
    }
    *s = (sk_sched){0};
    return UV_ENOMEM;
  }
  uv_timer_init(s->loop, s->uvtimer);
  s->uvtimer->data = s;
  /* Active exactly while the ready queue is not empty, so that a libuv
  ** callback that makes work ready (a timer, I/O) keeps the poll phase of
  ** the same loop iteration from blocking. */
  uv_idle_init(s->loop, s->idle);
  if (host_loop) {
    uv_check_init(s->loop, s->check);
    s->check->data = s;
    uv_check_start(s->check, on_check);
    uv_unref((uv_handle_t *)s->check);
  }
  return 0;
}

int sk_sched_close(sk_sched *s) {
  int rc = 0;
  if (s->uvtimer) uv_close((uv_handle_t *)s->uvtimer, free_handle);
  if (s->idle) uv_close((uv_handle_t *)s->idle, free_handle);
  if (s->check) uv_close((uv_handle_t *)s->check, free_handle);
  s->uvtimer = NULL;
  s->idle = NULL;
  s->check = NULL;
  free(s->heap);
  s->heap = NULL;
  s->nheap = s->capheap = 0;
  if (s->own_loop) {
    /* Requests still in flight (a file-system job whose task left it:
    ** host/fsops.c) own memory their callbacks free: let them finish. */
    while (s->loop->active_reqs.count > 0) uv_run(s->loop, UV_RUN_ONCE);
    /* Close callbacks run in the next turn. A handle someone else left
    ** active must not make this hang: close it and report -1. */
    uv_run(s->loop, UV_RUN_NOWAIT);
    rc = uv_loop_close(s->loop);
    if (rc != 0) {
      uv_walk(s->loop, close_leftover, NULL);
      uv_run(s->loop, UV_RUN_NOWAIT);
      rc = uv_loop_close(s->loop) == 0 ? -1 : rc;
    }
    if (rc == 0 || rc == -1) free(s->loop);
    s->loop = NULL;
  }
  return rc;
}

int sk_sched_alive(const sk_sched *s) {
  return s->nready > 0 || s->nheap > 0 || uv_loop_alive(s->loop);
}

int sk_sched_poll(sk_sched *s, int mode) {
  update_uvtimer(s);  /* first, so a stale timer does not count as alive */
  if (!sk_sched_alive(s)) {
    /* A wake a task of this worker sent another through the worker's own
    ** inbox is delivered by an async handle that does not keep the loop
    ** alive, and uv_run would not run it now: hand such posts over here,
    ** or the wait they end would be taken for a deadlock. */
    return s->flush && s->flush(s->flush_ud) > 0;
  }
  /* Callbacks run inside uv_run, which must not be entered again: code
  ** they run may not block (see sk_wait_begin). */
  s->in_callback++;
  s->turns++;
  /* About to block: the trace gets what this worker recorded. */
  if (SK_TRACING() && s->nready == 0 && mode != SK_STEP_NOWAIT) sk_trace_idle(0);
  uv_run(s->loop, (s->nready > 0 || mode == SK_STEP_NOWAIT) ? UV_RUN_NOWAIT
                                                             : UV_RUN_ONCE);
  s->in_callback--;
  return 1;
}

int sk_sched_step(sk_sched *s, int mode) {
  sk_sched_run_ready(s);
  return sk_sched_poll(s, mode);
}
