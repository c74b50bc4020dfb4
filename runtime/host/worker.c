/*
** worker.c — a worker: one Lua state, one loop, one scheduler, owned by one
** OS thread; becoming one, closing it, and the one protected-call path from
** C into Lua. Also the primitives of the wait protocol (arming a wait,
** suspending or pumping, what a wait owes, wakes from other threads) that
** wait.c's loop calls, so that the same call suspends only its task when it
** can yield and drives the loop itself when it cannot. Reading arguments
** and handles is args.c; running a marshalled call is call.c.
*/
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sk_exec.h"
#include "../core/sk_shm.h"
#include "lualib.h"
#include "sk_lua.h"
#include "sk_ppool.h"
#include "sk_tpool.h"
#include "sk_proc.h"

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

/* ------------------------------------------------------------ watchers */

void sk_watchlist_init(sk_watchlist *l) {
  l->head.prev = l->head.next = &l->head;
  l->head.fire = NULL;
}

void sk_watch_link(sk_watchlist *l, sk_watch *w) {
  if (w->next) sk_watch_unlink(w);
  w->prev = l->head.prev;
  w->next = &l->head;
  l->head.prev->next = w;
  l->head.prev = w;
}

void sk_watch_unlink(sk_watch *w) {
  if (w->next == NULL) return;
  w->prev->next = w->next;
  w->next->prev = w->prev;
  w->prev = w->next = NULL;
}

void sk_watchlist_fire(sk_watchlist *l, sk_ctx *source) {
  while (l->head.next != &l->head) {
    sk_watch *w = l->head.next;
    sk_watch_unlink(w);
    w->fire(w, source);
  }
}

/* -------------------------------------------------------------- waking */

void sk_ctx_wake(sk_ctx *c) {
  if (c->state == SK_WAITING) {
    c->state = SK_READY;
    c->woken = 1;
    sk_sched_push(&c->w->sched, &c->run);
  } else if (c->state == SK_PUMPING) {
    c->woken = 1;
    /* Woken from a libuv callback inside the pump's own uv_run (a timer
    ** that was already due, a port token): that turn must not go on to
    ** block in the poll, since nothing else may ever come to end it.
    ** uv_stop makes the poll of this turn return at once; it is set only
    ** inside the pump's uv_run, so a host's own uv_run is never stopped. */
    if (c->w->sched.in_callback) uv_stop(c->w->sched.loop);
  }
}

static void ctx_timer_fire(sk_timer *t) {
  sk_ctx *c = container_of(t, sk_ctx, timer);
  c->timed_out = 1;
  sk_ctx_wake(c);
}

static void ctx_joinw_fire(sk_watch *w, sk_ctx *source) {
  (void)source;
  sk_ctx_wake(container_of(w, sk_ctx, joinw));
}

static void ctx_iow_wake(sk_iowait *w) { sk_ctx_wake(container_of(w, sk_ctx, iow)); }

/* Sets up the fields every context shares. */
static void ctx_init(sk_ctx *c, sk_worker *w) {
  c->w = w;
  c->timer.index = -1;
  c->timer.fire = ctx_timer_fire;
  c->joinw.fire = ctx_joinw_fire;
  c->iow.wake = ctx_iow_wake;
  c->ref = LUA_NOREF;
  sk_watchlist_init(&c->watchers);
}

/* Exposed to task.c through this tiny wrapper so that both kinds of context
** are initialised in one place. */
void sk_ctx_init(sk_ctx *c, sk_worker *w) { ctx_init(c, w); }

/* ------------------------------------------------------------ deadlines */

uint64_t sk_check_deadline(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return SK_NO_DEADLINE;
  if (lua_type(L, arg) != LUA_TNUMBER) {
    luaL_typeerror(L, arg, "number (timeout in seconds) or nil");
  }
  lua_Number s = lua_tonumber(L, arg);
  if (isnan(s)) luaL_argerror(L, arg, "timeout is NaN");
  if (s < 0) luaL_argerror(L, arg, "timeout must not be negative");
  if (isinf(s) || s > 1e9) return SK_NO_DEADLINE;
  return uv_hrtime() + (uint64_t)(s * 1e9);
}

void sk_push_deadline(lua_State *L, uint64_t d) {
  lua_pushinteger(L, (lua_Integer)d);
}

uint64_t sk_to_deadline(lua_State *L, int idx) {
  return (uint64_t)lua_tointeger(L, idx);
}

int sk_expired(uint64_t d) { return d != SK_NO_DEADLINE && uv_hrtime() >= d; }

/* ------------------------------------------------------- wait protocol */

sk_worker *sk_worker_of(lua_State *L) {
  return *(sk_worker **)lua_getextraspace(L);
}

sk_ctx *sk_current(lua_State *L) { return sk_worker_of(L)->current; }

static int can_yield(lua_State *L, sk_ctx *c) {
  return c->co == L && lua_isyieldable(L);
}

/* Delivers the interrupt owed to the root context: once, so that code which
** catches it may wait again (to cancel work, print, exit cleanly). */
static void raise_interrupt(lua_State *L, sk_worker *w) {
  w->int_owed = 0;
  lua_sethook(L, NULL, 0, 0);
  sk_error_raise(L, "interrupted", "interrupted");
}

/* Raises what a suspension point owes: a pending cancellation, then an
** expired skein.timeout scope. Nothing is held when it raises. */
static void check_owed(lua_State *L, sk_ctx *c) {
  if (c->shield || c->wait_shield) return;
  if (c->cancel_requested) {
    sk_error_raise(L, "cancelled", "task %I was cancelled", (LUAI_UACINT)c->id);
  }
  if (c->scope && uv_hrtime() >= c->scope->eff) {
    sk_scope *owner = c->scope->owner;
    sk_error_push(L, "timeout", "timed out after %f s", owner->seconds);
    lua_pushlightuserdata(L, owner);
    lua_setfield(L, -2, "scope");
    lua_error(L);
  }
}

void sk_wait_begin(lua_State *L, sk_ctx *c, uint64_t deadline) {
  sk_worker *w = c->w;
  int shield = c->wait_shield, alone = c->wait_alone;
  /* So that a raise below leaves neither behind: a stale wait_alone would
  ** let the context's next wait, on anything, go without the port hold. */
  c->wait_shield = c->wait_alone = 0;
  if (!shield) check_owed(L, c);
  if (!can_yield(L, c) && w->sched.in_callback) {
    luaL_where(L, 1);             /* the caller's line: a host's author needs it */
    sk_error_raise(L, "usage", "%scannot block here: the host is running the loop, so a "
                   "blocking call must be made from a task", lua_tostring(L, -1));
  }
  c->wait_shield = shield;
  c->wait_alone = alone;
  c->woken = c->timed_out = c->deadlock = c->interrupt = c->relook = 0;
  c->wgen = ++w->wait_seq;  /* unique in the worker: a late token never matches */
  if (!shield && !c->shield && c->scope && c->scope->eff < deadline) {
    deadline = c->scope->eff;
  }
  if (deadline != SK_NO_DEADLINE) sk_timer_arm(&w->sched, &c->timer, deadline);
}

/* Drives the loop until `c` is woken, the worker is interrupted, or nothing
** is left that could wake it. */
static void pump(lua_State *L, sk_ctx *c) {
  sk_worker *w = c->w;
  lua_State *saved = w->cur_L;
  w->cur_L = L;
  c->state = SK_PUMPING;
  while (!c->woken) {
    sk_sched_run_ready(&w->sched);
    if (c->woken) break;
    if (w->int_owed) {
      /* The root takes the interrupt as an error. A task pumping here (a
      ** wait where it cannot yield) is cancelled instead, so that the
      ** root, suspended below it, gets to run and take it. */
      if (c == &w->root) {
        c->interrupt = 1;
        break;
      }
      if (!c->cancel_requested) {
        c->cancel_requested = 1;
        break;
      }
    }
    if (!sk_sched_poll(&w->sched, SK_STEP_WAIT) && !c->woken) {
      c->deadlock = 1;
      break;
    }
  }
  c->state = SK_RUNNING;
  w->cur_L = saved;
}

int sk_wait(lua_State *L, sk_ctx *c, lua_KContext kctx, lua_KFunction k) {
  if (can_yield(L, c)) {
    c->state = SK_WAITING;
    return lua_yieldk(L, 0, kctx, k);
  }
  pump(L, c);
  return LUA_YIELD;
}

/* Releases what sk_wait_begin and sk_ctx_waiter took. */
static void wait_cleanup(sk_ctx *c) {
  sk_timer_disarm(&c->w->sched, &c->timer);
  sk_watch_unlink(&c->joinw);
  sk_iowait_unlink(&c->iow);
  c->xwait = 0;
  if (c->ext_hold) {
    c->ext_hold = 0;
    sk_port_hold(c->w->port, -1);
  }
}

void sk_wait_abort(sk_ctx *c) {
  wait_cleanup(c);
  c->wait_shield = 0;
}

int sk_wait_end(lua_State *L, sk_ctx *c) {
  wait_cleanup(c);
  int shielded = c->wait_shield;
  c->wait_shield = 0;
  /* The root takes an owed interrupt from whatever wait it was in, even
  ** one that ended for another reason meanwhile (a task the interrupt
  ** cancelled finished, which woke its joiner). */
  if (c->interrupt || (c == &c->w->root && c->w->int_owed)) {
    c->interrupt = 0;
    raise_interrupt(L, c->w);
  }
  if (!shielded) check_owed(L, c);
  if (c->deadlock) {
    c->deadlock = 0;
    sk_error_raise(L, "deadlock",
                   "this wait can never end: no task is ready, no timer is "
                   "armed and no I/O is pending");
  }
  return c->timed_out;
}

static int yield_k(lua_State *L, int status, lua_KContext kctx) {
  (void)status;
  (void)kctx;
  check_owed(L, sk_current(L));
  return 0;
}

/* skein.yield(): lets every other ready task run once. At the root it runs
** one non-blocking turn of the loop instead. */
int sk_yield(lua_State *L);
int sk_yield(lua_State *L) {
  sk_ctx *c = sk_current(L);
  sk_worker *w = c->w;
  check_owed(L, c);
  if (can_yield(L, c)) {
    c->state = SK_READY;
    sk_sched_push(&w->sched, &c->run);
    return lua_yieldk(L, 0, 0, yield_k);
  }
  if (!w->sched.in_callback) {
    lua_State *saved = w->cur_L;
    w->cur_L = L;
    sk_sched_step(&w->sched, SK_STEP_NOWAIT);
    w->cur_L = saved;
  }
  return yield_k(L, LUA_OK, 0);
}

/* ----------------------------------------------------- wakes from afar */

/* Port callback, on the worker's thread: wakes the context in `slot` if it
** is still in the wait the token was made for. */
static void port_wake(void *ud, uint32_t slot, uint32_t gen) {
  sk_worker *w = ud;
  sk_ctx *c = slot < w->nslots ? w->slots[slot] : NULL;
  /* A token may outlive its context: a free slot holds a tagged link. */
  if (c && !((uintptr_t)c & 1) && c->wgen == gen) sk_ctx_wake(c);
}

/* Free slots chain through their entries as tagged indexes (low bit set),
** so that a late wake token never mistakes one for a context. */
static sk_ctx *free_link(uint32_t next) { return (sk_ctx *)(((uintptr_t)next << 1) | 1); }
static uint32_t free_next(sk_ctx *link) { return (uint32_t)((uintptr_t)link >> 1); }

int sk_ctx_slot(sk_ctx *c) {
  sk_worker *w = c->w;
  if (c->wslot) return 0;
  if (w->free_slot == 0) {
    uint32_t n = w->nslots ? w->nslots * 2 : 64;
    sk_ctx **slots = realloc(w->slots, n * sizeof *slots);
    if (slots == NULL) return -1;
    /* Slot 0 stays unused; free slots chain through tagged links. */
    for (uint32_t i = n - 1; i >= (w->nslots ? w->nslots : 1); i--) {
      slots[i] = free_link(w->free_slot);
      w->free_slot = i;
    }
    if (w->nslots == 0) slots[0] = NULL;
    w->slots = slots;
    w->nslots = n;
  }
  c->wslot = w->free_slot;
  w->free_slot = free_next(w->slots[c->wslot]);
  w->slots[c->wslot] = c;
  return 0;
}

/* Workers alive (or being started) in this process: all runtimes, threads
** and pool threads. A thread is counted by whoever starts it, before it
** exists (sk_worker_count), so that a wait begun while it starts already
** knows about it; its worker then takes that count over. */
static int nworkers;
static __thread int precounted;   /* the next worker of this thread is counted */

void sk_worker_count(int delta) { __atomic_add_fetch(&nworkers, delta, __ATOMIC_RELAXED); }

int sk_worker_total(void) { return __atomic_load_n(&nworkers, __ATOMIC_RELAXED); }

/* Set once, by a worker process's main thread before it runs any user code
** (which is what starts other workers), when the process has a link to its
** parent. */
static int parent_linked;

void sk_worker_parent_linked(void) { parent_linked = 1; }

/* Whether anything outside this worker could end a wait on a shared object:
** another worker of this process, a parent process (rpc), or another live
** process sharing the segment. A lone worker's waits are ended only by its
** own tasks, so they must not keep the loop alive: then a get on a queue
** nobody else holds reports a deadlock instead of hanging. A thread or
** child process started later holds the loop by itself while it runs. */
static int others_may_wake(void) {
  return __atomic_load_n(&nworkers, __ATOMIC_RELAXED) > 1 || parent_linked ||
         sk_shm_others_alive();
}

/* Wakes the contexts of `w` that wait with a waiter record out (all of
** them, or only those that hold the port); returns how many. */
static size_t wake_record_waits(sk_worker *w, int holders_only) {
  size_t n = 0;
  for (uint32_t i = 1; i < w->nslots; i++) {
    sk_ctx *c = w->slots[i];
    if (c && !((uintptr_t)c & 1) && c->xwait && (c->ext_hold || !holders_only) &&
        (c->state == SK_WAITING || c->state == SK_PUMPING)) {
      c->relook = !holders_only;
      sk_ctx_wake(c);
      n++;
    }
  }
  return n;
}

void sk_worker_recheck_waits(sk_worker *w) {
  if (others_may_wake()) return;
  /* Nobody is left who could end a wait that began while someone was:
  ** such waits look again, and wait on (now able to report a deadlock). */
  wake_record_waits(w, 1);
}

/* The scheduler's flush hook: the loop has nothing alive, and the wait
** that polled is about to be reported as a deadlock.
**
** The invariant: a wait is reported as a deadlock only once it has looked
** at its condition after the last party that could have ended it was gone
** and found it unmet. A process or thread makes its change (an item put, a
** flag set, a lock released) before it sends the wake, and sends the wake
** before it ends; but the wake travels on its own (another process's goes
** through this process's mailbox and wake thread, sk_shm.h), so it may
** still be on its way when its sender has been reaped and nothing keeps
** the loop alive. That happens to a wait without the port hold that began
** before the party that ended it was started (by a task of this worker,
** or a thread that then ended: others_may_wake was false), and it would
** happen to any wait whose wake went astray. So, before anything is
** reported, what the port holds is handed over, and when it holds nothing
** every wait with a waiter record out is woken once to look again: the
** change it waits for, if made, is there to see. Once per loop turn, so a
** wait that looks again and waits on makes the next poll report the
** deadlock instead of spinning. */
static size_t worker_flush(void *ud) {
  sk_worker *w = ud;
  size_t n = sk_port_flush(w->port);
  if (n > 0 || w->relooked == w->sched.turns + 1) return n;
  w->relooked = w->sched.turns + 1;
  return wake_record_waits(w, 0);
}

int sk_ctx_waiter(sk_ctx *c, sk_waiter *out) {
  sk_worker *w = c->w;
  int alone = c->wait_alone;
  c->wait_alone = 0;
  if (sk_ctx_slot(c) != 0) return -1;
  c->xwait = 1;
  /* An object only this worker can reach is ended (or not) by this
  ** worker's own tasks: its wait leaves deadlock detection local. */
  if (!c->ext_hold && !alone && others_may_wake()) {
    c->ext_hold = 1;
    sk_port_hold(w->port, 1);
  }
  sk_port_retain(w->port);
  out->port = w->port;
  out->slot = c->wslot;
  out->gen = c->wgen;
  return 0;
}

void sk_ctx_identity(lua_State *L, sk_ctx *c, sk_port **port, uint32_t *slot) {
  if (sk_ctx_slot(c) != 0) sk_error_raise(L, "memory", "not enough memory");
  *port = c->w->port;
  *slot = c->wslot;
}

void sk_ctx_drop_slot(sk_ctx *c) {
  sk_worker *w = c->w;
  if (c->wslot == 0) return;
  w->slots[c->wslot] = free_link(w->free_slot);
  w->free_slot = c->wslot;
  c->wslot = 0;
}

/* ------------------------------------------------------------ interrupts */

/* Runs at the next instruction of the code that was running when the
** interrupt came, so that a busy loop stops too. In the root context it
** delivers the owed `interrupted` error. In a task it cancels the task (a
** busy task would otherwise keep the root from ever running) and leaves
** the error owed to the root, which gets it at its next wait. A hook left
** behind on a state after the root took its error does nothing. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  sk_worker *w = sk_worker_of(L);
  lua_sethook(L, NULL, 0, 0);
  if (!w->int_owed) return;
  sk_ctx *c = w->current;
  if (c == &w->root) raise_interrupt(L, w);
  c->cancel_requested = 1;
  sk_error_raise(L, "cancelled", "task %I was cancelled by an interrupt", (LUAI_UACINT)c->id);
}

void sk_worker_interrupt(sk_worker *w) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT;
  w->interrupted = 1;
  w->int_owed = 1;
  uv_async_send(w->wakeup);
  lua_sethook(w->cur_L, stop_hook, mask, 1);
}

static void on_wakeup(uv_async_t *h) { (void)h; }

/* ------------------------------------------------------------- lifetime */

/* The registry key under which a worker's main state names its worker:
** skein_pcall also runs on states no worker owns (a host's own), whose
** extra space means nothing. */
static const char worker_key = 'w';

/* Notes in the worker whether the error leaving a protected call is an
** interrupt (the command's exit status depends on it: see sk_worker). Only
** failures are noted; the command asks only after a chunk failed. */
static void note_escape(lua_State *L) {
  int is_int = sk_error_is(L, 1, "interrupted");
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &worker_key) == LUA_TLIGHTUSERDATA) {
    ((sk_worker *)lua_touserdata(L, -1))->int_escaped = is_int;
  }
  lua_pop(L, 1);
}

/* Adds a traceback to any error, skein error objects included (their
** __tostring gives "kind: message"; a remote error's own traceback comes
** first, then where it surfaced here). */
static int msghandler(lua_State *L) {
  note_escape(L);
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
      msg = lua_tostring(L, -1);
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int sk_pcall(lua_State *L, int nargs, int nres) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int st = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);
  return st;
}

/* What the layers above lend every worker (sk_worker_set_hooks). Written
** once, before the first worker exists and so before any thread that could
** read it; read-only after. */
static const sk_worker_hooks *hooks;

void sk_worker_set_hooks(const sk_worker_hooks *h) { hooks = h; }

void *sk_worker_lend(lua_State *L) { return hooks && hooks->lend ? hooks->lend(L) : NULL; }

void sk_worker_unlend(void *lent) {
  if (lent && hooks && hooks->unlend) hooks->unlend(lent);
}

int sk_worker_init(lua_State *L, int process, void *lent) {
  return hooks && hooks->init ? hooks->init(L, process, lent) : 0;
}

int sk_worker_exe(char *out, size_t n, char *err, size_t errn) {
  if (hooks && hooks->exe) return hooks->exe(out, n, err, errn);
  snprintf(err, errn, "cannot start a worker process: no worker executable is known");
  return -1;
}

sk_worker *sk_worker_become(sk_worker_kind kind, lua_Integer id, char *name, void *lent,
                            const char **err) {
  if (kind != SK_WORKER_PROCESS) precounted = 1;
  sk_worker *w = sk_worker_new(NULL, err);
  if (w == NULL) {
    free(name);
    return NULL;
  }
  w->kind = kind == SK_WORKER_PROCESS ? "process" : "thread";
  w->self_id = id;
  w->self_name = name;
  {
    char tname[160];
    if (kind == SK_WORKER_POOL_THREAD) {
      snprintf(tname, sizeof tname, "pool %s (thread #%lld)", name ? name : "?", (long long)id);
    } else if (kind == SK_WORKER_PROCESS) {
      snprintf(tname, sizeof tname, "process worker %s", name ? name : "");
    } else {
      snprintf(tname, sizeof tname, "thread %lld%s%s", (long long)id, name ? " " : "",
               name ? name : "");
    }
    sk_trace_thread_name(tname);
  }
  *err = NULL;
  if (sk_worker_init(w->L, kind == SK_WORKER_PROCESS, lent) != 0) {
    *err = lua_tostring(w->L, -1);
    if (*err == NULL) *err = "the worker's init hook failed";
  }
  return w;
}

static int open_state(lua_State *L) {
  lua_pushlightuserdata(L, sk_worker_of(L));
  lua_rawsetp(L, LUA_REGISTRYINDEX, &worker_key);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, hooks->open_module);
  lua_setfield(L, -2, "skein");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "skein");
  lua_call(L, 1, 1);
  lua_setglobal(L, "skein");
  return 0;
}

sk_worker *sk_worker_new(uv_loop_t *host_loop, const char **err) {
  if (hooks == NULL || hooks->open_module == NULL) {
    *err = "no skein module to open (sk_worker_set_hooks was not called)";
    return NULL;
  }
  sk_worker *w = calloc(1, sizeof *w);
  *err = "out of memory";
  if (w == NULL) return NULL;
  if (sk_sched_init(&w->sched, host_loop) < 0) {
    *err = "cannot initialise the event loop";
    free(w);
    return NULL;
  }
  w->wakeup = malloc(sizeof *w->wakeup);
  w->alloc = sk_alloc_new();
  w->L = w->alloc ? sk_lua_newstate(w->alloc) : NULL;
  if (w->wakeup == NULL || w->L == NULL) {
    free(w->wakeup);
    w->wakeup = NULL;
    sk_worker_close(w);
    return NULL;
  }
  uv_async_init(w->sched.loop, w->wakeup, on_wakeup);
  uv_unref((uv_handle_t *)w->wakeup);
  w->kind = "main";
  if (!precounted) sk_trace_thread_name("main");
  /* A counted thread uncounts itself when it ends, after its last wake-ups;
  ** other workers (a runtime's own) are uncounted when they close. */
  if (!precounted) {
    sk_worker_count(1);
    w->counted = 1;
  }
  precounted = 0;
  w->port = sk_port_new(w->sched.loop, port_wake, w);
  if (w->port == NULL) {
    sk_worker_close(w);
    return NULL;
  }
  /* Wakes a task sends another through this port count as life, and waits
  ** look again before a deadlock is reported (worker_flush). */
  w->sched.flush = worker_flush;
  w->sched.flush_ud = w;
  *(sk_worker **)lua_getextraspace(w->L) = w;
  ctx_init(&w->root, w);
  w->root.state = SK_RUNNING;
  w->current = &w->root;
  w->cur_L = w->L;
  lua_pushcfunction(w->L, open_state);
  if (sk_pcall(w->L, 0, 0) != LUA_OK) {
    *err = "cannot open the Lua libraries";
    sk_worker_close(w);
    return NULL;
  }
  return w;
}

static void free_handle(uv_handle_t *h) { free(h); }

int sk_worker_close(sk_worker *w) {
  w->closing = 1;
  if (w->counted) __atomic_sub_fetch(&nworkers, 1, __ATOMIC_RELAXED);
  /* First, before the state closes: what the worker started (its child
  ** processes, its process pools' workers, its skein.exec children) is
  ** killed and reaped. */
  sk_process_kill_all(w);
  sk_ppool_kill_all(w);
  sk_exec_kill_all(&w->execs);
  if (w->L) lua_close(w->L);
  sk_alloc_free(w->alloc);
  w->sched.flush = NULL;
  if (w->port) sk_port_close(w->port);
  free(w->slots);
  free(w->anchor_free);
  sk_tpool_drop_jobs(w);
  free(w->self_name);
  if (w->wakeup) uv_close((uv_handle_t *)w->wakeup, free_handle);
  int rc = sk_sched_close(&w->sched);
  free(w);
  sk_trace_thread_end();       /* last: closing may record (reaped processes) */
  return rc;
}

/* The drain's collection timer (below): `fire` runs in a libuv callback and
** only marks the collection due. */
typedef struct drain_gc {
  sk_timer t;
  int due;
} drain_gc;

static void drain_gc_fire(sk_timer *t) { ((drain_gc *)t)->due = 1; }

#define DRAIN_GC_AFTER 0.1      /* seconds of waiting before the collection */

int sk_worker_drain(sk_worker *w) {
  lua_State *L = w->L;
  /* The call has returned, so its locals are garbage now, and some of them
  ** may hold up the work left (a streamed HTTP response nobody reads keeps
  ** its server's handler waiting to write). When that work has not ended
  ** after DRAIN_GC_AFTER of waiting, one full collection finalizes them,
  ** which ends what they held. Work that ends sooner (a job's own tasks)
  ** pays nothing. The timer lives on this stack: every way out disarms it
  ** before anything can raise. */
  drain_gc gc = {.t = {.index = -1, .fire = drain_gc_fire}};
  int armed = 0, fail = 0;
  for (;;) {
    sk_sched_run_ready(&w->sched);
    if (w->live == 0) break;
    if (w->interrupted) {
      fail = 1;
      break;
    }
    if (gc.due) {
      gc.due = 0;
      lua_gc(L, LUA_GCCOLLECT);
      continue;
    }
    if (!armed) {
      armed = 1;
      sk_timer_arm(&w->sched, &gc.t, uv_hrtime() + (uint64_t)(DRAIN_GC_AFTER * 1e9));
    }
    if (!sk_sched_poll(&w->sched, SK_STEP_WAIT) && w->live > 0) {
      fail = 2;
      break;
    }
  }
  sk_timer_disarm(&w->sched, &gc.t);
  if (fail == 1) {
    w->int_owed = 0;
    sk_error_push(L, "interrupted", "interrupted");
    return -1;
  }
  if (fail == 2) {
    sk_error_push(L, "deadlock", "%d task(s) are blocked and nothing can wake them",
                  (int)w->live);
    return -1;
  }
  return 0;
}
