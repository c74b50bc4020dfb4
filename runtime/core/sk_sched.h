/*
** sk_sched.h — the per-worker scheduler core: a ready queue of runnables, a
** timer heap driven by one libuv timer, and the step function that drives
** both. It knows nothing about Lua; the coroutine engine (lua/task.c) builds
** tasks on top of it.
**
** Ownership: one sk_sched belongs to exactly one OS thread (its worker).
** Nothing here is thread-safe; cross-thread wake-ups arrive through libuv
** async handles owned by the worker.
*/
#ifndef SK_SCHED_H
#define SK_SCHED_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sk_runnable sk_runnable;
typedef struct sk_timer sk_timer;
typedef struct sk_sched sk_sched;

/* A unit of work in the ready queue. The owner embeds it and keeps the
** memory alive while it is queued; `run` is called outside any libuv
** callback, so it may run Lua and may itself drive the scheduler. */
struct sk_runnable {
  sk_runnable *next;
  void (*run)(sk_runnable *r);
  int queued;                   /* 1 while in the ready queue */
};

/* A one-shot timer in the scheduler's heap. The owner embeds it; `index`
** is -1 while disarmed. `fire` runs inside a libuv callback and must not
** call into Lua: it only marks work ready. */
struct sk_timer {
  uint64_t deadline;            /* uv_hrtime() nanoseconds */
  uint64_t seq;                 /* arm order, breaks deadline ties */
  long index;                   /* heap slot, -1 when not armed */
  void (*fire)(sk_timer *t);
};

struct sk_sched {
  uv_loop_t *loop;
  int own_loop;                 /* 1 when the scheduler created `loop` */
  sk_runnable *head, *tail;     /* ready queue, FIFO */
  size_t nready;
  sk_timer **heap;              /* binary min-heap on (deadline, seq) */
  size_t nheap, capheap;
  uint64_t seq;
  uv_timer_t *uvtimer;          /* malloc'd; freed in its close callback */
  uv_idle_t *idle;              /* active while work is ready: no blocking poll */
  uv_check_t *check;            /* host-loop mode: runs the ready queue */
  int in_callback;              /* >0 while a libuv callback of ours runs tasks */
  void (*batch_hook)(void *ud, int after); /* around each non-empty batch */
  void *batch_ud;
  /* Called when the loop has nothing alive, before a wait is taken for
  ** one that nothing can end: hands over what was posted to the worker's
  ** inbox (its async handle does not hold the loop) and lets waits look
  ** again (see the worker's); returns how many wakes it gave, 0 when
  ** nothing could come. NULL: none. */
  size_t (*flush)(void *ud);
  void *flush_ud;
  uint64_t turns;               /* loop turns sk_sched_poll has run */
};

/* Step modes for sk_sched_step. */
enum { SK_STEP_WAIT = 0, SK_STEP_NOWAIT = 1 };

/* Initialises `s` on `host_loop`, or on a loop of its own when NULL. In
** host-loop mode the scheduler runs its ready queue from a check handle, so
** a host that calls uv_run itself still runs skein's tasks. Returns 0 or a
** negative libuv error code, in which case nothing needs closing. */
int sk_sched_init(sk_sched *s, uv_loop_t *host_loop);

/* Closes every handle the scheduler owns, lets their close callbacks run,
** and closes the loop when it is the scheduler's own. Returns 0 when nothing
** was left open (or for a host loop); -1 when handles someone else left open
** had to be closed first (never a hang); a libuv error if even that failed. */
int sk_sched_close(sk_sched *s);

/* Appends `r` to the ready queue unless it is already queued. */
void sk_sched_push(sk_sched *s, sk_runnable *r);

/* Runs the runnables that were ready when the call began (those made ready
** while it runs wait for the next batch). Returns how many ran. */
size_t sk_sched_run_ready(sk_sched *s);

/* Arms `t` to fire at `deadline` (uv_hrtime nanoseconds); re-arms it when
** it is armed already. */
void sk_timer_arm(sk_sched *s, sk_timer *t, uint64_t deadline);

/* Disarms `t`; a no-op when it is not armed. */
void sk_timer_disarm(sk_sched *s, sk_timer *t);

/* One turn of the worker: runs a batch of ready work, then polls libuv
** (without blocking when work is ready or `mode` is SK_STEP_NOWAIT).
** Returns 1 when something may still happen, 0 when nothing can: the
** ready queue and timer heap are empty and the loop has no live handle.
** Must not be called from inside a libuv callback. */
int sk_sched_step(sk_sched *s, int mode);

/* The second half of a step: polls libuv (without blocking when work is
** ready or `mode` is SK_STEP_NOWAIT). A caller waiting for a condition runs
** the ready queue, checks the condition, and only then polls, so that it
** never blocks on I/O after the work it waited for has finished. Returns 0
** when nothing can happen any more. */
int sk_sched_poll(sk_sched *s, int mode);

/* 1 when the ready queue or the timer heap holds anything, or the loop has
** live handles or requests. */
int sk_sched_alive(const sk_sched *s);

#endif
