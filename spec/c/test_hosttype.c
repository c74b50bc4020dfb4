/*
** test_hosttype.c — host userdata that crosses workers (skein_register_type):
** a type sent by clone (ht.Point), one by reference only (ht.Counter), one
** with both (ht.Shared, which clones to another process), and one this
** process registers only after skein_worker_main (ht.Local), so that its
** worker processes lack it. The test is its own worker executable: its main
** registers the first three and calls skein_worker_main, whose init hook
** makes the `ht` module, as the runtime's skein_add_init hook does in its
** main state and thread workers. Checks values through a thread pool and a
** process pool, the counters' references back to where they started once
** the pools are closed, descriptor errors, encode and decode callbacks that
** refuse, and damaged bytes. Prints TAP.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skein.h"
#include "lauxlib.h"

#include "tap.h"

/* ---------------------------------------------------- ht.Point: clones */

typedef struct point {
  double x, y;
} point;

static void push_point(lua_State *L, double x, double y, const char *mt) {
  point *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->x = x;
  p->y = y;
  luaL_setmetatable(L, mt);
}

static int point_index(lua_State *L) {
  point *p = lua_touserdata(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "x") == 0) lua_pushnumber(L, p->x);
  else if (strcmp(k, "y") == 0) lua_pushnumber(L, p->y);
  else lua_pushnil(L);
  return 1;
}

/* x == 13 is refused (-1); x == 14 raises; x == 666 encodes, and decoding
** refuses it. */
static int point_encode(lua_State *L, int idx, skein_writer *w) {
  point *p = lua_touserdata(L, idx);
  if (p->x == 13) return -1;
  if (p->x == 14) luaL_error(L, "point 14 will not go");
  double v[2] = {p->x, p->y};
  return skein_write(w, v, sizeof v);
}

static void decode_as(lua_State *L, const char *data, size_t len, const char *mt) {
  if (len != 2 * sizeof(double)) luaL_error(L, "a point is 16 bytes, not %d", (int)len);
  double v[2];
  memcpy(v, data, sizeof v);
  if (v[0] == 666) luaL_error(L, "666 is no point");
  push_point(L, v[0], v[1], mt);
}

static void point_decode(lua_State *L, const char *data, size_t len) {
  decode_as(L, data, len, "ht.Point");
}

static void local_decode(lua_State *L, const char *data, size_t len) {
  decode_as(L, data, len, "ht.Local");
}

/* ------------------------------------- ht.Counter, ht.Shared: references */

/* A host object with a reference count: every userdata for it holds one,
** as does each send in flight. */
typedef struct counter {
  int refs;
  long value;
} counter;

static int live_counters;  /* counters not yet freed, in this process */

static counter *counter_new(long value) {
  counter *c = malloc(sizeof *c);
  c->refs = 1;
  c->value = value;
  __atomic_add_fetch(&live_counters, 1, __ATOMIC_RELAXED);
  return c;
}

static void counter_retain(void *p) {
  __atomic_add_fetch(&((counter *)p)->refs, 1, __ATOMIC_RELAXED);
}

static void counter_release(void *p) {
  counter *c = p;
  if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    free(c);
    __atomic_sub_fetch(&live_counters, 1, __ATOMIC_RELAXED);
  }
}

/* The userdata holds the pointer (NULL once closed). */
static void push_box(lua_State *L, void *p, const char *mt) {
  counter **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, mt);
  *box = p;  /* last: nothing above may raise once it holds the reference */
}

static void counter_push(lua_State *L, void *p) { push_box(L, p, "ht.Counter"); }
static void shared_push(lua_State *L, void *p) { push_box(L, p, "ht.Shared"); }

static void *counter_pointer(lua_State *L, int idx) {
  return *(counter **)lua_touserdata(L, idx);
}

static counter *check_counter(lua_State *L) {
  counter **box = lua_touserdata(L, 1);
  luaL_argcheck(L, box && *box, 1, "a live counter expected");
  return *box;
}

static int counter_add(lua_State *L) {
  counter *c = check_counter(L);
  lua_pushinteger(L, __atomic_add_fetch(&c->value, (long)luaL_checkinteger(L, 2), __ATOMIC_RELAXED));
  return 1;
}

static int counter_get(lua_State *L) {
  lua_pushinteger(L, __atomic_load_n(&check_counter(L)->value, __ATOMIC_RELAXED));
  return 1;
}

static int counter_refs(lua_State *L) {
  lua_pushinteger(L, __atomic_load_n(&check_counter(L)->refs, __ATOMIC_RELAXED));
  return 1;
}

static int counter_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)(uintptr_t)check_counter(L));
  return 1;
}

static int counter_close(lua_State *L) {
  counter **box = lua_touserdata(L, 1);
  if (*box) counter_release(*box);
  *box = NULL;
  return 0;
}

/* ht.Shared's clone: its value; the copy is a new host object. */
static int shared_encode(lua_State *L, int idx, skein_writer *w) {
  counter *c = *(counter **)lua_touserdata(L, idx);
  if (c == NULL) return -1;
  long v = c->value;
  return skein_write(w, &v, sizeof v);
}

static void shared_decode(lua_State *L, const char *data, size_t len) {
  long v;
  if (len != sizeof v) luaL_error(L, "a shared counter is %d bytes", (int)sizeof v);
  memcpy(&v, data, sizeof v);
  counter **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, "ht.Shared");
  *box = counter_new(v);
}

/* ------------------------------------------------------ the ht module */

static int l_point(lua_State *L) {
  push_point(L, luaL_checknumber(L, 1), luaL_checknumber(L, 2), "ht.Point");
  return 1;
}

static int l_local(lua_State *L) {
  push_point(L, luaL_checknumber(L, 1), luaL_checknumber(L, 2), "ht.Local");
  return 1;
}

static int l_counter(lua_State *L) {
  push_box(L, counter_new((long)luaL_checkinteger(L, 1)), "ht.Counter");
  return 1;
}

static int l_shared(lua_State *L) {
  push_box(L, counter_new((long)luaL_checkinteger(L, 1)), "ht.Shared");
  return 1;
}

static int l_live(lua_State *L) {
  lua_pushinteger(L, __atomic_load_n(&live_counters, __ATOMIC_RELAXED));
  return 1;
}

static const luaL_Reg counter_methods[] = {
    {"add", counter_add}, {"get", counter_get}, {"refs", counter_refs},
    {"id", counter_id},   {"close", counter_close}, {NULL, NULL}};

/* The metatables and the global `ht`, in every worker state. */
static void open_ht(lua_State *L, void *ud) {
  (void)ud;
  const char *points[] = {"ht.Point", "ht.Local"};
  for (int i = 0; i < 2; i++) {
    luaL_newmetatable(L, points[i]);
    lua_pushcfunction(L, point_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
  }
  const char *boxes[] = {"ht.Counter", "ht.Shared"};
  for (int i = 0; i < 2; i++) {
    luaL_newmetatable(L, boxes[i]);
    luaL_newlib(L, counter_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, counter_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
  }
  static const luaL_Reg fns[] = {{"point", l_point},   {"local_point", l_local},
                                 {"counter", l_counter}, {"shared", l_shared},
                                 {"live", l_live},     {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setglobal(L, "ht");
}

static const skein_type_ops point_ops = {
    .name = "ht.Point", .encode = point_encode, .decode = point_decode};
static const skein_type_ops counter_ops = {
    .name = "ht.Counter", .pointer = counter_pointer, .retain = counter_retain,
    .release = counter_release, .push = counter_push};
static const skein_type_ops shared_ops = {
    .name = "ht.Shared", .encode = shared_encode, .decode = shared_decode,
    .pointer = counter_pointer, .retain = counter_retain, .release = counter_release,
    .push = shared_push};
/* Its format name differs from its metatable name. */
static const skein_type_ops local_ops = {
    .name = "ht.LocalPoint", .metatable = "ht.Local", .encode = point_encode,
    .decode = local_decode};

/* ------------------------------------------------------------- checks */

/* Registers ops and checks for -1 with `want` in the message. */
static void refused(skein_runtime *rt, const skein_type_ops *ops, const char *want,
                    const char *what) {
  int rc = skein_register_type(rt, ops);
  const char *msg = skein_errmsg(rt);
  ok(rc == -1 && strstr(msg, want) != NULL, "%s: -1 (%s)", what, msg);
}

static void test_descriptors(void) {
  refused(NULL, NULL, "no descriptor", "no descriptor");
  skein_type_ops bad = point_ops;
  bad.name = NULL;
  refused(NULL, &bad, "name is missing", "no name");
  bad.name = "skein.Queue";
  refused(NULL, &bad, "as skein's own do", "a name of skein's own");
  bad = point_ops;
  bad.metatable = "skein.Queue";
  refused(NULL, &bad, "metatable name starts with", "a metatable name of skein's own");
  bad = point_ops;
  bad.decode = NULL;
  refused(NULL, &bad, "go together", "encode without decode");
  bad = counter_ops;
  bad.push = NULL;
  refused(NULL, &bad, "go together", "a reference set without push");
  bad = (skein_type_ops){.name = "ht.Nothing"};
  refused(NULL, &bad, "neither", "no callbacks");
  ok(skein_register_type(NULL, &point_ops) == 0, "registering the same type again: 0");
  bad = point_ops;
  bad.decode = local_decode;
  refused(NULL, &bad, "other callbacks", "the same name with other callbacks");
  bad = (skein_type_ops){.name = "ht.Other", .metatable = "ht.Point", .encode = point_encode,
                         .decode = point_decode};
  refused(NULL, &bad, "has that metatable", "another name with a metatable already taken");
  skein_runtime *rt = skein_new(NULL);
  bad.name = "";
  refused(rt, &bad, "name is missing", "with a runtime, the message is the runtime's");
  skein_close(rt);
}

/* Runs `code` in rt; one TAP line. */
static void check(skein_runtime *rt, const char *what, const char *code) {
  int rc = skein_dostring(rt, code, what);
  ok(rc == 0, "%s%s%s", what, rc ? ": " : "", rc ? skein_errmsg(rt) : "");
}

static const char *thread_code =
    "local tp = skein.pool{kind = 'thread', size = 2}\n"
    "local s, q = tp:submit(function(p) return p.x + p.y, ht.point(p.y, p.x) end,\n"
    "                       ht.point(1.5, -2)):get()\n"
    "assert(s == -0.5 and getmetatable(q) and q.x == -2 and q.y == 1.5, 'point round trip')\n"
    "c = ht.counter(10)\n"
    "local id, v, back = tp:submit(function(c) c:add(5) return c:id(), c:get(), c end, c):get()\n"
    "assert(id == c:id() and v == 15 and c:get() == 15, 'same host object in the thread')\n"
    "assert(back ~= c and back:id() == c:id(), 'and back by reference')\n"
    "back = nil\n"
    "local sh = ht.shared(3)\n"
    "local sid = tp:submit(function(s) s:add(1) return s:id() end, sh):get()\n"
    "assert(sid == sh:id() and sh:get() == 4, 'a type with both goes by reference to a thread')\n"
    "local futs = {}\n"
    "for i = 1, 50 do futs[i] = tp:submit(function(c) return c:add(1) end, c) end\n"
    "for i = 1, 50 do futs[i]:get() end\n"
    "assert(c:get() == 65, 'fifty adds through the pool: ' .. c:get())\n"
    "local before = c:refs()\n"
    "local ok, e = pcall(tp.submit, tp, function() end, c, coroutine.create(print))\n"
    "assert(not ok and e.kind == 'marshal', 'a send that fails')\n"
    "assert(c:refs() == before, 'releases what it retained: ' .. c:refs() .. ' vs ' .. before)\n"
    "local d = ht.counter(1) d:close()\n"
    "ok, e = pcall(tp.submit, tp, function() end, d)\n"
    "assert(not ok and e.kind == 'marshal' and e.message:find('cannot send a closed ht.Counter', 1, true),\n"
    "       tostring(e))\n"
    "ok, e = pcall(function() return tp:submit(function() end, ht.point(666, 0)):get() end)\n"
    "assert(not ok and e.kind == 'marshal' and e.message:find('ht.Point', 1, true)\n"
    "       and e.message:find('666 is no point', 1, true), tostring(e))\n"
    "tp:close() tp:join(30)\n"
    "collectgarbage() collectgarbage()\n"
    "assert(c:refs() == 1, 'references back to one after the pool closed: ' .. c:refs())\n"
    "assert(sh:refs() == 1, 'and for the shared one: ' .. sh:refs())\n";

static const char *encode_code =
    "local tp = skein.pool{kind = 'thread', size = 1}\n"
    "local ok, e = pcall(tp.submit, tp, function() end, 1, {p = ht.point(13, 0)})\n"
    "assert(not ok and e.kind == 'marshal' and e.message:find('ht.Point refused', 1, true)\n"
    "       and e.path == 'args[2].p', tostring(e))\n"
    "ok, e = pcall(tp.submit, tp, function() end, ht.point(14, 0))\n"
    "assert(not ok and e.kind == 'marshal' and e.message:find('point 14 will not go', 1, true),\n"
    "       tostring(e))\n"
    "tp:close() tp:join(30)\n";

static const char *process_code =
    "local pp = skein.pool{kind = 'process', size = 1}\n"
    "local x2, q = pp:submit(function(p) return p.x * 2, ht.point(p.y, p.x) end,\n"
    "                        ht.point(3, 4)):get(30)\n"
    "assert(x2 == 6 and q.x == 4 and q.y == 3, 'points cross to a worker process and back')\n"
    "local c = ht.counter(1)\n"
    "local ok, e = pcall(pp.submit, pp, function(c) return c end, c)\n"
    "assert(not ok and e.kind == 'marshal' and e.message:find('by reference only', 1, true)\n"
    "       and e.message:find('ht.Counter', 1, true), tostring(e))\n"
    "assert(c:refs() == 1, 'the refused send holds nothing')\n"
    "local sh = ht.shared(7)\n"
    "local v, id, back = pp:submit(function(s) s:add(1) return s:get(), s:id(), s end, sh):get(30)\n"
    "assert(v == 8 and sh:get() == 7, 'a type with both is cloned to a process')\n"
    "assert(back:get() == 8 and back:id() ~= sh:id(), 'and cloned back')\n"
    "ok, e = pcall(function() return pp:submit(function(l) return 1 end, ht.local_point(1, 2)):get(30) end)\n"
    "assert(not ok and e.kind == 'marshal' and e.message:find(\"host type 'ht.LocalPoint' is not registered\", 1, true),\n"
    "       tostring(e))\n"
    "ok, e = pcall(function() return pp:submit(function(p) return p end, ht.point(666, 1)):get(30) end)\n"
    "assert(not ok and e.kind == 'marshal' and e.message:find('666 is no point', 1, true), tostring(e))\n"
    "ok, e = pcall(function() return pp:submit(function() return ht.point(666, 2) end):get(30) end)\n"
    "assert(not ok and e.kind == 'marshal' and e.message:find('666 is no point', 1, true), tostring(e))\n"
    "assert(pp:submit(function(a) return a + 1 end, 41):get(30) == 42, 'the worker is still fine')\n"
    "pp:close() pp:join(30)\n";

/* Damaged bytes: what a host type's decoder sees is bounded by the format,
** and everything it or the format refuses is kind "marshal". */
static const char *damaged_code =
    "local function hdr(name, mode) return string.char(83, 3, 1, 16, #name) .. name .. mode end\n"
    "local function fails(s, want)\n"
    "  local ok, e = pcall(skein.decode, s)\n"
    "  assert(not ok and type(e) == 'table' and e.kind == 'marshal', tostring(e))\n"
    "  assert(not want or e.message:find(want, 1, true), e.message .. ' lacks ' .. tostring(want))\n"
    "end\n"
    "local good = skein.encode(ht.point(1, 2))\n"
    "local p = skein.decode(good)\n"
    "assert(p.x == 1 and p.y == 2, 'skein.encode and decode')\n"
    "for i = 1, #good - 1 do fails(good:sub(1, i)) end\n"
    "fails(hdr('ht.Point', 'c') .. string.char(15) .. ('x'):rep(15), 'a point is 16 bytes, not 15')\n"
    "fails(hdr('ht.Point', 'c') .. string.char(17) .. ('x'):rep(16), 'past the end')\n"
    "fails(hdr('ht.Point', 'z'), 'unknown host value mode')\n"
    "fails(hdr('ht.Nope', 'c') .. string.char(0), \"host type 'ht.Nope' is not registered\")\n"
    "fails(hdr('ht.Counter', 'r') .. string.char(1, 1, 1), 'by reference only')\n"
    "fails(hdr('ht.Counter', 'c') .. string.char(0), 'no decode callback')\n"
    "local c = ht.counter(5)\n"
    "local s = skein.encode(c)\n"
    "fails(s, 'no longer exists')\n"
    "assert(c:refs() == 1, 'skein.encode holds nothing once it returns')\n"
    "-- random damage: never a crash, always marshal or a value\n"
    "local seed = 12345\n"
    "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n end\n"
    "local samples = {good, skein.encode({ht.point(5, 6), 'x', ht.shared(2)}), skein.encode(ht.shared(9))}\n"
    "for i = 1, 3000 do\n"
    "  local b = samples[1 + rnd(#samples)]\n"
    "  local t = {b:byte(1, -1)}\n"
    "  for k = 1, 1 + rnd(3) do t[1 + rnd(#t)] = rnd(256) end\n"
    "  if rnd(4) == 0 then for k = 1, rnd(#t) do t[#t] = nil end end\n"
    "  local ok, e = pcall(skein.decode, string.char(table.unpack(t)))\n"
    "  assert(ok or (type(e) == 'table' and e.kind == 'marshal'), tostring(e))\n"
    "end\n"
    "collectgarbage() collectgarbage()\n";

/* Bytes from outside the process tree (decoded with flags 0: the broker's
** task data) never reach a host's callbacks. The decoder is internal; its
** declaration is repeated here. */
int sk_marshal_decode(lua_State *L, const char *data, size_t len, int flags);

static void test_untrusted(skein_runtime *rt) {
  lua_State *L = skein_lua(rt);
  int top = lua_gettop(L);
  ok(skein_dostring(rt, "untrusted = skein.encode(ht.point(1, 2))", "=enc") == 0, "encode a point");
  lua_getglobal(L, "untrusted");
  size_t n = 0;
  const char *s = lua_tolstring(L, -1, &n);
  int r = s ? sk_marshal_decode(L, s, n, 0) : 0;
  const char *msg = r < 0 ? luaL_tolstring(L, -1, NULL) : "";
  ok(r < 0 && strstr(msg, "host values are not accepted here") != NULL,
     "a host value in untrusted bytes is refused before its callbacks (%s)", msg);
  lua_settop(L, top);
}

int main(int argc, char **argv) {
  /* Types every process of this program has, then the worker entry point:
  ** a worker process of the test runs there and never gets further. */
  if (skein_register_type(NULL, &point_ops) != 0 || skein_register_type(NULL, &counter_ops) != 0 ||
      skein_register_type(NULL, &shared_ops) != 0) {
    fprintf(stderr, "register: %s\n", skein_errmsg(NULL));
    return 2;
  }
  int st = skein_worker_main(argc, argv, open_ht, NULL);
  if (st >= 0) return st;
  /* Only this process: its worker processes lack it. */
  ok(skein_register_type(NULL, &local_ops) == 0, "a type whose metatable name differs");

  test_descriptors();

  skein_runtime *rt = skein_new(NULL);
  ok(rt != NULL && skein_add_init(rt, open_ht, NULL) == 0, "a runtime with the ht module");
  check(rt, "by clone and by reference through a thread pool", thread_code);
  check(rt, "encode callbacks that refuse or raise", encode_code);
  check(rt, "through a process pool whose workers run this program", process_code);
  check(rt, "damaged bytes", damaged_code);
  test_untrusted(rt);
  ok(skein_dostring(rt, "c = nil collectgarbage() collectgarbage()", "=drop") == 0, "drop the counters");
  ok(skein_close(rt) == 0, "skein_close == 0");
  ok(__atomic_load_n(&live_counters, __ATOMIC_RELAXED) == 0,
     "every counter of this process was freed (%d left)", live_counters);
  return tap_done();
}
