/*
** frame.c — the frames of the process protocol (sk_frame.h): the header,
** the blocking writer a worker process uses, and the incremental reader
** both sides cut their byte streams with.
*/
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "sk_frame.h"

void sk_frame_head(uint8_t head[SK_FRAME_HEAD], int type, size_t len) {
  head[0] = (uint8_t)len;
  head[1] = (uint8_t)(len >> 8);
  head[2] = (uint8_t)(len >> 16);
  head[3] = (uint8_t)(len >> 24);
  head[4] = (uint8_t)type;
}

size_t sk_frame_len(const uint8_t head[SK_FRAME_HEAD]) {
  return (size_t)head[0] | (size_t)head[1] << 8 | (size_t)head[2] << 16 | (size_t)head[3] << 24;
}

int sk_frame_type_ok(const uint8_t head[SK_FRAME_HEAD], int dir) {
  size_t len = sk_frame_len(head);
  if (dir == SK_FRAME_TO_CHILD) {
    switch (head[4]) {
      case 'K': return len == 20;
      case 'Q': return len == 0;
      case 'A': return len >= 8;
      case 'I':
      case 'J': return 1;
      default: return 0;
    }
  }
  switch (head[4]) {
    case 'O': return len == 0;
    case 'S': return len == 8;
    case 'X': return len > 0 && len % 12 == 0;
    case 'R':
    case 'F':
    case 'E':
    case 'C': return 1;
    default: return 0;
  }
}

int sk_frame_write2(int fd, int type, const void *pre, size_t plen, const void *data,
                    size_t len) {
  if (plen > SK_FRAME_MAX || len > SK_FRAME_MAX - plen) return -1;
  uint8_t head[SK_FRAME_HEAD];
  sk_frame_head(head, type, plen + len);
  struct iovec iov[3] = {{head, SK_FRAME_HEAD}, {(void *)pre, plen}, {(void *)data, len}};
  struct msghdr msg = {0};
  msg.msg_iov = iov;
  msg.msg_iovlen = 3;
  for (;;) {
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {fd, POLLOUT, 0};   /* a non-blocking socket: wait */
      poll(&pfd, 1, -1);
      continue;
    }
    if (n <= 0) return -1;
    /* Skip what went out; stop when nothing is left. */
    size_t left = (size_t)n;
    while (msg.msg_iovlen && left >= msg.msg_iov[0].iov_len) {
      left -= msg.msg_iov[0].iov_len;
      msg.msg_iov++;
      msg.msg_iovlen--;
    }
    if (msg.msg_iovlen == 0) return 0;
    msg.msg_iov[0].iov_base = (char *)msg.msg_iov[0].iov_base + left;
    msg.msg_iov[0].iov_len -= left;
  }
}

int sk_frame_write(int fd, int type, const void *data, size_t len) {
  return sk_frame_write2(fd, type, NULL, 0, data, len);
}

/* ------------------------------------------------------------ reader */

char *sk_frame_space(sk_frame_reader *r, size_t min, size_t *room) {
  if (r->off) {   /* what was handed out is done with: move the rest up */
    memmove(r->data, r->data + r->off, r->len - r->off);
    r->len -= r->off;
    r->off = 0;
  }
  /* Room for more of a big frame whose header is in, growing at most by
  ** what is already held each time: memory follows the bytes that came,
  ** never a length a header merely claims. */
  size_t want = min;
  if (r->len >= SK_FRAME_HEAD) {
    size_t more = SK_FRAME_HEAD + sk_frame_len((const uint8_t *)r->data) - r->len;
    size_t step = r->len > min ? r->len : min;
    if (more > want) want = more < step ? more : step;
  }
  if (r->cap - r->len < want) {
    size_t cap = r->cap ? r->cap : (min > 4096 ? min : 4096);
    while (cap - r->len < want) cap *= 2;
    char *d = realloc(r->data, cap);
    if (d == NULL) return NULL;
    r->data = d;
    r->cap = cap;
  }
  *room = r->cap - r->len;
  return r->data + r->len;
}

void sk_frame_fill(sk_frame_reader *r, size_t n) { r->len += n; }

int sk_frame_next(sk_frame_reader *r, sk_frame_check check, void *ud, sk_frame *f) {
  size_t in = r->len - r->off;
  if (in < SK_FRAME_HEAD) return SK_FRAME_MORE;
  const uint8_t *h = (const uint8_t *)r->data + r->off;
  size_t len = sk_frame_len(h);
  size_t avail = in - SK_FRAME_HEAD;
  f->type = h[4];
  f->len = len;
  f->payload = NULL;
  /* The header is checked before the payload is waited for. */
  if (check && check(ud, h, avail < len ? avail : len) != 0) return SK_FRAME_BAD;
  if (avail < len) return SK_FRAME_MORE;
  f->payload = (const char *)h + SK_FRAME_HEAD;
  r->off += SK_FRAME_HEAD + len;
  return SK_FRAME_OK;
}

const uint8_t *sk_frame_partial(const sk_frame_reader *r) {
  return r->len - r->off >= SK_FRAME_HEAD ? (const uint8_t *)r->data + r->off : NULL;
}

void sk_frame_drop(sk_frame_reader *r) { r->len = r->off = 0; }

void sk_frame_reader_free(sk_frame_reader *r) {
  free(r->data);
  memset(r, 0, sizeof *r);
}
