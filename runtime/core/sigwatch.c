/*
** sigwatch.c — signal watches and names (sk_signal.h).
*/
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "sk_signal.h"

static const struct {
  const char *name;
  int num;
} names[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT}, {"SIGILL", SIGILL},
    {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},   {"SIGBUS", SIGBUS},   {"SIGFPE", SIGFPE},
    {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1},   {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},   {"SIGTERM", SIGTERM}, {"SIGCHLD", SIGCHLD},
    {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},   {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},
    {"SIGTTOU", SIGTTOU}, {"SIGURG", SIGURG},     {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},
    {"SIGSYS", SIGSYS},
};

int sk_sig_number(const char *name) {
  if (strncmp(name, "SIG", 3) != 0) {
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
      if (strcmp(names[i].name + 3, name) == 0) return names[i].num;
    }
    return 0;
  }
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strcmp(names[i].name, name) == 0) return names[i].num;
  }
  return 0;
}

const char *sk_sig_name(int signum) {
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (names[i].num == signum) return names[i].name;
  }
  return NULL;
}

int sk_sig_watchable(int signum) {
  switch (signum) {
  case SIGCHLD: case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGFPE:
  case SIGILL: case SIGABRT: case SIGTRAP: case SIGSYS: return 0;
  default: return signum > 0 && signum < NSIG && sk_sig_name(signum) != NULL;
  }
}

/* The process-wide count of watches per signal and the disposition each
** signal had before its first watch, under `lock`. */
static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t lock;
static int watches[NSIG];
static struct sigaction saved[NSIG];

static void init_lock(void) { uv_mutex_init(&lock); }

static void on_signal(uv_signal_t *h, int signum) {
  sk_sigwatch *s = (sk_sigwatch *)h;
  (void)signum;
  s->count++;
  sk_iowaitlist_wake(&s->waiters);
  if (s->notify) s->notify(s);
}

static void on_closed(uv_handle_t *h) { free(h); }

int sk_sigwatch_start(uv_loop_t *loop, int signum, int ref, sk_sigwatch **out) {
  if (!sk_sig_watchable(signum)) return UV_EINVAL;
  sk_sigwatch *s = calloc(1, sizeof *s);
  if (s == NULL) return UV_ENOMEM;
  s->signum = signum;
  sk_iowaitlist_init(&s->waiters);
  uv_once(&once, init_lock);
  uv_mutex_lock(&lock);
  if (watches[signum] == 0) sigaction(signum, NULL, &saved[signum]);
  int inited = 0, rc = uv_signal_init(loop, &s->h);
  if (rc == 0) {
    inited = 1;
    rc = uv_signal_start(&s->h, on_signal, signum);
    if (rc == 0) watches[signum]++;
  }
  uv_mutex_unlock(&lock);
  if (rc != 0) {
    if (inited) uv_close((uv_handle_t *)&s->h, on_closed);
    else free(s);
    return rc;
  }
  if (!ref) uv_unref((uv_handle_t *)&s->h);
  *out = s;
  return 0;
}

void sk_sigwatch_ref(sk_sigwatch *s, int ref) {
  if (ref) uv_ref((uv_handle_t *)&s->h);
  else uv_unref((uv_handle_t *)&s->h);
}

void sk_sigwatch_close(sk_sigwatch *s) {
  if (s->closed) return;
  s->closed = 1;
  int signum = s->signum;
  uv_mutex_lock(&lock);
  uv_signal_stop(&s->h);
  if (--watches[signum] == 0) {
    struct sigaction now;
    sigaction(signum, NULL, &now);
    if (!(now.sa_flags & SA_SIGINFO) && now.sa_handler == SIG_DFL) {
      sigaction(signum, &saved[signum], NULL);
    }
  }
  uv_mutex_unlock(&lock);
  sk_iowaitlist_wake(&s->waiters);
  uv_close((uv_handle_t *)&s->h, on_closed);
}
