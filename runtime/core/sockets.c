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
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
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

static void on_connection(uv_stream_t *st, int status) {
  sk_server *sv = st->data;
  if (status < 0) sv->err = status;
  else sv->pending = 1;
  sk_iowaitlist_wake(&sv->waiters);
  sk_waitlist_wake_all(&sv->selectors);
}

/* A TCP socket bound to addr, with the options libuv's bind does not offer
** on every version (SO_REUSEPORT); the fd, or a libuv error code. */
static int bound_socket(const struct sockaddr *addr, int reuseport) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int on = 1;
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
      bind(fd, addr, len) != 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return fd;
}

int sk_server_listen(uv_loop_t *loop, const struct sockaddr *addr, const char *path,
                     int backlog, int reuseport, sk_server **out) {
  *out = NULL;
  sk_server *sv = calloc(1, sizeof *sv);
  if (sv == NULL) return UV_ENOMEM;
  sk_iowaitlist_init(&sv->waiters);
  int rc;
  if (path) {
    sv->kind = SK_STREAM_PIPE;
    if ((rc = uv_pipe_init(loop, &sv->u.pipe, 0)) != 0) {
      free(sv);
      return rc;
    }
    sv->u.handle.data = sv;
    rc = uv_pipe_bind(&sv->u.pipe, path);
  } else {
    sv->kind = SK_STREAM_TCP;
    int fd = bound_socket(addr, reuseport);
    if (fd < 0) {
      free(sv);
      return fd;
    }
    if ((rc = uv_tcp_init(loop, &sv->u.tcp)) != 0) {
      close(fd);
      free(sv);
      return rc;
    }
    sv->u.handle.data = sv;
    if ((rc = uv_tcp_open(&sv->u.tcp, fd)) != 0) close(fd);
  }
  if (rc == 0) rc = uv_listen(&sv->u.stream, backlog, on_connection);
  if (rc != 0) {
    sv->closed = 1;
    uv_close(&sv->u.handle, server_closed);
    return rc;
  }
  *out = sv;
  return 0;
}

int sk_server_accept(sk_server *sv, sk_stream **out) {
  *out = NULL;
  if (sv->closed) return UV_EBADF;
  if (sv->err) {
    int e = sv->err;
    sv->err = 0;
    return e;
  }
  if (!sv->pending) return UV_EAGAIN;
  int rc = 0;
  sk_stream *s = sk_stream_new(sv->u.handle.loop, sv->kind, &rc);
  if (s == NULL) return rc;
  sv->pending = 0;
  if ((rc = uv_accept(&sv->u.stream, &s->u.stream)) != 0) {
    sk_stream_abort(s);
    return rc;
  }
  if (s->kind == SK_STREAM_TCP) uv_tcp_nodelay(&s->u.tcp, 1);
  *out = s;
  return 0;
}

int sk_server_ready(const sk_server *sv) { return sv->closed || sv->pending || sv->err; }

int sk_server_port(sk_server *sv) {
  if (sv->kind != SK_STREAM_TCP || sv->closed) return 0;
  struct sockaddr_storage ss;
  int len = sizeof ss, port = 0;
  char host[64];
  if (uv_tcp_getsockname(&sv->u.tcp, (struct sockaddr *)&ss, &len) != 0) return 0;
  sk_addr_text((struct sockaddr *)&ss, host, sizeof host, &port);
  return port;
}

void sk_server_close(sk_server *sv) {
  if (sv->closed) return;
  sv->closed = 1;
  sk_iowaitlist_wake(&sv->waiters);
  sk_waitlist_wake_all(&sv->selectors);
  uv_close(&sv->u.handle, server_closed);
}

int sk_server_add_selector(sk_server *sv, const sk_waiter *w) {
  if (sk_server_ready(sv)) return 1;
  return sk_waitlist_add(&sv->selectors, w) == 0 ? 0 : -1;
}

void sk_server_remove_selector(sk_server *sv, sk_port *port, uint32_t slot) {
  sk_waitlist_remove(&sv->selectors, port, slot);
}
