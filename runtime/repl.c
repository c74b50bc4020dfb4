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
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cli.h"
#include "lauxlib.h"

volatile int sk_cli_repl_active = 0;

void sk_runtime_set_batch_hook(skein_runtime *rt, void (*hook)(void *, int),
                               void *ud);

typedef struct repl {
  skein_runtime *rt;
  lua_State *L;
  char *line;          /* the finished line handed over by readline */
  int have_line, eof;
  int at_prompt;       /* readline owns the terminal line now */
  int keep_history;    /* stdin is a terminal: Up recalls earlier lines */
  char *stmt;          /* the statement gathered so far (multi-line) */
  uv_poll_t *poll;
  char history[1024];
} repl;

/* readline's callbacks take no user data; there is one REPL per process. */
static repl *R;

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
  if (R->at_prompt) rl_callback_read_char();
}

/* Around each batch of task code: clear the prompt line first, so what tasks
** print starts at column 0, and redraw prompt and typed text afterwards. */
static void batch_hook(void *ud, int after) {
  (void)ud;
  if (!R->at_prompt) return;
  if (!after) {
    fputs("\r\033[K", rl_outstream ? rl_outstream : stdout);
    fflush(rl_outstream ? rl_outstream : stdout);
  } else {
    rl_on_new_line();
    rl_redisplay();
  }
}

static const char *get_prompt(lua_State *L, int first) {
  const char *p;
  lua_getglobal(L, first ? "_PROMPT" : "_PROMPT2");
  p = lua_tostring(L, -1);
  if (p == NULL) p = first ? "> " : ">> ";
  lua_pop(L, 1);
  return p;
}

/* Ctrl-C at the prompt: drop the line (and any unfinished statement), and
** reset what readline was in the middle of (a key sequence, a search). */
static void cancel_line(repl *r) {
  free(r->stmt);
  r->stmt = NULL;
  if (r->at_prompt) {
    rl_free_line_state();
    rl_callback_sigcleanup();
    rl_replace_line("", 0);
    rl_echo_signal_char(SIGINT);
    rl_crlf();
    rl_callback_handler_remove();
    r->at_prompt = 0;
  }
}

static void show_prompt(repl *r, int first) {
  rl_callback_handler_install(get_prompt(r->L, first), on_line);
  r->at_prompt = 1;
}

/* Waits, with the loop running, for one line; 0 at end of input. Without
** a poll handle standard input is a file, which never blocks: the line is
** read straight away, after one turn of the loop for ready tasks. */
static int read_line(repl *r, int first) {
  r->have_line = 0;
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
    else rl_callback_read_char();
  }
  if (r->at_prompt) {
    rl_callback_handler_remove();
    r->at_prompt = 0;
  }
  if (r->poll) uv_poll_stop(r->poll);
  return r->have_line;
}

static int incomplete(lua_State *L, int status) {
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  return status == LUA_ERRSYNTAX && len >= 5 && strcmp(msg + len - 5, "<eof>") == 0;
}

/* Compiles the statement as an expression first ("return ...") so values
** are printed, then as a statement. Returns 1 with a chunk or an error on
** the stack, 0 when the statement needs more lines. */
static int compile(lua_State *L, const char *stmt, int *status) {
  const char *ret = lua_pushfstring(L, "return %s;", stmt);
  *status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
  lua_remove(L, -2);
  if (*status == LUA_OK) return 1;
  lua_pop(L, 1);
  *status = luaL_loadbuffer(L, stmt, strlen(stmt), "=stdin");
  if (incomplete(L, *status)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* Calls the chunk on the stack and prints what it returns. */
static void evaluate(repl *r) {
  lua_State *L = r->L;
  int base = lua_gettop(L);
  int status = skein_pcall(L, 0, LUA_MULTRET);
  if (status == LUA_OK && lua_gettop(L) >= base) {
    int n = lua_gettop(L) - base + 1;
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, -(n + 1));
    status = skein_pcall(L, n, 0);
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
** none), else in ~/.skein_history. */
static void setup_history(repl *r) {
  const char *path = getenv("SKEIN_HISTORY"), *home = getenv("HOME");
  r->history[0] = '\0';
  r->keep_history = isatty(0);
  if (!r->keep_history) return;
  if (path) snprintf(r->history, sizeof r->history, "%s", path);
  else if (home) snprintf(r->history, sizeof r->history, "%s/.skein_history", home);
  stifle_history(1000);
  /* With time stamps in the file, a multi-line statement reads back as one
  ** entry instead of one per line. */
  history_comment_char = '#';
  history_write_timestamps = 1;
  history_multiline_entries = 1;
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

void sk_cli_repl(skein_runtime *rt) {
  repl r = {0};
  r.rt = rt;
  r.L = skein_lua(rt);
  R = &r;
  rl_readline_name = "skein";
  rl_catch_signals = 0;
  setup_history(&r);
  r.poll = open_poll(rt);
  sk_runtime_set_batch_hook(rt, batch_hook, &r);
  sk_cli_repl_active = 1;
  for (;;) {
    if (!read_line(&r, r.stmt == NULL)) break;
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
  sk_runtime_set_batch_hook(rt, NULL, NULL);
  free(r.stmt);
  if (r.poll) uv_close((uv_handle_t *)r.poll, free_poll);
  if (r.history[0]) {
    write_history(r.history);
    history_truncate_file(r.history, 1000);
  }
  rl_callback_handler_remove();
  R = NULL;
}
