/*
** fuzz_resp.c — libFuzzer target for the Redis reply reader of the broker's
** client (runtime/core/resp.c: hiredis's reader with resp.c's checked reply
** functions), which reads whatever a Redis server, or something posing as
** one, sends.
**
** Input: a seed byte, then the stream. The stream is read twice: fed all at
** once, and fed in pieces of seeded sizes (1 to 16 bytes) with the replies
** taken after every piece. Both must give the same replies (compared by a
** hash over each reply tree: types, integers, string bytes, element counts)
** and end the same way (a protocol error, or waiting for more). Every string
** must hold exactly `len` bytes and a terminating NUL, every array its
** `elements` non-NULL children.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/read.h>

#include "../../runtime/core/sk_resp.h"

#define MAXR 4096

typedef struct seen {
  int n;
  uint64_t hash[MAXR];
  int err;                      /* ended in a protocol error */
} seen;

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h * 0x100000001b3ULL;
}

static uint64_t walk(const sk_resp_reply *v, int depth) {
  if (v == NULL) abort();
  if (depth > 16) abort();
  uint64_t h = mix(0, (uint64_t)v->type);
  switch (v->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
  case REDIS_REPLY_ERROR:
    if (v->str == NULL || v->str[v->len] != '\0') abort();
    for (size_t i = 0; i < v->len; i++) h = mix(h, (unsigned char)v->str[i]);
    h = mix(h, v->len);
    break;
  case REDIS_REPLY_INTEGER:
    h = mix(h, (uint64_t)v->integer);
    break;
  case REDIS_REPLY_NIL:
    break;
  case REDIS_REPLY_ARRAY:
    if (v->elements > 0 && v->element == NULL) abort();
    h = mix(h, v->elements);
    for (size_t i = 0; i < v->elements; i++) h = mix(h, walk(v->element[i], depth + 1));
    break;
  default:
    abort();
  }
  return h;
}

/* Takes every reply ready; 0, or -1 after a protocol error. */
static int drain(sk_resp_reader *r, seen *s) {
  for (;;) {
    sk_resp_reply *v;
    int got = sk_resp_reader_next(r, &v);
    if (got < 0) {
      if (sk_resp_reader_error(r) == NULL) abort();
      return -1;
    }
    if (got == 0) return 0;
    if (s->n < MAXR) s->hash[s->n] = walk(v, 0);
    s->n++;
    sk_resp_reply_free(v);
  }
}

static void read_stream(const uint8_t *p, size_t n, unsigned seed, int pieces, seen *s) {
  memset(s, 0, sizeof *s);
  sk_resp_reader *r = sk_resp_reader_new();
  if (r == NULL) abort();
  size_t at = 0;
  while (at < n) {
    size_t k = pieces ? 1 + (seed = seed * 1103515245u + 12345u, (seed >> 16) % 16) : n - at;
    if (k > n - at) k = n - at;
    if (sk_resp_reader_feed(r, (const char *)p + at, k) != 0 || drain(r, s) != 0) {
      s->err = 1;
      break;
    }
    at += k;
  }
  sk_resp_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static seen a, b;
  read_stream(data + 1, size - 1, data[0], 0, &a);
  read_stream(data + 1, size - 1, data[0], 1, &b);
  /* An error is met at the same byte either way: the replies before it
  ** are the same. */
  if (a.err != b.err || a.n != b.n) abort();
  for (int i = 0; i < a.n && i < MAXR; i++) {
    if (a.hash[i] != b.hash[i]) abort();
  }
  return 0;
}
