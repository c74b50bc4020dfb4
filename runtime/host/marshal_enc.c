/*
** marshal_enc.c — the encoder of marshal.c's format: Lua values of one
** worker to bytes (sk_marshal_encode and its list form). It never raises:
** it runs in a protected call, so an error (a value that cannot be sent,
** named by its path, or Lua out of memory) frees the buffer before it
** reaches the caller. sk_marshal_encode_raw raises instead, into a caller
** that owns the buffer through something Lua collects.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/sk_shm.h"
#include "../core/sk_view.h"
#include "sk_marshal.h"

#define SEEN_INLINE 16

/* ------------------------------------------------------------- buffers */

void sk_buf_clear(sk_buf *b) {
  for (size_t i = 0; i < b->nobjs; i++) sk_obj_release(b->objs[i]);
  free(b->objs);
  b->objs = NULL;
  b->len = b->nobjs = b->capobjs = 0;
}

void sk_buf_free(sk_buf *b) {
  sk_buf_clear(b);
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

int sk_buf_append(sk_buf *b, const void *p, size_t n) {
  if (n > SIZE_MAX / 2 - b->len) return -1;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
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

_Thread_local int sk_marshal_xproc;

/* The references this thread's encodes took for its parent process
** (SK_XPROC_TO_PARENT) and has not handed over yet (sk_marshal_parent_refs). */
static _Thread_local struct {
  sk_shm_obj **v;
  size_t n, cap;
} parent_refs;

/* Takes a reference to `so` for the parent and notes it; 0, or -1 (no
** reference taken) when out of memory. */
static int note_parent_ref(sk_shm_obj *so) {
  if (parent_refs.n == parent_refs.cap) {
    size_t cap = parent_refs.cap ? parent_refs.cap * 2 : 8;
    sk_shm_obj **v = realloc(parent_refs.v, cap * sizeof *v);
    if (v == NULL) return -1;
    parent_refs.v = v;
    parent_refs.cap = cap;
  }
  sk_shm_obj_retain(so);
  parent_refs.v[parent_refs.n++] = so;
  return 0;
}

size_t sk_marshal_parent_refs(sk_buf *out) {
  memset(out, 0, sizeof *out);
  size_t n = parent_refs.n;
  if (n == 0) return 0;
  out->data = malloc(n * 12);
  if (out->data == NULL) {
    /* They cannot be handed over: they stay taken, for good, as they
    ** were before references were handed over at all. */
    parent_refs.n = 0;
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    uint32_t t[3] = {parent_refs.v[i]->type, parent_refs.v[i]->index, parent_refs.v[i]->gen};
    memcpy(out->data + i * 12, t, 12);
  }
  out->len = out->cap = n * 12;
  parent_refs.n = 0;
  return n;
}

void sk_marshal_parent_refs_forget(void) {
  parent_refs.n = 0;
  if (parent_refs.cap > 64) {
    free(parent_refs.v);
    parent_refs.v = NULL;
    parent_refs.cap = 0;
  }
}

void sk_marshal_adopt_refs(sk_buf *b, const char *x, size_t len) {
  for (size_t i = 0; i + 12 <= len; i += 12) {
    uint32_t t[3];
    memcpy(t, x + i, 12);
    sk_shm_obj *so = sk_shm_obj_find(t[1], t[0], t[2]);
    if (so == NULL) continue;
    sk_obj *view = sk_shm_view_of(so);
    if (view && b->nobjs == b->capobjs) {
      size_t cap = b->capobjs ? b->capobjs * 2 : 4;
      sk_obj **objs = realloc(b->objs, cap * sizeof *objs);
      if (objs) {
        b->objs = objs;
        b->capobjs = cap;
      }
    }
    if (view && b->nobjs < b->capobjs) {
      /* The view keeps the object alive as long as the bytes; the
      ** reference the child took is dropped. */
      b->objs[b->nobjs++] = view;
      sk_shm_obj_release(so);
    } else if (view) {
      sk_obj_release(view);
    }
    sk_shm_obj_release(so);
  }
}

int sk_marshal_encode_xproc(lua_State *L, int first, int n, sk_buf *out, const char *root) {
  int was = sk_marshal_xproc;
  sk_marshal_xproc = 1;
  int rc = sk_marshal_encode(L, first, n, out, root);
  sk_marshal_xproc = was;
  return rc;
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
#define PATH_MAX_STEPS (SK_MARSHAL_MAX_DEPTH + 8)

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
        put_u64(L, e->b, sk_marshal_name_tag(name, n));
        lua_pop(L, 3);
        return 1;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* ------------------------------------------ bytecode by prototype
**
** Closures of one prototype dump to the same bytecode (upvalues travel
** apart), so the encoder finds a dump again by prototype. The C API does
** not name a closure's prototype; Lua 5.4 keeps it in its LClosure right
** after the common closure header (next, tt, marked, nupvalues, gclist),
** and lua_topointer gives the LClosure. That private layout is checked
** once per process (proto_probe): two closures of one prototype must agree
** and a third of another must not, with upvalues of their own so that an
** offset landing on them fails; when the check fails, only the cache per
** closure is used.
**
** "skein.protos" maps the prototype (light userdata) to one live closure
** of it, with weak values: while that closure lives its prototype cannot
** be freed and reused at the same address, and once it is collected the
** entry goes in the same cycle, before any memory is reused. */

/* next (a pointer), tt, marked, nupvalues (bytes, padded), gclist (a
** pointer): the prototype is the third pointer-sized field. */
#define PROTO_AT (3 * sizeof(void *))

static int proto_ok = -1;          /* -1: not probed yet (one value per process) */

static const void *proto_of(lua_State *L, int idx) {
  const char *cl = lua_topointer(L, idx);
  const void *proto;
  memcpy(&proto, cl + PROTO_AT, sizeof proto);
  return proto;
}

static int proto_probe(lua_State *L) {
  static const char chunk[] =
      "local function mk(x) return function() return x end end\n"
      "local y = {} return mk(1), mk(2), function() return y end";
  int top = lua_gettop(L);
  int ok = 0;
  if (LUA_VERSION_NUM == 504 && lua_version(L) == 504 &&
      luaL_loadbufferx(L, chunk, sizeof chunk - 1, "=proto_probe", "t") == LUA_OK &&
      lua_pcall(L, 0, 3, 0) == LUA_OK) {
    const void *a = proto_of(L, top + 1), *b = proto_of(L, top + 2), *c = proto_of(L, top + 3);
    ok = a != NULL && c != NULL && a == b && a != c &&
         lua_topointer(L, top + 1) != lua_topointer(L, top + 2);
  }
  lua_settop(L, top);
  return ok;
}

/* With "skein.dumps" at -1: pushes the cached dump of another closure of
** the function at idx's prototype and returns 1, or returns 0. */
static int cached_by_proto(lua_State *L, int idx) {
  if (proto_ok < 0) proto_ok = proto_probe(L);
  if (!proto_ok || lua_iscfunction(L, idx)) return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "skein.protos");
  lua_pushlightuserdata(L, (void *)proto_of(L, idx));
  if (lua_rawget(L, -2) != LUA_TFUNCTION) {
    lua_pop(L, 2);
    return 0;
  }
  lua_rawget(L, -3);              /* dumps[representative] */
  lua_remove(L, -2);
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* Records the function at idx as its prototype's representative. */
static void remember_proto(lua_State *L, int idx) {
  if (proto_ok <= 0 || lua_iscfunction(L, idx)) return;
  lua_getfield(L, LUA_REGISTRYINDEX, "skein.protos");
  lua_pushlightuserdata(L, (void *)proto_of(L, idx));
  lua_pushvalue(L, idx);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Pushes the dump of the Lua function at idx: its bytecode, then the
** bytecode's 8-byte tag. The dump is cached per function, and found again
** for another closure of the same prototype (an inline closure per
** submit): dumping and hashing on every submit would dominate small tasks.
** In front of those two lookups sits the worker's last sent prototype
** (sent_proto, sent_ref): a loop that submits one function, or a closure
** of one prototype, finds it with a pointer compare. The last sent closure
** is held weakly there, and while it lives so does its prototype, so the
** address cannot meanwhile have become another prototype's. */
static void push_dump(enc *e, int idx, const path *p) {
  lua_State *L = e->L;
  sk_worker *w = sk_worker_of(L);
  if (proto_ok < 0) proto_ok = proto_probe(L);
  const void *proto = proto_ok > 0 ? proto_of(L, idx) : NULL;
  if (proto && proto == w->sent_proto) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->sent_ref);
    if (lua_rawgeti(L, -1, 1) == LUA_TFUNCTION) {
      lua_rawgeti(L, -2, 2);
      lua_replace(L, -3);
      lua_pop(L, 1);
      return;
    }
    lua_pop(L, 2);                /* collected: found again below */
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "skein.dumps");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TSTRING) {
    lua_pop(L, 1);
    if (!cached_by_proto(L, idx)) {
      sk_buf code = {0};
      lua_pushvalue(L, idx);
      int st = lua_dump(L, writer, &code, 0);
      lua_pop(L, 1);
      if (st != 0 || code.len == 0) {
        free(code.data);
        enc_fail(e, p, "cannot dump this function");
      }
      uint64_t tag = sk_marshal_code_tag(code.data, code.len);
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
      remember_proto(L, idx);
    }
  }
  lua_remove(L, -2);              /* skein.dumps */
  if (proto == NULL) return;
  if (w->sent_ref == 0) {         /* {closure, dump}, the closure weak */
    lua_createtable(L, 2, 0);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    w->sent_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->sent_ref);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 1);
  w->sent_proto = proto;
}

/* Records the Lua function at idx, whose encoding is the `n` bytes at
** `bytes`, as the worker's last plain function (one with no upvalue but
** _ENV, which always travels as T_GLOBALS): its encoding never changes
** (bytecode, tag and upvalue count are its prototype's). It is held
** strongly, so its address names it until the next one replaces it; with
** no state of its own, keeping it alive holds nothing else. */
static void remember_plain(lua_State *L, sk_worker *w, int idx, const char *bytes, size_t n) {
  if (w->plain_ref == 0) {
    lua_createtable(L, 2, 0);
    w->plain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->plain_ref);
  lua_pushlstring(L, bytes, n);
  const char *kept = lua_tostring(L, -1);
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, 1);
  lua_pop(L, 1);
  w->plain_fn = lua_topointer(L, idx);
  w->plain_enc = kept;
  w->plain_len = n;
}

static void enc_function(enc *e, int idx, const path *p, int depth) {
  lua_State *L = e->L;
  sk_buf *b = e->b;
  sk_worker *w = sk_worker_of(L);
  /* The function sent last, again (a named function submitted in a loop):
  ** its encoding is copied whole. */
  if (w->plain_fn && lua_topointer(L, idx) == w->plain_fn) {
    put(L, b, w->plain_enc, w->plain_len);
    return;
  }
  if (lua_iscfunction(L, idx)) {
    push_cfunc_name(L, idx);
    if (!lua_isstring(L, -1)) {
      enc_fail(e, p, "cannot send a C function that no loaded module exports");
    }
    size_t n;
    const char *name = lua_tolstring(L, -1, &n);
    put_byte(L, b, T_CFUNC);
    put_str(L, b, name, n);
    put_u64(L, b, sk_marshal_name_tag(name, n));
    lua_pop(L, 1);
    return;
  }
  push_dump(e, idx, p);
  size_t clen, start = b->len;
  const char *cached = lua_tolstring(L, -1, &clen);
  put_byte(L, b, T_LFUNC);
  put_varint(L, b, clen - 8);
  put(L, b, cached, clen);          /* bytecode, then its 8-byte tag */
  lua_pop(L, 1);
  int nups = 0;
  while (lua_getupvalue(L, idx, nups + 1) != NULL) {
    lua_pop(L, 1);
    nups++;
  }
  put_varint(L, b, (uint64_t)nups);
  int plain = 1;
  for (int i = 1; i <= nups; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    path up = {p, P_UPVALUE, name, i};
    /* _ENV always rebinds to the receiving worker's globals, and a loaded
    ** module (local json = require "json") to the receiver's own copy. */
    if (name && strcmp(name, "_ENV") == 0) {
      put_byte(L, b, T_GLOBALS);
    } else {
      plain = 0;
      if (!enc_module(e, lua_gettop(L))) enc_value(e, lua_gettop(L), &up, depth + 1);
    }
    lua_pop(L, 1);
  }
  if (plain) remember_plain(L, w, idx, b->data + start, b->len - start);
}

/* ------------------------------------------------------- host types */

/* Makes room for one more object reference in the buffer. */
static void reserve_obj(lua_State *L, sk_buf *b) {
  if (b->nobjs < b->capobjs) return;
  size_t cap = b->capobjs ? b->capobjs * 2 : 4;
  sk_obj **objs = realloc(b->objs, cap * sizeof *objs);
  if (objs == NULL) sk_error_raise(L, "memory", "not enough memory to marshal");
  b->objs = objs;
  b->capobjs = cap;
}

/* Protected: [1] the host type, [2] the value, [3] the writer. */
static int p_host_encode(lua_State *L) {
  const sk_hosttype *t = lua_touserdata(L, 1);
  lua_pushinteger(L, t->ops.encode(L, 2, lua_touserdata(L, 3)));
  return 1;
}

/* A clone's length is written as a 5-byte varint (padded with 0x80
** bytes, which the decoder reads like any varint) and patched once the
** encode callback has written the bytes after it. */
#define HOST_LEN_BYTES 5
#define HOST_CLONE_MAX ((uint64_t)1 << (7 * HOST_LEN_BYTES))

/* A host type's userdata (skein_register_type): T_HOST, the type's name, and
** a clone's bytes or a pointer's handle. Between threads of this process a
** pointer goes by reference when the type can; to another process (and
** when it cannot) the value is cloned. */
static void enc_host(enc *e, int idx, const path *p, const sk_hosttype *t) {
  lua_State *L = e->L;
  sk_buf *b = e->b;
  const skein_type_ops *ops = &t->ops;
  int by_ref = ops->push != NULL && !sk_marshal_xproc;
  if (!by_ref && ops->encode == NULL) {
    lua_pushfstring(L, "a %s goes by reference only: it cannot go to another process",
                    ops->name);
    enc_fail(e, p, lua_tostring(L, -1));
  }
  put_byte(L, b, T_HOST);
  put_str(L, b, ops->name, strlen(ops->name));
  if (by_ref) {
    void *ptr = ops->pointer(L, idx);
    if (ptr == NULL) {
      lua_pushfstring(L, "cannot send a closed %s", ops->name);
      enc_fail(e, p, lua_tostring(L, -1));
    }
    reserve_obj(L, b);
    sk_obj *o = sk_marshal_host_ref(t, ptr);
    if (o != NULL && sk_obj_register(o) != 0) {
      sk_obj_release(o);
      o = NULL;
    }
    if (o == NULL) sk_error_raise(L, "memory", "not enough memory to marshal");
    b->objs[b->nobjs++] = o;        /* the buffer holds the reference made */
    put_byte(L, b, SK_HOST_REF);
    put_varint(L, b, o->slot);
    put_varint(L, b, o->gen);
    put_varint(L, b, (uint64_t)getpid());
    return;
  }
  put_byte(L, b, SK_HOST_CLONE);
  buf_grow(L, b, HOST_LEN_BYTES);
  size_t at = b->len;
  b->len += HOST_LEN_BYTES;
  skein_writer w = {b, 0};
  lua_pushcfunction(L, p_host_encode);
  lua_pushlightuserdata(L, (void *)t);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, &w);
  int st = lua_pcall(L, 3, 1, 0);
  if (w.failed) sk_error_raise(L, "memory", "not enough memory to marshal");
  if (st != LUA_OK) {
    const char *why = luaL_tolstring(L, -1, NULL);
    lua_pushfstring(L, "%s cannot be encoded: %s", ops->name, why);
    enc_fail(e, p, lua_tostring(L, -1));
  }
  if (lua_tointeger(L, -1) != 0) {
    lua_pushfstring(L, "%s refused to be encoded", ops->name);
    enc_fail(e, p, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  uint64_t n = b->len - at - HOST_LEN_BYTES;
  if (n >= HOST_CLONE_MAX) {
    lua_pushfstring(L, "%s encodes to more than 32 GiB", ops->name);
    enc_fail(e, p, lua_tostring(L, -1));
  }
  for (int i = 0; i < HOST_LEN_BYTES; i++) {
    uint8_t c = (uint8_t)((n >> (7 * i)) & 0x7f);
    b->data[at + (size_t)i] = (char)(i < HOST_LEN_BYTES - 1 ? c | 0x80 : c);
  }
}

static void enc_userdata(enc *e, int idx, const path *p) {
  lua_State *L = e->L;
  const char *pname;
  uint32_t pslot, pgen;
  long ppid;
  if (sk_marshal_stand_ins && sk_marshal_stand_ins->info(L, idx, &pname, &pslot, &pgen, &ppid)) {
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
  const sk_hosttype *host = name ? sk_marshal_find_host(name, 1) : NULL;
  if (host) {
    lua_pop(L, 1);
    enc_host(e, idx, p, host);
    return;
  }
  const char *canonical = NULL;
  if (name == NULL || sk_marshal_find_type(name, &canonical) == NULL) {
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
    if (sk_marshal_xproc == SK_XPROC_TO_PARENT && note_parent_ref(so) != 0) {
      sk_shm_obj_retain(so);   /* out of memory: taken for good */
    }
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
  if (depth > SK_MARSHAL_MAX_DEPTH) {
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

/* Encodes the n values from stack index `first` (absolute); pushes the
** seen slot, which the caller drops. Raises on error. */
static void encode_values(enc *e, int first, int n) {
  lua_State *L = e->L;
  lua_pushnil(L);
  e->seen = lua_gettop(L);
  put_byte(L, e->b, 'S');
  put_byte(L, e->b, SK_MARSHAL_FORMAT);
  put_varint(L, e->b, (uint64_t)n);
  for (int i = 0; i < n; i++) {
    path p = {NULL, P_INDEX, NULL, i + 1};
    enc_value(e, first + i, &p, 0);
  }
}

/* Protected body of sk_marshal_encode: [1] = enc*, [2..] = the values. */
static int p_encode(lua_State *L) {
  encode_values(lua_touserdata(L, 1), 2, lua_gettop(L) - 1);
  return 0;
}

/* p_encode for sk_marshal_encode_list: stack 1 enc, 2 the table. */
static int p_encode_list(lua_State *L) {
  enc *e = lua_touserdata(L, 1);
  lua_Integer i = e->from, j = e->to;
  lua_pushnil(L);
  e->seen = lua_gettop(L);
  put_byte(L, e->b, 'S');
  put_byte(L, e->b, SK_MARSHAL_FORMAT);
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


int sk_marshal_encode_raw(lua_State *L, int first, int n, sk_buf *out, const char *root) {
  enc e = {.L = L, .b = out, .root = root ? root : "value"};
  first = lua_absindex(L, first);
  luaL_checkstack(L, 4, "marshal");
  int top = lua_gettop(L);
  encode_values(&e, first, n);
  lua_settop(L, top);
  return 0;
}
