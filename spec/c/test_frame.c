/*
** test_frame.c — the frames of the process protocol (runtime/core/sk_frame.h),
** which have no Lua face: the header, the type rules of each direction, the
** reader's check before a payload is waited for, a frame cut short, memory
** that follows the bytes rather than a header's claim, and the blocking
** writer read back through a socketpair. Prints TAP. (spec/fuzz/fuzz_frame.c
** fuzzes the same reader.)
*/
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../runtime/core/sk_frame.h"

#include "tap.h"

/* Appends bytes to the reader as a read would. */
static void feed(sk_frame_reader *r, const void *p, size_t n) {
  size_t room;
  char *to = sk_frame_space(r, n, &room);
  memcpy(to, p, n);
  sk_frame_fill(r, n);
}

static size_t frame(uint8_t *out, int type, const char *payload, size_t len) {
  sk_frame_head(out, type, len);
  memcpy(out + SK_FRAME_HEAD, payload, len);
  return SK_FRAME_HEAD + len;
}

/* A check like the process pool's: an answer's job id must be "job1". */
static int calls;
static int answer_check(void *ud, const uint8_t *head, size_t avail) {
  (void)ud;
  calls++;
  if (!sk_frame_type_ok(head, SK_FRAME_TO_PARENT)) return 1;
  if (head[4] == 'R' && avail >= 4 && memcmp(head + SK_FRAME_HEAD, "job1", 4) != 0) return 1;
  return 0;
}

static void test_header(void) {
  uint8_t h[SK_FRAME_HEAD];
  sk_frame_head(h, 'J', 0x01020304u);
  ok(h[0] == 4 && h[1] == 3 && h[2] == 2 && h[3] == 1 && h[4] == 'J', "header: little-endian length, then the type");
  ok(sk_frame_len(h) == 0x01020304u, "header: the length reads back");
  sk_frame_head(h, 'R', SK_FRAME_MAX);
  ok(sk_frame_len(h) == SK_FRAME_MAX, "header: the largest payload, 4 GiB - 1");
}

static void test_types(void) {
  uint8_t h[SK_FRAME_HEAD];
  struct { int type; size_t len; int dir, want; } cases[] = {
      {'K', 20, SK_FRAME_TO_CHILD, 1},  {'K', 19, SK_FRAME_TO_CHILD, 0},
      {'Q', 0, SK_FRAME_TO_CHILD, 1},   {'Q', 1, SK_FRAME_TO_CHILD, 0},
      {'A', 8, SK_FRAME_TO_CHILD, 1},   {'A', 7, SK_FRAME_TO_CHILD, 0},
      {'J', 0, SK_FRAME_TO_CHILD, 1},   {'R', 5, SK_FRAME_TO_CHILD, 0},
      {'O', 0, SK_FRAME_TO_PARENT, 1},  {'O', 1, SK_FRAME_TO_PARENT, 0},
      {'S', 8, SK_FRAME_TO_PARENT, 1},  {'S', 9, SK_FRAME_TO_PARENT, 0},
      {'R', 9, SK_FRAME_TO_PARENT, 1},  {'C', 3, SK_FRAME_TO_PARENT, 1},
      {'J', 8, SK_FRAME_TO_PARENT, 0},  {'a', 5, SK_FRAME_TO_PARENT, 0},
  };
  int good = 1;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_frame_head(h, cases[i].type, cases[i].len);
    if (sk_frame_type_ok(h, cases[i].dir) != cases[i].want) {
      good = 0;
      printf("# type %c len %zu dir %d: got %d\n", cases[i].type, cases[i].len, cases[i].dir, !cases[i].want);
    }
  }
  ok(good, "type rules: each direction's types and their fixed lengths");
}

static void test_stream(void) {
  uint8_t buf[256];
  size_t n = 0;
  n += frame(buf + n, 'C', "12345678call", 12);
  n += frame(buf + n, 'R', "job1-result", 11);
  n += frame(buf + n, 'O', "", 0);
  sk_frame_reader r = {0};
  sk_frame f;
  int got = 0, types_ok = 1;
  /* One byte at a time: every frame still comes out whole, once. */
  for (size_t i = 0; i < n; i++) {
    feed(&r, buf + i, 1);
    while (sk_frame_next(&r, answer_check, NULL, &f) == SK_FRAME_OK) {
      const char *want[] = {"12345678call", "job1-result", ""};
      int wt[] = {'C', 'R', 'O'};
      if (got > 2 || f.type != wt[got] || f.len != strlen(want[got]) ||
          memcmp(f.payload, want[got], f.len) != 0) {
        types_ok = 0;
      }
      got++;
    }
  }
  ok(got == 3 && types_ok, "a stream fed a byte at a time gives its three frames");
  ok(sk_frame_next(&r, answer_check, NULL, &f) == SK_FRAME_MORE && sk_frame_partial(&r) == NULL,
     "then nothing is left");
  sk_frame_reader_free(&r);
}

static void test_refusals(void) {
  sk_frame_reader r = {0};
  sk_frame f;
  uint8_t h[SK_FRAME_HEAD];
  /* A bogus length on an allowed type: refused once the job id is in,
  ** without waiting for the 2 GiB the header claims. */
  sk_frame_head(h, 'R', 0x7fffffffu);
  feed(&r, h, SK_FRAME_HEAD);
  ok(sk_frame_next(&r, answer_check, NULL, &f) == SK_FRAME_MORE, "a bogus length: more wanted while the id is not in");
  feed(&r, "jobX", 4);
  int rc = sk_frame_next(&r, answer_check, NULL, &f);
  ok(rc == SK_FRAME_BAD && f.type == 'R' && f.len == 0x7fffffffu && f.payload == NULL,
     "... refused as soon as its id is in, reporting the header's type and length");
  ok(sk_frame_next(&r, answer_check, NULL, &f) == SK_FRAME_BAD, "... and refused again when asked again");
  sk_frame_reader_free(&r);

  /* A type the direction does not have: refused from the header alone. */
  calls = 0;
  sk_frame_head(h, 'a', 5);
  feed(&r, h, SK_FRAME_HEAD);
  rc = sk_frame_next(&r, answer_check, NULL, &f);
  ok(rc == SK_FRAME_BAD && f.type == 'a' && calls == 1, "an unknown type is refused from its header");
  sk_frame_reader_free(&r);

  /* A frame cut short: the end of the stream finds its header. */
  uint8_t buf[64];
  size_t n = frame(buf, 'R', "job1-0123456789", 15);
  feed(&r, buf, n - 3);
  ok(sk_frame_next(&r, answer_check, NULL, &f) == SK_FRAME_MORE, "a frame cut short wants more");
  const uint8_t *p = sk_frame_partial(&r);
  ok(p != NULL && p[4] == 'R' && sk_frame_len(p) == 15, "sk_frame_partial finds its header");
  sk_frame_drop(&r);
  ok(sk_frame_partial(&r) == NULL && sk_frame_next(&r, NULL, NULL, &f) == SK_FRAME_MORE,
     "sk_frame_drop forgets it");
  sk_frame_reader_free(&r);
}

static void test_memory(void) {
  /* A header that claims 4 GiB, then a trickle: the buffer follows the
  ** bytes that came, never the claim. */
  sk_frame_reader r = {0};
  sk_frame f;
  uint8_t h[SK_FRAME_HEAD];
  sk_frame_head(h, 'J', SK_FRAME_MAX);
  feed(&r, h, SK_FRAME_HEAD);
  size_t most = 0;
  char chunk[100];
  memset(chunk, 'x', sizeof chunk);
  for (int i = 0; i < 1000; i++) {
    size_t room;
    char *to = sk_frame_space(&r, 64, &room);
    if (to == NULL) break;
    memcpy(to, chunk, 64 < room ? 64 : room);
    sk_frame_fill(&r, 64 < room ? 64 : room);
    if (r.cap > most) most = r.cap;
    if (sk_frame_next(&r, NULL, NULL, &f) != SK_FRAME_MORE) break;
  }
  ok(r.len == SK_FRAME_HEAD + 64000 && most <= 4 * r.len + 4096,
     "a 4 GiB claim fed 64 KB holds %zu bytes of buffer, not the claim", most);
  sk_frame_reader_free(&r);

  /* A real big frame still arrives whole. */
  size_t big = 3u << 20;
  char *payload = malloc(big);
  for (size_t i = 0; i < big; i++) payload[i] = (char)(i * 7);
  sk_frame_head(h, 'J', big);
  feed(&r, h, SK_FRAME_HEAD);
  for (size_t off = 0; off < big;) {
    size_t room;
    char *to = sk_frame_space(&r, 65536, &room);
    size_t k = big - off < room ? big - off : room;
    memcpy(to, payload + off, k);
    sk_frame_fill(&r, k);
    off += k;
  }
  int rc = sk_frame_next(&r, NULL, NULL, &f);
  ok(rc == SK_FRAME_OK && f.len == big && memcmp(f.payload, payload, big) == 0,
     "a 3 MB frame read in pieces arrives whole");
  free(payload);
  sk_frame_reader_free(&r);
}

static void test_writer(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
    ok(0, "socketpair");
    return;
  }
  uint64_t id = 0x0102030405060708u;
  int w1 = sk_frame_write2(sv[1], 'C', &id, 8, "body", 4);
  int w2 = sk_frame_write(sv[1], 'O', NULL, 0);
  int w3 = sk_frame_write2(sv[1], 'R', NULL, 0, "x", SK_FRAME_MAX + (size_t)1);
  ok(w1 == 0 && w2 == 0 && w3 == -1, "the writer writes, and refuses a payload over SK_FRAME_MAX");
  sk_frame_reader r = {0};
  sk_frame f;
  size_t room;
  char *to = sk_frame_space(&r, 64, &room);
  ssize_t n = recv(sv[0], to, room, 0);
  sk_frame_fill(&r, n > 0 ? (size_t)n : 0);
  int a = sk_frame_next(&r, answer_check, NULL, &f);
  int good = a == SK_FRAME_OK && f.type == 'C' && f.len == 12 && memcmp(f.payload, &id, 8) == 0 &&
             memcmp(f.payload + 8, "body", 4) == 0;
  int b = sk_frame_next(&r, answer_check, NULL, &f);
  ok(good && b == SK_FRAME_OK && f.type == 'O' && f.len == 0, "what it wrote reads back as the same frames");
  sk_frame_reader_free(&r);
  close(sv[0]);
  close(sv[1]);
}

int main(void) {
  test_header();
  test_types();
  test_stream();
  test_refusals();
  test_memory();
  test_writer();
  return tap_done();
}
