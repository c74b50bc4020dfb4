/*
** iowait.c — waiter lists of the I/O engines and address text (sk_io.h).
*/
#include <string.h>

#include <netinet/in.h>
#include <sys/un.h>

#include "sk_io.h"

void sk_iowaitlist_init(sk_iowaitlist *l) { l->head.prev = l->head.next = &l->head; }

void sk_iowait_unlink(sk_iowait *w) {
  if (w->next == NULL) return;
  w->prev->next = w->next;
  w->next->prev = w->prev;
  w->prev = w->next = NULL;
}

void sk_iowait_link(sk_iowaitlist *l, sk_iowait *w) {
  sk_iowait_unlink(w);
  w->prev = l->head.prev;
  w->next = &l->head;
  l->head.prev->next = w;
  l->head.prev = w;
}

int sk_iowaitlist_empty(const sk_iowaitlist *l) { return l->head.next == &l->head; }

void sk_iowaitlist_wake(sk_iowaitlist *l) {
  /* Each waiter is unlinked before its wake, which may link it again (a
  ** wake only makes work ready, so it cannot touch this list otherwise). */
  while (l->head.next != &l->head) {
    sk_iowait *w = l->head.next;
    sk_iowait_unlink(w);
    w->wake(w);
  }
}

int sk_addr_text(const struct sockaddr *sa, char *host, size_t n, int *port) {
  *port = 0;
  if (n == 0) return UV_EINVAL;
  host[0] = '\0';
  switch (sa->sa_family) {
  case AF_INET: {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    *port = ntohs(in->sin_port);
    return uv_ip4_name(in, host, n);
  }
  case AF_INET6: {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    *port = ntohs(in6->sin6_port);
    return uv_ip6_name(in6, host, n);
  }
  case AF_UNIX: {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t len = strnlen(un->sun_path, sizeof un->sun_path);
    if (len >= n) len = n - 1;
    memcpy(host, un->sun_path, len);
    host[len] = '\0';
    return 0;
  }
  default: return UV_EAFNOSUPPORT;
  }
}

int sk_addr_numeric(const char *host, int port, struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0) return 0;
  if (strchr(host, ':') && uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0) return 0;
  return UV_EINVAL;
}
