/*
** sockets.c — resolving, connecting and listening (sk_net.h).
**
** A connect job owns the stream it connects until the caller takes it.
** Trying the next address of a name needs a fresh socket, so a failed try
** closes its stream and makes another. When the caller gives a job up
** while a request of ours is in libuv (`busy`), the job becomes an orphan
** and the request's callback frees it: closing the stream makes libuv call
** a pending connect back with UV_ECANCELED before the stream's own close
** callback, and a getaddrinfo always completes.
*/
#define _GNU_SOURCE 1   /* accept4 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sk_net.h"

/* ------------------------------------------------------------ resolve */

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  sk_resolve *r = req->data;
  if (r->orphan) {
    if (res) uv_freeaddrinfo(res);
    free(r);
    return;
  }
  r->done = 1;
  r->err = status;
  r->res = status == 0 ? res : NULL;
  if (status != 0 && res) uv_freeaddrinfo(res);
  sk_iowaitlist_wake(&r->waiters);
}

int sk_resolve_start(uv_loop_t *loop, const char *host, int port, int socktype, int passive,
                     sk_resolve **out) {
  *out = NULL;
  sk_resolve *r = calloc(1, sizeof *r);
  if (r == NULL) return UV_ENOMEM;
  sk_iowaitlist_init(&r->waiters);
  r->req.data = r;
  char service[16];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints = {0};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_ADDRCONFIG | (passive ? AI_PASSIVE : 0);
  int rc = uv_getaddrinfo(loop, &r->req, on_resolved, host, service, &hints);
  if (rc != 0) {
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void sk_resolve_release(sk_resolve *r) {
  if (r == NULL) return;
  sk_iowaitlist_wake(&r->waiters);
  if (!r->done) {
    r->orphan = 1;
    return;
  }
  if (r->res) uv_freeaddrinfo(r->res);
  free(r);
}

/* ------------------------------------------------------------ connect */

static void try_next(sk_connect *c);

static void connect_finish(sk_connect *c, int err) {
  c->done = 1;
  c->err = err;
  if (err != 0 && c->s) {
    sk_stream_abort(c->s);
    c->s = NULL;
  }
  sk_iowaitlist_wake(&c->waiters);
}

static void free_connect(sk_connect *c) {
  if (c->res) uv_freeaddrinfo(c->res);
  free(c);
}

static void on_connected(uv_connect_t *req, int status) {
  sk_connect *c = req->data;
  c->busy = 0;
  if (c->orphan) {
    /* The stream was closed by release; its close callback frees it. */
    free_connect(c);
    return;
  }
  if (status == 0) {
    if (c->s->kind == SK_STREAM_TCP && c->nodelay) uv_tcp_nodelay(&c->s->u.tcp, 1);
    connect_finish(c, 0);
    return;
  }
  c->err = status;
  if (c->cur && c->cur->ai_next) {
    sk_stream_abort(c->s);
    c->s = NULL;
    c->cur = c->cur->ai_next;
    try_next(c);
    return;
  }
  connect_finish(c, status);
}

/* Connects a fresh stream to c->cur. */
static void try_next(sk_connect *c) {
  for (; c->cur; c->cur = c->cur->ai_next) {
    int err = 0;
    c->s = sk_stream_new(c->loop, SK_STREAM_TCP, &err);
    if (c->s == NULL) break;
    int rc = uv_tcp_connect(&c->req, &c->s->u.tcp, c->cur->ai_addr, on_connected);
    if (rc == 0) {
      c->busy = 1;
      return;
    }
    c->err = rc;
    sk_stream_abort(c->s);
    c->s = NULL;
  }
  connect_finish(c, c->err ? c->err : UV_ENOMEM);
}

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  sk_connect *c = req->data;
  c->busy = 0;
  if (c->orphan) {
    if (res) uv_freeaddrinfo(res);
    free_connect(c);
    return;
  }
  if (status != 0) {
    if (res) uv_freeaddrinfo(res);
    connect_finish(c, status);
    return;
  }
  c->res = c->cur = res;
  try_next(c);
}

int sk_connect_start(uv_loop_t *loop, const char *host, int port, const char *path,
                     int nodelay, sk_connect **out) {
  *out = NULL;
  sk_connect *c = calloc(1, sizeof *c);
  if (c == NULL) return UV_ENOMEM;
  c->loop = loop;
  c->nodelay = nodelay;
  c->req.data = c;
  c->gai.data = c;
  sk_iowaitlist_init(&c->waiters);
  int rc = 0;
  struct sockaddr_storage ss;
  if (path) {
    if ((c->s = sk_stream_new(loop, SK_STREAM_PIPE, &rc)) == NULL) goto fail;
    uv_pipe_connect(&c->req, &c->s->u.pipe, path, on_connected);
    c->busy = 1;
  } else if (sk_addr_numeric(host, port, &ss) == 0) {
    if ((c->s = sk_stream_new(loop, SK_STREAM_TCP, &rc)) == NULL) goto fail;
    rc = uv_tcp_connect(&c->req, &c->s->u.tcp, (struct sockaddr *)&ss, on_connected);
    if (rc != 0) {
      sk_stream_abort(c->s);
      goto fail;
    }
    c->busy = 1;
  } else {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    rc = uv_getaddrinfo(loop, &c->gai, on_gai, host, service, &hints);
    if (rc != 0) goto fail;
    c->busy = 1;
  }
  *out = c;
  return 0;
fail:
  free(c);
  return rc;
}

sk_stream *sk_connect_take(sk_connect *c) {
  sk_stream *s = c->done && c->err == 0 ? c->s : NULL;
  if (s) c->s = NULL;
  return s;
}

void sk_connect_release(sk_connect *c) {
  if (c == NULL) return;
  sk_iowaitlist_wake(&c->waiters);
  if (c->busy) {
    /* Closing the stream cancels a pending connect; a getaddrinfo runs to
    ** its end. Either callback frees the orphan. */
    c->orphan = 1;
    if (c->s) {
      sk_stream_abort(c->s);
      c->s = NULL;
    }
    return;
  }
  if (c->s) sk_stream_abort(c->s);
  free_connect(c);
}

/* ------------------------------------------------------------- server */

static void server_closed(uv_handle_t *h) {
  sk_server *sv = h->data;
  sk_waitlist_free(&sv->selectors);
  free(sv->name);
  free(sv);
}

static void on_listen_readable(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  sk_server *sv = p->data;
  /* A connection waits (or the socket failed: accept will say). Polling
  ** stops until an accept finds the queue empty again. */
  sv->pending = 1;
  sv->polling = 0;
  uv_poll_stop(&sv->poll);
  sk_iowaitlist_wake(&sv->waiters);
  sk_waitlist_wake_all(&sv->selectors);
}

int sk_server_watch(sk_server *sv) {
  if (sv->closed || sv->polling) return 0;
  int rc = uv_poll_start(&sv->poll, UV_READABLE, on_listen_readable);
  if (rc == 0) sv->polling = 1;
  return rc;
}

/* A socket of `family` bound to `addr` and listening; the fd, or a libuv
** error code. TCP gets SO_REUSEADDR (and SO_REUSEPORT when asked: libuv
** 1.44 offers no flag for it). A Unix socket is bound here too, so that its
** errors are the kernel's (libuv reports ENOENT as EACCES). */
static int listening_socket(const struct sockaddr *addr, socklen_t len, int reuseport,
                            int backlog) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int on = 1;
  if ((addr->sa_family != AF_UNIX &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
      bind(fd, addr, len) != 0 || listen(fd, backlog) != 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return fd;
}

int sk_server_listen(uv_loop_t *loop, const struct sockaddr *addr, const char *path,
                     int backlog, int reuseport, sk_server **out) {
  *out = NULL;
  struct sockaddr_un un;
  socklen_t len;
  if (path) {
    size_t n = strlen(path);
    if (n >= sizeof un.sun_path) return UV_ENAMETOOLONG;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, path, n);
    addr = (const struct sockaddr *)&un;
    len = (socklen_t)sizeof un;
  } else {
    len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  }
  sk_server *sv = calloc(1, sizeof *sv);
  if (sv == NULL) return UV_ENOMEM;
  sk_iowaitlist_init(&sv->waiters);
  sv->kind = path ? SK_STREAM_PIPE : SK_STREAM_TCP;
  sv->fd = listening_socket(addr, len, reuseport, backlog);
  if (sv->fd < 0) {
    int e = sv->fd;
    free(sv);
    return e;
  }
  int rc = uv_poll_init_socket(loop, &sv->poll, sv->fd);
  if (rc != 0) {
    close(sv->fd);
    free(sv);
    return rc;
  }
  sv->poll.data = sv;
  /* Polled from the start, so that the server keeps the loop alive (a
  ** script that serves runs until it is closed). */
  if ((rc = sk_server_watch(sv)) != 0) {
    sv->closed = 1;
    uv_close((uv_handle_t *)&sv->poll, server_closed);
    close(sv->fd);
    return rc;
  }
  *out = sv;
  return 0;
}

int sk_server_accept(sk_server *sv, sk_stream **out) {
  *out = NULL;
  if (sv->closed) return UV_EBADF;
  int fd;
  do {
    fd = accept4(sv->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
  if (fd < 0) {
    int e = -errno;
    if (e == UV_EAGAIN || e == -EWOULDBLOCK) {
      sv->pending = 0;
      int rc = sk_server_watch(sv);
      return rc ? rc : UV_EAGAIN;
    }
    /* EMFILE and the like: the connection stays queued; polling stays
    ** off (the socket would read as ready at once) until the next accept
    ** finds the queue empty. */
    sv->pending = 0;
    return e;
  }
  int rc = 0;
  sk_stream *s = sk_stream_new(sv->poll.loop, sv->kind, &rc);
  if (s == NULL) {
    close(fd);
    return rc;
  }
  rc = sv->kind == SK_STREAM_TCP ? uv_tcp_open(&s->u.tcp, fd) : uv_pipe_open(&s->u.pipe, fd);
  if (rc != 0) {
    close(fd);
    sk_stream_abort(s);
    return rc;
  }
  if (s->kind == SK_STREAM_TCP) uv_tcp_nodelay(&s->u.tcp, 1);
  /* Whether more wait is not known: the next accept tries the socket. */
  sv->pending = 0;
  *out = s;
  return 0;
}

int sk_server_ready(const sk_server *sv) { return sv->closed || sv->pending; }

int sk_server_port(sk_server *sv) {
  if (sv->kind != SK_STREAM_TCP || sv->closed) return 0;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int port = 0;
  char host[64];
  if (getsockname(sv->fd, (struct sockaddr *)&ss, &len) != 0) return 0;
  sk_addr_text((struct sockaddr *)&ss, host, sizeof host, &port);
  return port;
}

void sk_server_close(sk_server *sv) {
  if (sv->closed) return;
  sv->closed = 1;
  sk_iowaitlist_wake(&sv->waiters);
  sk_waitlist_wake_all(&sv->selectors);
  /* uv_close stops the poll and drops the fd from epoll at once, so the fd
  ** can close now: a connect right after close() is refused. */
  uv_close((uv_handle_t *)&sv->poll, server_closed);
  close(sv->fd);
  sv->fd = -1;
}

int sk_server_add_selector(sk_server *sv, const sk_waiter *w) {
  if (sk_server_ready(sv)) return 1;
  if (sk_server_watch(sv) != 0) return 1;   /* the accept will report it */
  return sk_waitlist_add(&sv->selectors, w) == 0 ? 0 : -1;
}

void sk_server_remove_selector(sk_server *sv, sk_port *port, uint32_t slot) {
  sk_waitlist_remove(&sv->selectors, port, slot);
}
