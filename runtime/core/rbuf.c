/*
** rbuf.c — the read buffer and read formats (sk_rbuf.h).
*/
#include <stdlib.h>
#include <string.h>

#include "sk_rbuf.h"

int sk_rfmt_parse(const char *s, sk_rfmt *f) {
  if (*s == '*') s++;
  f->n = 0;
  f->keep_eol = 0;
  if (strcmp(s, "l") == 0) f->kind = SK_RF_LINE;
  else if (strcmp(s, "L") == 0) f->kind = SK_RF_LINE, f->keep_eol = 1;
  else if (strcmp(s, "a") == 0) f->kind = SK_RF_ALL;
  else if (strcmp(s, "any") == 0) f->kind = SK_RF_ANY;
  else return -1;
  return 0;
}

void sk_rbuf_free(sk_rbuf *b) {
  free(b->data);
  *b = (sk_rbuf){0};
}

size_t sk_rbuf_len(const sk_rbuf *b) { return b->end - b->start; }

void sk_rbuf_clear(sk_rbuf *b) { b->start = b->end = 0; }

char *sk_rbuf_space(sk_rbuf *b, size_t min, size_t *room) {
  if (b->start > 0 && b->cap - b->end < min) {
    memmove(b->data, b->data + b->start, b->end - b->start);
    b->end -= b->start;
    b->start = 0;
  }
  if (b->cap - b->end < min) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->end < min) cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) return NULL;
    b->data = d;
    b->cap = cap;
  }
  *room = b->cap - b->end;
  return b->data + b->end;
}

void sk_rbuf_commit(sk_rbuf *b, size_t n) { b->end += n; }

int sk_rbuf_append(sk_rbuf *b, const char *p, size_t n) {
  if (b->data == NULL) {
    size_t cap = (n + 63) & ~(size_t)63;
    if ((b->data = malloc(cap)) == NULL) return -1;
    b->start = b->end = 0;
    b->cap = cap;
  } else {
    size_t room;
    if (sk_rbuf_space(b, n, &room) == NULL) return -1;
  }
  memcpy(b->data + b->end, p, n);
  b->end += n;
  return 0;
}

static int give(sk_rbuf *b, size_t n, size_t consumed, const char **out, size_t *len) {
  *out = b->data + b->start;
  *len = n;
  b->start += consumed;
  if (b->start == b->end) b->start = b->end = 0;  /* the bytes stay until the next fill */
  return 1;
}

int sk_rbuf_take(sk_rbuf *b, const sk_rfmt *f, int eof, const char **out, size_t *len) {
  size_t have = b->end - b->start;
  *out = NULL;
  *len = 0;
  switch (f->kind) {
  case SK_RF_N:
    if (f->n == 0) {
      /* As Lua's io: an empty string, or the end when nothing is left. */
      if (eof && have == 0) return 1;
      *out = "";
      return 1;
    }
    if (have >= f->n) return give(b, f->n, f->n, out, len);
    if (!eof) return 0;
    if (have == 0) return f->n == 0 ? give(b, 0, 0, out, len) : 1;
    return give(b, have, have, out, len);
  case SK_RF_LINE: {
    const char *p = have ? memchr(b->data + b->start, '\n', have) : NULL;
    if (p) {
      size_t upto = (size_t)(p - (b->data + b->start));
      return give(b, f->keep_eol ? upto + 1 : upto, upto + 1, out, len);
    }
    if (!eof) return 0;
    if (have == 0) return 1;
    return give(b, have, have, out, len);
  }
  case SK_RF_ANY:
    if (have > 0) return give(b, have, have, out, len);
    return eof ? 1 : 0;
  default:
    if (!eof) return 0;
    return give(b, have, have, out, len);
  }
}
