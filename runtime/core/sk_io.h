/*
** sk_io.h — what the I/O engines of core/ share (iowait.c): the list of
** those waiting on an I/O object, and socket addresses as text.
**
** An I/O object (a stream, a server, a UDP socket, a subprocess, a signal
** watcher) belongs to the worker whose loop it was opened on; its waiters
** are that worker's own contexts. The engines know nothing of contexts: a
** waiter is an sk_iowait node the host embeds in each context, whose `wake`
** the engine calls (from a libuv callback: it only makes work ready).
**
** Threading: everything here belongs to the thread of the object's loop.
*/
#ifndef SK_IO_H
#define SK_IO_H

#include <stddef.h>
#include <uv.h>

typedef struct sk_iowait sk_iowait;
struct sk_iowait {
  sk_iowait *prev, *next;       /* NULL when not linked */
  void (*wake)(sk_iowait *w);
};

/* A circular list of waiters; `head` is a sentinel. */
typedef struct sk_iowaitlist {
  sk_iowait head;
} sk_iowaitlist;

void sk_iowaitlist_init(sk_iowaitlist *l);
/* Links `w` last (unlinking it first where it is linked elsewhere). */
void sk_iowait_link(sk_iowaitlist *l, sk_iowait *w);
void sk_iowait_unlink(sk_iowait *w);
/* Unlinks every waiter and calls its `wake`, in link order. */
void sk_iowaitlist_wake(sk_iowaitlist *l);
int sk_iowaitlist_empty(const sk_iowaitlist *l);

/* The text of a socket address: its numeric host into host[n] and its
** port; 0, or a libuv error code. A Unix socket gives its path and port 0. */
int sk_addr_text(const struct sockaddr *sa, char *host, size_t n, int *port);

/* Parses a numeric IPv4 or IPv6 address with a port into `out`; 0, or
** UV_EINVAL when `host` is not numeric (it must be resolved). */
int sk_addr_numeric(const char *host, int port, struct sockaddr_storage *out);

#endif
