/*
** hist.c — a histogram of durations (sk_hist.h).
**
** Bucket of v: v itself below 16; else, with o the position of v's top bit
** (o >= 4) and s the three bits under it, 16 + (o - 4) * 8 + s. Bucket
** (o, s) holds [(8 + s) << (o - 3), (9 + s) << (o - 3)).
*/
#include "sk_hist.h"

static int bucket(uint64_t v) {
  if (v < 16) return (int)v;
  int o = 63 - __builtin_clzll(v);
  int s = (int)((v >> (o - 3)) & 7);
  return 16 + (o - 4) * 8 + s;
}

void sk_hist_add(sk_hist *h, uint64_t ns) {
  h->b[bucket(ns)]++;
  h->n++;
}

uint64_t sk_hist_quantile(const sk_hist *h, double q) {
  if (h->n == 0) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  uint64_t want = (uint64_t)(q * (double)h->n + 0.999999);
  if (want == 0) want = 1;
  uint64_t seen = 0;
  for (int i = 0; i < SK_HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= want) {
      if (i < 16) return (uint64_t)i;
      int o = (i - 16) / 8 + 4, s = (i - 16) % 8;
      uint64_t lo = (uint64_t)(8 + s) << (o - 3), width = (uint64_t)1 << (o - 3);
      return lo + width / 2;
    }
  }
  return 0;
}
