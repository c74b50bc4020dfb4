/*
** test_trace.c — the trace recorder (runtime/core/sk_trace.h) under many
** writers, and the C API that starts and stops it (skein.h). Eight threads
** each record more events than a buffer holds, at once, into one file; the
** file must then be the array's opening line followed by whole event lines
** only (each a JSON object ending with ","), every event there exactly
** once, every thread named. Then skein_trace_start/stop around a script:
** what ran between them is in the file, what ran after is not. Prints TAP.
*/
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../runtime/core/sk_trace.h"
#include "../../runtime/include/skein.h"

#include "tap.h"

#define THREADS 8
#define EVENTS 5000

static void *recorder(void *arg) {
  long n = (long)arg;
  char name[32];
  snprintf(name, sizeof name, "writer %ld", n);
  sk_trace_thread_name(name);
  for (int i = 0; i < EVENTS; i++) {
    uint64_t t0 = sk_trace_now();
    sk_trace_run((uint64_t)(n * EVENTS + i + 1), t0);
    if (i % 1000 == 0) sk_trace_idle(1);
  }
  sk_trace_fail("task failed", (uint64_t)n, "a \"quoted\"\nmessage\\");
  sk_trace_thread_end();
  return NULL;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  *len = fread(s, 1, (size_t)n, f);
  s[*len] = 0;
  fclose(f);
  return s;
}

/* Counts the places where `needle` occurs in s (memmem over what is left:
** strstr under a sanitizer measures the whole rest of a long string each
** time). */
static int count(const char *s, const char *needle) {
  int n = 0;
  size_t len = strlen(s), k = strlen(needle);
  for (const char *p = s, *end = s + len; (p = memmem(p, (size_t)(end - p), needle, k)) != NULL;
       p += k) {
    n++;
  }
  return n;
}

int main(void) {
  char path[] = "/tmp/skein-trace-test.XXXXXX";
  int fd = mkstemp(path);
  close(fd);

  ok(sk_trace_start(path, 0) == 0, "a trace starts");
  ok(SK_TRACING(), "and records");
  pthread_t th[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, recorder, (void *)i);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  sk_trace_stop();
  ok(!SK_TRACING(), "stop stops recording");

  size_t len;
  char *s = slurp(path, &len);
  ok(s != NULL && strncmp(s, "[\n", 2) == 0, "the file opens the array");
  int whole = 1, lines = 0;
  for (char *p = s + 2; p < s + len;) {
    char *nl = strchr(p, '\n');
    if (nl == NULL || p[0] != '{' || nl - p < 3 || nl[-1] != ',' || nl[-2] != '}') {
      whole = 0;
      break;
    }
    lines++;
    p = nl + 1;
  }
  ok(whole, "only whole event lines follow (%d)", lines);
  ok(count(s, "\"name\":\"task\",\"cat\":\"task\"") == THREADS * EVENTS,
     "every event once, none lost or torn");
  ok(count(s, "\"name\":\"thread_name\"") == THREADS, "every thread named once");
  ok(count(s, "\"name\":\"process_name\"") == 1, "the process named once");
  ok(strstr(s, "writer 7") != NULL, "with its own name");
  ok(strstr(s, "\"error\":\"a \\\"quoted\\\"\\u000amessage\\\\\"") != NULL,
     "messages are escaped");
  free(s);

  /* The C API around a script. */
  ok(skein_trace_start(path) == 0, "skein_trace_start");
  skein_runtime *rt = skein_new(NULL);
  ok(rt != NULL, "a runtime");
  ok(skein_dostring(rt, "for i = 1, 3 do skein.spawn(function() skein.sleep(0.001) end):join() end",
                    "=traced") == 0, "a traced script runs");
  skein_trace_stop();
  ok(skein_dostring(rt, "for i = 1, 5 do skein.spawn(function() end):join() end", "=untraced") == 0,
     "an untraced one too");
  ok(skein_close(rt) == 0, "the runtime closes");
  s = slurp(path, &len);
  ok(s && count(s, "\"name\":\"task\",\"cat\":\"task\"") >= 3 &&
     strstr(s, "\"args\":{\"task\":4}") == NULL, "the trace has the first script's tasks only");
  ok(s && count(s, "\"name\":\"sleep\",\"cat\":\"wait\",\"ph\":\"b\"") == 3 &&
     count(s, "\"name\":\"sleep\",\"cat\":\"wait\",\"ph\":\"e\"") == 3, "and their waits");
  ok(skein_trace_start("/nonexistent-dir/x.json") < 0, "a file that cannot be opened: an error");
  free(s);
  unlink(path);
  return tap_done();
}
