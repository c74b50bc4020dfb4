/*
** sk_signal.h — watching POSIX signals on a worker's loop (sigwatch.c; no
** Lua), and signal names.
**
** A watch is a uv_signal_t: libuv's process-wide handler writes each
** delivery to every loop that watches the signal, so any worker (the main
** one, a thread, a worker process) may watch, and every watch of a signal
** sees each delivery. The watch's callback counts the delivery, wakes the
** waiters (sk_iowait) and calls `notify`, which only makes work ready.
**
** Dispositions: libuv installs its own handler when the first watch of a
** signal starts and puts back SIG_DFL when the last one stops. That would
** take Ctrl-C away from the skein command (its SIGINT handler) for good,
** and turn an ignored SIGPIPE fatal. So the engine keeps a process-wide
** count of its watches per signal: the first saves the disposition in
** force, and once the last has stopped, if libuv left SIG_DFL (no other
** libuv watcher, a host's, still holds the signal), the saved one comes
** back. SIGCHLD (libuv's own, to reap children), SIGKILL and SIGSTOP
** (cannot be caught) and the signals of faults (SIGSEGV, SIGBUS, SIGFPE,
** SIGILL, SIGABRT, SIGTRAP, SIGSYS) cannot be watched.
**
** Ownership: sk_sigwatch_start's caller owns the watch until
** sk_sigwatch_close, which wakes its waiters and closes the handle; the
** memory goes in the close callback.
**
** Threading: a watch belongs to the thread of its loop; the counts behind
** the dispositions are under a process-wide mutex.
*/
#ifndef SK_SIGNAL_H
#define SK_SIGNAL_H

#include <stdint.h>
#include <uv.h>

#include "sk_io.h"

typedef struct sk_sigwatch sk_sigwatch;
struct sk_sigwatch {
  uv_signal_t h;                /* must stay first: freed with the watch */
  int signum;
  uint64_t count;               /* deliveries seen */
  sk_iowaitlist waiters;        /* woken at each delivery and at the close */
  void (*notify)(sk_sigwatch *s); /* NULL, or called at each delivery */
  void *data;                   /* the owner's */
  int closed;
};

/* Starts watching `signum` on `loop`. `ref`: whether the watch keeps the
** loop alive. 0 with *out set, or a libuv error code (UV_EINVAL for a
** signal that cannot be watched: sk_sig_watchable). */
int sk_sigwatch_start(uv_loop_t *loop, int signum, int ref, sk_sigwatch **out);
/* Whether the watch keeps its loop alive. */
void sk_sigwatch_ref(sk_sigwatch *s, int ref);
/* Stops watching (restoring the disposition when it was the last watch),
** wakes and unlinks every waiter, closes the handle. */
void sk_sigwatch_close(sk_sigwatch *s);

/* 1 when `signum` may be watched (see above). */
int sk_sig_watchable(int signum);
/* "SIGTERM" (or "TERM") -> SIGTERM; 0 for an unknown name. */
int sk_sig_number(const char *name);
/* SIGTERM -> "SIGTERM"; NULL for a number without a name. */
const char *sk_sig_name(int signum);

#endif
