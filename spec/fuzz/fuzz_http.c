/*
** fuzz_http.c — libFuzzer target for the HTTP server's request parser
** (runtime/core/httpd_proto.c over llhttp), the code every byte a client
** sends goes through before anything else sees it.
**
** Input: a seed byte, a limits byte, then the bytes of a connection. The
** limits byte picks small or default max_header / max_body, so that 413
** and 431 are reached. The connection is parsed twice: all at once, and in
** pieces of seeded sizes, each copied into a buffer of exactly its size
** (ASan catches a read past a piece, or a pointer kept into one after it
** was freed). Both must hand out the same requests and end the same way
** (at the same byte, with the same status; see below for the one way a
** limit may show earlier in pieces). Every request must keep the
** limits (target and headers within max_header, body within max_body),
** have a lower-case token for each header name and a non-empty target,
** and point only into memory the parser owns; an error is 400, 413 or 431
** (503 only when out of memory).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/core/sk_httpd.h"

typedef struct out {
  char *text;                   /* what was handed out, serialised */
  size_t len, cap;
  size_t at;                    /* bytes of the stream used */
  int end;                      /* SK_HTTP_MORE (then finish's answer) or SK_HTTP_ERROR */
  int status;
} out;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http: %s\n", what);
  abort();
}

static void add(out *o, const void *p, size_t n) {
  if (o->len + n > o->cap) {
    size_t c = o->cap ? o->cap : 1024;
    while (c < o->len + n) c *= 2;
    o->text = realloc(o->text, c);
    if (o->text == NULL) fail("out of memory");
    o->cap = c;
  }
  memcpy(o->text + o->len, p, n);
  o->len += n;
}

static void add_num(out *o, size_t n) { add(o, &n, sizeof n); }

static int is_tchar(unsigned char ch) {
  return ch > 32 && ch < 127 && !strchr("\"(),/:;<=>?@[\\]{}", ch) && !(ch >= 'A' && ch <= 'Z');
}

static void take(out *o, const sk_httpreq *r, size_t max_header, size_t max_body) {
  if (r->target_len == 0) fail("empty target");
  size_t hb = r->target_len;
  for (size_t i = 0; i < r->nheaders; i++) {
    const sk_httphdr *h = &r->headers[i];
    if (h->name_len == 0) fail("empty header name");
    for (size_t j = 0; j < h->name_len; j++) {
      if (!is_tchar((unsigned char)r->buf[h->name + j])) fail("a header name is not a lower-case token");
    }
    hb += h->name_len + h->value_len + 4;
  }
  if (hb > max_header) fail("headers past max_header");
  if (r->body_len > max_body) fail("body past max_body");
  if ((r->body == NULL) != (r->body_len == 0)) fail("body pointer and length disagree");
  add(o, r->method, strlen(r->method) + 1);
  add_num(o, r->target_len);
  add(o, r->buf, r->target_len);
  add_num(o, r->nheaders);
  for (size_t i = 0; i < r->nheaders; i++) {
    const sk_httphdr *h = &r->headers[i];
    add_num(o, h->name_len);
    add(o, r->buf + h->name, h->name_len);
    add_num(o, h->value_len);
    add(o, r->buf + h->value, h->value_len);
  }
  add_num(o, r->body_len);
  if (r->body_len) add(o, r->body, r->body_len);
  int v[3] = {r->major, r->minor, r->keep_alive};
  add(o, v, sizeof v);
}

/* Parses s[0, size) in pieces (seed 0: at once). */
static void parse(const uint8_t *s, size_t size, unsigned seed, size_t mh, size_t mb, out *o) {
  sk_httpp *h = sk_httpp_new(mh, mb);
  if (h == NULL) fail("out of memory");
  size_t fed = 0;
  o->end = SK_HTTP_MORE;
  while (fed < size) {
    size_t piece = size - fed;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      piece = 1 + (seed >> 16) % 37;
      if (piece > size - fed) piece = size - fed;
    }
    char *p = malloc(piece);
    if (p == NULL) fail("out of memory");
    memcpy(p, s + fed, piece);
    size_t off = 0;
    int r = SK_HTTP_MORE;
    for (;;) {
      size_t used;
      r = sk_httpp_feed(h, p + off, piece - off, &used);
      if (used > piece - off) fail("used more than it was given");
      off += used;
      if (r == SK_HTTP_REQUEST) {
        const sk_httpreq *q = sk_httpp_request(h);
        if (q == NULL) fail("no request after SK_HTTP_REQUEST");
        size_t again;
        if (sk_httpp_feed(h, p + off, piece - off, &again) != SK_HTTP_REQUEST || again != 0) {
          fail("a paused parser took bytes");
        }
        take(o, q, mh ? mh : SK_HTTP_MAX_HEADER, mb ? mb : SK_HTTP_MAX_BODY);
        add_num(o, fed + off);   /* where the request ended */
        sk_httpp_next(h);
        continue;
      }
      break;
    }
    free(p);
    if (r == SK_HTTP_ERROR) {
      o->end = SK_HTTP_ERROR;
      o->status = sk_httpp_status(h);
      o->at = fed + off;
      size_t used;
      if (sk_httpp_feed(h, (const char *)s, size, &used) != SK_HTTP_ERROR || used != 0) {
        fail("a failed parser took bytes again");
      }
      if (sk_httpp_reason(h) == NULL) fail("no reason");
      if (o->status != 400 && o->status != 413 && o->status != 431 && o->status != 503) {
        fail("an error status other than 400, 413, 431");
      }
      break;
    }
    if (off != piece) fail("MORE without using every byte");
    fed += piece;
  }
  if (o->end == SK_HTTP_MORE) {
    o->at = size;
    int f = sk_httpp_finish(h);
    if (f == SK_HTTP_ERROR) o->status = sk_httpp_status(h);
    else if (f != SK_HTTP_EOF) fail("finish gave neither EOF nor an error");
    else if (sk_httpp_started(h)) fail("EOF in the middle of a request");
    o->end = 10 + f;
  }
  sk_httpp_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  unsigned seed = data[0] | 1u;
  size_t mh = 0, mb = 0;
  if (data[1] & 1) mh = 64 + (data[1] >> 1) * 8;   /* 64 .. 1080 bytes */
  if (data[1] & 2) mb = (data[1] >> 2) * 4;        /* 0 .. 252 bytes (0: the default) */
  data += 2;
  size -= 2;
  out a = {0}, b = {0};
  parse(data, size, 0, mh, mb, &a);
  parse(data, size, seed, mh, mb, &b);
  if (a.end != b.end) fail("at once and in pieces end differently");
  if (a.status != b.status) {
    /* A limit is checked where llhttp hands over a piece of a value or
    ** body: in small pieces that may come before a bad byte later in the
    ** same value, which all at once is found first. Nothing else differs. */
    int lim_a = a.status == 413 || a.status == 431, lim_b = b.status == 413 || b.status == 431;
    if (!((lim_a && b.status == 400) || (lim_b && a.status == 400))) {
      fail("at once and in pieces end with different statuses");
    }
  } else if (a.end != SK_HTTP_ERROR || a.status == 400) {
    /* (A limit error is seen at the end of the piece that passed it.) */
    if (a.at != b.at) fail("at once and in pieces stop at different bytes");
  }
  if (a.len != b.len || (a.len && memcmp(a.text, b.text, a.len) != 0)) {
    fail("at once and in pieces hand out different requests");
  }
  free(a.text);
  free(b.text);
  return 0;
}
