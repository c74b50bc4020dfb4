/*
** sk_trace.h — the trace recorder (recorder.c; no Lua): spans, flows,
** counters and instants in the Chrome trace-event JSON format, which
** Perfetto and chrome://tracing open. One pid per process, one tid per
** worker (the OS thread id).
**
** Recording: every thread records into a buffer of its own (fixed-size
** binary events, thread-local, no lock). A buffer is turned into JSON lines
** and written when it fills, when its worker goes idle (the loop is about to
** block, a pool thread about to sleep), when the worker closes and when the
** process exits. Each write is a chunk of whole lines of at most PIPE_BUF
** bytes to a descriptor opened with O_APPEND, so the threads and processes
** of a tree (each opens the file itself) append to one file without a lock
** between them and without interleaving lines, even when the file is a pipe.
** A process killed loses only what its buffers held.
**
** The file: the process that starts a trace (not appending) truncates it
** and writes "[" first; every event line ends with ",". A JSON array without
** its closing bracket is what trace viewers accept; that process also
** closes the array when it exits (atexit), after its workers are gone.
** Worker processes get the file through $SKEIN_TRACE with
** $SKEIN_TRACE_APPEND=1 (sk_trace_child_env), and append.
**
** Off, a hot path pays one predictable branch: `if (SK_TRACING()) ...`.
*/
#ifndef SK_TRACE_H
#define SK_TRACE_H

#include <stdint.h>

/* Nonzero while this process records. Written only by start and stop. */
extern volatile int sk_trace_on;
#define SK_TRACING() __builtin_expect(sk_trace_on != 0, 0)

/* Starts recording to `path` (relative to the current directory): with
** `append` the file is added to (a worker process of a traced tree),
** otherwise it is truncated and begins a new array, closed at exit. A
** running trace ends first. 0, or a negative errno. Any thread. */
int sk_trace_start(const char *path, int append);
/* Stops recording in this process: what this thread holds is written now,
** what other threads hold when they next go idle or end. Any thread. */
void sk_trace_stop(void);
/* Starts the trace $SKEIN_TRACE names, if any (appending when
** $SKEIN_TRACE_APPEND is set); a root then sets both variables for
** whatever it starts. 0, or a negative errno. Called once per process. */
int sk_trace_from_env(void);
/* The absolute path of the running trace into buf (n bytes): 0, or -1
** when none runs. */
int sk_trace_path(char *buf, unsigned n);

/* Names this process and this thread in the trace (metadata events, written
** with the thread's next flush); a copy is kept. Cheap, any time, on or off. */
void sk_trace_process_name(const char *name);
void sk_trace_thread_name(const char *name);
/* This thread's worker goes idle (about to block): writes what its buffer
** holds when `force`, or when it holds much or was last written a while
** ago. Call only when SK_TRACING(). */
void sk_trace_idle(int force);
/* This thread's worker closes: writes its buffer and frees it. */
void sk_trace_thread_end(void);
/* A stable copy of `s` for event names (pools: made once, kept for the
** life of the process). NULL when out of memory. */
const char *sk_trace_intern(const char *s);

/* Now, in nanoseconds of the monotonic clock all processes share. */
uint64_t sk_trace_now(void);
/* A number unique in this process (pool jobs' ids). */
uint64_t sk_trace_next_id(void);
/* The id of the flow of job `n` submitted by process `pid` (0: this one),
** below 2^53. */
uint64_t sk_trace_flow(long pid, uint64_t n);

/* The recorders; call them only when SK_TRACING(). Names are static or
** interned strings: the buffer keeps the pointer. */
/* A task of this worker ran (resumed until it yielded or ended). */
void sk_trace_run(uint64_t task, uint64_t start);
/* Context `task` of this worker waited on `what` from `start` until now. */
void sk_trace_wait(const char *what, uint64_t task, uint64_t start);
/* Job `flow` was submitted to pool `pool` from `start` until now (a span
** with the flow's start in it). */
void sk_trace_submit(const char *pool, uint64_t flow, uint64_t start);
/* Job `flow` of pool `pool` ran on this thread from `start` until now,
** after waiting `queued` ns in the queue (0: unknown); `failed` nonzero
** when it failed. */
void sk_trace_job(const char *pool, uint64_t flow, uint64_t start, uint64_t queued, int failed);
/* A counter of this process: `name` (static or interned) with one or two
** series; `k2` NULL for one. Each worker's own when `per_thread`. */
void sk_trace_counter(const char *name, const char *k1, int64_t v1, const char *k2, int64_t v2,
                      int per_thread);
/* Worker process `pid` started (`exited` 0) or ended with `status` /
** signal `sig`. */
void sk_trace_proc(int exited, long pid, int64_t status, int sig);
/* Something failed with `msg` (copied): `what` is "task failed" (`id`
** the task's) or "job failed" (`id` the job's flow). */
void sk_trace_fail(const char *what, uint64_t id, const char *msg);

#endif
