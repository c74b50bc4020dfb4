/*
** sk_task.h — the coroutine engine (runtime/host/tasks.c): tasks and the
** bookkeeping of groups. The Lua faces are lua/task.c (skein.spawn, task
** objects) and lua/group.c (skein.group, wait sets).
**
** Threading: a task belongs to its worker's thread, like everything in
** sk_lua.h.
*/
#ifndef SK_TASK_H
#define SK_TASK_H

#include "sk_lua.h"

#define SK_TASK_MT "skein.Task"

/* A task's user values. The first holds its coroutine until it finishes,
** then its outcome: nothing (no results), its one result, a table of its
** results (t->nres of them), or for a failed task {error, traceback} (a
** cancelled one keeps its error alone). Two slots instead of four are
** 32 bytes less per task, pending or finished. */
enum { SK_TASK_UV_CO = 1, SK_TASK_UV_PAYLOAD = 1, SK_TASK_UV_NAME = 2,
       SK_TASK_UV_COUNT = 2 };

/* Creates a task running the value at `fn` with the `nargs` values after it
** and pushes the task. Raises (holding nothing) when `fn` is not callable. */
sk_ctx *sk_task_spawn(lua_State *L, int fn, int nargs, int daemon);
sk_ctx *sk_task_check(lua_State *L, int idx);
/* Pushes the userdata of an unfinished task. */
void sk_task_push(lua_State *L, sk_ctx *t);
/* The task at idx, or NULL when it is not a task of this worker. */
sk_ctx *sk_task_test(lua_State *L, int idx);
/* Asks the task to stop: 0 when it had finished already. */
int sk_task_cancel(sk_ctx *t);
/* Pushes the task's results (returns their count) or raises its error;
** `idx` is the task's userdata. */
int sk_task_push_results(lua_State *L, sk_ctx *t, int idx);
/* Writes the report of a failed, never-observed task (at index idx) to
** stderr once and counts it. */
void sk_task_report(lua_State *L, int idx);
/* Reports every failed, never-observed task of the worker on stderr;
** returns the total number reported over the worker's life. */
size_t sk_task_report_failures(sk_worker *w);
/* Makes the registry entries the engine keeps (the table of failed tasks
** and the metatable of its sentinels); the task binding calls it once per
** worker state. */
void sk_task_engine_open(lua_State *L);

/* A group's members are linked through their contexts (group, gprev,
** gnext). The first member to fail cancels the others; `waiters` fire
** whenever a member finishes. The group's memory is its binding's
** (a userdata of lua/group.c); it outlives its members' interest in it. */
struct sk_group {
  sk_ctx *head;                 /* live members, linked through gnext/gprev */
  size_t nlive;
  sk_ctx *failed;               /* the first member that failed */
  sk_watchlist waiters;         /* contexts blocked in wait or close */
  int closed, raised;
};

/* Makes a new task `t` a member of `g` (cancelled at once when the group
** has failed already). */
void sk_group_add(sk_group *g, sk_ctx *t);
void sk_group_cancel_all(sk_group *g);

#endif
