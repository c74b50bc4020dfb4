/*
** sk_rbuf.h — a read buffer and the read formats of skein's streams and
** files (rbuf.c; no Lua): an integer n (n bytes, fewer only at the end),
** "l" (a line without its end of line), "L" (with it), "a" (everything to
** the end). The owner fills the buffer (sk_rbuf_space, sk_rbuf_commit)
** until sk_rbuf_take can answer a format from what it holds.
**
** Threading: a buffer belongs to one thread at a time.
*/
#ifndef SK_RBUF_H
#define SK_RBUF_H

#include <stddef.h>

typedef struct sk_rbuf {
  char *data;
  size_t start, end, cap;   /* the unread bytes are data[start, end) */
} sk_rbuf;

typedef struct sk_rfmt {
  int kind;                 /* SK_RF_N, SK_RF_LINE, SK_RF_ALL, SK_RF_ANY */
  int keep_eol;             /* "L" */
  size_t n;                 /* SK_RF_N */
} sk_rfmt;

enum { SK_RF_N, SK_RF_LINE, SK_RF_ALL, SK_RF_ANY };

/* Parses a string format ("l", "L", "a", "any" (whatever is buffered, at
** least one byte), with or without a leading '*', as
** Lua's io does); 0, or -1 when it is none of them. */
int sk_rfmt_parse(const char *s, sk_rfmt *f);
void sk_rbuf_free(sk_rbuf *b);
/* The unread bytes. */
size_t sk_rbuf_len(const sk_rbuf *b);
/* Room for at least `min` more bytes at data + end (compacting or growing);
** NULL when out of memory. */
char *sk_rbuf_space(sk_rbuf *b, size_t min, size_t *room);
void sk_rbuf_commit(sk_rbuf *b, size_t n);
/* Appends n bytes; a buffer without memory gets just enough for them (n
** rounded up to 64), not a read's worth. 0, or -1 when out of memory. */
int sk_rbuf_append(sk_rbuf *b, const char *p, size_t n);
/* Answers `f` from the buffer: 1 with out and len the bytes (valid until the
** next call on the buffer), consumed; 0 when it needs more data (never at
** `eof`); at `eof` with nothing left for it, 1 with *out NULL (the end). */
int sk_rbuf_take(sk_rbuf *b, const sk_rfmt *f, int eof, const char **out, size_t *len);
/* Drops everything buffered (after a seek). */
void sk_rbuf_clear(sk_rbuf *b);

#endif
