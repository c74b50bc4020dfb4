/*
** test_rbuf.c — the read buffer and read formats of runtime/core/sk_rbuf.h,
** which have no Lua face of their own: format parsing, a line split across
** fills, "L" keeping its end of line, n-byte reads short only at the end, the
** end itself (nothing left: the end; a last line without a newline), "a",
** "any", a 0-byte read,
** growth past the first allocation, and append (a buffer without memory
** gets just what is appended). Prints TAP.
*/
#include <string.h>

#include "../../runtime/core/sk_rbuf.h"

#include "tap.h"

static void fill(sk_rbuf *b, const char *s, size_t n) {
  size_t room;
  char *to = sk_rbuf_space(b, n, &room);
  memcpy(to, s, n);
  sk_rbuf_commit(b, n);
}

static int take_is(sk_rbuf *b, const sk_rfmt *f, int eof, const char *want) {
  const char *out;
  size_t len;
  if (!sk_rbuf_take(b, f, eof, &out, &len)) return want == NULL ? 2 : 0;
  if (want == NULL) return 0;
  if (strcmp(want, "<end>") == 0) return out == NULL;
  return out && len == strlen(want) && memcmp(out, want, len) == 0;
}

int main(void) {
  sk_rfmt l, L, a, n3, bad;
  ok(sk_rfmt_parse("l", &l) == 0 && l.kind == SK_RF_LINE && !l.keep_eol, "\"l\" parses");
  ok(sk_rfmt_parse("*L", &L) == 0 && L.kind == SK_RF_LINE && L.keep_eol, "\"*L\" parses");
  ok(sk_rfmt_parse("a", &a) == 0 && a.kind == SK_RF_ALL, "\"a\" parses");
  ok(sk_rfmt_parse("x", &bad) == -1 && sk_rfmt_parse("", &bad) == -1, "others are refused");
  n3 = (sk_rfmt){.kind = SK_RF_N, .n = 3};

  sk_rbuf b = {0};
  fill(&b, "ab", 2);
  ok(take_is(&b, &l, 0, NULL) == 2, "no newline yet: needs more");
  fill(&b, "c\nde", 4);
  ok(take_is(&b, &l, 0, "abc"), "a line split across fills, without its newline");
  ok(take_is(&b, &n3, 0, NULL) == 2, "2 of 3 bytes: needs more");
  ok(take_is(&b, &n3, 1, "de"), "fewer bytes only at the end");
  ok(take_is(&b, &n3, 1, "<end>"), "nothing left at the end: the end");
  fill(&b, "x\r\ny", 4);
  ok(take_is(&b, &L, 0, "x\r\n"), "\"L\" keeps the end of line");
  ok(take_is(&b, &l, 1, "y"), "a last line without a newline");
  ok(take_is(&b, &l, 1, "<end>"), "then the end");
  ok(take_is(&b, &a, 0, NULL) == 2, "\"a\" waits for the end");
  ok(take_is(&b, &a, 1, ""), "\"a\" at the end gives an empty string");

  char big[10000];
  memset(big, 'z', sizeof big);
  fill(&b, big, sizeof big);
  fill(&b, "\n", 1);
  const char *out;
  size_t len;
  ok(sk_rbuf_take(&b, &l, 0, &out, &len) == 1 && len == sizeof big, "grows past 4 KiB");
  ok(sk_rbuf_len(&b) == 0, "all consumed");

  sk_rfmt any, n0 = {.kind = SK_RF_N, .n = 0};
  ok(sk_rfmt_parse("any", &any) == 0 && any.kind == SK_RF_ANY, "\"any\" parses");
  ok(take_is(&b, &any, 0, NULL) == 2, "\"any\" on nothing: needs more");
  fill(&b, "pq", 2);
  ok(take_is(&b, &any, 0, "pq"), "\"any\" gives what is buffered");
  ok(take_is(&b, &any, 1, "<end>"), "\"any\" at the end with nothing: the end");
  ok(take_is(&b, &n0, 0, ""), "0 bytes: an empty string before the end");
  ok(take_is(&b, &n0, 1, "<end>"), "0 bytes at the end: the end");
  sk_rbuf_free(&b);

  ok(sk_rbuf_append(&b, "hello\n", 6) == 0 && b.cap == 64, "append to no memory: 64 bytes, not 4 KiB");
  ok(sk_rbuf_append(&b, big, sizeof big) == 0 && b.cap >= 6 + sizeof big, "append grows as a fill does");
  ok(take_is(&b, &l, 0, "hello") && sk_rbuf_len(&b) == sizeof big, "what was appended reads back");
  sk_rbuf_free(&b);
  return tap_done();
}
