/*
** test_sched.c — the scheduler core (runtime/core/sk_sched.h), which has no Lua
** face: the timer heap, the ready queue and its batches, the step function,
** host-loop mode, and closing with nothing left open. Prints TAP.
**
** White-box: the heap checks read sk_sched's fields, so a change of the
** heap's layout means a change here.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/core/sk_sched.h"

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

#include "tap.h"

/* A deterministic generator, so a failure can be replayed. */
static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* ---------------------------------------------------------------- timers */

typedef struct rec_timer {
  sk_timer t;
  int id;
  int fired;
  uint64_t fired_deadline, fired_seq;
} rec_timer;

/* The order timers fire in, across callbacks. */
static rec_timer *fire_log[4096];
static size_t nfire_log;

static void rec_fire(sk_timer *t) {
  rec_timer *r = container_of(t, rec_timer, t);
  r->fired++;
  r->fired_deadline = t->deadline;
  r->fired_seq = t->seq;
  if (nfire_log < sizeof fire_log / sizeof fire_log[0]) fire_log[nfire_log++] = r;
}

static int tless(const sk_timer *a, const sk_timer *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

/* The heap property holds and every armed timer knows its slot. */
static int heap_ok(const sk_sched *s) {
  for (size_t i = 0; i < s->nheap; i++) {
    if (s->heap[i]->index != (long)i) return 0;
    if (i > 0 && tless(s->heap[i], s->heap[(i - 1) / 2])) return 0;
  }
  return 1;
}

static void test_heap_random_ops(void) {
  enum { N = 1000 };
  sk_sched s;
  static rec_timer ts[N];
  int rc = sk_sched_init(&s, NULL);
  ok(rc == 0, "sk_sched_init on an own loop");
  memset(ts, 0, sizeof ts);
  for (int i = 0; i < N; i++) {
    ts[i].t.index = -1;
    ts[i].t.fire = rec_fire;
    ts[i].id = i;
  }
  /* Deadlines far in the future: nothing fires while we shuffle. */
  uint64_t base = uv_hrtime() + (uint64_t)3600 * 1000000000u;
  int good = 1;
  size_t armed = 0;
  for (int op = 0; op < 20000 && good; op++) {
    rec_timer *r = &ts[rnd() % N];
    int was = r->t.index >= 0;
    switch (rnd() % 3) {
      case 0:
      case 1:  /* arm or re-arm; few distinct deadlines so ties happen */
        sk_timer_arm(&s, &r->t, base + (rnd() % 50) * 1000);
        if (!was) armed++;
        break;
      default:
        sk_timer_disarm(&s, &r->t);
        if (was) armed--;
        if (r->t.index != -1) good = 0;
    }
    if (!heap_ok(&s) || s.nheap != armed) good = 0;
  }
  ok(good, "heap property and slot indexes hold over 20000 random arm/re-arm/disarm");
  /* Pop everything in order through the heap's own removal. */
  uint64_t last_d = 0, last_seq = 0;
  int ordered = 1, first = 1;
  size_t popped = 0;
  while (s.nheap > 0) {
    sk_timer *t = s.heap[0];
    if (!first && (t->deadline < last_d || (t->deadline == last_d && t->seq < last_seq))) ordered = 0;
    first = 0;
    last_d = t->deadline;
    last_seq = t->seq;
    sk_timer_disarm(&s, t);
    popped++;
    if (!heap_ok(&s)) ordered = 0;
  }
  ok(ordered && popped == armed, "minimum-first removal yields (deadline, seq) order (%zu timers)", popped);
  sk_timer_disarm(&s, &ts[0].t);
  ok(ts[0].t.index == -1 && s.nheap == 0, "disarming a disarmed timer is a no-op");
  ok(sk_sched_close(&s) == 0, "sk_sched_close: loop closed clean");
}

/* Timers fire through libuv in (deadline, arm order); disarmed ones never
** fire; a re-armed one fires once, at its new deadline. */
static void test_timers_fire_in_order(void) {
  enum { N = 400 };
  sk_sched s;
  static rec_timer ts[N];
  sk_sched_init(&s, NULL);
  memset(ts, 0, sizeof ts);
  nfire_log = 0;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < N; i++) {
    ts[i].t.index = -1;
    ts[i].t.fire = rec_fire;
    ts[i].id = i;
    /* 0..30 ms ahead, in 1 ms buckets so several share a deadline */
    sk_timer_arm(&s, &ts[i].t, now + (rnd() % 31) * 1000000u);
  }
  /* Disarm every 7th, re-arm every 5th (to a new random deadline). */
  int ndisarmed = 0;
  for (int i = 0; i < N; i += 7) {
    sk_timer_disarm(&s, &ts[i].t);
    ndisarmed++;
  }
  for (int i = 0; i < N; i += 5) {
    if (i % 7 == 0) continue;
    sk_timer_arm(&s, &ts[i].t, now + (rnd() % 31) * 1000000u);
  }
  ok(heap_ok(&s), "heap consistent after disarm/re-arm");
  int steps = 0;
  while (sk_sched_step(&s, SK_STEP_WAIT) && steps < 10000) steps++;
  ok(s.nheap == 0, "every armed timer fired (steps: %d)", steps);
  int once = 1, none_disarmed = 1, ordered = 1;
  for (int i = 0; i < N; i++) {
    if (i % 7 == 0) {
      if (ts[i].fired) none_disarmed = 0;
    } else if (ts[i].fired != 1) {
      once = 0;
    }
  }
  for (size_t k = 1; k < nfire_log; k++) {
    const rec_timer *a = fire_log[k - 1], *b = fire_log[k];
    if (a->fired_deadline > b->fired_deadline ||
        (a->fired_deadline == b->fired_deadline && a->fired_seq > b->fired_seq)) {
      ordered = 0;
    }
  }
  ok(once, "each armed timer fired exactly once");
  ok(none_disarmed, "disarmed timers never fired");
  ok(nfire_log == (size_t)(N - ndisarmed), "fire count %zu == %d", nfire_log, N - ndisarmed);
  ok(ordered, "timers fired in (deadline, arm order)");
  ok(sk_sched_step(&s, SK_STEP_WAIT) == 0, "sk_sched_step returns 0 once nothing is alive");
  ok(sk_sched_close(&s) == 0, "sk_sched_close: loop closed clean");
}

/* A timer never fires before its deadline, and a timer re-armed from its own
** fire callback fires again. */
typedef struct rearm_timer {
  sk_timer t;
  sk_sched *s;
  int n;
  uint64_t deadline_seen[3], fired_at[3];
} rearm_timer;

static void rearm_fire(sk_timer *t) {
  rearm_timer *r = container_of(t, rearm_timer, t);
  r->deadline_seen[r->n] = t->deadline;
  r->fired_at[r->n] = uv_hrtime();
  if (++r->n < 3) sk_timer_arm(r->s, t, uv_hrtime() + 2000000u);
}

static void test_rearm_from_fire(void) {
  sk_sched s;
  rearm_timer r = {.t = {.index = -1, .fire = rearm_fire}, .s = &s};
  sk_sched_init(&s, NULL);
  sk_timer_arm(&s, &r.t, uv_hrtime() + 2000000u);
  while (sk_sched_step(&s, SK_STEP_WAIT)) {}
  int never_early = 1;
  for (int i = 0; i < r.n; i++) {
    if (r.fired_at[i] < r.deadline_seen[i]) never_early = 0;
  }
  ok(r.n == 3, "a timer re-armed from its own fire callback fires again (%d times)", r.n);
  ok(never_early, "no timer fired before its deadline");
  ok(sk_sched_close(&s) == 0, "sk_sched_close: loop closed clean");
}

/* A timer armed in the past fires on the next step, not later. */
static void test_past_deadline(void) {
  sk_sched s;
  rec_timer r = {.t = {.index = -1, .fire = rec_fire}};
  sk_sched_init(&s, NULL);
  sk_timer_arm(&s, &r.t, 1);
  uint64_t t0 = uv_hrtime();
  int steps = 0;
  while (!r.fired && sk_sched_step(&s, SK_STEP_WAIT)) steps++;
  ok(r.fired == 1 && uv_hrtime() - t0 < 500000000u,
     "a deadline in the past fires at once (%d steps)", steps);
  ok(sk_sched_close(&s) == 0, "sk_sched_close: loop closed clean");
}

/* ----------------------------------------------------------- ready queue */

typedef struct rec_run {
  sk_runnable r;
  int id;
  int runs;
  int repush;                   /* pushes itself this many more times */
  sk_runnable *push_other;      /* pushed from run(), once */
  sk_sched *s;
} rec_run;

static int run_log[64];
static int nrun_log;

static void rec_runfn(sk_runnable *r) {
  rec_run *x = container_of(r, rec_run, r);
  x->runs++;
  if (nrun_log < 64) run_log[nrun_log++] = x->id;
  if (x->repush > 0) {
    x->repush--;
    sk_sched_push(x->s, r);
  }
  if (x->push_other) {
    sk_sched_push(x->s, x->push_other);
    x->push_other = NULL;
  }
}

static int hook_calls[2];
static void batch_hook(void *ud, int after) {
  (void)ud;
  hook_calls[after ? 1 : 0]++;
}

static int log_is(const int *want, int n) {
  if (nrun_log != n) return 0;
  for (int i = 0; i < n; i++) {
    if (run_log[i] != want[i]) return 0;
  }
  return 1;
}

static void test_ready_queue(void) {
  sk_sched s;
  rec_run a = {.id = 1, .r.run = rec_runfn, .s = &s};
  rec_run b = {.id = 2, .r.run = rec_runfn, .s = &s};
  rec_run c = {.id = 3, .r.run = rec_runfn, .s = &s};
  rec_run d = {.id = 4, .r.run = rec_runfn, .s = &s};
  sk_sched_init(&s, NULL);
  s.batch_hook = batch_hook;

  ok(sk_sched_run_ready(&s) == 0 && hook_calls[0] == 0,
     "an empty queue runs nothing and calls no batch hook");
  nrun_log = 0;
  sk_sched_push(&s, &a.r);
  sk_sched_push(&s, &b.r);
  sk_sched_push(&s, &c.r);
  sk_sched_push(&s, &b.r);  /* already queued: no-op */
  ok(s.nready == 3 && b.r.queued, "pushing a queued runnable again is a no-op");
  size_t ran = sk_sched_run_ready(&s);
  ok(ran == 3 && log_is((int[]){1, 2, 3}, 3), "FIFO: ran %zu in push order", ran);
  ok(hook_calls[0] == 1 && hook_calls[1] == 1, "batch hook called before and after the batch");
  ok(s.nready == 0 && s.head == NULL && s.tail == NULL && !a.r.queued,
     "queue empty and nodes unmarked after the batch");

  /* Work made ready during a batch waits for the next one. */
  nrun_log = 0;
  a.repush = 2;      /* a runs in three consecutive batches */
  b.push_other = &d.r;
  sk_sched_push(&s, &a.r);
  sk_sched_push(&s, &b.r);
  ran = sk_sched_run_ready(&s);
  ok(ran == 2 && log_is((int[]){1, 2}, 2), "batch 1 runs only what was ready when it began");
  ok(s.nready == 2 && s.head == &a.r && s.tail == &d.r, "re-pushed work queued in order for the next batch");
  ran = sk_sched_run_ready(&s);
  ok(ran == 2 && log_is((int[]){1, 2, 1, 4}, 4), "batch 2 runs a then d");
  ran = sk_sched_run_ready(&s);
  ok(ran == 1 && log_is((int[]){1, 2, 1, 4, 1}, 5), "batch 3 runs a alone");
  ok(sk_sched_run_ready(&s) == 0 && s.nready == 0, "then the queue is empty");

  /* sk_sched_step runs one batch and does not block while work is ready. */
  nrun_log = 0;
  a.repush = 1;
  sk_sched_push(&s, &a.r);
  uint64_t t0 = uv_hrtime();
  int alive = sk_sched_step(&s, SK_STEP_WAIT);
  ok(alive == 1 && nrun_log == 1 && s.nready == 1, "a step runs one batch and reports more work");
  alive = sk_sched_step(&s, SK_STEP_WAIT);
  ok(alive == 0 && nrun_log == 2, "the next step runs it and reports nothing alive");
  ok(uv_hrtime() - t0 < 1000000000u, "steps with ready work did not block");
  ok(sk_sched_close(&s) == 0, "sk_sched_close: loop closed clean");
}

/* A step on an idle scheduler returns 0 at once, in both modes. */
static void test_step_idle(void) {
  sk_sched s;
  sk_sched_init(&s, NULL);
  ok(!sk_sched_alive(&s), "a fresh scheduler is not alive");
  ok(sk_sched_step(&s, SK_STEP_WAIT) == 0, "SK_STEP_WAIT on nothing returns 0");
  ok(sk_sched_step(&s, SK_STEP_NOWAIT) == 0, "SK_STEP_NOWAIT on nothing returns 0");
  ok(sk_sched_poll(&s, SK_STEP_WAIT) == 0, "sk_sched_poll on nothing returns 0");
  rec_timer r = {.t = {.index = -1, .fire = rec_fire}};
  sk_timer_arm(&s, &r.t, uv_hrtime() + 5000000000u);
  ok(sk_sched_alive(&s), "an armed timer keeps it alive");
  sk_timer_disarm(&s, &r.t);
  ok(sk_sched_step(&s, SK_STEP_WAIT) == 0 && !r.fired,
     "disarming the only timer makes the next step return 0 without waiting");
  ok(sk_sched_close(&s) == 0, "sk_sched_close: loop closed clean");
}

/* ---------------------------------------------------------- host loop */

typedef struct host_run {
  sk_runnable r;
  sk_sched *s;
  int runs;
  int in_cb_seen;
} host_run;

static void host_runfn(sk_runnable *r) {
  host_run *h = container_of(r, host_run, r);
  h->runs++;
  h->in_cb_seen = h->s->in_callback;
  if (h->runs < 5) sk_sched_push(h->s, r);
}

static void test_host_loop(void) {
  uv_loop_t loop;
  sk_sched s;
  uv_loop_init(&loop);
  ok(sk_sched_init(&s, &loop) == 0 && s.loop == &loop && !s.own_loop,
     "sk_sched_init on a host loop");
  ok(!uv_loop_alive(&loop), "an idle scheduler does not keep the host loop alive");
  host_run h = {.r.run = host_runfn, .s = &s};
  sk_sched_push(&s, &h.r);
  rec_timer r = {.t = {.index = -1, .fire = rec_fire}};
  sk_timer_arm(&s, &r.t, uv_hrtime() + 3000000u);
  uv_run(&loop, UV_RUN_DEFAULT);
  ok(h.runs == 5, "the host's uv_run ran the ready queue from the check handle (%d runs)", h.runs);
  ok(h.in_cb_seen > 0, "in_callback is set while tasks run from the host's loop");
  ok(s.in_callback == 0, "in_callback is back to 0 afterwards");
  ok(r.fired == 1, "the scheduler's timer fired under the host's uv_run");
  ok(sk_sched_close(&s) == 0, "sk_sched_close on a host loop returns 0");
  uv_run(&loop, UV_RUN_DEFAULT);  /* lets the close callbacks free handles */
  ok(uv_loop_close(&loop) == 0, "host uv_loop_close == 0: nothing left open");
}

int main(void) {
  test_heap_random_ops();
  test_timers_fire_in_order();
  test_rearm_from_fire();
  test_past_deadline();
  test_ready_queue();
  test_step_idle();
  test_host_loop();
  return tap_done();
}
