/*
** sk_hist.h — a histogram of durations (hist.c; no Lua) for percentiles
** without keeping samples: 16 exact buckets below 16 ns, then 8 buckets per
** power of two, so a percentile it reports is within 1/16 of the truth.
** Fixed size (2 KiB), no allocation.
**
** Threading: none of its own; the owner guards it (a pool's lock).
*/
#ifndef SK_HIST_H
#define SK_HIST_H

#include <stdint.h>

#define SK_HIST_BUCKETS 496

typedef struct sk_hist {
  uint64_t n;
  uint32_t b[SK_HIST_BUCKETS];
} sk_hist;

/* Counts one duration of `ns` nanoseconds. */
void sk_hist_add(sk_hist *h, uint64_t ns);
/* The duration below which a fraction `q` (0..1) of those counted fall:
** the middle of its bucket; 0 when nothing was counted. */
uint64_t sk_hist_quantile(const sk_hist *h, double q);

#endif
