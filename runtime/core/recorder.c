/*
** recorder.c — the trace recorder (sk_trace.h): thread-local buffers of
** binary events, turned into Chrome trace-event JSON lines when written.
**
** Sessions: each start makes a session (its descriptor, whether this
** process began the file, its path) in a table that only grows; the
** descriptors stay open until the process exits, so a thread writing what
** it recorded under an older session never meets a closed or reused
** descriptor. `cur_gen` names the current session (0: none yet). A buffer
** belongs to the session it was filled under and is written to that
** session's file, whatever happened since.
**
** Threads: `tb` and the names are the owning thread's; `lock` guards
** starting and stopping (the session table, the environment) and the
** interned names. Recording takes no lock.
*/
#define _GNU_SOURCE
#include "sk_trace.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#ifndef PIPE_BUF
#define PIPE_BUF 4096
#endif

enum { EV_RUN, EV_WAIT, EV_SUBMIT, EV_JOB, EV_COUNTER, EV_PROC_START, EV_PROC_EXIT, EV_FAIL };

/* One recorded event; what the fields mean depends on `type`. */
typedef struct ev {
  uint64_t ts, end, id;
  int64_t a, b;
  const char *name, *k1, *k2;
  char *text;                   /* owned: a failure's message */
  uint8_t type, flag;
} ev;

#define NEV 1024                /* events per thread buffer */
#define MAX_SESSIONS 32
#define IDLE_NS 2000000ull      /* an idle worker writes when its last write is older */

typedef struct tbuf {
  int n;
  unsigned gen;                 /* the session these events belong to */
  unsigned named;               /* the last session given this thread's name */
  uint64_t last;                /* when it was last written */
  ev ev[NEV];
} tbuf;

typedef struct session {
  int fd;
  int root;                     /* this process truncated the file: it closes the array */
  int proc_named;               /* the process name was written (atomic) */
  char path[PATH_MAX];
} session;

volatile int sk_trace_on;

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t lock;
static session sessions[MAX_SESSIONS + 1];
static unsigned nsessions, cur_gen;   /* cur_gen: atomic */
static long pid;
static char proc_name[160];
static uint64_t next_id;              /* atomic */

typedef struct interned {
  struct interned *next;
  char s[];
} interned;
static interned *names;

static _Thread_local tbuf *tb;
static _Thread_local long my_tid;
static _Thread_local char thread_name[96];

static void init(void) { uv_mutex_init(&lock); }

static long tid(void) {
  if (my_tid == 0) my_tid = (long)syscall(SYS_gettid);
  return my_tid;
}

uint64_t sk_trace_now(void) { return uv_hrtime(); }

uint64_t sk_trace_next_id(void) { return __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED); }

uint64_t sk_trace_flow(long p, uint64_t n) {
  if (p <= 0) p = pid;
  return ((uint64_t)(p & 0x7fffff) << 30) | (n & 0x3fffffff);
}

const char *sk_trace_intern(const char *s) {
  uv_once(&once, init);
  uv_mutex_lock(&lock);
  interned *i;
  for (i = names; i; i = i->next) {
    if (strcmp(i->s, s) == 0) break;
  }
  if (i == NULL && (i = malloc(sizeof *i + strlen(s) + 1)) != NULL) {
    strcpy(i->s, s);
    i->next = names;
    names = i;
  }
  uv_mutex_unlock(&lock);
  return i ? i->s : NULL;
}

void sk_trace_process_name(const char *name) {
  snprintf(proc_name, sizeof proc_name, "%s", name);
}

void sk_trace_thread_name(const char *name) {
  snprintf(thread_name, sizeof thread_name, "%s", name);
  if (tb) tb->named = 0;        /* written again with the next flush */
}

/* The default name of this process: its command line, shortened. */
static void default_proc_name(void) {
  if (proc_name[0]) return;
  char cmd[512];
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) {
    snprintf(proc_name, sizeof proc_name, "skein");
    return;
  }
  cmd[n] = 0;
  const char *arg0 = strrchr(cmd, '/') ? strrchr(cmd, '/') + 1 : cmd;
  size_t len = (size_t)snprintf(proc_name, sizeof proc_name, "%s", arg0);
  for (const char *p = cmd + strlen(cmd) + 1; p < cmd + n && len < sizeof proc_name - 1;
       p += strlen(p) + 1) {
    len += (size_t)snprintf(proc_name + len, sizeof proc_name - len, " %s", p);
  }
}

/* --------------------------------------------------------------- output */

/* Whole lines gathered for one write of at most PIPE_BUF bytes. */
typedef struct out {
  int fd;
  size_t len;
  char buf[PIPE_BUF];
} out;

static void out_write(out *o) {
  size_t off = 0;
  while (off < o->len) {
    ssize_t n = write(o->fd, o->buf + off, o->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;          /* a full disk loses the trace, not the program */
    off += (size_t)n;
  }
  o->len = 0;
}

static void out_line(out *o, const char *line, size_t len) {
  if (len > sizeof o->buf) return;
  if (o->len + len > sizeof o->buf) out_write(o);
  memcpy(o->buf + o->len, line, len);
  o->len += len;
}

/* Appends s to d (room n, n > 0) as the inside of a JSON string, cut short
** to fit; returns the length written. */
static size_t esc(char *d, size_t n, const char *s) {
  size_t k = 0;
  for (; *s && k + 7 < n; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      d[k++] = '\\';
      d[k++] = (char)c;
    } else if (c < 0x20) {
      k += (size_t)snprintf(d + k, n - k, "\\u%04x", c);
    } else {
      d[k++] = (char)c;
    }
  }
  d[k] = 0;
  return k;
}

#define TS(ns) (unsigned long long)((ns) / 1000), (unsigned)((ns) % 1000)

/* The lines of one event into o. */
static void emit(out *o, const ev *e) {
  char line[2048], a[600], b[1200];
  int n = 0;
  long t = tid();
  esc(a, sizeof a, e->name ? e->name : "?");
  switch (e->type) {
    case EV_RUN:
      n = snprintf(line, sizeof line,
                   "{\"name\":\"task\",\"cat\":\"task\",\"ph\":\"X\",\"pid\":%ld,\"tid\":%ld,"
                   "\"ts\":%llu.%03u,\"dur\":%llu.%03u,\"args\":{\"task\":%llu}},\n",
                   pid, t, TS(e->ts), TS(e->end - e->ts), (unsigned long long)e->id);
      break;
    case EV_WAIT: {
      unsigned long long key = ((unsigned long long)(t & 0x3fffff) << 30) | (e->id & 0x3fffffff);
      n = snprintf(line, sizeof line,
                   "{\"name\":\"%s\",\"cat\":\"wait\",\"ph\":\"b\",\"id\":\"0x%llx\",\"pid\":%ld,"
                   "\"tid\":%ld,\"ts\":%llu.%03u,\"args\":{\"task\":%llu}},\n"
                   "{\"name\":\"%s\",\"cat\":\"wait\",\"ph\":\"e\",\"id\":\"0x%llx\",\"pid\":%ld,"
                   "\"tid\":%ld,\"ts\":%llu.%03u},\n",
                   a, key, pid, t, TS(e->ts), (unsigned long long)e->id, a, key, pid, t,
                   TS(e->end));
      break;
    }
    case EV_SUBMIT:
      n = snprintf(line, sizeof line,
                   "{\"name\":\"submit\",\"cat\":\"pool\",\"ph\":\"X\",\"pid\":%ld,\"tid\":%ld,"
                   "\"ts\":%llu.%03u,\"dur\":%llu.%03u,"
                   "\"args\":{\"pool\":\"%s\",\"job\":\"0x%llx\"}},\n"
                   "{\"name\":\"job\",\"cat\":\"pool\",\"ph\":\"s\",\"id\":\"0x%llx\",\"pid\":%ld,"
                   "\"tid\":%ld,\"ts\":%llu.%03u},\n",
                   pid, t, TS(e->ts), TS(e->end - e->ts), a, (unsigned long long)e->id,
                   (unsigned long long)e->id, pid, t, TS(e->ts));
      break;
    case EV_JOB:
      n = snprintf(line, sizeof line,
                   "{\"name\":\"job\",\"cat\":\"pool\",\"ph\":\"X\",\"pid\":%ld,\"tid\":%ld,"
                   "\"ts\":%llu.%03u,\"dur\":%llu.%03u,"
                   "\"args\":{\"pool\":\"%s\",\"job\":\"0x%llx\",\"queued_us\":%lld,\"failed\":%s}},\n"
                   "{\"name\":\"job\",\"cat\":\"pool\",\"ph\":\"f\",\"bp\":\"e\",\"id\":\"0x%llx\","
                   "\"pid\":%ld,\"tid\":%ld,\"ts\":%llu.%03u},\n",
                   pid, t, TS(e->ts), TS(e->end - e->ts), a, (unsigned long long)e->id,
                   (long long)(e->a / 1000), e->flag ? "true" : "false", (unsigned long long)e->id,
                   pid, t, TS(e->ts));
      break;
    case EV_COUNTER: {
      char idpart[48] = "";
      if (e->flag) snprintf(idpart, sizeof idpart, "\"id\":\"%ld\",", t);
      if (e->k2) {
        n = snprintf(line, sizeof line,
                     "{\"name\":\"%s\",\"ph\":\"C\",%s\"pid\":%ld,\"tid\":%ld,\"ts\":%llu.%03u,"
                     "\"args\":{\"%s\":%lld,\"%s\":%lld}},\n",
                     a, idpart, pid, t, TS(e->ts), e->k1, (long long)e->a, e->k2, (long long)e->b);
      } else {
        n = snprintf(line, sizeof line,
                     "{\"name\":\"%s\",\"ph\":\"C\",%s\"pid\":%ld,\"tid\":%ld,\"ts\":%llu.%03u,"
                     "\"args\":{\"%s\":%lld}},\n",
                     a, idpart, pid, t, TS(e->ts), e->k1, (long long)e->a);
      }
      break;
    }
    case EV_PROC_START:
      n = snprintf(line, sizeof line,
                   "{\"name\":\"process start\",\"cat\":\"process\",\"ph\":\"i\",\"s\":\"t\","
                   "\"pid\":%ld,\"tid\":%ld,\"ts\":%llu.%03u,\"args\":{\"pid\":%llu}},\n",
                   pid, t, TS(e->ts), (unsigned long long)e->id);
      break;
    case EV_PROC_EXIT:
      n = snprintf(line, sizeof line,
                   "{\"name\":\"process exit\",\"cat\":\"process\",\"ph\":\"i\",\"s\":\"t\","
                   "\"pid\":%ld,\"tid\":%ld,\"ts\":%llu.%03u,"
                   "\"args\":{\"pid\":%llu,\"code\":%lld,\"signal\":%lld}},\n",
                   pid, t, TS(e->ts), (unsigned long long)e->id, (long long)e->a, (long long)e->b);
      break;
    case EV_FAIL:
      esc(b, sizeof b, e->text ? e->text : "?");
      n = snprintf(line, sizeof line,
                   "{\"name\":\"%s\",\"cat\":\"failure\",\"ph\":\"i\",\"s\":\"t\","
                   "\"pid\":%ld,\"tid\":%ld,\"ts\":%llu.%03u,"
                   "\"args\":{\"id\":\"0x%llx\",\"error\":\"%s\"}},\n",
                   a, pid, t, TS(e->ts), (unsigned long long)e->id, b);
      break;
  }
  if (n > 0 && (size_t)n < sizeof line) out_line(o, line, (size_t)n);
}

/* The metadata lines: the process's name once per session, the thread's
** once per session (or again after it was renamed). */
static void emit_names(out *o, tbuf *b) {
  char line[512], nm[200];
  int n;
  session *s = &sessions[b->gen];
  if (__atomic_exchange_n(&s->proc_named, 1, __ATOMIC_ACQ_REL) == 0) {
    default_proc_name();
    esc(nm, sizeof nm, proc_name);
    n = snprintf(line, sizeof line,
                 "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%ld,\"tid\":%ld,"
                 "\"args\":{\"name\":\"%s\"}},\n", pid, tid(), nm);
    if (n > 0 && (size_t)n < sizeof line) out_line(o, line, (size_t)n);
  }
  if (b->named != b->gen) {
    esc(nm, sizeof nm, thread_name[0] ? thread_name : "thread");
    n = snprintf(line, sizeof line,
                 "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%ld,\"tid\":%ld,"
                 "\"args\":{\"name\":\"%s\"}},\n", pid, tid(), nm);
    if (n > 0 && (size_t)n < sizeof line) out_line(o, line, (size_t)n);
    b->named = b->gen;
  }
}

/* Writes what buffer b holds to its session's file and empties it. */
static void flush(tbuf *b) {
  if (b->n > 0 && b->gen != 0) {
    out o;
    o.fd = sessions[b->gen].fd;
    o.len = 0;
    emit_names(&o, b);
    for (int i = 0; i < b->n; i++) emit(&o, &b->ev[i]);
    out_write(&o);
  }
  for (int i = 0; i < b->n; i++) free(b->ev[i].text);
  b->n = 0;
  b->last = uv_hrtime();
}

/* A free event in this thread's buffer (writing it out when full), or NULL
** when there is no memory for a buffer. */
static ev *slot(void) {
  tbuf *b = tb;
  unsigned g = __atomic_load_n(&cur_gen, __ATOMIC_ACQUIRE);
  if (b == NULL) {
    if ((b = tb = malloc(sizeof *b)) == NULL) return NULL;
    b->n = 0;
    b->gen = g;
    b->named = 0;
    b->last = uv_hrtime();
  }
  if (b->gen != g) {
    flush(b);
    b->gen = g;
  }
  if (b->n == NEV) flush(b);
  ev *e = &b->ev[b->n++];
  e->name = NULL;
  e->text = NULL;
  e->flag = 0;
  return e;
}

void sk_trace_idle(int force) {
  tbuf *b = tb;
  if (b == NULL || b->n == 0) return;
  if (force || b->n >= NEV / 4 || uv_hrtime() - b->last >= IDLE_NS) flush(b);
}

void sk_trace_thread_end(void) {
  tbuf *b = tb;
  if (b == NULL) return;
  tb = NULL;
  flush(b);
  free(b);
}

/* ------------------------------------------------------------ recorders */

void sk_trace_run(uint64_t task, uint64_t start) {
  uint64_t now = uv_hrtime();
  ev *e = slot();
  if (e == NULL) return;
  e->type = EV_RUN;
  e->ts = start;
  e->end = now;
  e->id = task;
}

void sk_trace_wait(const char *what, uint64_t task, uint64_t start) {
  uint64_t now = uv_hrtime();
  ev *e = slot();
  if (e == NULL) return;
  e->type = EV_WAIT;
  e->name = what;
  e->ts = start;
  e->end = now;
  e->id = task;
}

void sk_trace_submit(const char *pool, uint64_t flow, uint64_t start) {
  uint64_t now = uv_hrtime();
  ev *e = slot();
  if (e == NULL) return;
  e->type = EV_SUBMIT;
  e->name = pool;
  e->ts = start;
  e->end = now;
  e->id = flow;
}

void sk_trace_job(const char *pool, uint64_t flow, uint64_t start, uint64_t queued, int failed) {
  uint64_t now = uv_hrtime();
  ev *e = slot();
  if (e == NULL) return;
  e->type = EV_JOB;
  e->name = pool;
  e->ts = start;
  e->end = now;
  e->id = flow;
  e->a = (int64_t)queued;
  e->flag = failed != 0;
}

void sk_trace_counter(const char *name, const char *k1, int64_t v1, const char *k2, int64_t v2,
                      int per_thread) {
  uint64_t now = uv_hrtime();
  ev *e = slot();
  if (e == NULL) return;
  e->type = EV_COUNTER;
  e->name = name;
  e->ts = now;
  e->k1 = k1;
  e->a = v1;
  e->k2 = k2;
  e->b = v2;
  e->flag = per_thread != 0;
}

void sk_trace_proc(int exited, long p, int64_t status, int sig) {
  uint64_t now = uv_hrtime();
  ev *e = slot();
  if (e == NULL) return;
  e->type = exited ? EV_PROC_EXIT : EV_PROC_START;
  e->ts = now;
  e->id = (uint64_t)p;
  e->a = status;
  e->b = sig;
}

void sk_trace_fail(const char *what, uint64_t id, const char *msg) {
  uint64_t now = uv_hrtime();
  ev *e = slot();
  if (e == NULL) return;
  e->type = EV_FAIL;
  e->name = what;
  e->ts = now;
  e->id = id;
  e->text = msg ? strndup(msg, 1000) : NULL;
}

/* ------------------------------------------------------------- sessions */

/* At exit, after the program's workers are gone: this thread's events
** go out, and each file this process began gets its closing bracket. */
static void at_exit(void) {
  sk_trace_on = 0;
  sk_trace_thread_end();
  uv_mutex_lock(&lock);
  for (unsigned g = 1; g <= nsessions; g++) {
    session *s = &sessions[g];
    if (s->fd < 0) continue;
    if (s->root) {
      char line[256];
      uint64_t now = uv_hrtime();
      int n = snprintf(line, sizeof line,
                       "{\"name\":\"trace end\",\"cat\":\"trace\",\"ph\":\"i\",\"s\":\"g\","
                       "\"pid\":%ld,\"tid\":%ld,\"ts\":%llu.%03u}]\n", pid, tid(), TS(now));
      if (n > 0 && write(s->fd, line, (size_t)n) < 0) { /* nothing to do */ }
    }
    close(s->fd);
    s->fd = -1;
  }
  uv_mutex_unlock(&lock);
}

int sk_trace_start(const char *path, int append) {
  static int registered;
  uv_once(&once, init);
  char abs[PATH_MAX];
  if (path == NULL || *path == 0) return -EINVAL;
  if (path[0] == '/') {
    if (snprintf(abs, sizeof abs, "%s", path) >= (int)sizeof abs) return -ENAMETOOLONG;
  } else {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL) return -errno;
    if (snprintf(abs, sizeof abs, "%s/%s", cwd, path) >= (int)sizeof abs) return -ENAMETOOLONG;
  }
  uv_mutex_lock(&lock);
  if (nsessions == MAX_SESSIONS) {
    uv_mutex_unlock(&lock);
    return -EMFILE;
  }
  int fd = open(abs, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0644);
  if (fd < 0) {
    int e = errno;
    uv_mutex_unlock(&lock);
    return -e;
  }
  if (!append && write(fd, "[\n", 2) != 2) {
    int e = errno ? errno : EIO;
    close(fd);
    uv_mutex_unlock(&lock);
    return -e;
  }
  pid = (long)getpid();
  session *s = &sessions[++nsessions];
  s->fd = fd;
  s->root = !append;
  s->proc_named = 0;
  memcpy(s->path, abs, sizeof abs);
  __atomic_store_n(&cur_gen, nsessions, __ATOMIC_RELEASE);
  sk_trace_on = 1;
  if (!registered) {
    registered = 1;
    atexit(at_exit);
  }
  uv_mutex_unlock(&lock);
  return 0;
}

void sk_trace_stop(void) {
  uv_once(&once, init);
  uv_mutex_lock(&lock);
  sk_trace_on = 0;
  uv_mutex_unlock(&lock);
  if (tb) flush(tb);
}

int sk_trace_path(char *buf, unsigned n) {
  uv_once(&once, init);
  uv_mutex_lock(&lock);
  int rc = -1;
  if (sk_trace_on && cur_gen) {
    snprintf(buf, n, "%s", sessions[cur_gen].path);
    rc = 0;
  }
  uv_mutex_unlock(&lock);
  return rc;
}

int sk_trace_from_env(void) {
  const char *path = getenv("SKEIN_TRACE");
  if (path == NULL || *path == 0) return 0;
  int append = getenv("SKEIN_TRACE_APPEND") != NULL;
  int rc = sk_trace_start(path, append);
  if (rc == 0 && !append) {
    /* Programs this one starts (worker processes get it anyway) add to
    ** the same file, by its absolute path. */
    char abs[PATH_MAX];
    if (sk_trace_path(abs, sizeof abs) == 0) setenv("SKEIN_TRACE", abs, 1);
    setenv("SKEIN_TRACE_APPEND", "1", 1);
  }
  return rc;
}
