/*
** test_resp.c — the broker client's command formatter (sk_resp_format in
** runtime/core/resp.c): byte for byte what hiredis's redisFormatCommandArgv
** makes (empty and binary arguments, lengths across digit counts, many
** arguments, seeded random commands), and what the reply reader reads back
** as an array of the same strings. Prints TAP.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../runtime/core/sk_resp.h"

#include "tap.h"

/* Formats with both; 1 when the bytes are equal and read back as argv. */
static int same(int argc, const char **argv, const size_t *lens) {
  char *mine = NULL, *theirs = NULL;
  long long n = sk_resp_format(&mine, argc, argv, lens);
  int m = redisFormatCommandArgv(&theirs, argc, argv, lens);
  int eq = n >= 0 && m >= 0 && n == m && memcmp(mine, theirs, (size_t)n) == 0 && mine[n] == '\0';
  if (eq) {
    sk_resp_reader *rd = sk_resp_reader_new();
    sk_resp_reply *v = NULL;
    eq = rd && sk_resp_reader_feed(rd, mine, (size_t)n) == 0 && sk_resp_reader_next(rd, &v) == 1 &&
         v->type == REDIS_REPLY_ARRAY && v->elements == (size_t)argc;
    for (int i = 0; eq && i < argc; i++) {
      eq = v->element[i]->type == REDIS_REPLY_STRING && v->element[i]->len == lens[i] &&
           memcmp(v->element[i]->str, argv[i], lens[i]) == 0;
    }
    sk_resp_reply_free(v);
    sk_resp_reader_free(rd);
  }
  free(mine);
  redisFreeCommand(theirs);
  return eq;
}

int main(void) {
  {
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    char *out = NULL;
    long long n = sk_resp_format(&out, 1, argv, lens);
    ok(n == 14 && out && strcmp(out, "*1\r\n$4\r\nPING\r\n") == 0, "PING: *1 $4 PING");
    free(out);
    ok(same(1, argv, lens), "PING: as hiredis formats it");
  }
  {
    const char *argv[] = {"SET", "", "a\0b\r\nc"};
    size_t lens[] = {3, 0, 6};
    ok(same(3, argv, lens), "an empty argument and one with NUL and CRLF inside");
  }
  {
    static char big[100001];
    memset(big, 'x', sizeof big);
    const char *argv[] = {"SET", big, big, big, big, big};
    size_t lens[] = {3, 9, 10, 99, 1000, 100001};
    ok(same(6, argv, lens), "lengths of 1 to 6 digits");
  }
  {
    const char *argv[200];
    size_t lens[200];
    for (int i = 0; i < 200; i++) {
      argv[i] = "arg";
      lens[i] = (size_t)(i % 4);
    }
    ok(same(200, argv, lens), "200 arguments (a three-digit count)");
  }
  {
    char *out = (char *)1;
    ok(sk_resp_format(&out, 0, NULL, NULL) == 4 && strcmp(out, "*0\r\n") == 0, "no arguments: *0");
    free(out);
    out = (char *)1;
    ok(sk_resp_format(&out, -1, NULL, NULL) == -1 && out == NULL, "a negative count is refused");
    const char *argv[] = {"x"};
    size_t lens[] = {(size_t)1 << 31};
    out = (char *)1;
    ok(sk_resp_format(&out, 1, argv, lens) == -1 && out == NULL, "a command over INT_MAX bytes is refused");
  }
  {
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    int bad = 0;
    static char pool[4096];
    for (size_t i = 0; i < sizeof pool; i++) pool[i] = (char)(i * 131 + 7);
    for (int round = 0; round < 2000; round++) {
      const char *argv[32];
      size_t lens[32];
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      int argc = 1 + (int)(s % 32);
      for (int i = 0; i < argc; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        lens[i] = (size_t)(s % 2048);
        argv[i] = pool + (s >> 32) % (sizeof pool - 2048);
      }
      if (!same(argc, argv, lens)) bad++;
    }
    ok(bad == 0, "2000 seeded random commands as hiredis formats them (%d differ)", bad);
  }
  return tap_done();
}
