/*
** udp.c — UDP sockets (sk_net.h). Datagrams are received into one scratch
** buffer per socket and copied out at their own size into a queue of at
** most SK_UDP_QUEUE; a full queue pauses receiving (the kernel then drops,
** as UDP does), so a flood never grows memory without bound.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_net.h"

#define SCRATCH (64 * 1024)

typedef struct sendreq {
  uv_udp_send_t req;
  sk_udp *u;
  char data[];
} sendreq;

static void udp_closed(uv_handle_t *h) {
  sk_udp *u = h->data;
  while (u->head) {
    sk_dgram *d = u->head;
    u->head = d->next;
    free(d);
  }
  free(u->scratch);
  free(u->name);
  free(u);
}

int sk_udp_open(uv_loop_t *loop, const struct sockaddr *addr, sk_udp **out) {
  *out = NULL;
  sk_udp *u = calloc(1, sizeof *u);
  if (u == NULL) return UV_ENOMEM;
  sk_iowaitlist_init(&u->waiters);
  int rc = uv_udp_init(loop, &u->h);
  if (rc != 0) {
    free(u);
    return rc;
  }
  u->h.data = u;
  if (addr && (rc = uv_udp_bind(&u->h, addr, UV_UDP_REUSEADDR)) != 0) {
    u->closed = 1;
    uv_close((uv_handle_t *)&u->h, udp_closed);
    return rc;
  }
  *out = u;
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  sk_udp *u = h->data;
  if (u->scratch == NULL) u->scratch = malloc(SCRATCH);
  *buf = uv_buf_init(u->scratch, u->scratch ? SCRATCH : 0);
}

static void stop(sk_udp *u) {
  if (!u->receiving) return;
  u->receiving = 0;
  uv_udp_recv_stop(&u->h);
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags) {
  (void)flags;
  sk_udp *u = h->data;
  if (n < 0) {
    u->err = (int)n;
    stop(u);
  } else {
    if (from == NULL) return;  /* nothing more to read this time */
    sk_dgram *d = malloc(sizeof *d + (size_t)n);
    if (d == NULL) {
      u->err = UV_ENOMEM;
      stop(u);
    } else {
      memset(&d->from, 0, sizeof d->from);
      memcpy(&d->from, from,
             from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
      d->len = (size_t)n;
      memcpy(d->data, buf->base, (size_t)n);
      d->next = NULL;
      if (u->tail) u->tail->next = d;
      else u->head = d;
      u->tail = d;
      if (++u->nq >= SK_UDP_QUEUE) stop(u);
    }
  }
  sk_iowaitlist_wake(&u->waiters);
}

int sk_udp_recv(sk_udp *u, sk_dgram **out) {
  *out = NULL;
  if (u->closed) return UV_EBADF;
  if (u->head) {
    sk_dgram *d = u->head;
    u->head = d->next;
    if (u->head == NULL) u->tail = NULL;
    u->nq--;
    *out = d;
    return 1;
  }
  if (u->err) {
    int e = u->err;
    u->err = 0;
    return e;
  }
  if (!u->receiving) {
    int rc = uv_udp_recv_start(&u->h, on_alloc, on_recv);
    if (rc != 0) return rc;
    u->receiving = 1;
  }
  return 0;
}

static void on_sent(uv_udp_send_t *req, int status) {
  (void)status;
  sendreq *r = (sendreq *)req;
  r->u->nsend--;
  free(r);
}

int sk_udp_send(sk_udp *u, const struct sockaddr *to, const char *data, size_t len) {
  if (u->closed) return UV_EBADF;
  if (len > SCRATCH) return UV_EMSGSIZE;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int rc = uv_udp_try_send(&u->h, &b, 1, to);
  if (rc >= 0) return 0;
  if (rc != UV_EAGAIN && rc != UV_ENOSYS) return rc;
  sendreq *r = malloc(sizeof *r + len);
  if (r == NULL) return UV_ENOMEM;
  r->u = u;
  memcpy(r->data, data, len);
  b = uv_buf_init(r->data, (unsigned)len);
  if ((rc = uv_udp_send(&r->req, &u->h, &b, 1, to, on_sent)) != 0) {
    free(r);
    return rc;
  }
  u->nsend++;
  return 0;
}

int sk_udp_addr(sk_udp *u, char *host, size_t n, int *port) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  *port = 0;
  if (u->closed) return UV_EBADF;
  int rc = uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &len);
  return rc ? rc : sk_addr_text((struct sockaddr *)&ss, host, n, port);
}

void sk_udp_close(sk_udp *u) {
  if (u->closed) return;
  u->closed = 1;
  sk_iowaitlist_wake(&u->waiters);
  uv_close((uv_handle_t *)&u->h, udp_closed);
}
