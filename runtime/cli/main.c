/*
** main.c — the `skein` command. It accepts what the standalone `lua`
** accepts (-e -l -i -v -E -W -- -), so tools that drive `lua` (busted's
** --lua) can drive skein. After the script's main chunk returns it keeps
** running the loop until every non-daemon task has finished. Only this file
** decides the exit status: 0, 1 for an error or a task that failed unjoined,
** 130 after an interrupt (Ctrl-C). An interactive session (the REPL) waits
** for unfinished work when the user leaves it, then ends with 0 (task
** failures are still reported), 1 after a deadlock or 130 after Ctrl-C.
**
** Messages start with the program name (argv[0]), as lua.c's do, so that
** a `lua` symlink to skein reports as `lua`.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "../include/skein.h"
#include "lauxlib.h"
#include "lualib.h"

/* argv[0] once main has seen it; "skein" when the caller gave none. */
static const char *progname = "skein";
static skein_runtime *g_rt;

/* SIGINT: ask the runtime to stop. In script mode the default action comes
** back after the first Ctrl-C, so a second one kills a program that does
** not stop (as in lua.c); the REPL keeps the handler for every Ctrl-C. */
static void on_sigint(int sig) {
  if (!sk_cli_repl_active) signal(sig, SIG_DFL);
  skein_interrupt(g_rt);
}

void sk_cli_set_sigint(int on) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on ? on_sigint : SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

static void print_usage(const char *badoption) {
  if (badoption[1] == 'e' || badoption[1] == 'l') {
    fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
  } else {
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  }
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
}

void sk_cli_message(const char *msg) {
  fprintf(stderr, "%s: %s\n", progname, msg);
  fflush(stderr);
}

/* Reports a failed call (its message is on the stack) and pops it. */
int sk_cli_report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    /* After Ctrl-C the caller prints one "interrupted" line instead. */
    if (!sk_runtime_interrupt_escaped(g_rt) || sk_cli_repl_active) {
      sk_cli_message(msg ? msg : "(error object is not a string)");
    }
    lua_pop(L, 1);
  }
  return status;
}

/* skein's own line, then Lua's copyright line as `lua -v` prints it
** (scripts and tests look for it). */
static void print_version(void) {
  printf("skein %s (%s, libuv %s)\n%s\n", skein_version(), LUA_RELEASE,
         uv_version_string(), LUA_COPYRIGHT);
  fflush(stdout);
}

/* Builds the global `arg` like lua.c: script at 0, interpreter and options
** at negative indices, script arguments at 1..n. */
static void create_argtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;
  lua_createtable(L, argc - (script + 1), script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = skein_pcall(L, 0, 0);
  return sk_cli_report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod: require "mod" into global "mod" (or g=mod into global g). */
static int dolibrary(lua_State *L, char *spec) {
  char *eq = strchr(spec, '=');
  const char *mod = spec, *global = spec;
  if (eq) {
    *eq = '\0';
    mod = eq + 1;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  int status = skein_pcall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, global);
  return sk_cli_report(L, status);
}

/* Pushes the script's arguments arg[1..n] (as lua.c's pushargs); run in a
** protected call, since the script's options may have replaced `arg` with
** anything, and reading a table's length may call its __len. */
static int l_pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) {
    return luaL_error(L, "'arg' is not a table");
  }
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -(n + 1));
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int base = lua_gettop(L);
    lua_pushcfunction(L, l_pushargs);
    status = lua_pcall(L, 0, LUA_MULTRET, 0);
    if (status == LUA_OK) {
      status = skein_pcall(L, lua_gettop(L) - base, LUA_MULTRET);
    } else {
      lua_remove(L, -2);  /* the chunk; the error stays */
    }
  }
  return sk_cli_report(L, status);
}

enum { has_error = 1, has_i = 2, has_v = 4, has_e = 8, has_E = 16 };

/* Scans options; returns the flags found and sets *first to the index of
** the script (or argc when there is none). */
static int collectargs(char **argv, int *first) {
  int args = 0, i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;
    switch (argv[i][1]) {
      case '-':
        if (argv[i][2] != '\0') return has_error;
        *first = i + 1;
        return args;
      case '\0':
        return args;
      case 'E':
        if (argv[i][2] != '\0') return has_error;
        args |= has_E;
        break;
      case 'W':
        if (argv[i][2] != '\0') return has_error;
        break;
      case 'i':
        args |= has_i;
        /* -i implies -v */
        /* fall through */
      case 'v':
        if (argv[i][2] != '\0') return has_error;
        args |= has_v;
        break;
      case 'e':
        args |= has_e;
        /* fall through */
      case 'l':
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return has_error;
        }
        break;
      default:
        return has_error;
    }
  }
  *first = i;
  return args;
}

/* Runs -e and -l (and -W) in order; returns 0 when one of them failed. */
static int runargs(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
      case 'e':
      case 'l': {
        char *extra = argv[i] + 2;
        if (*extra == '\0') extra = argv[++i];
        int status = option == 'e' ? dostring(L, extra, "=(command line)")
                                   : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
        break;
      }
      case 'W':
        lua_warning(L, "@on", 0);
        break;
    }
  }
  return 1;
}

static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dochunk(L, luaL_loadfile(L, init + 1));
  return dostring(L, init, name);
}

/* Runs the loop until no non-daemon task is left, inside a protected call:
** Ctrl-C arms a hook on whatever state runs at that moment, often the main
** one while the loop waits, and the hook raises at the next Lua call made
** on it, which must never happen outside every pcall (Lua would panic). */
static int l_drain(lua_State *L) {
  skein_runtime *rt = lua_touserdata(L, 1);
  lua_pushboolean(L, skein_run(rt, SKEIN_RUN_DEFAULT) == 0);
  return 1;
}

/* Waits for the script's remaining non-daemon tasks; 0 or an exit status.
** An interrupt that reached only a task (which then failed) still ends the
** program as interrupted. */
int sk_cli_drain(skein_runtime *rt) {
  lua_State *L = skein_lua(rt);
  sk_runtime_interrupt_handled(rt);
  lua_pushcfunction(L, l_drain);
  lua_pushlightuserdata(L, rt);
  int status = lua_pcall(L, 1, 1, 0);
  if (skein_interrupted(rt, 0)) {
    lua_pop(L, 1);
    return 130;
  }
  if (status != LUA_OK) {
    sk_cli_report(L, status);
    return 1;
  }
  int ok = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (ok) return 0;
  sk_cli_message(skein_errmsg(rt));
  return 1;
}

/* -E: lua.c tells the package library to ignore LUA_PATH and LUA_CPATH
** before opening it; the runtime has opened it already, so put back the
** paths it would have built from no environment at all. */
static void ignore_env_paths(lua_State *L) {
  lua_pushboolean(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    lua_pushliteral(L, LUA_PATH_DEFAULT);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, LUA_CPATH_DEFAULT);
    lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);
}

/* The exit status after a chunk failed (its error was reported). */
static int failed(void) { return sk_runtime_interrupt_escaped(g_rt) ? 130 : 1; }

/* ------------------------------------------------------- skein worker */

/* SIGTERM in `skein worker`: the worker loop asks through
** worker_terminating() and drains (stdlib/skein/worker.lua). */
static volatile sig_atomic_t term_requested;

static void on_sigterm(int sig) {
  (void)sig;
  term_requested = 1;
}

static int worker_terminating(lua_State *L) {
  lua_pushboolean(L, term_requested);
  return 1;
}

/* Runs require("skein.worker").run(args, terminating) in a protected call. */
static int l_worker(lua_State *L) {
  char **argv = lua_touserdata(L, 1);
  int argc = (int)lua_tointeger(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "skein.worker");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "run");
  lua_createtable(L, argc, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, worker_terminating);
  lua_call(L, 2, 1);
  return 1;
}

/* `skein worker --broker URL --tasks FILE ...`: serves a broker pool until
** SIGTERM (drained: exit 0) or Ctrl-C (130). */
static int run_worker(int argc, char **argv) {
  lua_State *L = skein_lua(g_rt);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigterm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  create_argtable(L, argv, argc, 1);
  lua_pushcfunction(L, l_worker);
  lua_pushlightuserdata(L, argv + 2);
  lua_pushinteger(L, argc - 2);
  int status = skein_pcall(L, 2, 1);
  if (status != LUA_OK) {
    sk_cli_report(L, status);
    return failed();
  }
  int code = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  int drained = sk_cli_drain(g_rt);
  return code != 0 ? code : drained;
}

/* The whole program, as lua.c's pmain: returns the exit status, and sets
** *interactive when it ran the REPL. */
static int run(int argc, char **argv, int *interactive) {
  lua_State *L = skein_lua(g_rt);
  int script = 0;
  int args = collectargs(argv, &script);
  if (args == has_error) {
    print_usage(argv[script]);
    return 1;
  }
  if (args & has_v) print_version();
  if (args & has_E) ignore_env_paths(L);
  create_argtable(L, argv, argc, script);
  if (!(args & has_E) && handle_luainit(L) != LUA_OK) return failed();
  if (!runargs(L, argv, script)) return failed();
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return failed();
  if (args & has_i || (script == argc && !(args & (has_e | has_v)) && isatty(0))) {
    /* Straight to the prompt: tasks started so far keep running there. */
    if (!(args & has_v)) print_version();
    *interactive = 1;
    return sk_cli_repl(g_rt);
  }
  if (script == argc && !(args & (has_e | has_v))) {
    /* No script and stdin is not a terminal: stdin is the script. */
    if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) return failed();
  }
  return sk_cli_drain(g_rt);
}

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) progname = argv[0];
  /* Worker mode, when a parent skein started us as a worker process. */
  int worker_status = skein_worker_main(argc, argv, NULL, NULL);
  if (worker_status >= 0) return worker_status;
  g_rt = skein_new(NULL);
  if (g_rt == NULL) {
    sk_cli_message("cannot create the runtime (out of memory?)");
    return 1;
  }
  sk_cli_set_sigint(1);
  /* A worker process that died must not take us with it: writes to its
  ** socket fail with EPIPE instead. */
  signal(SIGPIPE, SIG_IGN);
  int interactive = 0;
  int status = argc >= 2 && strcmp(argv[1], "worker") == 0 ? run_worker(argc, argv)
                                                             : run(argc, argv, &interactive);
  if (status == 130) {
    /* The status is 130 whatever the tasks did; a task the interrupt ended
    ** is still reported (with where it was) when the state closes. */
    sk_cli_message("interrupted");
  } else if (skein_failures(g_rt) > 0 && status == 0 && !interactive) {
    status = 1;
  }
  sk_cli_set_sigint(0);
  if (skein_close(g_rt) != 0) {
    sk_cli_message("internal error: the event loop still had open handles");
    if (status == 0) status = 1;
  }
  return status;
}
