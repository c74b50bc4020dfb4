/*
** skein.h — the public embedding API of skein.
**
** A runtime is one skein worker: a Lua 5.4 state with the `skein` module
** loaded (and the global `skein` defined), a libuv loop (its own or the
** host's), and a scheduler for the tasks its scripts spawn. All calls on a
** runtime must come from the thread that created it, except
** skein_interrupt, which is also safe from a signal handler.
**
** Errors: functions returning int give 0 on success and -1 on failure, with
** a message available from skein_errmsg until the next call.
*/
#ifndef SKEIN_H
#define SKEIN_H

#include <uv.h>

#include "lua.h"

#if defined(_WIN32)
#define SKEIN_API __declspec(dllexport)
#else
#define SKEIN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SKEIN_VERSION_MAJOR 0
#define SKEIN_VERSION_MINOR 1
#define SKEIN_VERSION_PATCH 0
#define SKEIN_VERSION "0.1.0"

typedef struct skein_runtime skein_runtime;

/* Options for skein_new; a NULL pointer means all defaults. */
typedef struct skein_options {
  /* The host's loop, or NULL for a loop owned by the runtime. With a host
  ** loop, skein runs its ready tasks from a check handle whenever the host
  ** runs the loop, and a blocking call made outside a task while the host
  ** is inside uv_run raises an error instead of re-entering the loop. */
  uv_loop_t *loop;
} skein_options;

typedef enum skein_run_mode {
  SKEIN_RUN_DEFAULT = 0, /* until no non-daemon task is left */
  SKEIN_RUN_ONCE = 1,    /* one turn: run ready tasks, wait for one event */
  SKEIN_RUN_NOWAIT = 2   /* one turn without waiting */
} skein_run_mode;

/* A function run in a worker's Lua state before any script (see
** skein_add_init). It may register globals, modules and metatables. */
typedef void (*skein_init_fn)(lua_State *L, void *ud);

SKEIN_API const char *skein_version(void);

/* Creates a runtime; NULL when out of memory or the loop cannot start. */
SKEIN_API skein_runtime *skein_new(const skein_options *opts);

/* Closes the runtime: the Lua state, then every handle, then its loop when
** it owns one. Returns 0 when the loop closed with nothing left open. */
SKEIN_API int skein_close(skein_runtime *rt);

SKEIN_API lua_State *skein_lua(skein_runtime *rt);
SKEIN_API uv_loop_t *skein_loop(skein_runtime *rt);

/* Registers `fn` to run in every worker's state: now in this runtime's
** state, and in each thread or process worker as it starts. */
SKEIN_API int skein_add_init(skein_runtime *rt, skein_init_fn fn, void *ud);

/* Runs a file (NULL: standard input) or a string as the root context. Tasks
** they spawn keep running on later skein_run calls. */
SKEIN_API int skein_dofile(skein_runtime *rt, const char *path);
SKEIN_API int skein_dostring(skein_runtime *rt, const char *code,
                             const char *chunkname);

/* Drives the loop. Returns 1 while non-daemon tasks remain, 0 when none
** does, -1 on error (a deadlock, or an interrupt). */
SKEIN_API int skein_run(skein_runtime *rt, skein_run_mode mode);

/* Calls the function below `nargs` arguments on the runtime's stack with a
** traceback handler: the protected path every host call into Lua should
** take. On error the message (with traceback) is left on the stack. */
SKEIN_API int skein_pcall(lua_State *L, int nargs, int nresults);

/* The message of the last failure of skein_dofile/dostring/run. */
SKEIN_API const char *skein_errmsg(skein_runtime *rt);

/* Asks the runtime to stop what it waits for and to interrupt running Lua
** code; async-signal-safe. skein_interrupted reports (and with clear=1
** resets) the request. */
SKEIN_API void skein_interrupt(skein_runtime *rt);
SKEIN_API int skein_interrupted(skein_runtime *rt, int clear);

/* Reports on stderr every task that failed and was never joined, and
** returns how many such failures the runtime has seen. */
SKEIN_API int skein_failures(skein_runtime *rt);

#ifdef __cplusplus
}
#endif

#endif
