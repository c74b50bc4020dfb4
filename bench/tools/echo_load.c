/*
** echo_load.c — the load generator of bench/run's network workloads.
**
** Echo mode (the default): opens C connections to an echo server and runs a
** ping-pong on each (send a SIZE-byte message, wait until all of it came
** back, send again), first WARMUP seconds unmeasured, then DURATION seconds
** measured. A round trip counts when its echo arrives inside the measured
** window; its latency goes into a histogram with 1 us buckets. It prints
**
**   BENCH time=<window s> n=<round trips> p50=<us> p99=<us> gen_cpu=<cores>
**         srv_cpu=<cores> rss_kb=<server VmRSS> hwm_kb=<server VmHWM> ...
**
** gen_cpu is the CPU time of the generator (all its processes) over the
** window divided by the window, srv_cpu the same for the server (from
** /proc/PID/stat, all its threads): a generator well under one core while
** the server sits near one shows that the server, not the generator, sets
** the pace. With -P N the connections are split over N generator processes
** (forked, each one thread with its own epoll set) whose counts and
** histograms are summed: if the rate does not rise from -P 1 to -P 2, one
** generator process was not the bottleneck.
**
** Idle mode (-i): opens C connections, each completing one round trip (so
** the server has accepted it and its handler is waiting for the next
** message), at most 128 being set up at a time; then lets them sit for a
** moment and reads the server's VmRSS, and prints
**
**   BENCH time=<seconds to open them> n=<C> rss_kb=<server VmRSS held>
**         base_kb=<VmRSS before> hwm_kb=<VmHWM> bytes=<growth per connection>
**
** Every connection is closed with SO_LINGER 0 (a reset), so that the runs of
** a benchmark leave no TIME_WAIT sockets that would use up the local ports.
** Any error (refused, reset, a closed connection, an echo that differs from
** what was sent) ends the program with exit status 1 and a message.
**
** Usage: echo_load -p PORT [-H 127.0.0.1] [-c 100] [-s 64] [-w 1] [-d 5]
**                  [-P 1] [-k SERVER_PID] [-i]
** Built by bench/run: cc -O2 -o echo_load echo_load.c
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXSIZE 65536
#define HIST_US 1000000 /* 1 us buckets up to 1 s; the last one holds more */
#define SETUP_WINDOW 128 /* idle mode: connections being set up at a time */

enum { CONNECTING, WAITING, IDLE };

/* One connection: its socket, where the ping-pong stands, when the message
** now in flight was sent, and how much of its echo has come back. */
typedef struct conn {
  int fd;
  int state;
  size_t got;
  uint64_t sent_ns;
  char *buf;
} conn;

/* What one generator process reports to the parent: it lives in a shared
** anonymous mapping made before the fork, one per process. */
typedef struct result {
  uint64_t count;   /* round trips completed in the window */
  double cpu;       /* this process's CPU seconds over the window */
  uint32_t hist[HIST_US + 1];
} result;

static struct {
  const char *host;
  int port, conns, size, procs, idle;
  double warmup, duration;
  long server_pid;
} opt = { "127.0.0.1", 0, 100, 64, 1, 0, 1.0, 5.0, 0 };

static struct sockaddr_in addr;
static char msg[MAXSIZE];

static void die(const char *what) {
  fprintf(stderr, "echo_load: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void fail(const char *what) {
  fprintf(stderr, "echo_load: %s\n", what);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The server's CPU seconds so far (user + system, every thread), or -1 when
** there is no server pid or it cannot be read. */
static double cpu_server(void) {
  char path[64], line[4096];
  if (opt.server_pid <= 0) return -1;
  snprintf(path, sizeof path, "/proc/%ld/stat", opt.server_pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = '\0';
  /* The command name may hold spaces: fields count from the last ')'. */
  char *p = strrchr(line, ')');
  if (!p) return -1;
  unsigned long ut = 0, st = 0;
  /* After ")": state is field 3; utime and stime are fields 14 and 15. */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A field of the server's /proc/PID/status in kB ("VmRSS", "VmHWM"), or -1. */
static long status_kb(const char *field) {
  char path[64], line[256];
  long kb = -1;
  size_t len = strlen(field);
  if (opt.server_pid <= 0) return -1;
  snprintf(path, sizeof path, "/proc/%ld/status", opt.server_pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, len) == 0 && line[len] == ':') {
      kb = strtol(line + len + 1, NULL, 10);
      break;
    }
  fclose(f);
  return kb;
}

static void send_msg(conn *c) {
  ssize_t w = send(c->fd, msg, (size_t)opt.size, MSG_NOSIGNAL);
  /* One message at a time on an idle socket: the whole of it fits in the
  ** socket's send buffer, so a short write means something is wrong. */
  if (w < 0) die("send");
  if (w != opt.size) fail("short send");
  c->got = 0;
  c->sent_ns = now_ns();
  c->state = WAITING;
}

/* Starts a non-blocking connect; the connection reports EPOLLOUT once it
** is established (or failed). */
static void start_conn(int ep, conn *c) {
  int one = 1;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket");
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
    die("connect");
  c->state = CONNECTING;
  struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

/* A connection's socket became writable while connecting: checks the
** outcome, switches it to reading and sends its first message. */
static void connected(int ep, conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    errno = err;
    die("connect");
  }
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
  send_msg(c);
}

/* Reads what arrived of the echo; returns 1 when the whole message is back
** (and checked), 0 when more is to come. */
static int read_echo(conn *c) {
  ssize_t r = recv(c->fd, c->buf + c->got, (size_t)opt.size - c->got, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EINTR) return 0;
    die("recv");
  }
  if (r == 0) fail("the server closed a connection");
  if (c->state != WAITING) fail("the server sent what was not asked for");
  c->got += (size_t)r;
  if (c->got < (size_t)opt.size) return 0;
  if (memcmp(c->buf, msg, (size_t)opt.size) != 0) fail("the echo differs from the message");
  return 1;
}

static void close_all(conn *cs, int n) {
  struct linger lg = { 1, 0 };
  for (int i = 0; i < n; i++)
    if (cs[i].fd >= 0) {
      setsockopt(cs[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(cs[i].fd);
    }
}

static conn *make_conns(int n) {
  conn *cs = calloc((size_t)n, sizeof *cs);
  char *bufs = malloc((size_t)n * (size_t)opt.size);
  if (!cs || !bufs) fail("out of memory");
  for (int i = 0; i < n; i++) {
    cs[i].fd = -1;
    cs[i].buf = bufs + (size_t)i * (size_t)opt.size;
  }
  return cs;
}

static int wait_ms(uint64_t until, uint64_t now) {
  if (until <= now) return 0;
  uint64_t ms = (until - now + 999999) / 1000000;
  return ms > 1000 ? 1000 : (int)ms;
}

/* One generator process of echo mode: n connections, ping-pong until
** `end`; round trips whose echo arrives in [from, end) count into `res`.
** With read_server, returns the server's CPU seconds over [from, end)
** (-1 when unknown); otherwise -1. */
static double run_echo(int n, uint64_t from, uint64_t end, result *res, int read_server) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  conn *cs = make_conns(n);
  for (int i = 0; i < n; i++) start_conn(ep, &cs[i]);
  struct epoll_event evs[256];
  int measuring = 0;
  double cpu0 = 0, srv0 = 0;
  uint64_t t = now_ns();
  while (t < end) {
    if (!measuring && t >= from) {
      measuring = 1;
      cpu0 = cpu_self();
      if (read_server) srv0 = cpu_server();
    }
    int k = epoll_wait(ep, evs, 256, wait_ms(measuring ? end : from, t));
    if (k < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    t = now_ns();
    for (int i = 0; i < k; i++) {
      conn *c = evs[i].data.ptr;
      if (c->state == CONNECTING) {
        connected(ep, c);
        continue;
      }
      if (!read_echo(c)) continue;
      if (measuring && t < end) {
        uint64_t us = (t - c->sent_ns) / 1000;
        res->hist[us < HIST_US ? us : HIST_US]++;
        res->count++;
      }
      send_msg(c);
    }
  }
  if (!measuring) fail("the measured window never started");
  res->cpu = cpu_self() - cpu0;
  double srv = -1;
  if (read_server) {
    double s1 = cpu_server();
    if (srv0 >= 0 && s1 >= 0) srv = s1 - srv0;
  }
  close_all(cs, n);
  close(ep);
  return srv;
}

/* Idle mode: opens opt.conns connections, each doing one round trip, at
** most SETUP_WINDOW being set up at a time; holds them a moment; reports
** the server's memory. */
static void run_idle(void) {
  int n = opt.conns;
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)n + 16 > rl.rlim_cur) {
    fprintf(stderr, "echo_load: %d connections need more than the %lu open files allowed\n", n,
            (unsigned long)rl.rlim_cur);
    exit(1);
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  conn *cs = make_conns(n);
  struct epoll_event evs[256];
  long base = status_kb("VmRSS");
  uint64_t t0 = now_ns();
  int started = 0, done = 0;
  while (done < n) {
    while (started < n && started - done < SETUP_WINDOW) start_conn(ep, &cs[started++]);
    int k = epoll_wait(ep, evs, 256, 10000);
    if (k < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    if (k == 0) fail("no progress in 10 s while opening connections");
    for (int i = 0; i < k; i++) {
      conn *c = evs[i].data.ptr;
      if (c->state == CONNECTING) connected(ep, c);
      else if (read_echo(c)) {
        c->state = IDLE;
        done++;
      }
    }
  }
  double opened = (double)(now_ns() - t0) / 1e9;
  /* Let the server settle (its handlers are all waiting) while watching
  ** that no connection is dropped: an event on an idle one is an error. */
  uint64_t until = now_ns() + 500000000u;
  for (uint64_t t = now_ns(); t < until; t = now_ns()) {
    int k = epoll_wait(ep, evs, 256, wait_ms(until, t));
    if (k < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < k; i++) read_echo(evs[i].data.ptr);
  }
  long rss = status_kb("VmRSS"), hwm = status_kb("VmHWM");
  if (rss < 0 || base < 0) fail("cannot read the server's /proc/PID/status (give -k PID)");
  printf("BENCH time=%.6f n=%d rss_kb=%ld base_kb=%ld hwm_kb=%ld bytes=%.1f\n", opened, n, rss,
         base, hwm, (double)(rss - base) * 1024.0 / n);
  close_all(cs, n);
  close(ep);
}

/* The p-th percentile (0..100) of a histogram of `count` samples, in us. */
static long percentile(const uint32_t *hist, uint64_t count, double p) {
  uint64_t rank = (uint64_t)(p / 100.0 * (double)count + 0.999999);
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (long us = 0; us <= HIST_US; us++) {
    seen += hist[us];
    if (seen >= rank) return us;
  }
  return HIST_US;
}

static void usage(void) {
  fprintf(stderr, "usage: echo_load -p PORT [-H host] [-c conns] [-s size] [-w warmup] "
                  "[-d duration] [-P procs] [-k server_pid] [-i]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int ch;
  while ((ch = getopt(argc, argv, "H:p:c:s:w:d:P:k:i")) != -1) {
    switch (ch) {
      case 'H': opt.host = optarg; break;
      case 'p': opt.port = atoi(optarg); break;
      case 'c': opt.conns = atoi(optarg); break;
      case 's': opt.size = atoi(optarg); break;
      case 'w': opt.warmup = atof(optarg); break;
      case 'd': opt.duration = atof(optarg); break;
      case 'P': opt.procs = atoi(optarg); break;
      case 'k': opt.server_pid = atol(optarg); break;
      case 'i': opt.idle = 1; break;
      default: usage();
    }
  }
  if (opt.port <= 0 || opt.conns <= 0 || opt.size < 2 || opt.size > MAXSIZE ||
      opt.procs < 1 || opt.procs > opt.conns || opt.duration <= 0 || opt.warmup < 0)
    usage();
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)opt.port);
  if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) fail("-H needs an IPv4 address");
  /* The message ends with a newline, so that a line-reading server echoes
  ** it as well as a chunk-reading one. */
  for (int i = 0; i < opt.size - 1; i++) msg[i] = (char)('a' + i % 26);
  msg[opt.size - 1] = '\n';
  setvbuf(stdout, NULL, _IOLBF, 0);

  if (opt.idle) {
    run_idle();
    return 0;
  }

  /* The phases are absolute times on the monotonic clock, shared by every
  ** generator process: setup and warm-up until `from`, measured until `end`. */
  uint64_t t0 = now_ns();
  uint64_t from = t0 + (uint64_t)(opt.warmup * 1e9);
  uint64_t end = from + (uint64_t)(opt.duration * 1e9);
  size_t sz = ((sizeof(result) + 4095) & ~(size_t)4095);
  result *res = mmap(NULL, sz * (size_t)opt.procs, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (res == MAP_FAILED) die("mmap");
#define RES(i) ((result *)((char *)res + (size_t)(i) * sz))
  double srv = -1;
  if (opt.procs == 1) {
    srv = run_echo(opt.conns, from, end, RES(0), 1);
  } else {
    pid_t pids[64];
    if (opt.procs > 64) usage();
    for (int i = 0; i < opt.procs; i++) {
      int n = opt.conns / opt.procs + (i < opt.conns % opt.procs);
      pids[i] = fork();
      if (pids[i] < 0) die("fork");
      if (pids[i] == 0) {
        run_echo(n, from, end, RES(i), 0);
        _exit(0);
      }
    }
    /* The parent only reads the server's CPU time at the window's edges. */
    struct timespec ts;
    uint64_t t = now_ns();
    if (t < from) {
      ts.tv_sec = (time_t)((from - t) / 1000000000u);
      ts.tv_nsec = (long)((from - t) % 1000000000u);
      nanosleep(&ts, NULL);
    }
    double s0 = cpu_server();
    t = now_ns();
    if (t < end) {
      ts.tv_sec = (time_t)((end - t) / 1000000000u);
      ts.tv_nsec = (long)((end - t) % 1000000000u);
      nanosleep(&ts, NULL);
    }
    double s1 = cpu_server();
    if (s0 >= 0 && s1 >= 0) srv = s1 - s0;
    for (int i = 0; i < opt.procs; i++) {
      int st;
      if (waitpid(pids[i], &st, 0) < 0) die("waitpid");
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("a generator process failed");
    }
    for (int i = 1; i < opt.procs; i++) {
      RES(0)->count += RES(i)->count;
      RES(0)->cpu += RES(i)->cpu;
      for (long us = 0; us <= HIST_US; us++) RES(0)->hist[us] += RES(i)->hist[us];
    }
  }
  result *r = RES(0);
  if (r->count == 0) fail("no round trip completed in the measured window");
  printf("BENCH time=%.6f n=%llu p50=%ld p99=%ld gen_cpu=%.3f srv_cpu=%.3f rss_kb=%ld "
         "hwm_kb=%ld conns=%d procs=%d\n",
         opt.duration, (unsigned long long)r->count, percentile(r->hist, r->count, 50),
         percentile(r->hist, r->count, 99), r->cpu / opt.duration,
         srv < 0 ? -1.0 : srv / opt.duration, status_kb("VmRSS"), status_kb("VmHWM"),
         opt.conns, opt.procs);
  return 0;
}
