/*
** skein.h — the public embedding API of skein.
**
** A runtime is one skein worker: a Lua 5.4 state with the standard libraries
** and the `skein` module loaded (and the global `skein` defined), a libuv
** loop (its own or the host's), and a scheduler for the tasks its scripts
** spawn. The runtime is opaque; the host reaches the Lua state and the loop
** through skein_lua and skein_loop.
**
** Threads: all calls on a runtime must come from the thread that created
** it, except skein_interrupt, which is also safe from a signal handler on
** that thread (as lua.c's SIGINT handler does). Different runtimes are
** independent.
**
** Errors: functions returning int give 0 on success and -1 on failure, with
** a message (and a Lua traceback where there is one) available from
** skein_errmsg until the next failure. The library never exits the process;
** what it prints (on stderr) is the report of a task that failed and that
** nobody joined, when the task is collected or skein_failures is called.
**
** Blocking: skein's blocking calls (skein.sleep, task:join, ...) suspend
** only their task. Made outside a task (from skein_dofile, skein_dostring
** or skein_pcall), they drive the loop until they can return, which is only
** right where nothing is running the loop: uv_run is not re-entrant. skein
** cannot see whether the host is inside uv_run, so a host entering Lua from
** a libuv callback uses skein_call, under which a blocking call raises
** "cannot block here", or skein_spawn, which starts a task that may block.
** Code in a task that cannot yield (across a C call) while the host runs
** the loop gets the same error.
**
** Building: `pkg-config --cflags --libs skein` (the header needs lua5.4 and
** libuv's headers; the host links Lua and libuv as well).
*/
/*
** Worker processes (skein.process, process pools) are runs of an executable
** whose main hands `--skein-worker FD MODE` to skein_worker_main. Which one,
** the first that applies:
**   1. skein_options.worker_exe, as the last skein_new given one set it;
**   2. $SKEIN_WORKER_EXE;
**   3. this program itself, once its main has called skein_worker_main (the
**      `skein` command does);
**   4. the `skein` command: next to the skein library (its folder, then
**      ../bin), then on $PATH — never this program itself.
** With none, starting a process pool or skein.process raises an error of
** kind `io` (`code` "ENOENT") that says so. A copy of a host is therefore started only when
** the host asks for it (1–3); one whose main does not call
** skein_worker_main refuses to make a runtime instead of running the host
** again (skein_new prints why and returns NULL).
**
** What a worker process has: the standard libraries and the `skein` module,
** nothing of the host's runtime. The hooks given to skein_add_init do not
** run there (they are function pointers of another process); a worker that
** runs the host's own executable runs the one hook the host passes to
** skein_worker_main, before any job (and in the thread workers the process
** starts). With the `skein` command as the worker executable, globals and
** modules a host defines in C are absent in worker processes: send Lua
** functions, or load modules in the pool's `init`. Host userdata types
** (skein_register_type, below) exist in a worker process only when its
** executable registered them, before skein_worker_main.
**
** A host that uses worker processes should ignore SIGPIPE, as the `skein`
** command does: a write to a worker that just died must fail with EPIPE,
** not end the host.
**
** Process-wide resources: the first sync object, shared value or worker
** process creates the shared-memory segment (one memfd descriptor, 16 GiB
** of reserved address space used only as needed) and, once something
** waits on a shared object, one small thread that relays wakes from other
** processes. Both last as long as the host process, across skein_close.
*/
#ifndef SKEIN_H
#define SKEIN_H

#include <uv.h>

/* Lua's headers have no C++ guards of their own; libskein links the C
** build of Lua, so a C++ host sees its API with C linkage too. */
#ifdef __cplusplus
extern "C" {
#endif
#include "lua.h"
#ifdef __cplusplus
}
#endif

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
/* One number that compares: MAJOR * 10000 + MINOR * 100 + PATCH. */
#define SKEIN_VERSION_NUM                                          \
  (SKEIN_VERSION_MAJOR * 10000 + SKEIN_VERSION_MINOR * 100 +       \
   SKEIN_VERSION_PATCH)

typedef struct skein_runtime skein_runtime;

/* Options for skein_new; a NULL pointer means all defaults. Zero every
** field you do not set (`skein_options o = {0};` or a designated
** initialiser): fields added later keep zero as their default. */
typedef struct skein_options {
  /* The host's loop, or NULL for a loop owned by the runtime. With a host
  ** loop, skein runs its ready tasks from a check handle whenever the host
  ** runs the loop, and its own handles keep the loop alive only while a
  ** task waits on a timer or I/O. The host must keep the loop alive until
  ** after skein_close (see there). */
  uv_loop_t *loop;
  /* The executable worker processes run (see "Worker processes" above), or
  ** NULL. It is copied, and holds for the whole process (the workers of
  ** every runtime and of their threads): the last skein_new given one
  ** sets it. */
  const char *worker_exe;
} skein_options;

typedef enum skein_run_mode {
  SKEIN_RUN_DEFAULT = 0, /* until no non-daemon task is left */
  SKEIN_RUN_ONCE = 1,    /* one turn: run ready tasks, wait for one event */
  SKEIN_RUN_NOWAIT = 2   /* one turn without waiting */
} skein_run_mode;

/* A function run in a worker's Lua state before any script (see
** skein_add_init). It may register globals, modules and metatables, and may
** raise a Lua error, which makes skein_add_init fail. */
typedef void (*skein_init_fn)(lua_State *L, void *ud);

/* The library's version, "MAJOR.MINOR.PATCH", and the same as
** SKEIN_VERSION_NUM: comparing it with the header's macro catches a host
** built against one version and run against another. */
SKEIN_API const char *skein_version(void);
SKEIN_API int skein_version_num(void);

/* Creates a runtime; NULL when out of memory or the loop or the Lua state
** cannot start. */
SKEIN_API skein_runtime *skein_new(const skein_options *opts);

/* Closes the runtime: the Lua state (running every __gc and pending
** __close), then every handle, then its loop when it owns one. Returns 0
** when its own loop closed with nothing left open, -1 otherwise (a handle
** was left open; its memory is then not freed). Tasks still unfinished are
** dropped without running further. With its own loop, close every handle
** you started on skein_loop() first: closing runs the loop until they are
** gone. NULL is a no-op returning 0.
** With a host loop, the runtime's handles are closed but their memory is
** released by their close callbacks, which run the next time the host runs
** the loop: call uv_run(loop, UV_RUN_DEFAULT) once more before
** uv_loop_close. Must not be called from inside a callback of the loop. */
SKEIN_API int skein_close(skein_runtime *rt);

/* The runtime's main Lua state and its loop. */
SKEIN_API lua_State *skein_lua(skein_runtime *rt);
SKEIN_API uv_loop_t *skein_loop(skein_runtime *rt);

/* The runtime a Lua state (or any coroutine of it) belongs to: what a host's
** C function needs to reach the runtime. NULL for a state skein_new did not
** create. */
SKEIN_API skein_runtime *skein_from_lua(lua_State *L);

/* Registers `fn` to run in every worker's state: now in this runtime's
** state, and in each thread worker (of a thread pool too) as it starts
** (there `fn` runs on the worker's own OS thread, so it must be thread-safe,
** and `ud` must outlive the runtime). Register hooks before starting
** workers. Worker processes do not run it: see "Worker processes" above
** and skein_worker_main. When `fn` raises, returns -1 and the hook is not
** registered. */
SKEIN_API int skein_add_init(skein_runtime *rt, skein_init_fn fn, void *ud);

/* Makes this program a worker executable. Call it first thing in main,
** with main's arguments: when they ask for worker mode (argv[1] is
** --skein-worker, as the runtime starts worker processes) it runs the
** worker — `init` (may be NULL) first, in the worker's state, as
** skein_add_init hooks run in thread workers — and returns the process's
** exit status (0 or more); otherwise it returns -1 at once and worker
** processes of this program's runtimes run this program (see "Worker
** processes" above). */
SKEIN_API int skein_worker_main(int argc, char **argv, skein_init_fn init, void *ud);

/*
** Host userdata that crosses workers. Values a worker sends (pool and
** thread arguments and results, queue items, ...) are copied by skein's
** marshaller, which refuses userdata it does not know. A host makes its
** own userdata type sendable with skein_register_type, in one of two ways
** (or both):
**
**   by clone      encode writes the value as bytes; decode, in the
**                 receiving worker, pushes a fresh userdata made from them.
**                 Crosses threads and processes.
**   by reference  the userdata stands for a pointer the host owns and
**                 counts references to (retain, release); the receiving
**                 worker gets a userdata for the same pointer (push).
**                 Crosses the threads of one process only.
**
** Which is used: to another process (a worker process, a process pool, a
** queue shared with another process, a worker process's results), the
** clone, and with no clone callbacks the send fails with an error of kind
** `marshal` saying the type goes by reference only; within the process,
** the reference when the type has one, else the clone.
**
** Registration is process-wide (every runtime and every worker of this
** process) and lasts as long as the process. A worker process knows only
** the types its own process registered: a host that is its own worker
** executable registers them in main before skein_worker_main. A value of a
** type the receiving process has not registered (a worker process of the
** `skein` command, say) fails to decode with kind `marshal` naming the type.
*/

/* Where an encode callback writes a clone's bytes (skein_write). */
typedef struct skein_writer skein_writer;

/* Appends n bytes to the clone being encoded. Returns 0, or -1 when out of
** memory: the encode callback then returns -1 (the send fails with kind
** `memory`). */
SKEIN_API int skein_write(skein_writer *w, const void *data, size_t n);

/* A host type's descriptor (skein_register_type copies it). Fields left
** NULL add nothing; the clone pair and the reference set each go together,
** and at least one of the two must be given.
**
** Threads: encode, pointer and retain run on the sending worker's thread,
** with its state; decode and push on the receiving worker's thread, with
** its state; release on whichever thread drops the last hold of a sent
** reference (the receiver once it has made its userdata, the sender when
** the send fails, a queue's closer when an item is dropped). Callbacks may
** run on several threads at once: retain and release must be atomic. */
typedef struct skein_type_ops {
  /* The type's name in the format and in messages, such as "app.Image";
  ** 1 to 127 bytes. Names starting with "skein." are skein's own. */
  const char *name;
  /* The metatable name the host gives luaL_newmetatable / luaL_setmetatable
  ** for this userdata (its __name), by which a value being sent is
  ** recognised; NULL: the same as `name`. */
  const char *metatable;

  /* By clone. `encode` writes the userdata at `idx` with skein_write and
  ** returns 0, or returns -1 to refuse it (the send fails with kind
  ** `marshal` naming the type); it may raise, which fails the send the same
  ** way, with the message. `decode` pushes one new userdata made from
  ** data[0..len); the bytes are untrusted (they may come from another
  ** process, or be damaged): check their length and content and raise on
  ** anything wrong, which fails the receive with kind `marshal` naming the
  ** type. */
  int (*encode)(lua_State *L, int idx, skein_writer *w);
  void (*decode)(lua_State *L, const char *data, size_t len);

  /* By reference. `pointer` gives the host pointer the userdata at `idx`
  ** stands for, or NULL when it has none (closed: the send fails with kind
  ** `marshal`); it must not raise. `retain` adds a reference to a pointer and
  ** `release` drops one. skein retains a pointer once per send and releases
  ** it when the sent value has been received, or when the send fails.
  ** `push` makes the receiving worker's userdata for `p` and pushes it; it
  ** is given a reference of its own (retained for it), which the userdata
  ** takes over: its __gc must release it. When push raises, skein releases
  ** that reference, so store `p` in the userdata last, after everything
  ** that can raise (making the userdata, setting its metatable). */
  void *(*pointer)(lua_State *L, int idx);
  void (*retain)(void *p);
  void (*release)(void *p);
  void (*push)(lua_State *L, void *p);
} skein_type_ops;

/* Makes the host userdata described by `ops` sendable, in this whole
** process (any thread; before the values are sent). Registering a name
** again with the same callbacks and metatable does nothing and returns 0.
** Returns -1, with the message in skein_errmsg(rt), for a bad descriptor
** (no name, a name too long or starting with "skein.", a clone or reference
** set half given, neither given), a name already registered with other
** callbacks, or too many types (64). `rt` may be NULL (registering before
** any runtime exists, as a host that is its own worker executable does
** before skein_worker_main): the message is then in skein_errmsg(NULL),
** per thread. */
SKEIN_API int skein_register_type(skein_runtime *rt, const skein_type_ops *ops);

/* Runs a file (NULL: standard input) or a string as the root context: its
** blocking calls drive the loop. Tasks they spawn keep running on later
** skein_run calls (or, with a host loop, whenever the host runs the loop).
** A syntax error, a missing file or an error raised by the chunk returns -1
** with the message (and traceback) in skein_errmsg. Not from inside a
** callback of the loop: use skein_call there. */
SKEIN_API int skein_dofile(skein_runtime *rt, const char *path);
SKEIN_API int skein_dostring(skein_runtime *rt, const char *code,
                             const char *chunkname);

/* Drives the loop. Returns 1 while non-daemon tasks (or threads, worker
** processes, pool jobs) remain, 0 when none does, -1 on error: a deadlock (tasks remain and nothing can wake them),
** an interrupt (see skein_interrupted), or a call from inside the loop.
** With a host loop this runs the host's loop too, so the host must not be
** inside uv_run. */
SKEIN_API int skein_run(skein_runtime *rt, skein_run_mode mode);

/* Calls the function below `nargs` arguments on L's stack with a traceback
** handler; returns a Lua status (LUA_OK on success). On error the message
** (with traceback) is left on the stack. Blocking calls behave as in
** skein_dofile. */
SKEIN_API int skein_pcall(lua_State *L, int nargs, int nresults);

/* Calls the function below `nargs` arguments on the runtime's stack, safe
** to use from any libuv callback: while it runs, a blocking call made
** outside a task raises "cannot block here" instead of driving the loop.
** Returns 0 with `nresults` results pushed, or -1 with nothing pushed and
** the message in skein_errmsg. */
SKEIN_API int skein_call(skein_runtime *rt, int nargs, int nresults);

/* Spawns a task (as skein.spawn would) running the function below `nargs`
** arguments on the runtime's stack, and pushes the task object; safe from
** any libuv callback. The task starts on the next turn of the loop. Returns
** 0, or -1 with nothing pushed and the message in skein_errmsg. */
SKEIN_API int skein_spawn(skein_runtime *rt, int nargs);

/* The message of the last failure on this runtime; "" when none. With
** NULL, the last failure of skein_register_type(NULL, ...) on this thread. */
SKEIN_API const char *skein_errmsg(skein_runtime *rt);

/* Asks the runtime to stop what it waits for and to interrupt running Lua
** code; async-signal-safe. skein_interrupted reports (and with clear=1
** resets) the request; clear it before running more code. */
SKEIN_API void skein_interrupt(skein_runtime *rt);
SKEIN_API int skein_interrupted(skein_runtime *rt, int clear);

/* Reports on stderr every task that failed and was never joined, and
** returns how many such failures the runtime has seen. */
SKEIN_API int skein_failures(skein_runtime *rt);

/* Tracing, process-wide: records what every worker of this process does
** (task runs, waits, pool jobs with flows from the submitter to the worker
** that ran them, worker processes' starts and exits, task failures, pool
** and task counters) into `path`, a Chrome trace-event JSON file that
** Perfetto (ui.perfetto.dev) and chrome://tracing open: one pid per
** process, one tid per worker. The file is truncated and its worker
** processes, and theirs, append to it. skein_trace_start returns 0, or a
** negative errno value (the file cannot be opened); a trace already running
** in this process stops first. skein_trace_stop stops recording here
** (workers write what they hold when they next go idle or close). The
** array is closed when the process exits; until then the file lacks its
** closing bracket, which trace viewers accept. $SKEIN_TRACE=path starts a
** trace when the first runtime is made, and `skein --trace path` sets it.
** Any thread. */
SKEIN_API int skein_trace_start(const char *path);
SKEIN_API void skein_trace_stop(void);

#ifdef __cplusplus
}
#endif

#endif
