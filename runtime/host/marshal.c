/*
** marshal.c — copies Lua values between workers as bytes.
**
** Format (version 3): a byte 'S', a byte 3, a varint count, then each value
** as a tag byte and its payload. Tables and functions get ids in the order
** they are first met, so shared sub-tables and cycles come back as REF tags.
** A table is its list part by position (a varint length, then the values),
** then its other pairs, then an END tag.
** Integers are zigzag varints, floats 8 bytes little-endian, strings a varint
** length and raw bytes (binary-safe). A Lua function is its bytecode (a
** string) and an 8-byte SipHash tag of it, then its upvalues; a module (an
** upvalue holding a loaded module) or a C function is its name, "module" or
** "module.name", and an 8-byte tag of that name. A shared object in the
** segment is its type name, type, object index entry and generation.
**
** The decoder treats its input as untrusted: every read is bounds-checked,
** nesting is limited, ids must refer to values already decoded, bytecode is
** only loaded when its SipHash tag matches this process's key, a module is
** `require`d only when its name's tag does (otherwise only a module the
** worker has already loaded is found: decoding loads no code), and shared
** objects are found through the checked handle table (sk_obj.h) or, for
** objects in the shared segment, the segment's object index (a handle
** names an entry and a generation, never an offset: sk_shm_obj_find). Any
** problem is an error of kind "marshal", never a crash.
**
** Both directions run inside a protected call, so an error (ours, or Lua
** running out of memory) frees the C buffer before it reaches the caller.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/sk_shm.h"
#include "../core/sk_siphash.h"
#include "../core/sk_view.h"
#include "sk_lua.h"

#define FORMAT 3                /* the version byte */
#define MAX_DEPTH 200
#define SEEN_INLINE 16
#define MAX_TYPES 64

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_TABLE_MT, T_END,
  T_REF, T_LFUNC, T_CFUNC, T_OBJ, T_GLOBALS, T_MODULE, T_SHM
};

/* ------------------------------------------------------------- buffers */

void sk_buf_free(sk_buf *b) {
  for (size_t i = 0; i < b->nobjs; i++) sk_obj_release(b->objs[i]);
  free(b->objs);
  free(b->data);
  memset(b, 0, sizeof *b);
}

static void buf_grow(lua_State *L, sk_buf *b, size_t need) {
  if (b->len + need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + need) cap *= 2;
  char *d = realloc(b->data, cap);
  if (d == NULL) sk_error_raise(L, "memory", "not enough memory to marshal");
  b->data = d;
  b->cap = cap;
}

static void put(lua_State *L, sk_buf *b, const void *p, size_t n) {
  buf_grow(L, b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_byte(lua_State *L, sk_buf *b, int c) {
  buf_grow(L, b, 1);
  b->data[b->len++] = (char)c;
}

static void put_varint(lua_State *L, sk_buf *b, uint64_t v) {
  uint8_t tmp[10];
  int n = 0;
  do {
    tmp[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) tmp[n] |= 0x80;
    n++;
  } while (v);
  put(L, b, tmp, (size_t)n);
}

/* T_INT and the zigzag varint of v, with one capacity check. */
static void put_int(lua_State *L, sk_buf *b, lua_Integer v) {
  buf_grow(L, b, 11);
  char *w = b->data + b->len;
  *w++ = T_INT;
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  while (z >= 0x80) {
    *w++ = (char)((z & 0x7f) | 0x80);
    z >>= 7;
  }
  *w++ = (char)z;
  b->len = (size_t)(w - b->data);
}

static void put_u64(lua_State *L, sk_buf *b, uint64_t v) {
  uint8_t tmp[8];
  for (int i = 0; i < 8; i++) tmp[i] = (uint8_t)(v >> (8 * i));
  put(L, b, tmp, 8);
}

static void put_str(lua_State *L, sk_buf *b, const char *s, size_t n) {
  put_varint(L, b, n);
  put(L, b, s, n);
}

/* ------------------------------------------------------------ the key */

/* The key that authenticates bytecode (and module names, below): random
** in the first process of a tree; a worker process is given its parent's
** before anything is decoded (sk_marshal_set_key: it comes on the worker's
** socket, never through the environment, so programs a worker runs
** cannot learn it). */
static uint8_t mac_key[16];
static int key_given;
static uv_once_t key_once = UV_ONCE_INIT;

static void key_init(void) {
  if (key_given) return;
  if (uv_random(NULL, NULL, mac_key, sizeof mac_key, 0, NULL) != 0) {
    uint64_t t = uv_hrtime() ^ (uint64_t)(uintptr_t)&t;
    memcpy(mac_key, &t, 8);
  }
}

void sk_marshal_key(uint8_t out[16]) {
  uv_once(&key_once, key_init);
  memcpy(out, mac_key, 16);
}

void sk_marshal_set_key(const uint8_t key[16]) {
  memcpy(mac_key, key, 16);
  key_given = 1;
  uv_once(&key_once, key_init);
}

static uint64_t mac(const void *data, size_t len) {
  uv_once(&key_once, key_init);
  return sk_siphash(mac_key, data, len);
}

/* Module names (a MODULE tag's, a CFUNC tag's "module.name") carry a tag
** too, under a key of their own derived from the bytecode key (so that no
** tag of one kind is ever one of the other): the decoder `require`s a
** module that is not loaded yet only when its name was written by a
** process of this tree. */
static uint8_t name_key[16];
static uv_once_t name_once = UV_ONCE_INIT;

static void name_key_init(void) {
  static const char label[] = "skein module names";
  uint64_t a = mac(label, sizeof label - 1), b = mac(label, sizeof label);
  for (int i = 0; i < 8; i++) {
    name_key[i] = (uint8_t)(a >> (8 * i));
    name_key[8 + i] = (uint8_t)(b >> (8 * i));
  }
}

static uint64_t name_mac(const char *name, size_t len) {
  uv_once(&name_once, name_key_init);
  return sk_siphash(name_key, name, len);
}

uint64_t sk_marshal_code_tag(const void *code, size_t len) { return mac(code, len); }
uint64_t sk_marshal_name_tag(const char *name, size_t len) { return name_mac(name, len); }

_Thread_local int sk_marshal_xproc;

int sk_marshal_encode_xproc(lua_State *L, int first, int n, sk_buf *out, const char *root) {
  int was = sk_marshal_xproc;
  sk_marshal_xproc = 1;
  int rc = sk_marshal_encode(L, first, n, out, root);
  sk_marshal_xproc = was;
  return rc;
}

/* ------------------------------------------------------ sendable types */

static struct {
  const char *name;
  sk_obj_push push;
} types[MAX_TYPES];
static int ntypes;
static uv_mutex_t types_lock;
static uv_once_t types_once = UV_ONCE_INIT;

static void types_init(void) { uv_mutex_init(&types_lock); }

void sk_marshal_register_type(const char *name, sk_obj_push push) {
  uv_once(&types_once, types_init);
  uv_mutex_lock(&types_lock);
  int i;
  for (i = 0; i < ntypes; i++) {
    if (strcmp(types[i].name, name) == 0) break;
  }
  if (i == ntypes && ntypes < MAX_TYPES) ntypes++;
  if (i < MAX_TYPES) {
    types[i].name = name;
    types[i].push = push;
  }
  uv_mutex_unlock(&types_lock);
}

/* Stand-ins for another process's objects (sk_marshal_set_proxy): set once
** at start-up, before any worker exists; read-only after. */
static const sk_marshal_proxy *proxy;

void sk_marshal_set_proxy(const sk_marshal_proxy *p) { proxy = p; }

static sk_obj_push find_type(const char *name, const char **canonical) {
  sk_obj_push push = NULL;
  uv_once(&types_once, types_init);
  uv_mutex_lock(&types_lock);
  for (int i = 0; i < ntypes; i++) {
    if (strcmp(types[i].name, name) == 0) {
      push = types[i].push;
      if (canonical) *canonical = types[i].name;
      break;
    }
  }
  uv_mutex_unlock(&types_lock);
  return push;
}

/* ------------------------------------------------------------- encoder */

/* Where a value sits, for error messages such as "args[2].conn". */
typedef struct path {
  const struct path *up;
  int kind;
  const char *name;
  lua_Integer index;
} path;

enum { P_ROOT, P_FIELD, P_INDEX, P_KEY, P_UPVALUE, P_OTHER };

typedef struct enc {
  lua_State *L;
  sk_buf *b;
  int seen;                     /* stack index: value -> id, past the inline ones */
  int nseen;
  const void *seen_ptr[SEEN_INLINE];
  lua_Integer nextid;
  const char *root;
  lua_Integer from, to;         /* sk_marshal_encode_list's range */
} enc;

static int is_ident(const char *s) {
  if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return 0;
  for (; *s; s++) {
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9'))) {
      return 0;
    }
  }
  return 1;
}

/* Pushes one step of a path: ".k", "[\"k k\"]", "[3]", " (a key)", ... */
static void push_step(lua_State *L, const path *p) {
  switch (p->kind) {
    case P_FIELD:
      if (is_ident(p->name)) lua_pushfstring(L, ".%s", p->name);
      else lua_pushfstring(L, "[\"%s\"]", p->name);
      break;
    case P_INDEX: lua_pushfstring(L, "[%I]", (LUAI_UACINT)p->index); break;
    case P_KEY: lua_pushliteral(L, " (a key)"); break;
    case P_UPVALUE: lua_pushfstring(L, " (upvalue %s)", p->name ? p->name : "?"); break;
    default: lua_pushfstring(L, "[%s]", p->name); break;
  }
}

/* Paths longer than this show their first and last PATH_KEEP steps with
** the number left out between them: "t.a.a.a.a<192 more>.a.a.a.a". */
#define PATH_KEEP 4
#define PATH_MAX_STEPS (MAX_DEPTH + 8)

/* Pushes the path of p under `root` as one string. */
static void push_path(lua_State *L, const char *root, const path *p) {
  const path *steps[PATH_MAX_STEPS];
  int n = 0, dropped = 0;
  for (const path *q = p; q; q = q->up) {
    if (n < PATH_MAX_STEPS) steps[n++] = q;     /* innermost first */
    else dropped++;
  }
  luaL_checkstack(L, 2 * PATH_KEEP + 4, "marshal path");
  int base = lua_gettop(L);
  int top = n - 1;                              /* the outermost step */
  const path *outer = n ? steps[top] : NULL;
  if (outer && dropped == 0 && strcmp(root, "fn+args") == 0) {
    /* A worker's function and arguments: "fn", "args[1]", ... */
    if (outer->index == 1) lua_pushliteral(L, "fn");
    else lua_pushfstring(L, "args[%I]", (LUAI_UACINT)(outer->index - 1));
    top--;
  } else if (outer && dropped == 0 && strcmp(root, "init+args") == 0) {
    /* The init option and its arguments: "init", "init_args[1]", ... */
    if (outer->index == 1) lua_pushliteral(L, "init");
    else lua_pushfstring(L, "init_args[%I]", (LUAI_UACINT)(outer->index - 1));
    top--;
  } else if (outer && dropped == 0 && root[0] == '=') {
    /* One value the caller names itself: root "=t.k" gives "t.k". */
    lua_pushstring(L, root + 1);
    top--;
  } else {
    lua_pushstring(L, root);
  }
  int count = top + 1 + dropped;                /* steps below the head */
  if (count <= 3 * PATH_KEEP) {
    for (int i = top; i >= 0; i--) push_step(L, steps[i]);
  } else {
    for (int i = top; i > top - PATH_KEEP; i--) push_step(L, steps[i]);
    lua_pushfstring(L, "<%d more>", count - 2 * PATH_KEEP);
    for (int i = PATH_KEEP - 1; i >= 0; i--) push_step(L, steps[i]);
  }
  lua_concat(L, lua_gettop(L) - base);
}

static int enc_fail(enc *e, const path *p, const char *what) {
  lua_State *L = e->L;
  push_path(L, e->root, p);
  const char *where = lua_tostring(L, -1);
  sk_error_push(L, "marshal", "%s: %s", where, what);
  lua_pushstring(L, where);
  lua_setfield(L, -2, "path");
  return lua_error(L);
}

/* Records `v` (at idx) as the next id; 0 when it was new, else pushes
** nothing and returns its id + 1 so the caller emits a REF. */
static lua_Integer seen_id(enc *e, int idx) {
  lua_State *L = e->L;
  const void *ptr = lua_topointer(L, idx);
  /* Most messages hold a few tables or functions: a linear scan of their
  ** addresses (stable while the values are on the stack being encoded)
  ** saves building a Lua table per message. Past SEEN_INLINE, a table. */
  for (int i = 0; i < e->nseen && i < SEEN_INLINE; i++) {
    if (e->seen_ptr[i] == ptr) return i + 1;
  }
  if (e->nseen < SEEN_INLINE) {
    e->seen_ptr[e->nseen] = ptr;
    e->nextid = ++e->nseen;
    return 0;
  }
  if (lua_isnil(L, e->seen)) {      /* made on first need, in its reserved slot */
    lua_newtable(L);
    lua_replace(L, e->seen);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->seen) == LUA_TNUMBER) {
    lua_Integer id = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return id + 1;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, e->nextid++);
  lua_rawset(L, e->seen);
  return 0;
}

/* Fills the registry's map from C functions of loaded modules to their
** "module.name" paths (rebuilt when a lookup misses, since modules load
** late). Leaves the stack as it found it. */
static void build_names(lua_State *L) {
  lua_newtable(L);
  int names = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
      const char *mod = lua_tostring(L, -2);
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
          lua_pushvalue(L, -1);
          if (lua_rawget(L, names) == LUA_TNIL) {
            lua_pushvalue(L, -2);
            lua_pushfstring(L, "%s.%s", mod, lua_tostring(L, -4));
            lua_rawset(L, names);
          }
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.cfnames");
}

/* Pushes the "module.name" of the C function at idx, or nil. */
static void push_cfunc_name(lua_State *L, int idx) {
  for (int attempt = 0; attempt < 2; attempt++) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, "skein.cfnames") == LUA_TTABLE) {
      lua_pushvalue(L, idx);
      if (lua_rawget(L, -2) == LUA_TSTRING) {
        lua_remove(L, -2);
        return;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (attempt == 0) build_names(L);
  }
  lua_pushnil(L);
}

static int writer(lua_State *L, const void *p, size_t n, void *ud) {
  put(L, ud, p, n);
  return 0;
}

static void enc_value(enc *e, int idx, const path *p, int depth);

/* Writes t[i] (t at stack index idx), named `pos` under p in errors.
** Integers and strings, the bulk of big lists, are written here directly
** (the same bytes enc_value writes) to spare its per-value checks. */
static void enc_item(enc *e, int idx, lua_Integer i, const path *p, lua_Integer pos, int depth) {
  lua_State *L = e->L;
  sk_buf *b = e->b;
  int t = lua_rawgeti(L, idx, i);
  if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
    put_int(L, b, lua_tointeger(L, -1));
  } else if (t == LUA_TSTRING) {
    size_t len;
    const char *str = lua_tolstring(L, -1, &len);
    put_byte(L, b, T_STR);
    put_str(L, b, str, len);
  } else {
    path vp = {p, P_INDEX, NULL, pos};
    enc_value(e, lua_gettop(L), &vp, depth);
  }
  lua_settop(L, -2);
}

static void enc_table(enc *e, int idx, const path *p, int depth) {
  lua_State *L = e->L;
  sk_buf *b = e->b;
  int has_mt = 0;
  if (lua_getmetatable(L, idx)) {
    lua_getfield(L, LUA_REGISTRYINDEX, "skein.mt.names");
    lua_insert(L, -2);
    if (lua_rawget(L, -2) == LUA_TSTRING) {
      size_t n;
      const char *name = lua_tolstring(L, -1, &n);
      put_byte(L, b, T_TABLE_MT);
      put_str(L, b, name, n);
      has_mt = 1;
    }
    lua_pop(L, 2);
  }
  if (!has_mt) put_byte(L, b, T_TABLE);
  /* The list part goes first, by position (no keys); then the other pairs. */
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  put_varint(L, b, (uint64_t)n);
  for (lua_Integer i = 1; i <= n; i++) enc_item(e, idx, i, p, i, depth + 1);
  /* Then everything else. (Resuming lua_next at key n would skip hash
  ** entries placed before n's slot when n itself lives in the hash part.) */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int k = lua_gettop(L) - 1, isint;
    lua_Integer ki;
    if (lua_type(L, k) == LUA_TNUMBER && (ki = lua_tointegerx(L, k, &isint), isint) && ki >= 1 &&
        ki <= n) {
      lua_settop(L, -2);            /* (a float key never has an integer value) */
      continue;
    }
    path kp = {p, P_KEY, NULL, 0};
    enc_value(e, k, &kp, depth + 1);
    path vp = {p, P_OTHER, "?", 0};
    if (lua_type(L, k) == LUA_TSTRING) {
      vp.kind = P_FIELD;
      vp.name = lua_tostring(L, k);
    } else if (lua_isinteger(L, k)) {
      vp.kind = P_INDEX;
      vp.index = lua_tointeger(L, k);
    } else {
      vp.name = luaL_typename(L, k);
    }
    enc_value(e, k + 1, &vp, depth + 1);
    lua_pop(L, 1);
  }
  put_byte(L, b, T_END);
}

/* Emits a MODULE tag when the table at idx is a loaded module; 0 if not. */
static int enc_module(enc *e, int idx) {
  lua_State *L = e->L;
  if (!lua_istable(L, idx)) return 0;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_rawequal(L, -1, idx) && lua_type(L, -2) == LUA_TSTRING) {
      size_t n;
      const char *name = lua_tolstring(L, -2, &n);
      /* (require stops at a NUL: such a name could not be loaded back.) */
      if (strcmp(name, "_G") != 0 && strlen(name) == n) {
        put_byte(L, e->b, T_MODULE);
        put_str(L, e->b, name, n);
        put_u64(L, e->b, name_mac(name, n));
        lua_pop(L, 3);
        return 1;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static void enc_function(enc *e, int idx, const path *p, int depth) {
  lua_State *L = e->L;
  sk_buf *b = e->b;
  if (lua_iscfunction(L, idx)) {
    push_cfunc_name(L, idx);
    if (!lua_isstring(L, -1)) {
      enc_fail(e, p, "cannot send a C function that no loaded module exports");
    }
    size_t n;
    const char *name = lua_tolstring(L, -1, &n);
    put_byte(L, b, T_CFUNC);
    put_str(L, b, name, n);
    put_u64(L, b, name_mac(name, n));
    lua_pop(L, 1);
    return;
  }
  /* The bytecode and its tag are cached per function: dumping and hashing
  ** on every submit of the same function would dominate small tasks. */
  lua_getfield(L, LUA_REGISTRYINDEX, "skein.dumps");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TSTRING) {
    lua_pop(L, 1);
    sk_buf code = {0};
    lua_pushvalue(L, idx);
    int st = lua_dump(L, writer, &code, 0);
    lua_pop(L, 1);
    if (st != 0 || code.len == 0) {
      free(code.data);
      enc_fail(e, p, "cannot dump this function");
    }
    uint64_t tag = mac(code.data, code.len);
    uint8_t tail[8];
    for (int i = 0; i < 8; i++) tail[i] = (uint8_t)(tag >> (8 * i));
    luaL_Buffer lb;
    luaL_buffinit(L, &lb);
    luaL_addlstring(&lb, code.data, code.len);
    free(code.data);
    luaL_addlstring(&lb, (const char *)tail, 8);
    luaL_pushresult(&lb);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  size_t clen;
  const char *cached = lua_tolstring(L, -1, &clen);
  put_byte(L, b, T_LFUNC);
  put_varint(L, b, clen - 8);
  put(L, b, cached, clen);          /* bytecode, then its 8-byte tag */
  lua_pop(L, 2);
  int nups = 0;
  while (lua_getupvalue(L, idx, nups + 1) != NULL) {
    lua_pop(L, 1);
    nups++;
  }
  put_varint(L, b, (uint64_t)nups);
  for (int i = 1; i <= nups; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    path up = {p, P_UPVALUE, name, i};
    /* _ENV always rebinds to the receiving worker's globals, and a loaded
    ** module (local json = require "json") to the receiver's own copy. */
    if (name && strcmp(name, "_ENV") == 0) put_byte(L, b, T_GLOBALS);
    else if (!enc_module(e, lua_gettop(L))) enc_value(e, lua_gettop(L), &up, depth + 1);
    lua_pop(L, 1);
  }
}

static void enc_userdata(enc *e, int idx, const path *p) {
  lua_State *L = e->L;
  const char *pname;
  uint32_t pslot, pgen;
  long ppid;
  if (proxy && proxy->info(L, idx, &pname, &pslot, &pgen, &ppid)) {
    /* A stand-in for an object of the parent process: send the original. */
    put_byte(L, e->b, T_OBJ);
    put_str(L, e->b, pname, strlen(pname));
    put_varint(L, e->b, pslot);
    put_varint(L, e->b, pgen);
    put_varint(L, e->b, (uint64_t)ppid);
    return;
  }
  const char *name = NULL;
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) name = lua_tostring(L, -1);
  const char *canonical = NULL;
  if (name == NULL || find_type(name, &canonical) == NULL) {
    if (name) {
      lua_pushfstring(L, "cannot send userdata (a %s)", name);
      enc_fail(e, p, lua_tostring(L, -1));
    }
    enc_fail(e, p, "cannot send userdata");
  }
  lua_pop(L, 1);
  sk_obj *o = *(sk_obj **)lua_touserdata(L, idx);
  if (o == NULL) enc_fail(e, p, "cannot send a closed object");
  /* An object in the shared segment goes by its place there; one bound for
  ** another process moves there first when its type can. Otherwise (or
  ** when the segment is full) it goes by handle. */
  const sk_shm_ops *ops = o->type->shm;
  sk_shm_obj *so = ops ? (sk_marshal_xproc ? ops->share(o) : ops->shared(o)) : NULL;
  if (so == NULL && sk_obj_register(o) != 0) sk_error_raise(L, "memory", "not enough memory to marshal");
  sk_buf *b = e->b;
  if (b->nobjs == b->capobjs) {
    size_t cap = b->capobjs ? b->capobjs * 2 : 4;
    sk_obj **objs = realloc(b->objs, cap * sizeof *objs);
    if (objs == NULL) sk_error_raise(L, "memory", "not enough memory to marshal");
    b->objs = objs;
    b->capobjs = cap;
  }
  sk_obj_retain(o);
  b->objs[b->nobjs++] = o;
  if (so) {
    /* A worker process's result goes to its parent, which may read the
    ** bytes after this process is gone: the reference they need is taken
    ** here and never dropped (the object then lives as long as the process
    ** tree; see docs/ARCHITECTURE.md). */
    if (sk_marshal_xproc == SK_XPROC_TO_PARENT) sk_shm_obj_retain(so);
    put_byte(L, b, T_SHM);
    put_str(L, b, canonical, strlen(canonical));
    put_varint(L, b, so->type);
    put_varint(L, b, so->index);
    put_varint(L, b, so->gen);
    return;
  }
  put_byte(L, b, T_OBJ);
  put_str(L, b, canonical, strlen(canonical));
  put_varint(L, b, o->slot);
  put_varint(L, b, o->gen);
  put_varint(L, b, (uint64_t)getpid());
}

static void enc_value(enc *e, int idx, const path *p, int depth) {
  lua_State *L = e->L;
  sk_buf *b = e->b;
  if (depth > MAX_DEPTH) {
    /* A key one level too deep is its table's fault, not the key's. */
    enc_fail(e, p && p->kind == P_KEY ? p->up : p,
             "nesting too deep (tables and functions cross workers at most 200 levels deep)");
  }
  int t = lua_type(L, idx);
  /* Scalars push nothing; the rest may nest. */
  if (t >= LUA_TTABLE) luaL_checkstack(L, 8, "marshal");
  switch (t) {
    case LUA_TNIL: put_byte(L, b, T_NIL); break;
    case LUA_TBOOLEAN: put_byte(L, b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        put_int(L, b, lua_tointeger(L, idx));
      } else {
        lua_Number n = lua_tonumber(L, idx);
        uint64_t bits;
        memcpy(&bits, &n, 8);
        put_byte(L, b, T_FLOAT);
        put_u64(L, b, bits);
      }
      break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      put_byte(L, b, T_STR);
      put_str(L, b, s, n);
      break;
    }
    case LUA_TTABLE: {
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      int is_globals = lua_rawequal(L, -1, idx);
      lua_pop(L, 1);
      if (is_globals) {
        put_byte(L, b, T_GLOBALS);
        break;
      }
      lua_Integer id = seen_id(e, idx);
      if (id) {
        put_byte(L, b, T_REF);
        put_varint(L, b, (uint64_t)(id - 1));
      } else {
        enc_table(e, idx, p, depth);
      }
      break;
    }
    case LUA_TFUNCTION: {
      /* C functions travel by name every time; only Lua functions get ids. */
      lua_Integer id = lua_iscfunction(L, idx) ? 0 : seen_id(e, idx);
      if (id) {
        put_byte(L, b, T_REF);
        put_varint(L, b, (uint64_t)(id - 1));
      } else {
        enc_function(e, idx, p, depth);
      }
      break;
    }
    case LUA_TUSERDATA: enc_userdata(e, idx, p); break;
    case LUA_TTHREAD: enc_fail(e, p, "cannot send a coroutine"); break;
    default: enc_fail(e, p, "cannot send light userdata"); break;
  }
}

/* Protected body of sk_marshal_encode: [1] = enc*, [2..] = the values. */
static int p_encode(lua_State *L) {
  enc *e = lua_touserdata(L, 1);
  int n = lua_gettop(L) - 1;
  lua_pushnil(L);
  e->seen = lua_gettop(L);
  put_byte(L, e->b, 'S');
  put_byte(L, e->b, FORMAT);
  put_varint(L, e->b, (uint64_t)n);
  for (int i = 0; i < n; i++) {
    path p = {NULL, P_INDEX, NULL, i + 1};
    enc_value(e, i + 2, &p, 0);
  }
  return 0;
}

/* p_encode for sk_marshal_encode_list: stack 1 enc, 2 the table. */
static int p_encode_list(lua_State *L) {
  enc *e = lua_touserdata(L, 1);
  lua_Integer i = e->from, j = e->to;
  lua_pushnil(L);
  e->seen = lua_gettop(L);
  put_byte(L, e->b, 'S');
  put_byte(L, e->b, FORMAT);
  put_varint(L, e->b, (uint64_t)(j - i + 1));
  for (lua_Integer k = i; k <= j; k++) enc_item(e, 2, k, NULL, k - i + 1, 0);
  return 0;
}

int sk_marshal_encode_list(lua_State *L, int t, lua_Integer i, lua_Integer j, sk_buf *out,
                           const char *root) {
  enc e = {.L = L, .b = out, .root = root ? root : "value", .from = i, .to = j};
  memset(out, 0, sizeof *out);
  t = lua_absindex(L, t);
  luaL_checkstack(L, 8, "marshal");
  lua_pushcfunction(L, p_encode_list);
  lua_pushlightuserdata(L, &e);
  lua_pushvalue(L, t);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    sk_buf_free(out);
    return -1;
  }
  return 0;
}

int sk_marshal_encode(lua_State *L, int first, int n, sk_buf *out, const char *root) {
  enc e = {.L = L, .b = out, .root = root ? root : "value"};
  memset(out, 0, sizeof *out);
  first = lua_absindex(L, first);
  luaL_checkstack(L, n + 4, "too many values to marshal");
  lua_pushcfunction(L, p_encode);
  lua_pushlightuserdata(L, &e);
  for (int i = 0; i < n; i++) lua_pushvalue(L, first + i);
  if (lua_pcall(L, n + 1, 0, 0) != LUA_OK) {
    sk_buf_free(out);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------- decoder */

typedef struct dec {
  lua_State *L;
  const uint8_t *p, *end;
  int refs;                     /* stack index: id -> value */
  lua_Integer nextid;
  int flags;
  lua_Integer root;             /* which top-level value is being decoded, from 1 */
} dec;

static int dec_fail(dec *d, const char *what) {
  return sk_error_raise(d->L, "marshal", "malformed buffer: %s", what);
}

static int get_byte(dec *d) {
  if (d->p >= d->end) dec_fail(d, "truncated");
  return *d->p++;
}

static uint64_t get_varint(dec *d) {
  /* Most varints are short and far from the end: no bound check per byte. */
  if (d->end - d->p >= 10) {
    uint64_t v = 0;
    for (int shift = 0; shift < 63; shift += 7) {
      int c = *d->p++;
      v |= (uint64_t)(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
    int c = *d->p++;                       /* the 10th byte: one bit left */
    if (c & 0x7e) dec_fail(d, "varint overflow");
    if (c & 0x80) dec_fail(d, "varint too long");
    return v | (uint64_t)(c & 1) << 63;
  }
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    int c = get_byte(d);
    if (shift == 63 && (c & 0x7e)) dec_fail(d, "varint overflow");
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return v;
  }
  dec_fail(d, "varint too long");
  return 0;
}

static uint64_t get_u64(dec *d) {
  if (d->end - d->p < 8) dec_fail(d, "truncated");
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | d->p[i];
  d->p += 8;
  return v;
}

static const char *get_bytes(dec *d, size_t *n) {
  uint64_t len = get_varint(d);
  if (len > (uint64_t)(d->end - d->p)) dec_fail(d, "length past the end");
  const char *s = (const char *)d->p;
  d->p += len;
  *n = (size_t)len;
  return s;
}

static void remember(dec *d) {
  if (lua_isnil(d->L, d->refs)) {   /* taken on first need, into its reserved slot */
    /* Reuse the worker's spare table (p_decode clears and returns it); a
    ** nested decode finds none there and makes its own. */
    if (lua_getfield(d->L, LUA_REGISTRYINDEX, "skein.refs") == LUA_TTABLE) {
      lua_pushnil(d->L);
      lua_setfield(d->L, LUA_REGISTRYINDEX, "skein.refs");
    } else {
      lua_pop(d->L, 1);
      lua_newtable(d->L);
    }
    lua_replace(d->L, d->refs);
  }
  lua_pushvalue(d->L, -1);
  lua_rawseti(d->L, d->refs, ++d->nextid);
}

static void dec_value(dec *d, int depth);
static void dec_module(dec *d);

/* Decodes one value into t[i] (t at stack index t; nil leaves it unset).
** Integers and strings directly, as in the encoder's enc_item. */
static void dec_item(dec *d, int t, lua_Integer i, int depth) {
  lua_State *L = d->L;
  if (d->p < d->end && *d->p == T_INT) {
    d->p++;
    uint64_t z = get_varint(d);
    lua_pushinteger(L, (lua_Integer)((z >> 1) ^ (~(z & 1) + 1)));
  } else if (d->p < d->end && *d->p == T_STR) {
    d->p++;
    size_t n;
    const char *s = get_bytes(d, &n);
    lua_pushlstring(L, s, n);
  } else {
    dec_value(d, depth);
    if (lua_isnil(L, -1)) {
      lua_settop(L, -2);
      return;
    }
  }
  lua_rawseti(L, t, i);
}

static void dec_table(dec *d, int with_mt, int depth) {
  lua_State *L = d->L;
  size_t mtlen = 0;
  const char *mtname = with_mt ? get_bytes(d, &mtlen) : NULL;
  uint64_t narr = get_varint(d);
  if (narr > (uint64_t)(d->end - d->p)) dec_fail(d, "list longer than the buffer");
  lua_createtable(L, (int)narr, 0);
  remember(d);
  int t = lua_gettop(L);
  for (uint64_t i = 1; i <= narr; i++) dec_item(d, t, (lua_Integer)i, depth + 1);
  for (;;) {
    if (d->p >= d->end) dec_fail(d, "truncated table");
    if (*d->p == T_END) {
      d->p++;
      break;
    }
    dec_value(d, depth + 1);
    if (lua_isnil(L, -1)) dec_fail(d, "nil table key");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1)) {
      dec_fail(d, "NaN table key");
    }
    dec_value(d, depth + 1);
    lua_rawset(L, t);
  }
  if (mtname) {
    lua_getfield(L, LUA_REGISTRYINDEX, "skein.mt.byname");
    lua_pushlstring(L, mtname, mtlen);
    if (!lua_istable(L, -2) || lua_rawget(L, -2) != LUA_TTABLE) {
      /* The path names the top-level value only (sk_run_call turns it
      ** into "fn" / "args[i]"): deeper steps are not tracked while
      ** decoding. */
      const char *name = lua_pushlstring(L, mtname, mtlen);
      sk_error_push(L, "marshal", "value[%I]: metatable '%s' is not "
                    "registered in this worker: call skein.register_metatable(\"%s\", mt) "
                    "in the receiving worker before the value arrives (a pool's init, or the "
                    "init option of skein.thread and skein.process)",
                    (LUAI_UACINT)d->root, name, name);
      lua_pushinteger(L, d->root);
      lua_setfield(L, -2, "index");
      lua_pushfstring(L, "value[%I]", (LUAI_UACINT)d->root);
      lua_setfield(L, -2, "path");
      lua_pushvalue(L, -2);
      lua_setfield(L, -2, "metatable");
      lua_error(L);
    }
    lua_setmetatable(L, t);
    lua_pop(L, 1);
  }
}

typedef struct reader_state {
  const char *p;
  size_t n;
} reader_state;

static const char *reader(lua_State *L, void *ud, size_t *size) {
  reader_state *r = ud;
  (void)L;
  *size = r->n;
  r->n = 0;
  return *size ? r->p : NULL;
}

#define LOADED_MAX 256

/* Pushes a function for `code`, from this worker's cache when the same
** bytecode was loaded before (compared byte for byte, so a hit needs no new
** authentication). Returns 1 when the pushed closure is the cached one. */
static int load_code(dec *d, const char *code, size_t n, uint64_t tag) {
  lua_State *L = d->L;
  lua_getfield(L, LUA_REGISTRYINDEX, "skein.loaded");
  int cache = lua_gettop(L);
  if (lua_rawgeti(L, cache, (lua_Integer)tag) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);
    size_t cn;
    const char *cc = lua_tolstring(L, -1, &cn);
    if (cn == n && memcmp(cc, code, n) == 0) {
      lua_rawgeti(L, -2, 2);
      lua_replace(L, cache);
      lua_settop(L, cache);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (tag != mac(code, n)) dec_fail(d, "function bytecode failed authentication");
  reader_state r = {code, n};
  if (lua_load(L, reader, &r, "=(marshalled function)", "b") != LUA_OK) {
    dec_fail(d, "function does not load");
  }
  /* Cache it (bounded: start over when full). */
  lua_getfield(L, cache, "n");
  lua_Integer count = lua_tointeger(L, -1) + 1;
  lua_pop(L, 1);
  if (count > LOADED_MAX) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "skein.loaded");
    lua_replace(L, cache);
    count = 1;
  }
  lua_pushinteger(L, count);
  lua_setfield(L, cache, "n");
  lua_createtable(L, 2, 0);
  lua_pushlstring(L, code, n);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, cache, (lua_Integer)tag);
  lua_replace(L, cache);
  lua_settop(L, cache);
  return 0;
}

static void dec_lfunc(dec *d, int depth) {
  lua_State *L = d->L;
  size_t n;
  const char *code = get_bytes(d, &n);
  uint64_t tag = get_u64(d);
  if (!(d->flags & SK_MARSHAL_CODE)) dec_fail(d, "functions are not accepted here");
  int cached = load_code(d, code, n, tag);
  int f = lua_gettop(L);
  lua_Debug ar;
  lua_pushvalue(L, f);
  lua_getinfo(L, ">u", &ar);
  uint64_t nups = get_varint(d);
  if (nups != ar.nups) dec_fail(d, "wrong number of upvalues");
  /* A function whose upvalues are all _ENV carries no state of its own:
  ** the cached closure serves every message. Otherwise it needs a closure
  ** of its own, whose upvalues the message fills. */
  int plain = (uint64_t)(d->end - d->p) >= nups;
  for (uint64_t i = 0; plain && i < nups; i++) plain = d->p[i] == T_GLOBALS;
  if (cached && plain) {
    d->p += nups;
    remember(d);
    return;
  }
  if (cached) {
    lua_pop(L, 1);
    reader_state r = {code, n};
    if (lua_load(L, reader, &r, "=(marshalled function)", "b") != LUA_OK) {
      dec_fail(d, "function does not load");
    }
  }
  remember(d);
  for (int i = 1; i <= (int)nups; i++) {
    /* The encoder writes a module reference only as an upvalue (enc_module
    ** in enc_function), so only here is one read: a module table met as
    ** plain data would be re-encoded by value, not as the reference. */
    if (d->p < d->end && *d->p == T_MODULE) dec_module(d);
    else dec_value(d, depth + 1);
    lua_setupvalue(L, f, i);
  }
}

/* Pushes the module `name` of this worker: package.loaded[name] when it is
** loaded; otherwise, only when the name is `authentic` (its tag matched),
** what `require` gives. Decoding never loads code on the word of bytes
** this tree did not write; either failure is kind "marshal". */
static void push_module(dec *d, const char *name, size_t n, int authentic) {
  lua_State *L = d->L;
  /* `require` reads a name up to a NUL: "a\0b" would load module "a". */
  if (memchr(name, '\0', n) != NULL) dec_fail(d, "bad module name");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, n);
  if (lua_rawget(L, -2) != LUA_TNIL && lua_toboolean(L, -1)) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 2);
  lua_pushlstring(L, name, n);
  const char *shown = lua_tostring(L, -1);
  if (!authentic) {
    sk_error_raise(L, "marshal", "module '%s' is not loaded in this worker (decoding loads "
                   "no code from bytes this process tree did not write: require it first)",
                   shown);
  }
  lua_getglobal(L, "require");
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *why = lua_tostring(L, -1);
    sk_error_raise(L, "marshal", "module '%s' cannot be loaded in this worker: %s", shown,
                   why ? why : luaL_typename(L, -1));
  }
  lua_remove(L, -2);
}

/* Reads a MODULE tag (a function's upvalue) and pushes that module. */
static void dec_module(dec *d) {
  d->p++;
  size_t n;
  const char *name = get_bytes(d, &n);
  uint64_t tag = get_u64(d);
  if (!(d->flags & SK_MARSHAL_CODE)) dec_fail(d, "modules are not accepted here");
  push_module(d, name, n, tag == name_mac(name, n));
}

static void dec_cfunc(dec *d) {
  lua_State *L = d->L;
  size_t n;
  const char *name = get_bytes(d, &n);
  uint64_t tag = get_u64(d);
  if (!(d->flags & SK_MARSHAL_CODE)) dec_fail(d, "functions are not accepted here");
  const char *dot = NULL;
  for (size_t i = 0; i < n; i++) {
    if (name[i] == '.') dot = name + i;
    if (name[i] == '\0') dec_fail(d, "bad C function name");
  }
  if (dot == NULL) dec_fail(d, "bad C function name");
  if ((size_t)(dot - name) == 2 && memcmp(name, "_G", 2) == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  } else {
    push_module(d, name, (size_t)(dot - name), tag == name_mac(name, n));
  }
  lua_pushlstring(L, dot + 1, n - (size_t)(dot + 1 - name));
  lua_gettable(L, -2);
  if (!lua_iscfunction(L, -1)) {
    sk_error_raise(L, "marshal", "C function '%s' does not exist in this worker",
                   lua_pushlstring(L, name, n));
  }
  lua_remove(L, -2);
}

/* Replaces the type name on top of the stack with a handle to this
** process's view of `so`, when `so` is an object of that type; returns 0
** (the stack untouched) when it is not or is gone. Releases the reference
** to `so` that the caller's lookup took (the view holds its own). */
static int push_view(lua_State *L, sk_shm_obj *so, const char *name) {
  sk_obj_push push = so ? find_type(name, NULL) : NULL;
  sk_obj *o = push ? sk_shm_view_of(so) : NULL;
  if (so) sk_shm_obj_release(so);
  if (o == NULL) return 0;
  if (strcmp(o->type->name, name) != 0) {
    sk_obj_release(o);
    return 0;
  }
  lua_pop(L, 1);
  push(L, o);  /* takes over the view's reference */
  return 1;
}

/* Reads an object reference's type name, refuses it where objects are not
** accepted, and leaves the name on the stack (it is returned from there). */
static const char *dec_obj_name(dec *d) {
  size_t n;
  const char *name = get_bytes(d, &n);
  if (!(d->flags & SK_MARSHAL_OBJECTS)) dec_fail(d, "objects are not accepted here");
  lua_pushlstring(d->L, name, n);
  return lua_tostring(d->L, -1);
}

static void dec_shm(dec *d) {
  lua_State *L = d->L;
  const char *name = dec_obj_name(d);
  uint64_t type = get_varint(d), index = get_varint(d), gen = get_varint(d);
  sk_shm_obj *so = type <= UINT32_MAX && index <= UINT32_MAX && gen <= UINT32_MAX
                       ? sk_shm_obj_find((uint32_t)index, (uint32_t)type, (uint32_t)gen)
                       : NULL;
  if (!push_view(L, so, name)) {
    sk_error_raise(L, "marshal", "the %s this value refers to no longer exists", name);
  }
}

static void dec_obj(dec *d) {
  lua_State *L = d->L;
  const char *name = dec_obj_name(d);
  uint64_t slot = get_varint(d), gen = get_varint(d), pid = get_varint(d);
  if (pid != (uint64_t)getpid()) {
    /* It moved to the shared segment after these bytes were written? */
    sk_shm_obj *so = slot <= UINT32_MAX && gen <= UINT32_MAX && pid <= INT32_MAX
                         ? sk_shm_exported((int)pid, (uint32_t)slot, (uint32_t)gen)
                         : NULL;
    if (push_view(L, so, name)) return;
    /* It lives in another process: a stand-in forwards to it, if that
    ** process is our parent. */
    if (slot > UINT32_MAX || gen > UINT32_MAX || pid > INT32_MAX || proxy == NULL ||
        proxy->push(L, name, (uint32_t)slot, (uint32_t)gen, (long)pid) != 0) {
      sk_error_raise(L, "marshal", "the %s this value refers to lives in process %d, "
                     "which this worker cannot reach", name, (int)pid);
    }
    lua_remove(L, -2);
    return;
  }
  sk_obj_push push = find_type(name, NULL);
  sk_obj *o = push && slot <= UINT32_MAX && gen <= UINT32_MAX
                  ? sk_obj_lookup((uint32_t)slot, (uint32_t)gen, name)
                  : NULL;
  if (o == NULL) {
    sk_error_raise(L, "marshal", "the %s this value refers to no longer exists", name);
  }
  lua_pop(L, 1);
  push(L, o);  /* takes over the reference lookup added */
}

static void dec_value(dec *d, int depth) {
  lua_State *L = d->L;
  if (depth > MAX_DEPTH) dec_fail(d, "nesting too deep");
  int tag = get_byte(d);
  /* A scalar takes the one slot its caller made room for; the rest nest. */
  if (tag > T_STR) luaL_checkstack(L, 8, "unmarshal");
  switch (tag) {
    case T_NIL: lua_pushnil(L); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    case T_TRUE: lua_pushboolean(L, 1); break;
    case T_INT: {
      uint64_t z = get_varint(d);
      lua_pushinteger(L, (lua_Integer)((z >> 1) ^ (~(z & 1) + 1)));
      break;
    }
    case T_FLOAT: {
      uint64_t bits = get_u64(d);
      lua_Number n;
      memcpy(&n, &bits, 8);
      lua_pushnumber(L, n);
      break;
    }
    case T_STR: {
      size_t n;
      const char *s = get_bytes(d, &n);
      lua_pushlstring(L, s, n);
      break;
    }
    case T_TABLE: dec_table(d, 0, depth); break;
    case T_TABLE_MT: dec_table(d, 1, depth); break;
    case T_REF: {
      uint64_t id = get_varint(d);
      if (id >= (uint64_t)d->nextid) dec_fail(d, "reference to an unknown value");
      lua_rawgeti(L, d->refs, (lua_Integer)id + 1);
      break;
    }
    case T_LFUNC: dec_lfunc(d, depth); break;
    case T_CFUNC: dec_cfunc(d); break;
    case T_OBJ: dec_obj(d); break;
    case T_SHM: dec_shm(d); break;
    case T_GLOBALS:
      if (!(d->flags & SK_MARSHAL_CODE)) dec_fail(d, "globals are not accepted here");
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      break;
    case T_MODULE: dec_fail(d, "a module reference outside a function's upvalues"); break;
    default: dec_fail(d, "unknown tag");
  }
}

/* Protected body of sk_marshal_decode: [1] = dec*; returns the values. */
/* Gives the worker's spare table (remember) back, emptied. */
static void give_back_refs(dec *d) {
  lua_State *L = d->L;
  if (!lua_istable(L, d->refs)) return;
  for (lua_Integer i = 1; i <= d->nextid; i++) {
    lua_pushnil(L);
    lua_rawseti(L, d->refs, i);
  }
  lua_pushvalue(L, d->refs);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.refs");
}

static int p_decode(lua_State *L) {
  dec *d = lua_touserdata(L, 1);
  lua_pushnil(L);
  d->refs = lua_gettop(L);
  if (get_byte(d) != 'S' || get_byte(d) != FORMAT) dec_fail(d, "not a skein buffer");
  uint64_t n = get_varint(d);
  if (n > (uint64_t)(d->end - d->p)) dec_fail(d, "value count past the end");
  luaL_checkstack(L, (int)n + 8, "too many values to unmarshal");
  for (uint64_t i = 0; i < n; i++) {
    d->root = (lua_Integer)i + 1;
    dec_value(d, 0);
  }
  if (d->p != d->end) dec_fail(d, "trailing bytes");
  give_back_refs(d);
  return (int)n;
}

/* p_decode for sk_marshal_decode_into: stack 1 dec, 2 the table, 3 the
** first index. */
static int p_decode_into(lua_State *L) {
  dec *d = lua_touserdata(L, 1);
  lua_Integer at = lua_tointeger(L, 3);
  lua_pushnil(L);
  d->refs = lua_gettop(L);
  if (get_byte(d) != 'S' || get_byte(d) != FORMAT) dec_fail(d, "not a skein buffer");
  uint64_t n = get_varint(d);
  if (n > (uint64_t)(d->end - d->p)) dec_fail(d, "value count past the end");
  luaL_checkstack(L, 8, "unmarshal");
  for (uint64_t i = 0; i < n; i++) dec_item(d, 2, at + (lua_Integer)i, 0);
  if (d->p != d->end) dec_fail(d, "trailing bytes");
  give_back_refs(d);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

int sk_marshal_decode_into(lua_State *L, const char *data, size_t len, int flags, int t,
                           lua_Integer at) {
  dec d = {L, (const uint8_t *)data, (const uint8_t *)data + len, 0, 0, flags, 0};
  t = lua_absindex(L, t);
  lua_pushcfunction(L, p_decode_into);
  lua_pushlightuserdata(L, &d);
  lua_pushvalue(L, t);
  lua_pushinteger(L, at);
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) return -1;
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return n;
}

int sk_marshal_decode(lua_State *L, const char *data, size_t len, int flags) {
  dec d = {L, (const uint8_t *)data, (const uint8_t *)data + len, 0, 0, flags, 0};
  int top = lua_gettop(L);
  lua_pushcfunction(L, p_decode);
  lua_pushlightuserdata(L, &d);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) return -1;
  return lua_gettop(L) - top;
}

