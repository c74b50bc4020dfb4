/*
** stream.c — a byte stream on the loop (sk_stream.h).
**
** Reading is on only while it is useful: a reader asked for more than the
** buffer holds (`want`), a select waits for the stream, or less than
** SK_STREAM_READ_AHEAD is buffered. libuv reads straight into the stream's
** buffer (on_alloc hands it the free room), so a line or an n-byte read
** costs no extra copy and no extra system call.
**
** Writes go out at once where the socket takes them (uv_try_write) and
** are queued, copied into one request, where it does not. A write request
** and a shutdown request may still be in flight when the stream closes:
** libuv calls them back (UV_ECANCELED) before the handle's close callback,
** which is the only place the stream's memory is freed.
**
** Closing is graceful: what was queued still goes out (the handle closes
** once the last request is done, or after SK_STREAM_LINGER milliseconds
** when the peer does not take it). sk_stream_abort closes at once.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sk_stream.h"

typedef struct wreq {
  uv_write_t req;
  size_t len;
  char data[];
} wreq;

/* The least room a read is given, and the largest buffer an empty stream
** keeps: freeing and remaking a small buffer on every message costs more
** than it saves (glibc trims and regrows its heap), and 4 KiB per idle
** connection is little. */
#define READ_MIN 4096
#define KEEP_MAX (16 * 1024)

static void finish_close(sk_stream *s);

static void free_closed(uv_handle_t *h) {
  sk_stream *s = h->data;
  sk_rbuf_free(&s->rb);
  sk_waitlist_free(&s->selectors);
  free(s->name);
  free(s);
}

sk_stream *sk_stream_new(uv_loop_t *loop, int kind, int *err) {
  sk_stream *s = calloc(1, sizeof *s);
  if (s == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  int rc = kind == SK_STREAM_TCP ? uv_tcp_init(loop, &s->u.tcp) : uv_pipe_init(loop, &s->u.pipe, 0);
  if (rc != 0) {
    /* Neither init registers the handle when it fails. */
    free(s);
    *err = rc;
    return NULL;
  }
  s->u.handle.data = s;
  s->kind = kind;
  s->hwm = SK_STREAM_HWM;
  s->max_line = SK_STREAM_MAX_LINE;
  sk_iowaitlist_init(&s->readers);
  sk_iowaitlist_init(&s->writers);
  return s;
}

/* ------------------------------------------------------------ reading */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  sk_stream *s = h->data;
  size_t room = 0;
  char *p = sk_rbuf_space(&s->rb, READ_MIN, &room);
  /* A zero-length buffer makes libuv report UV_ENOBUFS to on_read. */
  *buf = uv_buf_init(p, p ? (unsigned)(room > UINT32_MAX ? UINT32_MAX : room) : 0);
}

static void stop_reading(sk_stream *s) {
  if (!s->reading) return;
  s->reading = 0;
  uv_read_stop(&s->u.stream);
}

/* Something a reader or a select may want happened: wake them. */
static void readable(sk_stream *s) {
  sk_iowaitlist_wake(&s->readers);
  sk_waitlist_wake_all(&s->selectors);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  sk_stream *s = st->data;
  if (n == 0) return;           /* EAGAIN: nothing this time */
  if (n > 0) {
    sk_rbuf_commit(&s->rb, (size_t)n);
    size_t have = sk_rbuf_len(&s->rb);
    if (have >= SK_STREAM_READ_AHEAD && have >= s->want && s->selectors.n == 0) stop_reading(s);
    if (have >= s->want || s->selectors.n > 0) readable(s);
    return;
  }
  if (n == UV_EOF) s->eof = 1;
  else s->rerr = (int)n;
  stop_reading(s);
  readable(s);
}

static int start_reading(sk_stream *s) {
  if (s->reading || s->eof || s->rerr) return 0;
  int rc = uv_read_start(&s->u.stream, on_alloc, on_read);
  if (rc != 0) {
    s->rerr = rc;
    return rc;
  }
  s->reading = 1;
  return 0;
}

/* How many buffered bytes would let format `f` be answered. */
static size_t wanted(const sk_stream *s, const sk_rfmt *f) {
  switch (f->kind) {
  case SK_RF_N: return f->n;
  case SK_RF_LINE: return sk_rbuf_len(&s->rb) + 1;
  case SK_RF_ANY: return 1;
  default: return SIZE_MAX;
  }
}

int sk_stream_read(sk_stream *s, const sk_rfmt *f, const char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  if (s->closed) return UV_EBADF;
  /* After a read error what is buffered is still delivered, but a read it
  ** cannot answer in full reports the error rather than a short result. */
  if (s->eof && f->kind == SK_RF_ALL && sk_rbuf_len(&s->rb) == 0) return 1;  /* the end: nil */
  int r = sk_rbuf_take(&s->rb, f, s->eof, out, len);
  if (r == 1) {
    s->want = 0;
    return 1;
  }
  if (s->rerr) return s->rerr;
  if (f->kind == SK_RF_LINE && sk_rbuf_len(&s->rb) > s->max_line) return UV_EMSGSIZE;
  s->want = wanted(s, f);
  int rc = start_reading(s);
  return rc < 0 ? rc : 0;
}

void sk_stream_trim(sk_stream *s) {
  if (sk_rbuf_len(&s->rb) == 0 && s->rb.cap > KEEP_MAX) sk_rbuf_free(&s->rb);
}

int sk_stream_readable(sk_stream *s) {
  if (s->closed || s->eof || s->rerr || sk_rbuf_len(&s->rb) > 0) return 1;
  return start_reading(s) < 0;
}

/* ------------------------------------------------------------ writing */

static void on_write(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  sk_stream *s = req->handle->data;
  s->wqueued -= w->len;
  s->nreqs--;
  if (status < 0 && status != UV_ECANCELED && s->werr == 0) s->werr = status;
  free(w);
  if (s->closed) {
    if (s->nreqs == 0 || s->werr) finish_close(s);  /* a close waited for it */
    return;
  }
  if (s->werr || s->wqueued <= s->hwm) sk_iowaitlist_wake(&s->writers);
}

int sk_stream_write(sk_stream *s, const uv_buf_t *bufs, unsigned n) {
  if (s->closed) return UV_EBADF;
  if (s->werr) return s->werr;
  if (s->shut) return UV_EPIPE;
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  if (total == 0) return 0;
  size_t done = 0;
  if (s->wqueued == 0) {
    /* Nothing queued: the socket may take it all now, in order. */
    int r = uv_try_write(&s->u.stream, bufs, n);
    if (r >= 0) done = (size_t)r;
    else if (r != UV_EAGAIN && r != UV_ENOSYS) return s->werr = r;
  }
  if (done == total) return 0;
  size_t rest = total - done;
  wreq *w = malloc(sizeof *w + rest);
  if (w == NULL) return done ? (s->werr = UV_ENOMEM) : UV_ENOMEM;
  size_t at = 0, skip = done;
  for (unsigned i = 0; i < n; i++) {
    size_t l = bufs[i].len;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    memcpy(w->data + at, bufs[i].base + skip, l - skip);
    at += l - skip;
    skip = 0;
  }
  w->len = rest;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)rest);
  int rc = rest > UINT32_MAX ? UV_E2BIG : uv_write(&w->req, &s->u.stream, &b, 1, on_write);
  if (rc != 0) {
    free(w);
    /* Part of it went out already: the stream can no longer be trusted. */
    return done ? (s->werr = rc) : rc;
  }
  s->wqueued += rest;
  s->nreqs++;
  return 0;
}

int sk_stream_writable(const sk_stream *s) {
  return s->closed || s->werr || s->wqueued <= s->hwm;
}

int sk_stream_flushed(const sk_stream *s) { return s->closed || s->werr || s->wqueued == 0; }

static void on_shutdown(uv_shutdown_t *req, int status) {
  sk_stream *s = req->handle->data;
  s->nreqs--;
  if (status < 0 && status != UV_ECANCELED && s->werr == 0) s->werr = status;
  free(req);
  if (s->closed && (s->nreqs == 0 || s->werr)) finish_close(s);
}

int sk_stream_shutdown(sk_stream *s) {
  if (s->closed) return UV_EBADF;
  if (s->shut) return 0;
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req == NULL) return UV_ENOMEM;
  int rc = uv_shutdown(req, &s->u.stream, on_shutdown);
  if (rc != 0) {
    free(req);
    return rc;
  }
  s->shut = 1;
  s->nreqs++;
  return 0;
}

/* ------------------------------------------------------------ closing */

static void free_timer(uv_handle_t *h) { free(h); }

/* Closes the handle (once); the memory goes in its close callback. */
static void finish_close(sk_stream *s) {
  if (s->handle_closing) return;
  s->handle_closing = 1;
  if (s->linger) {
    uv_close((uv_handle_t *)s->linger, free_timer);
    s->linger = NULL;
  }
  uv_close(&s->u.handle, free_closed);
}

static void on_linger(uv_timer_t *t) { finish_close(t->data); }

/* What both closes share: from now on the stream is closed to its users. */
static void mark_closed(sk_stream *s) {
  s->closed = 1;
  stop_reading(s);
  sk_iowaitlist_wake(&s->readers);
  sk_iowaitlist_wake(&s->writers);
  sk_waitlist_wake_all(&s->selectors);
}

void sk_stream_close(sk_stream *s) {
  if (s->closed) return;
  mark_closed(s);
  if (s->nreqs == 0 || s->werr) {
    finish_close(s);
    return;
  }
  /* Writes are still queued: the handle stays open until they are out,
  ** or until SK_STREAM_LINGER passed (a peer that never reads). */
  s->linger = malloc(sizeof *s->linger);
  if (s->linger == NULL || uv_timer_init(s->u.handle.loop, s->linger) != 0) {
    free(s->linger);
    s->linger = NULL;
    finish_close(s);
    return;
  }
  s->linger->data = s;
  uv_timer_start(s->linger, on_linger, SK_STREAM_LINGER, 0);
}

void sk_stream_abort(sk_stream *s) {
  if (!s->closed) mark_closed(s);
  finish_close(s);
}

int sk_stream_addr(sk_stream *s, int peer, char *host, size_t n, int *port) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  *port = 0;
  if (s->closed) return UV_EBADF;
  if (s->kind == SK_STREAM_PIPE) {
    size_t l = n;
    int rc = peer ? uv_pipe_getpeername(&s->u.pipe, host, &l)
                  : uv_pipe_getsockname(&s->u.pipe, host, &l);
    if (rc == 0 && l < n) host[l] = '\0';
    return rc;
  }
  int rc = peer ? uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len)
                : uv_tcp_getsockname(&s->u.tcp, (struct sockaddr *)&ss, &len);
  if (rc != 0) return rc;
  return sk_addr_text((struct sockaddr *)&ss, host, n, port);
}

/* ------------------------------------------------------------- select */

int sk_stream_add_selector(sk_stream *s, const sk_waiter *w) {
  if (sk_stream_readable(s)) return 1;
  return sk_waitlist_add(&s->selectors, w) == 0 ? 0 : -1;
}

void sk_stream_remove_selector(sk_stream *s, sk_port *port, uint32_t slot) {
  sk_waitlist_remove(&s->selectors, port, slot);
}
