/*
** fuzz_marshal.c — libFuzzer target for the marshal decoder.
**
** Every input is decoded twice, with all permissions:
**
** 1. As it is: untrusted bytes. Their tags almost never match the target's
**    key, so this reaches the paths that refuse forged code: a module
**    reference may resolve only to a module this worker has loaded, and
**    loading one (the searcher below runs) aborts unless the input itself
**    holds the name's valid tag.
** 2. Made authentic: a walk over the input's structure (the same grammar as
**    the decoder's) gives every module or C-function name a valid tag, and
**    every bytecode that is one of a few known dumps (those of
**    spec/fuzz/seeds.lua's functions), and maps shared handles onto objects
**    the target planted in the segment. This reaches what tags guard:
**    functions whose upvalues are
**    fitted from mutated bytes, modules as upvalues, `require` of mutated
**    names (answered by the target's own searcher: package.path and cpath
**    are empty), and handles to live objects with right or wrong types and
**    generations. A shared value holds copies of fake object headers, the
**    bytes an attacker would plant; the object index never leads to them.
**
** Two host types (skein_register_type) take part: fz.Blob by clone (its
** decode callback takes up to 64 bytes), fz.Ref by reference to one host
** object. Pass 2 maps a reference's zero handle, even generation and zero
** process onto a send of that object the target keeps in flight; after any
** input that names fz.Ref, the object's reference count must be back where
** it was.
**
** Whatever decodes must encode again, and decoding that must give values
** structurally equal to the first ones (compared by a Lua function: tables
** deeply, with cycles; functions and userdata only by type, since copies are
** new objects).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../runtime/embed/sk_embed.h"
#include "../../runtime/host/sk_lua.h"

static sk_worker *w;
static int same_ref;
static const uint8_t *cur_data;  /* the input of pass 1, for the searcher */
static size_t cur_size;
static int pass;

/* Tags as the format writes them (runtime/host/marshal.c). */
enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_TABLE_MT, T_END,
  T_REF, T_LFUNC, T_CFUNC, T_OBJ, T_GLOBALS, T_MODULE, T_SHM, T_HOST
};

static const char *setup_src =
    "local planted = {}\n"
    "local fake = {}\n"
    "for t = 1, 10 do\n"
    "  fake[#fake + 1] = string.pack('<I4I4I4i4I8I8I8I4I4', 0x736b6d6f ~ t, t, t, 1000000,\n"
    "                                0, 0, 0, t, 0) .. string.rep('\\0', 48)\n"
    "    .. string.pack('<i4I4I8', 1, 0, 1 << 34)\n"
    "end\n"
    "planted[1] = skein.shared.value(table.concat(fake))\n"
    "planted[2] = skein.shared.array('integer', 4)\n"
    "planted[3] = skein.lock()\n"
    "planted[4] = skein.event()\n"
    "planted[5] = skein.shared.table()\n"
    "planted[6] = skein.semaphore(2)\n"
    "skein.shared.value('gone')\n"            /* an entry that is free again */
    "collectgarbage()\n"
    "package.path, package.cpath = '', ''\n"
    "local loaded_by_us = {}\n"
    "package.searchers = {function(name)\n"
    "  loaded_by_us[#loaded_by_us + 1] = name\n"
    "  return function() return {f = print} end, ':fuzz'\n"
    "end}\n"
    "return planted, function()\n"
    "  local n = #loaded_by_us\n"
    "  for i = n, 1, -1 do package.loaded[loaded_by_us[i]] = nil; loaded_by_us[i] = nil end\n"
    "  return n\n"
    "end, function(name) loaded_by_us[#loaded_by_us + 1] = name end\n";

static const char *same_src =
    "local function same(a, b, seen)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    return a == b or (a ~= a and b ~= b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then return type(a) ~= 'string' and type(a) ~= 'boolean' or a == b end\n"
    /* The same table (_G, a module both decoded and reachable from _G) is
    ** itself, and must not pair it in `seen` with a copy met elsewhere. */
    "  if rawequal(a, b) then return true end\n"
    "  if seen[a] then return seen[a] == b end\n"
    "  seen[a] = b\n"
    "  local n = 0\n"
    "  for k, v in next, a do\n"
    "    n = n + 1\n"
    "    if type(k) ~= 'table' and type(k) ~= 'function' and type(k) ~= 'userdata' then\n"
    "      if not same(v, rawget(b, k), seen) then return false end\n"
    "    end\n"
    "  end\n"
    "  for _ in next, b do n = n - 1 end\n"
    "  return n == 0\n"
    "end\n"
    "return function(n, ...)\n"
    "  local args = table.pack(...)\n"
    "  local seen = {}\n"
    "  for i = 1, n do if not same(args[i], args[n + i], seen) then return false end end\n"
    "  return true\n"
    "end\n";

static int forget_ref;

/* The planted objects' (type, index, generation), from their encodings. */
#define NPLANT 6
static struct {
  uint64_t type, index, gen;
} plant[NPLANT];

/* ------------------------------------------------------- host types */

typedef struct blob {
  size_t n;
  char b[64];
} blob;

static int blob_encode(lua_State *L, int idx, skein_writer *wr) {
  blob *b = lua_touserdata(L, idx);
  return skein_write(wr, b->b, b->n);
}

static void blob_decode(lua_State *L, const char *data, size_t len) {
  if (len > sizeof ((blob *)0)->b) luaL_error(L, "a blob holds at most 64 bytes");
  blob *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->n = len;
  memcpy(b->b, data, len);
  luaL_setmetatable(L, "fz.Blob");
}

static int ref_obj_refs = 1;     /* the one host object fz.Ref stands for */
static int ref_obj;

static void *ref_pointer(lua_State *L, int idx) { return *(void **)lua_touserdata(L, idx); }
static void ref_retain(void *p) { (void)p; ref_obj_refs++; }
static void ref_release(void *p) {
  (void)p;
  if (--ref_obj_refs < 1) abort();  /* released more often than retained */
}
static void ref_push(lua_State *L, void *p) {
  void **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, "fz.Ref");
  *box = p;
}
static int ref_gc(lua_State *L) {
  void **box = lua_touserdata(L, 1);
  if (*box) ref_release(*box);
  *box = NULL;
  return 0;
}

static const skein_type_ops blob_ops = {
    .name = "fz.Blob", .encode = blob_encode, .decode = blob_decode};
static const skein_type_ops ref_ops = {
    .name = "fz.Ref", .pointer = ref_pointer, .retain = ref_retain, .release = ref_release,
    .push = ref_push};

static sk_buf ref_plant;          /* a send of fz.Ref kept in flight */
static uint64_t ref_slot, ref_gen;

/* Registers both types, makes their metatables, and plants the send. */
static void host_types_init(lua_State *L) {
  if (skein_register_type(NULL, &blob_ops) != 0 || skein_register_type(NULL, &ref_ops) != 0) {
    abort();
  }
  luaL_newmetatable(L, "fz.Blob");
  lua_pop(L, 1);
  luaL_newmetatable(L, "fz.Ref");
  lua_pushcfunction(L, ref_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  ref_push(L, &ref_obj);
  ref_obj_refs++;                   /* what the userdata took over */
  if (sk_marshal_encode(L, -1, 1, &ref_plant, "value") != 0 || ref_plant.nobjs != 1) abort();
  ref_slot = ref_plant.objs[0]->slot;
  ref_gen = ref_plant.objs[0]->gen;
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT, 0);
  if (ref_obj_refs != 2) abort();   /* the host's own, and the planted send's */
}

/* 1 when data holds the bytes of `s`. */
static int holds(const uint8_t *data, size_t size, const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i + n <= size; i++) {
    if (memcmp(data + i, s, n) == 0) return 1;
  }
  return 0;
}

/* ------------------------------------------------------ pass 2's walk */

/* Bytecode pass 2 vouches for: the dumps of these functions, which
** spec/fuzz/seeds.lua sends (same sources, same chunk name). Lua does not
** defend against forged bytecode (loading some crashes it), which is why
** skein authenticates bytecode; pass 2 must not forge any either. */
static const char *const known_src[] = {
    "return function(a, b) return a + b end",
    "local up = ... return function() return up[1] + #up end",
    "local str = ... return function(s) return str.upper(s) end",
    "local fm = ... return function() return fm end",
    "local a, b = ... return function() return a, b end",
};
#define NKNOWN (sizeof known_src / sizeof *known_src)
static sk_buf known[NKNOWN];

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  sk_buf *b = ud;
  (void)L;
  char *d = realloc(b->data, b->len + n);
  if (d == NULL) return 1;
  memcpy(d + b->len, p, n);
  b->data = d;
  b->len += n;
  return 0;
}

static void known_init(lua_State *L) {
  for (size_t i = 0; i < NKNOWN; i++) {
    if (luaL_loadbuffer(L, known_src[i], strlen(known_src[i]), "=fuzz") != LUA_OK ||
        lua_pcall(L, 0, 1, 0) != LUA_OK || lua_dump(L, dump_writer, &known[i], 0) != 0) {
      abort();
    }
    lua_pop(L, 1);
  }
}

/* 1 when `code` is one of the known dumps. */
static int genuine(const uint8_t *code, size_t n) {
  for (size_t i = 0; i < NKNOWN; i++) {
    if (known[i].len == n && memcmp(known[i].data, code, n) == 0) return 1;
  }
  return 0;
}

typedef struct walk {
  const uint8_t *p, *end;
  uint8_t *out;
  size_t len, cap;
  int bad;
} walk;

static void emit(walk *k, const void *p, size_t n) {
  if (k->bad) return;
  if (k->len + n > k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 256;
    while (cap < k->len + n) cap *= 2;
    uint8_t *o = realloc(k->out, cap);
    if (o == NULL) {
      k->bad = 1;
      return;
    }
    k->out = o;
    k->cap = cap;
  }
  memcpy(k->out + k->len, p, n);
  k->len += n;
}

static void emit_varint(walk *k, uint64_t v) {
  uint8_t b[10];
  int n = 0;
  do {
    b[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) b[n] |= 0x80;
    n++;
  } while (v);
  emit(k, b, (size_t)n);
}

static void emit_u64(walk *k, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
  emit(k, b, 8);
}

static int take(walk *k, size_t n, const uint8_t **at) {
  if (k->bad || (size_t)(k->end - k->p) < n) return k->bad = 1, 0;
  *at = k->p;
  k->p += n;
  return 1;
}

static uint64_t read_varint(walk *k) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const uint8_t *b;
    if (!take(k, 1, &b)) return 0;
    v |= (uint64_t)(*b & 0x7f) << shift;
    if (!(*b & 0x80)) return v;
  }
  k->bad = 1;
  return 0;
}

/* Copies a varint-prefixed string; returns its bytes (NULL when bad). */
static const uint8_t *copy_bytes(walk *k, size_t *n) {
  uint64_t len = read_varint(k);
  const uint8_t *s;
  if (k->bad || len > (uint64_t)(k->end - k->p) || !take(k, (size_t)len, &s)) {
    k->bad = 1;
    return NULL;
  }
  emit_varint(k, len);
  emit(k, s, (size_t)len);
  *n = (size_t)len;
  return s;
}

static void walk_value(walk *k, int depth);

static void walk_table(walk *k, int depth) {
  uint64_t narr = read_varint(k);
  if (k->bad || narr > (uint64_t)(k->end - k->p)) {
    k->bad = 1;
    return;
  }
  emit_varint(k, narr);
  for (uint64_t i = 0; i < narr && !k->bad; i++) walk_value(k, depth + 1);
  while (!k->bad) {
    if (k->p >= k->end) {
      k->bad = 1;
      return;
    }
    if (*k->p == T_END) {
      emit(k, k->p++, 1);
      return;
    }
    walk_value(k, depth + 1);
    walk_value(k, depth + 1);
  }
}

static void walk_value(walk *k, int depth) {
  const uint8_t *b;
  size_t n;
  if (depth > 220 || !take(k, 1, &b)) {
    k->bad = 1;
    return;
  }
  int tag = *b;
  emit(k, b, 1);
  switch (tag) {
    case T_NIL: case T_FALSE: case T_TRUE: case T_GLOBALS: case T_END: break;
    case T_INT: case T_REF: emit_varint(k, read_varint(k)); break;
    case T_FLOAT:
      if (take(k, 8, &b)) emit(k, b, 8);
      break;
    case T_STR: copy_bytes(k, &n); break;
    case T_TABLE: walk_table(k, depth); break;
    case T_TABLE_MT:
      copy_bytes(k, &n);
      walk_table(k, depth);
      break;
    case T_LFUNC: {
      const uint8_t *code = copy_bytes(k, &n);
      if (code == NULL || !take(k, 8, &b)) return;
      if (genuine(code, n)) emit_u64(k, sk_marshal_code_tag(code, n));
      else emit(k, b, 8);
      uint64_t nups = read_varint(k);
      if (k->bad || nups > 255) {
        k->bad = 1;
        return;
      }
      emit_varint(k, nups);
      for (uint64_t i = 0; i < nups && !k->bad; i++) walk_value(k, depth + 1);
      break;
    }
    case T_CFUNC: case T_MODULE: {
      const uint8_t *name = copy_bytes(k, &n);
      if (name == NULL || !take(k, 8, &b)) return;
      emit_u64(k, sk_marshal_name_tag((const char *)name, n));
      break;
    }
    case T_OBJ:
      copy_bytes(k, &n);
      for (int i = 0; i < 3; i++) emit_varint(k, read_varint(k));
      break;
    case T_SHM: {
      /* Index k < NPLANT names planted object k (its type when the input's
      ** type is 0); an even generation becomes the real one. */
      copy_bytes(k, &n);
      uint64_t type = read_varint(k), index = read_varint(k), gen = read_varint(k);
      if (index < NPLANT) {
        if (type == 0) type = plant[index].type;
        if (gen % 2 == 0) gen = plant[index].gen;
        index = plant[index].index;
      }
      emit_varint(k, type);
      emit_varint(k, index);
      emit_varint(k, gen);
      break;
    }
    case T_HOST: {
      copy_bytes(k, &n);
      if (!take(k, 1, &b)) return;
      emit(k, b, 1);
      if (*b == 'c') {
        copy_bytes(k, &n);
      } else if (*b == 'r') {
        uint64_t slot = read_varint(k), gen = read_varint(k), pid = read_varint(k);
        emit_varint(k, slot == 0 ? ref_slot : slot);
        emit_varint(k, gen % 2 == 0 ? ref_gen : gen);
        emit_varint(k, pid == 0 ? (uint64_t)getpid() : pid);
      }
      break;
    }
    default: k->bad = 1; break;
  }
}

/* ------------------------------------------------------------- checks */

/* 1 when data holds name's valid tag right after the name. */
static int holds_valid_tag(const uint8_t *data, size_t size, const char *name, size_t n) {
  uint64_t tag = sk_marshal_name_tag(name, n);
  uint8_t t[8];
  for (int i = 0; i < 8; i++) t[i] = (uint8_t)(tag >> (8 * i));
  for (size_t i = 0; i + n + 8 <= size; i++) {
    if (memcmp(data + i, name, n) == 0 && memcmp(data + i + n, t, 8) == 0) return 1;
  }
  return 0;
}

/* The searcher's record of what pass 1 loaded: every name must have come
** with its valid tag (a C function's "module.name" tag counts for the
** module it names). */
static void check_loads(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, forget_ref);
  lua_getupvalue(L, -1, 1);            /* loaded_by_us */
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    size_t len;
    const char *name = lua_tolstring(L, -1, &len);
    int ok = holds_valid_tag(cur_data, cur_size, name, len);
    for (size_t j = 0; !ok && j + len < cur_size; j++) {
      /* "name." followed by anything, then its tag */
      if (memcmp(cur_data + j, name, len) == 0 && cur_data[j + len] == '.' && j > 0) {
        size_t full = cur_data[j - 1];   /* a one-byte varint length */
        if (j + full <= cur_size && full > len) {
          ok = holds_valid_tag(cur_data, cur_size, (const char *)cur_data + j, full);
        }
      }
    }
    if (!ok) abort();                  /* bytes without a valid tag loaded code */
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

static void forget_loaded(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, forget_ref);
  lua_call(L, 0, 1);
  lua_pop(L, 1);
}

static void round_trip(lua_State *L, const uint8_t *data, size_t size) {
  int top = lua_gettop(L);
  int n = sk_marshal_decode(L, (const char *)data, size, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  if (pass == 1) check_loads(L);
  if (n >= 0) {
    sk_buf a;
    if (sk_marshal_encode(L, top + 1, n, &a, "value") != 0) abort();
    int m = sk_marshal_decode(L, a.data, a.len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
    sk_buf_free(&a);
    if (m != n) abort();
    /* same(n, first values..., second values...) */
    lua_rawgeti(L, LUA_REGISTRYINDEX, same_ref);
    lua_insert(L, top + 1);
    lua_pushinteger(L, n);
    lua_insert(L, top + 2);
    if (lua_pcall(L, 2 * n + 1, 1, 0) != LUA_OK || !lua_toboolean(L, -1)) abort();
  }
  lua_settop(L, top);
  forget_loaded(L);
  if (holds(data, size, "fz.Ref")) {
    /* Every userdata decoded or sent is gone now: the count is back. */
    lua_gc(L, LUA_GCCOLLECT, 0);
    if (ref_obj_refs != 2) abort();
  }
}

static void setup(void) {
  static const uint8_t key[16] = "skein fuzz key!";
  const char *err;
  sk_marshal_set_key(key);
  sk_embed_init();  /* as skein_new would: the module opener, the stand-ins */
  w = sk_worker_new(NULL, &err);
  if (w == NULL) abort();
  lua_State *L = w->L;
  if (luaL_dostring(L, same_src) != LUA_OK) abort();
  same_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  known_init(L);
  if (luaL_loadstring(L, setup_src) != LUA_OK || lua_pcall(L, 0, 3, 0) != LUA_OK) abort();
  lua_pop(L, 1);
  forget_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Keep the planted objects, and read their handles off their encodings. */
  for (int i = 0; i < NPLANT; i++) {
    lua_rawgeti(L, -1, i + 1);
    sk_buf b;
    if (sk_marshal_encode(L, -1, 1, &b, "value") != 0) abort();
    walk k = {(const uint8_t *)b.data + 4, (const uint8_t *)b.data + b.len, NULL, 0, 0, 0};
    size_t n;
    if (b.len < 4 || (uint8_t)b.data[3] != T_SHM || copy_bytes(&k, &n) == NULL) abort();
    plant[i].type = read_varint(&k);
    plant[i].index = read_varint(&k);
    plant[i].gen = read_varint(&k);
    free(k.out);
    sk_buf_free(&b);
    lua_pop(L, 1);
  }
  luaL_ref(L, LUA_REGISTRYINDEX);
  host_types_init(L);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (w == NULL) setup();
  lua_State *L = w->L;
  cur_data = data;
  cur_size = size;
  pass = 1;
  round_trip(L, data, size);
  /* Pass 2: the same structure, authentic. */
  if (size >= 3 && data[0] == 'S') {
    walk k = {data + 3, data + size, NULL, 0, 0, 0};
    emit(&k, data, 3);
    uint64_t count = data[2] & 0x80 ? 0 : data[2];
    for (uint64_t i = 0; i < count && !k.bad; i++) walk_value(&k, 0);
    if (!k.bad && k.p == k.end && (k.len != size || memcmp(k.out, data, size) != 0)) {
      pass = 2;
      round_trip(L, k.out, k.len);
    }
    free(k.out);
  }
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
