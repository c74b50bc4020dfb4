/*
** hosttype.c — a host whose own userdata cross workers
** (skein_register_type).
**
**   demo.Vec    a 3-vector, sent by clone: its bytes go to the receiver,
**               which makes a copy. Crosses threads and processes.
**   demo.Tally  a counter the host owns and counts references to, sent by
**               reference: every thread worker that receives one works on
**               the same C object. Threads of this process only; to a
**               worker process it is an error of kind `marshal`.
**
** The program is its own worker executable: main registers the types and
** calls skein_worker_main first, so a process pool's workers run this
** program with both types and the `demo` module present. hosttype.lua
** sends vectors through a process pool and a tally through a thread pool.
**
**   usage: hosttype [hosttype.lua]
**   build: see the Makefile, or
**     gcc -std=gnu11 -I../../runtime/include $(pkg-config --cflags lua5.4 libuv) \
**         -o hosttype hosttype.c ../../build/lib/release/libskein.a \
**         $(pkg-config --libs lua5.4 libuv libcurl hiredis) -lm
*/
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <skein.h>

#include "lauxlib.h"

/* ------------------------------------------------ demo.Vec: by clone */

typedef struct vec {
  double v[3];
} vec;

static void push_vec(lua_State *L, const double v[3]) {
  vec *p = lua_newuserdatauv(L, sizeof *p, 0);
  memcpy(p->v, v, sizeof p->v);
  luaL_setmetatable(L, "demo.Vec");
}

/* Writes the three numbers; runs on the sender's thread. */
static int vec_encode(lua_State *L, int idx, skein_writer *w) {
  vec *p = lua_touserdata(L, idx);
  return skein_write(w, p->v, sizeof p->v);
}

/* Makes the receiver's copy. The bytes are untrusted: check them. */
static void vec_decode(lua_State *L, const char *data, size_t len) {
  double v[3];
  if (len != sizeof v) luaL_error(L, "a vector is %d bytes, not %d", (int)sizeof v, (int)len);
  memcpy(v, data, sizeof v);
  push_vec(L, v);
}

static int l_vec(lua_State *L) {
  double v[3] = {luaL_checknumber(L, 1), luaL_checknumber(L, 2), luaL_checknumber(L, 3)};
  push_vec(L, v);
  return 1;
}

static int vec_len(lua_State *L) {
  vec *p = luaL_checkudata(L, 1, "demo.Vec");
  lua_pushnumber(L, sqrt(p->v[0] * p->v[0] + p->v[1] * p->v[1] + p->v[2] * p->v[2]));
  return 1;
}

static int vec_scale(lua_State *L) {
  vec *p = luaL_checkudata(L, 1, "demo.Vec");
  double k = luaL_checknumber(L, 2), v[3] = {p->v[0] * k, p->v[1] * k, p->v[2] * k};
  push_vec(L, v);
  return 1;
}

static int vec_tostring(lua_State *L) {
  vec *p = luaL_checkudata(L, 1, "demo.Vec");
  lua_pushfstring(L, "vec(%f, %f, %f)", p->v[0], p->v[1], p->v[2]);
  return 1;
}

/* --------------------------------------------- demo.Tally: by reference */

/* The host's object: shared by every userdata that stands for it, freed
** when the last reference goes. Any thread may add or drop one. */
typedef struct tally {
  int refs;
  long count;
} tally;

static int tallies_alive;

static void tally_retain(void *p) { __atomic_add_fetch(&((tally *)p)->refs, 1, __ATOMIC_RELAXED); }

static void tally_release(void *p) {
  if (__atomic_sub_fetch(&((tally *)p)->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    free(p);
    __atomic_sub_fetch(&tallies_alive, 1, __ATOMIC_RELAXED);
  }
}

/* A userdata holds one reference, released by its __gc. */
static void tally_push(lua_State *L, void *p) {
  tally **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, "demo.Tally");
  *box = p;  /* last: it owns the reference from here on */
}

static void *tally_pointer(lua_State *L, int idx) { return *(tally **)lua_touserdata(L, idx); }

static int l_tally(lua_State *L) {
  tally *t = malloc(sizeof *t);
  if (t == NULL) return luaL_error(L, "out of memory");
  t->refs = 1;
  t->count = 0;
  __atomic_add_fetch(&tallies_alive, 1, __ATOMIC_RELAXED);
  tally **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = t;  /* (had that raised, t would leak: fine for a demo) */
  luaL_setmetatable(L, "demo.Tally");
  return 1;
}

static tally *check_tally(lua_State *L) {
  tally **box = luaL_checkudata(L, 1, "demo.Tally");
  return *box;
}

static int tally_add(lua_State *L) {
  lua_pushinteger(L, __atomic_add_fetch(&check_tally(L)->count, (long)luaL_checkinteger(L, 2),
                                        __ATOMIC_RELAXED));
  return 1;
}

static int tally_value(lua_State *L) {
  lua_pushinteger(L, __atomic_load_n(&check_tally(L)->count, __ATOMIC_RELAXED));
  return 1;
}

static int tally_refs(lua_State *L) {
  lua_pushinteger(L, __atomic_load_n(&check_tally(L)->refs, __ATOMIC_RELAXED));
  return 1;
}

static int tally_gc(lua_State *L) {
  tally **box = lua_touserdata(L, 1);
  if (*box) tally_release(*box);
  *box = NULL;
  return 0;
}

/* ------------------------------------------------------ registration */

static const skein_type_ops vec_ops = {
    .name = "demo.Vec", .encode = vec_encode, .decode = vec_decode};

static const skein_type_ops tally_ops = {
    .name = "demo.Tally", .pointer = tally_pointer, .retain = tally_retain,
    .release = tally_release, .push = tally_push};

/* The init hook: the metatables and the `demo` module, in every worker's
** state (the runtime's, its thread workers', and this program's worker
** processes'). */
static void open_demo(lua_State *L, void *ud) {
  (void)ud;
  static const luaL_Reg vec_methods[] = {{"len", vec_len}, {"scale", vec_scale}, {NULL, NULL}};
  static const luaL_Reg tally_methods[] = {
      {"add", tally_add}, {"value", tally_value}, {"refs", tally_refs}, {NULL, NULL}};
  luaL_newmetatable(L, "demo.Vec");
  luaL_newlib(L, vec_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, vec_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newmetatable(L, "demo.Tally");
  luaL_newlib(L, tally_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, tally_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"vec", l_vec}, {"tally", l_tally}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setglobal(L, "demo");
}

int main(int argc, char **argv) {
  /* First: the types (every process of this program has them), then the
  ** worker entry point, which a worker process never returns from. */
  if (skein_register_type(NULL, &vec_ops) != 0 || skein_register_type(NULL, &tally_ops) != 0) {
    fprintf(stderr, "hosttype: %s\n", skein_errmsg(NULL));
    return 1;
  }
  int st = skein_worker_main(argc, argv, open_demo, NULL);
  if (st >= 0) return st;

  signal(SIGPIPE, SIG_IGN);  /* worker processes: see skein.h */
  const char *script = argc > 1 ? argv[1] : "hosttype.lua";
  skein_runtime *rt = skein_new(NULL);
  if (rt == NULL) return 1;
  int status = 0;
  if (skein_add_init(rt, open_demo, NULL) != 0 || skein_dofile(rt, script) != 0 ||
      skein_run(rt, SKEIN_RUN_DEFAULT) < 0) {
    fprintf(stderr, "hosttype: %s\n", skein_errmsg(rt));
    status = 1;
  }
  if (skein_close(rt) != 0) status = 1;
  printf("hosttype: %d tallies left after skein_close\n", tallies_alive);
  return status || tallies_alive != 0;
}
