/*
** sk_net.h — the socket engines of skein.net (sockets.c, udp.c): name
** resolution, connecting, listening servers and UDP sockets. No Lua: the
** binding (lua/net.c) waits on them through the one wait protocol, each
** waiter an sk_iowait node woken from a libuv callback.
**
** Every object here is heap memory with the same life: whoever started it
** owns it until it calls the object's release or close function; an
** object with a request or handle still in libuv is freed by that
** callback (a handle only in its close callback), never before.
**
** Threading: an object belongs to the thread of the loop it started on.
*/
#ifndef SK_NET_H
#define SK_NET_H

#include <netdb.h>
#include <uv.h>

#include "sk_io.h"
#include "sk_port.h"
#include "sk_stream.h"

/* ------------------------------------------------ resolving a name */

/* A getaddrinfo on libuv's thread pool. */
typedef struct sk_resolve {
  uv_getaddrinfo_t req;
  struct addrinfo *res;         /* the addresses, when done without error */
  int err;                      /* 0 or a libuv error code (UV_EAI_*) */
  int done, orphan;
  sk_iowaitlist waiters;
} sk_resolve;

/* Starts resolving `host` for `socktype` (SOCK_STREAM, SOCK_DGRAM) and
** `port`; `passive` asks for addresses to bind. 0, or a libuv error code
** (nothing started, *out NULL). */
int sk_resolve_start(uv_loop_t *loop, const char *host, int port, int socktype, int passive,
                     sk_resolve **out);
/* Gives the job up: frees it when done, else its callback does. */
void sk_resolve_release(sk_resolve *r);

/* ------------------------------------------------------ connecting */

/* Connects a stream: to `path` (a Unix socket), or to `host`:`port`,
** resolving a name that is not a numeric address first and trying each of
** its addresses in turn until one accepts. */
typedef struct sk_connect {
  uv_getaddrinfo_t gai;
  uv_connect_t req;
  uv_loop_t *loop;
  sk_stream *s;                 /* the stream being connected (NULL between tries) */
  struct addrinfo *res, *cur;   /* resolved addresses; cur: the one being tried */
  int err;                      /* 0, or the libuv error of the last try */
  int done;                     /* finished: s connected, or err set */
  int orphan;                   /* released while libuv still held a request */
  int busy;                     /* a request of ours is in libuv */
  int nodelay;
  sk_iowaitlist waiters;
} sk_connect;

/* Starts connecting; 0, or a libuv error code (nothing started). */
int sk_connect_start(uv_loop_t *loop, const char *host, int port, const char *path,
                     int nodelay, sk_connect **out);
/* The connected stream, handed over to the caller (once). */
sk_stream *sk_connect_take(sk_connect *c);
/* Gives the job up: a stream not taken is closed; the job is freed now
** or by the callback of the request still in libuv. */
void sk_connect_release(sk_connect *c);

/* --------------------------------------------------------- servers */

/* A listening socket. The server accepts with accept4 itself and polls the
** socket (uv_poll_t) only while it has nothing to hand out, rather than
** using uv_listen: libuv 1.44, out of descriptors, accepts and drops every
** waiting connection without telling anyone; here EMFILE reaches the
** caller and the connections stay queued in the kernel's backlog. */
typedef struct sk_server {
  uv_poll_t poll;               /* on fd; the memory goes in its close callback */
  int fd;                       /* closed in the close callback */
  int kind;                     /* SK_STREAM_TCP or SK_STREAM_PIPE */
  int pending;                  /* the socket was seen readable: accept may not wait */
  int polling;
  int closed;
  sk_iowaitlist waiters;        /* waiting for a connection */
  sk_waitlist selectors;
  char *name;                   /* what errors name; freed with it */
  void *data;
} sk_server;

/* Listens on `addr` (TCP; SO_REUSEADDR, and SO_REUSEPORT when asked) or on
** the Unix socket `path` (addr NULL). 0, or a libuv error code (nothing
** left open). */
int sk_server_listen(uv_loop_t *loop, const struct sockaddr *addr, const char *path,
                     int backlog, int reuseport, sk_server **out);
/* Accepts a waiting connection: 0 with *out a new stream; UV_EAGAIN when
** none waits (polling is then on, and waiters are woken when one comes);
** an accept error (UV_EMFILE: the connection stays queued), or UV_EBADF
** when closed. */
int sk_server_accept(sk_server *sv, sk_stream **out);
/* 1 when accept would not wait (or the server is closed). */
int sk_server_ready(const sk_server *sv);
/* Polls for a connection (after an accept that would wait). */
int sk_server_watch(sk_server *sv);
/* The port it listens on (TCP), or 0. */
int sk_server_port(sk_server *sv);
/* Closes it (waking every waiter); the memory goes in the close callback. */
void sk_server_close(sk_server *sv);
int sk_server_add_selector(sk_server *sv, const sk_waiter *w);
void sk_server_remove_selector(sk_server *sv, sk_port *port, uint32_t slot);

/* ------------------------------------------------------------- UDP */

typedef struct sk_dgram {
  struct sk_dgram *next;
  struct sockaddr_storage from;
  size_t len;
  char data[];
} sk_dgram;

#define SK_UDP_QUEUE 1024       /* datagrams held; beyond, receiving pauses */

typedef struct sk_udp {
  uv_udp_t h;
  sk_dgram *head, *tail;        /* received, not yet read */
  size_t nq;
  char *scratch;                /* libuv receives into it (64 KiB) */
  int receiving, err, closed, nsend;
  sk_iowaitlist waiters;        /* waiting for a datagram */
  char *name;
  void *data;
} sk_udp;

/* A UDP socket, bound to `addr` when not NULL. 0 or a libuv error code. */
int sk_udp_open(uv_loop_t *loop, const struct sockaddr *addr, sk_udp **out);
/* Takes the oldest datagram (the caller frees it with free()): 1; 0 when
** none is there yet (receiving is on); a libuv error code (once). */
int sk_udp_recv(sk_udp *u, sk_dgram **out);
/* Sends one datagram (copied when it cannot go at once). 0 or an error. */
int sk_udp_send(sk_udp *u, const struct sockaddr *to, const char *data, size_t len);
int sk_udp_addr(sk_udp *u, char *host, size_t n, int *port);
void sk_udp_close(sk_udp *u);

#endif
