/*
** protofactory.c — fresh closures of one loaded prototype without loading
** its bytecode again (sk_marshal.h: sk_proto_factory).
**
** Why: a closure sent to a worker arrives as its bytecode and its upvalues.
** The worker caches the function it loaded for each bytecode, but a closure
** with upvalues of its own (an inline `function() return i + 1 end` per
** submit) needs a closure of its own per message, and the public API's only
** way to make one is `lua_load`, which builds the whole prototype again
** (about 4 000 instructions for a one-line function, most of a thread-pool
** job's decoding). Lua makes fresh closures of an existing prototype with
** one instruction, OP_CLOSURE, so the worker loads, once per bytecode, a
** *factory*: a main function whose only child prototype is the sent
** function, and which does what
**
**     local u1, ..., uN  return function() ... end
**
** does: each call returns a new closure of the child whose N upvalues are
** fresh cells (the main function's locals, closed when it returns), which the
** decoder then fills with the message's values exactly as it did after
** `lua_load`.
**
** How: the factory's bytecode is spliced from two dumps in Lua 5.4's binary
** chunk format. The compiler writes the template above for N (so its opcodes
** and header are the running Lua's own), and the sent function's body
** replaces the template's child, except for the upvalue descriptors, which
** keep the template's (in the template's registers 0..N-1; the sent
** function's described its original parent's registers). The walker below
** reads the format as ldump.c writes it (5.4: varint sizes, 8-byte numbers,
** strings as size+1 then bytes); anything it does not expect makes it give
** up, and the caller keeps using `lua_load` per message. The bytecode was
** authenticated before it reaches here (it is this process tree's own), and
** the walker still checks every bound, so a surprise costs speed, never
** safety.
*/
#include <string.h>

#include "sk_marshal.h"

/* Lua 5.4's header: signature (4), version, format, LUAC_DATA (6), three
** sizes, LUAC_INT (8) and LUAC_NUM (8). */
#define HEADER_SIZE 31

/* Constant tags as lundump.c reads them (lobject.h's variant tags). */
#define K_NIL 0x00
#define K_FALSE 0x01
#define K_TRUE 0x11
#define K_INT 0x03
#define K_FLT 0x13
#define K_SHRSTR 0x04
#define K_LNGSTR 0x14

typedef struct walk {
  const unsigned char *p, *end;
  int ok;
} walk;

static size_t get_size(walk *w) {
  size_t x = 0;
  for (int i = 0; i < 10; i++) {
    if (w->p >= w->end) break;
    unsigned b = *w->p++;
    x = (x << 7) | (b & 0x7f);
    if (b & 0x80) return x;
  }
  w->ok = 0;
  return 0;
}

static void skip(walk *w, size_t n) {
  if (!w->ok || (size_t)(w->end - w->p) < n) {
    w->ok = 0;
    w->p = w->end;
  } else {
    w->p += n;
  }
}

static void skip_string(walk *w) {
  size_t n = get_size(w);
  if (n > 0) skip(w, n - 1);
}

/* Where one function's upvalue descriptors lie: the descriptors start at
** `upv` and there are `nupv` of them (3 bytes each). */
typedef struct body {
  const unsigned char *start, *upv, *end;
  size_t nupv;
} body;

/* Walks one function (ldump.c's dumpFunction) and, at depth 0, records its
** body's bounds; nested prototypes are walked to find the end. `child`, when
** given, receives the bounds of the function's first nested prototype. */
static void walk_function(walk *w, body *b, body *child, int depth) {
  if (depth > 200) { w->ok = 0; return; }
  b->start = w->p;
  skip_string(w);                              /* source */
  get_size(w); get_size(w);                    /* linedefined, lastlinedefined */
  skip(w, 3);                                  /* numparams, is_vararg, maxstacksize */
  size_t ncode = get_size(w);
  if (ncode > (size_t)(w->end - w->p) / 4) { w->ok = 0; return; }
  skip(w, ncode * 4);
  size_t nk = get_size(w);
  for (size_t i = 0; w->ok && i < nk; i++) {
    if (w->p >= w->end) { w->ok = 0; break; }
    switch (*w->p++) {
      case K_NIL: case K_FALSE: case K_TRUE: break;
      case K_INT: case K_FLT: skip(w, 8); break;
      case K_SHRSTR: case K_LNGSTR: skip_string(w); break;
      default: w->ok = 0;
    }
  }
  b->nupv = get_size(w);
  b->upv = w->p;
  if (b->nupv > 255) { w->ok = 0; return; }
  skip(w, b->nupv * 3);
  size_t np = get_size(w);
  for (size_t i = 0; w->ok && i < np; i++) {
    body nested = {0};
    walk_function(w, &nested, NULL, depth + 1);
    if (i == 0 && child) *child = nested;
  }
  size_t nline = get_size(w);
  skip(w, nline);                              /* lineinfo */
  size_t nabs = get_size(w);
  for (size_t i = 0; w->ok && i < nabs; i++) { get_size(w); get_size(w); }
  size_t nloc = get_size(w);
  for (size_t i = 0; w->ok && i < nloc; i++) { skip_string(w); get_size(w); get_size(w); }
  size_t nnames = get_size(w);
  for (size_t i = 0; w->ok && i < nnames; i++) skip_string(w);
  b->end = w->p;
}

/* lua_dump's writer, as lstrlib's string.dump has it: the buffer starts on
** the first write, so its box sits above the function being dumped. */
typedef struct dump_state {
  int init;
  luaL_Buffer b;
} dump_state;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  dump_state *d = ud;
  if (!d->init) {
    d->init = 1;
    luaL_buffinit(L, &d->b);
  }
  luaL_addlstring(&d->b, p, sz);
  return 0;
}

/* Pushes the template's dump for n upvalues (a string). */
static void push_template(lua_State *L, int n) {
  luaL_Buffer src;
  luaL_buffinit(L, &src);
  luaL_addstring(&src, "local ");
  for (int i = 1; i <= n; i++) lua_pushfstring(L, i > 1 ? ",u%d" : "u%d", i), luaL_addvalue(&src);
  luaL_addstring(&src, " return function() return ");
  for (int i = 1; i <= n; i++) lua_pushfstring(L, i > 1 ? ",u%d" : "u%d", i), luaL_addvalue(&src);
  luaL_addstring(&src, " end");
  luaL_pushresult(&src);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  if (luaL_loadbufferx(L, s, len, "=(factory)", "t") != LUA_OK) {
    lua_remove(L, -2);                         /* keep the message as the "dump" */
    return;
  }
  dump_state d = {0};
  lua_dump(L, dump_writer, &d, 1);
  if (!d.init) luaL_buffinit(L, &d.b);
  luaL_pushresult(&d.b);                       /* source, function, dump */
  lua_replace(L, -3);
  lua_pop(L, 1);
}

int sk_proto_factory(lua_State *L, const char *code, size_t n, int nups) {
  int top = lua_gettop(L);
  if (nups < 1 || nups > 255 || n < HEADER_SIZE + 1) return 0;
  push_template(L, nups);
  size_t tn;
  const unsigned char *t = (const unsigned char *)lua_tolstring(L, -1, &tn);
  const unsigned char *c = (const unsigned char *)code;
  if (tn < HEADER_SIZE + 1 || memcmp(t, c, HEADER_SIZE) != 0) goto fail;

  /* The template: header, its upvalue count, then main with one child. */
  walk tw = {t + HEADER_SIZE + 1, t + tn, 1};
  body tmain, tchild = {0};
  walk_function(&tw, &tmain, &tchild, 0);
  if (!tw.ok || tw.p != t + tn || !tchild.start || tchild.nupv != (size_t)nups) goto fail;

  /* The sent function: header, its upvalue count, then its body. */
  walk cw = {c + HEADER_SIZE + 1, c + n, 1};
  body fn;
  walk_function(&cw, &fn, NULL, 0);
  if (!cw.ok || cw.p != c + n || fn.nupv != (size_t)nups || c[HEADER_SIZE] != nups) goto fail;

  luaL_Buffer out;
  luaL_buffinit(L, &out);
  luaL_addlstring(&out, (const char *)t, (size_t)(tchild.start - t));
  luaL_addlstring(&out, (const char *)fn.start, (size_t)(fn.upv - fn.start));
  luaL_addlstring(&out, (const char *)tchild.upv, (size_t)nups * 3);
  luaL_addlstring(&out, (const char *)(fn.upv + (size_t)nups * 3),
                  (size_t)(fn.end - (fn.upv + (size_t)nups * 3)));
  luaL_addlstring(&out, (const char *)tchild.end, (size_t)(t + tn - tchild.end));
  luaL_pushresult(&out);
  size_t wn;
  const char *wcode = lua_tolstring(L, -1, &wn);
  if (luaL_loadbufferx(L, wcode, wn, "=(marshalled function)", "b") != LUA_OK) goto fail;

  /* One call checks the result: a function with the sent one's upvalues. */
  lua_pushvalue(L, -1);
  lua_call(L, 0, 1);
  lua_Debug ar;
  if (!lua_isfunction(L, -1)) goto fail;
  lua_getinfo(L, ">u", &ar);                   /* pops the closure */
  if (ar.nups != nups) goto fail;
  lua_copy(L, -1, top + 1);                    /* the factory, over the template */
  lua_settop(L, top + 1);
  return 1;
fail:
  lua_settop(L, top);
  return 0;
}
