/*
** repl.c — the interactive prompt. GNU readline's callback interface is fed
** from a libuv poll handle on standard input, so the worker's loop (and
** every task spawned at the prompt) keeps running while the user types.
** Lines are evaluated outside any libuv callback: the poll callback only
** stores the finished line, and the REPL's own loop picks it up.
**
** The poll is active only while a prompt is shown. Evaluating a line may
** drive the loop itself (a blocking call at the top level does), and input
** typed meanwhile must wait in the terminal for the next prompt: readline
** aborts the process when it is fed a character with no handler installed.
**
** Output relay. On a terminal, what the program prints while the prompt is
** shown must not land in the middle of the line being typed. Tasks, thread
** workers and worker processes all write to file descriptors 1 and 2, so
** while the REPL runs those are a pseudo-terminal whose other end a relay
** thread reads: it clears the prompt line, writes the output to the real
** terminal and redraws the prompt and the typed text. Every readline call
** (the main thread's and the relay's redraw) happens under one mutex, the
** terminal lock. Without a terminal on both standard input and output
** there is no relay and nothing is ever cleared or redrawn.
*/
#define _GNU_SOURCE  /* posix_openpt, ptsname, pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cli.h"
#include "lauxlib.h"

volatile int sk_cli_repl_active = 0;

/* The output relay (see the file comment). `lock` is the terminal lock;
** `at_prompt` (in the repl) is read and written under it. */
typedef struct relay {
  int on;
  int term;            /* the real terminal (a dup of the original fd 1) */
  int saved_err;       /* the original fd 2 when it was redirected, else -1 */
  int master;          /* the pseudo-terminal's master end, read by the relay */
  int stop[2];         /* a pipe: a byte in it tells the relay thread to end */
  int busy;            /* the relay thread holds output it has not written
                       ** (atomic: set by the relay, read by relay_sync) */
  uv_thread_t thread;
  uv_mutex_t lock;
} relay;

typedef struct repl {
  skein_runtime *rt;
  lua_State *L;
  char *line;          /* the finished line handed over by readline */
  int have_line, eof;
  int at_prompt;       /* readline owns the terminal line now */
  int keep_history;    /* stdin is a terminal: Up recalls earlier lines */
  int warned;          /* Ctrl-D was pressed once with work still running */
  char *stmt;          /* the statement gathered so far (multi-line) */
  uv_poll_t *poll;
  relay out;
  char history[1024];
} repl;

/* readline's callbacks take no user data; there is one REPL per process. */
static repl *R;

static void term_lock(repl *r) {
  if (r->out.on) uv_mutex_lock(&r->out.lock);
}

static void term_unlock(repl *r) {
  if (r->out.on) uv_mutex_unlock(&r->out.lock);
}

/* Called by readline (under the terminal lock) with a finished line. */
static void on_line(char *line) {
  rl_callback_handler_remove();
  R->at_prompt = 0;
  if (line == NULL) R->eof = 1;
  else {
    R->line = line;
    R->have_line = 1;
  }
}

static void on_stdin(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)events;
  if (status < 0) {
    R->eof = 1;
    return;
  }
  term_lock(R);
  if (R->at_prompt) rl_callback_read_char();
  term_unlock(R);
}

/* ------------------------------------------------------------- relay */

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    p += k;
    n -= (size_t)k;
  }
}

/* Writes one chunk of program output to the terminal. At the prompt the
** prompt line is cleared first and redrawn after; output that does not end
** its line gets a line break, so the prompt never starts mid-line. */
static void relay_emit(repl *r, const char *data, size_t n) {
  relay *o = &r->out;
  uv_mutex_lock(&o->lock);
  if (r->at_prompt) {
    fflush(rl_outstream);
    write_all(o->term, "\r\033[K", 4);
    write_all(o->term, data, n);
    if (data[n - 1] != '\n') write_all(o->term, "\n", 1);
    rl_on_new_line();
    rl_redisplay();
    fflush(rl_outstream);
  } else {
    write_all(o->term, data, n);
  }
  uv_mutex_unlock(&o->lock);
}

/* The relay thread: copies what arrives on the master end to the terminal
** until told to stop, then copies what is left and ends. A chunk that ends
** mid-line waits up to 30 ms for the rest of its line. */
static void relay_main(void *arg) {
  repl *r = arg;
  /* Ctrl-C is the main thread's: its handler must not run here. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  relay *o = &r->out;
  char buf[8192];
  size_t have = 0;
  int stopping = 0;
  for (;;) {
    struct pollfd fds[2] = {{o->master, POLLIN, 0}, {o->stop[0], POLLIN, 0}};
    int wait = stopping ? 0 : have > 0 ? 30 : -1;
    int n = poll(fds, 2, wait);
    if (n < 0 && errno == EINTR) continue;
    if (fds[1].revents) stopping = 1;
    ssize_t k = 0;
    if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      __atomic_store_n(&o->busy, 1, __ATOMIC_SEQ_CST);
      k = read(o->master, buf + have, sizeof buf - have);
      if (k > 0) have += (size_t)k;
      /* Nothing holds the other end (the program closed fds 1 and 2). */
      else if (k < 0 && errno == EIO && !stopping) usleep(20000);
    }
    /* Flush a full line, a full buffer, or whatever is left at a pause. */
    int flush = have > 0 && (buf[have - 1] == '\n' || have == sizeof buf || k <= 0);
    if (flush) {
      relay_emit(r, buf, have);
      have = 0;
    }
    if (have == 0) __atomic_store_n(&o->busy, 0, __ATOMIC_SEQ_CST);
    if (stopping && k <= 0 && have == 0) break;
  }
}

static void relay_atexit(void);

/* Makes fds 1 (and 2, when it is the same terminal) a pseudo-terminal that
** the relay thread copies to the real one. Nothing changes when standard
** input or output is not a terminal, or the pseudo-terminal cannot be made. */
static void relay_start(repl *r) {
  relay *o = &r->out;
  struct stat s1, s2;
  o->on = 0;
  o->saved_err = -1;
  if (!isatty(0) || !isatty(1)) return;
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) return;
  char *name = (grantpt(m) == 0 && unlockpt(m) == 0) ? ptsname(m) : NULL;
  int slave = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
  if (slave < 0 || pipe2(o->stop, O_CLOEXEC) != 0) {
    if (slave >= 0) close(slave);
    close(m);
    return;
  }
  /* Bytes pass unchanged (the real terminal does the newline mapping), and
  ** programs that ask the size of their terminal get the real one's. */
  struct termios t;
  if (tcgetattr(slave, &t) == 0) {
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
  }
  struct winsize ws;
  if (ioctl(1, TIOCGWINSZ, &ws) == 0) ioctl(slave, TIOCSWINSZ, &ws);
  fflush(stdout);
  fflush(stderr);
  o->term = fcntl(1, F_DUPFD_CLOEXEC, 3);
  int outfd = o->term >= 0 ? fcntl(o->term, F_DUPFD_CLOEXEC, 3) : -1;
  FILE *out = outfd >= 0 ? fdopen(outfd, "w") : NULL;
  if (out == NULL) {
    if (outfd >= 0) close(outfd);
    if (o->term >= 0) close(o->term);
    close(slave);
    close(m);
    close(o->stop[0]);
    close(o->stop[1]);
    return;
  }
  rl_outstream = out;
  if (isatty(2) && fstat(1, &s1) == 0 && fstat(2, &s2) == 0 && s1.st_rdev == s2.st_rdev) {
    o->saved_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if (o->saved_err >= 0) dup2(slave, 2);
  }
  dup2(slave, 1);
  close(slave);
  o->master = m;
  __atomic_store_n(&o->busy, 0, __ATOMIC_SEQ_CST);
  uv_mutex_init(&o->lock);
  o->on = 1;
  static int atexit_done;
  if (!atexit_done && atexit(relay_atexit) == 0) atexit_done = 1;
  if (uv_thread_create(&o->thread, relay_main, r) != 0) {
    /* No relay: put everything back. */
    dup2(o->term, 1);
    if (o->saved_err >= 0) dup2(o->saved_err, 2);
    o->on = 0;
  }
}

/* Waits (at most `ms` milliseconds) until the relay has written what the
** program printed so far, so that a prompt shown now comes after it. A
** zero-timeout poll of the master end (not FIONREAD) is what tells: the
** kernel moves bytes from the slave to the master in deferred work, and
** polling a pseudo-terminal master flushes that work first. */
static void relay_sync(repl *r, int ms) {
  relay *o = &r->out;
  fflush(stdout);
  fflush(stderr);
  if (!o->on) return;
  for (int i = 0; i < ms; i++) {
    struct pollfd pfd = {o->master, POLLIN, 0};
    int readable = poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN);
    if (!readable && !__atomic_load_n(&o->busy, __ATOMIC_SEQ_CST)) return;
    usleep(1000);
  }
}

/* os.exit at the prompt ends the process without leaving the REPL: what
** the program printed last must still reach the terminal. Runs at exit()
** on the thread that called it, while the relay is on. */
static void relay_atexit(void) {
  if (R == NULL || !R->out.on) return;
  relay_sync(R, 2000);
  dup2(R->out.term, 1);
  if (R->out.saved_err >= 0) dup2(R->out.saved_err, 2);
}

/* Puts fds 1 and 2 back and ends the relay after it copied what is left.
** Worker processes that still hold the pseudo-terminal (daemons, killed
** when the runtime closes) get errors on later writes. */
static void relay_stop(repl *r) {
  relay *o = &r->out;
  FILE *out = rl_outstream;
  fflush(stdout);
  fflush(stderr);
  if (!o->on) return;
  relay_sync(r, 2000);
  uv_mutex_lock(&o->lock);
  dup2(o->term, 1);
  if (o->saved_err >= 0) dup2(o->saved_err, 2);
  uv_mutex_unlock(&o->lock);
  write_all(o->stop[1], "x", 1);
  uv_thread_join(&o->thread);
  o->on = 0;
  rl_outstream = stdout;
  if (out && out != stdout) fclose(out);
  close(o->master);
  close(o->term);
  if (o->saved_err >= 0) close(o->saved_err);
  close(o->stop[0]);
  close(o->stop[1]);
  uv_mutex_destroy(&o->lock);
}

/* ------------------------------------------------------------ prompt */

/* The prompt as lua.c finds it: the global _PROMPT (or _PROMPT2) converted
** with tostring (so __tostring counts), or the default when it is nil. */
static int l_prompt(lua_State *L) {
  int first = lua_toboolean(L, 1);
  if (lua_getglobal(L, first ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pushstring(L, first ? "> " : ">> ");
  } else {
    luaL_tolstring(L, -1, NULL);
  }
  return 1;
}

/* The prompt, malloc'd; a __tostring that fails is reported and the
** default prompt is used. */
static char *get_prompt(repl *r, int first) {
  lua_State *L = r->L;
  lua_pushcfunction(L, l_prompt);
  lua_pushboolean(L, first);
  int status = skein_pcall(L, 1, 1);
  char *p = NULL;
  if (status == LUA_OK) p = strdup(lua_tostring(L, -1));
  else {
    sk_cli_report(L, status);
    lua_pushnil(L);
  }
  lua_pop(L, 1);
  return p ? p : strdup(first ? "> " : ">> ");
}

/* Ctrl-C at the prompt: drop the line (and any unfinished statement), and
** reset what readline was in the middle of (a key sequence, a search). */
static void cancel_line(repl *r) {
  free(r->stmt);
  r->stmt = NULL;
  r->warned = 0;
  term_lock(r);
  if (r->at_prompt) {
    rl_free_line_state();
    rl_callback_sigcleanup();
    rl_replace_line("", 0);
    rl_echo_signal_char(SIGINT);
    rl_crlf();
    rl_callback_handler_remove();
    r->at_prompt = 0;
  }
  term_unlock(r);
}

/* Shows the prompt; the prompt string is read before taking the terminal
** lock, since its __tostring may print. */
static void show_prompt(repl *r, int first) {
  char *p = get_prompt(r, first);
  relay_sync(r, 200);
  term_lock(r);
  rl_callback_handler_install(p ? p : "> ", on_line);
  r->at_prompt = 1;
  term_unlock(r);
  free(p);
}

/* Waits, with the loop running, for one line; 0 at end of input. Without
** a poll handle standard input is a file, which never blocks: the line is
** read straight away, after one turn of the loop for ready tasks. */
static int read_line(repl *r, int first) {
  r->have_line = 0;
  r->eof = 0;
  if (r->poll) uv_poll_start(r->poll, UV_READABLE, on_stdin);
  else skein_run(r->rt, SKEIN_RUN_NOWAIT);
  show_prompt(r, first);
  while (!r->have_line && !r->eof) {
    if (skein_interrupted(r->rt, 1)) {
      cancel_line(r);
      show_prompt(r, 1);
      continue;
    }
    if (r->poll) skein_run(r->rt, SKEIN_RUN_ONCE);
    else {
      term_lock(r);
      rl_callback_read_char();
      term_unlock(r);
    }
  }
  term_lock(r);
  if (r->at_prompt) {
    rl_callback_handler_remove();
    r->at_prompt = 0;
  }
  term_unlock(r);
  if (r->poll) uv_poll_stop(r->poll);
  return r->have_line;
}

/* ------------------------------------------------------------- lines */

static int incomplete(lua_State *L, int status) {
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  return status == LUA_ERRSYNTAX && len >= 5 && strcmp(msg + len - 5, "<eof>") == 0;
}

/* Compiles the statement as an expression first ("return ...") so values
** are printed, then as a statement. A statement that starts with '=' is
** Lua 5.4's shorthand for "return" (as in lua.c). Returns 1 with a chunk
** or an error on the stack, 0 when the statement needs more lines. */
static int compile(lua_State *L, const char *stmt, int *status) {
  if (stmt[0] == '=') stmt = lua_pushfstring(L, "return %s", stmt + 1);
  else lua_pushstring(L, stmt);
  const char *ret = lua_pushfstring(L, "return %s;", stmt);
  *status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
  lua_remove(L, -2);
  if (*status == LUA_OK) {
    lua_remove(L, -2);
    return 1;
  }
  lua_pop(L, 1);
  *status = luaL_loadbuffer(L, stmt, strlen(stmt), "=stdin");
  lua_remove(L, -2);
  if (incomplete(L, *status)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* Calls the chunk on the stack and prints what it returns with the global
** `print`; a failing print is reported as lua.c does. */
static void evaluate(repl *r) {
  lua_State *L = r->L;
  int base = lua_gettop(L);
  int status = skein_pcall(L, 0, LUA_MULTRET);
  if (status == LUA_OK && lua_gettop(L) >= base) {
    int n = lua_gettop(L) - base + 1;
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, -(n + 1));
    status = lua_pcall(L, n, 0, 0);  /* no traceback, as lua.c */
    if (status != LUA_OK && !skein_interrupted(r->rt, 0)) {
      const char *msg = lua_tostring(L, -1);
      lua_pushfstring(L, "error calling 'print' (%s)", msg ? msg : "?");
      lua_remove(L, -2);
    }
  }
  if (status != LUA_OK && skein_interrupted(r->rt, 0)) {
    sk_cli_message("interrupted");  /* not the error object's "kind: message" */
  } else {
    sk_cli_report(L, status);
  }
  lua_settop(L, base - 1);
  skein_interrupted(r->rt, 1);
}

static void append(repl *r, const char *line) {
  size_t old = r->stmt ? strlen(r->stmt) : 0, add = strlen(line);
  char *s = realloc(r->stmt, old + add + 2);
  if (s == NULL) return;
  if (old) s[old++] = '\n';
  memcpy(s + old, line, add + 1);
  r->stmt = s;
}

/* History is kept only for a terminal: lines piped into `skein -i` are not
** the user's typing. It is saved in the file SKEIN_HISTORY names ("" for
** none), else in ~/.skein_history, one line per line typed: a multi-line
** statement is one entry during the session and comes back from the file
** line by line, as with lua. The file holds no time stamps (readline needs
** them to keep multi-line entries whole); "#<digits>" lines that an older
** version wrote are read as stamps, not as entries, and are gone after the
** next save. */
static void setup_history(repl *r) {
  const char *path = getenv("SKEIN_HISTORY"), *home = getenv("HOME");
  r->history[0] = '\0';
  r->keep_history = isatty(0);
  if (!r->keep_history) return;
  if (path) snprintf(r->history, sizeof r->history, "%s", path);
  else if (home) snprintf(r->history, sizeof r->history, "%s/.skein_history", home);
  stifle_history(1000);
  history_comment_char = '#';
  history_write_timestamps = 0;
  if (r->history[0]) read_history(r->history);
}

static void free_poll(uv_handle_t *h) { free(h); }

/* Starts watching standard input; NULL when it cannot be polled (a regular
** file or /dev/null), which read_line handles by reading without waiting. */
static uv_poll_t *open_poll(skein_runtime *rt) {
  uv_poll_t *p = malloc(sizeof *p);
  if (p != NULL && uv_poll_init(skein_loop(rt), p, 0) != 0) {
    free(p);
    p = NULL;
  }
  return p;
}

/* End of input on a terminal with work still running (Ctrl-D): the first
** time, say what runs and ask again; returns 1 to leave the REPL. */
static int leave_at_eof(repl *r) {
  size_t live = sk_runtime_live(r->rt);
  char msg[256];
  if (!isatty(0) || live == 0) return 1;
  if (!r->warned) {
    snprintf(msg, sizeof msg,
             "%zu task%s or worker%s still running: Ctrl-D again waits for %s "
             "to finish (Ctrl-C then stops %s)",
             live, live == 1 ? "" : "s", live == 1 ? "" : "s",
             live == 1 ? "it" : "them", live == 1 ? "it" : "them");
    sk_cli_message(msg);
    r->warned = 1;
    return 0;
  }
  snprintf(msg, sizeof msg, "waiting for %zu task%s or worker%s to finish",
           live, live == 1 ? "" : "s", live == 1 ? "" : "s");
  sk_cli_message(msg);
  return 1;
}

int sk_cli_repl(skein_runtime *rt) {
  repl r = {0};
  r.rt = rt;
  r.L = skein_lua(rt);
  R = &r;
  rl_readline_name = "skein";
  rl_catch_signals = 0;
  setup_history(&r);
  r.poll = open_poll(rt);
  relay_start(&r);
  sk_cli_repl_active = 1;
  for (;;) {
    if (!read_line(&r, r.stmt == NULL)) {
      if (leave_at_eof(&r)) break;
      continue;
    }
    r.warned = 0;
    append(&r, r.line);
    free(r.line);
    r.line = NULL;
    int status;
    if (!compile(r.L, r.stmt, &status)) continue;
    if (r.keep_history) add_history(r.stmt);
    free(r.stmt);
    r.stmt = NULL;
    if (status == LUA_OK) evaluate(&r);
    else sk_cli_report(r.L, status);
  }
  /* Readline ends the line at end of input only on a terminal. */
  if (!isatty(0)) fputc('\n', stdout);
  fflush(stdout);
  sk_cli_repl_active = 0;
  free(r.stmt);
  if (r.poll) uv_close((uv_handle_t *)r.poll, free_poll);
  if (r.history[0]) {
    write_history(r.history);
    history_truncate_file(r.history, 1000);
  }
  rl_callback_handler_remove();
  /* What is still running ends as at the end of a script, its output still
  ** relayed. */
  int status = sk_cli_drain(rt);
  relay_stop(&r);
  R = NULL;
  return status;
}
