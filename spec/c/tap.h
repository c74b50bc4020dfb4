/*
** tap.h — the C tests' one TAP helper: ok(cond, fmt, ...) prints "ok N -
** ..." or "not ok N - ...", and tap_done() prints the plan and gives the
** exit status (1 when any check failed). Each test is one file, so the
** counters are static here.
*/
#ifndef SK_TAP_H
#define SK_TAP_H

#include <stdarg.h>
#include <stdio.h>

static int ntest, nfail;

static void ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(int cond, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s %d - ", cond ? "ok" : "not ok", ++ntest);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  if (!cond) nfail++;
}

static int tap_done(void) {
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}

#endif
