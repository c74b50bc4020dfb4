/*
** marshal.c — copies Lua values between workers as bytes: the format, and
** its decoder (the encoder is marshal_enc.c, the keys and the registry of
** sendable types marshal_auth.c).
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
** A host's userdata (skein_register_type) is its type's name, then 'c' and
** the bytes its encode callback wrote, or 'r' and the handle, generation
** and process of a reference to its pointer (same process only).
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
** The _raw entry points leave that protection to a caller that has its own
** (a pool's submit, a worker's job: sk_lua.h).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/sk_shm.h"
#include "../core/sk_view.h"
#include "sk_marshal.h"

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

/* The 8 bytes at p as a little-endian integer. */
static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static uint64_t get_u64(dec *d) {
  if (d->end - d->p < 8) dec_fail(d, "truncated");
  uint64_t v = le64(d->p);
  d->p += 8;
  return v;
}

/* The integer a zigzag varint encodes (sign in the lowest bit). */
static lua_Integer unzigzag(uint64_t z) { return (lua_Integer)((z >> 1) ^ (~(z & 1) + 1)); }

static const char *get_bytes(dec *d, size_t *n) {
  uint64_t len = get_varint(d);
  if (len > (uint64_t)(d->end - d->p)) dec_fail(d, "length past the end");
  const char *s = (const char *)d->p;
  d->p += len;
  *n = (size_t)len;
  return s;
}

/* Gives the value at the top id d->nextid+1, for later T_REFs. The refs
** slot holds the first such value itself (most buffers have one: a job's
** function), and the table of them from the second on. */
static void remember(dec *d) {
  lua_State *L = d->L;
  if (d->nextid == 0) {
    lua_pushvalue(L, -1);
    lua_replace(L, d->refs);
    d->nextid = 1;
    return;
  }
  if (d->nextid == 1) {             /* the second: the table, taken now */
    /* Reuse the worker's spare table (p_decode clears and returns it); a
    ** nested decode finds none there and makes its own. */
    if (lua_getfield(L, LUA_REGISTRYINDEX, "skein.refs") == LUA_TTABLE) {
      lua_pushnil(L);
      lua_setfield(L, LUA_REGISTRYINDEX, "skein.refs");
    } else {
      lua_pop(L, 1);
      lua_newtable(L);
    }
    lua_pushvalue(L, d->refs);
    lua_rawseti(L, -2, 1);
    lua_replace(L, d->refs);
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->refs, ++d->nextid);
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
    lua_pushinteger(L, unzigzag(z));
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

/* Pushes the cache entry for `code` ({bytes, function, factory, number of
** upvalues}: the last two filled on first need) and a function for it,
** from this worker's cache when the same bytecode was loaded before
** (compared byte for byte, so a hit needs no new authentication). Returns
** 1 when the pushed closure is the cached one. */
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
      lua_replace(L, -2);                        /* cache, entry, function */
      lua_remove(L, cache);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (tag != sk_marshal_code_tag(code, n)) dec_fail(d, "function bytecode failed authentication");
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
  lua_createtable(L, 4, 0);
  lua_pushlstring(L, code, n);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, -1);
  lua_rawseti(L, cache, (lua_Integer)tag);      /* cache, function, entry */
  lua_replace(L, cache);                        /* entry, function */
  return 0;
}

/* Pushes a new closure of the cached function for `code` (its upvalues
** still to be filled): from the cache entry's factory (sk_proto_factory),
** made on the entry's first closure and kept as its third item (false when
** none could be made), else by loading the bytecode again. */
static void new_closure(dec *d, int entry, const char *code, size_t n, int nups) {
  lua_State *L = d->L;
  int t = lua_rawgeti(L, entry, 3);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    if (!sk_proto_factory(L, code, n, nups)) lua_pushboolean(L, 0);
    lua_pushvalue(L, -1);
    lua_rawseti(L, entry, 3);
    t = lua_type(L, -1);
  }
  if (t == LUA_TFUNCTION) {
    lua_call(L, 0, 1);
    return;
  }
  lua_pop(L, 1);
  reader_state r = {code, n};
  if (lua_load(L, reader, &r, "=(marshalled function)", "b") != LUA_OK) {
    dec_fail(d, "function does not load");
  }
}

/* The number of upvalues of the function at f, kept in its cache entry
** (the fourth item) once asked. */
static lua_Integer entry_nups(lua_State *L, int entry, int f) {
  if (lua_rawgeti(L, entry, 4) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return n;
  }
  lua_pop(L, 1);
  lua_Debug ar;
  lua_pushvalue(L, f);
  lua_getinfo(L, ">u", &ar);
  lua_pushinteger(L, ar.nups);
  lua_rawseti(L, entry, 4);
  return ar.nups;
}

static void dec_lfunc(dec *d, int depth) {
  lua_State *L = d->L;
  size_t n;
  const char *code = get_bytes(d, &n);
  uint64_t tag = get_u64(d);
  if (!(d->flags & SK_MARSHAL_CODE)) dec_fail(d, "functions are not accepted here");
  int cached = load_code(d, code, n, tag);      /* entry, function */
  int entry = lua_gettop(L) - 1;
  uint64_t nups = get_varint(d);
  if (nups != (uint64_t)entry_nups(L, entry, entry + 1)) dec_fail(d, "wrong number of upvalues");
  /* A function whose upvalues are all _ENV carries no state of its own:
  ** the cached closure serves every message. Otherwise it needs a closure
  ** of its own, whose upvalues the message fills. */
  int plain = (uint64_t)(d->end - d->p) >= nups;
  for (uint64_t i = 0; plain && i < nups; i++) plain = d->p[i] == T_GLOBALS;
  if (cached && plain) {
    d->p += nups;
    lua_remove(L, entry);
    remember(d);
    return;
  }
  if (cached) {
    lua_pop(L, 1);
    new_closure(d, entry, code, n, (int)nups);
  }
  lua_remove(L, entry);
  int f = lua_gettop(L);
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
  push_module(d, name, n, tag == sk_marshal_name_tag(name, n));
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
    push_module(d, name, (size_t)(dot - name), tag == sk_marshal_name_tag(name, n));
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
  sk_obj_push push = so ? sk_marshal_find_type(name, NULL) : NULL;
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
    if (slot > UINT32_MAX || gen > UINT32_MAX || pid > INT32_MAX ||
        sk_marshal_stand_ins == NULL ||
        sk_marshal_stand_ins->push(L, name, (uint32_t)slot, (uint32_t)gen, (long)pid) != 0) {
      sk_error_raise(L, "marshal", "the %s this value refers to lives in process %d, "
                     "which this worker cannot reach", name, (int)pid);
    }
    lua_remove(L, -2);
    return;
  }
  sk_obj_push push = sk_marshal_find_type(name, NULL);
  sk_obj *o = push && slot <= UINT32_MAX && gen <= UINT32_MAX
                  ? sk_obj_lookup((uint32_t)slot, (uint32_t)gen, name)
                  : NULL;
  if (o == NULL) {
    sk_error_raise(L, "marshal", "the %s this value refers to no longer exists", name);
  }
  lua_pop(L, 1);
  push(L, o);  /* takes over the reference lookup added */
}

/* Protected: [1] the host type, [2] the bytes (light), [3] their length. */
static int p_host_decode(lua_State *L) {
  const sk_hosttype *t = lua_touserdata(L, 1);
  const char *data = lua_touserdata(L, 2);
  size_t n = (size_t)lua_tointeger(L, 3);
  lua_settop(L, 0);
  t->ops.decode(L, data, n);
  return lua_gettop(L) == 1 ? 1 : luaL_error(L, "decode pushed %d values, not 1", lua_gettop(L));
}

/* Protected: [1] the host type, [2] the pointer (light). */
static int p_host_push(lua_State *L) {
  const sk_hosttype *t = lua_touserdata(L, 1);
  void *p = lua_touserdata(L, 2);
  lua_settop(L, 0);
  t->ops.push(L, p);
  return lua_gettop(L) == 1 ? 1 : luaL_error(L, "push pushed %d values, not 1", lua_gettop(L));
}

/* Replaces the error at the top with kind "marshal" naming the host type. */
static void host_fail(lua_State *L, const char *name, const char *what) {
  const char *why = luaL_tolstring(L, -1, NULL);
  sk_error_raise(L, "marshal", "%s: %s: %s", name, what, why);
}

/* A host type's userdata (marshal_enc.c's enc_host): a clone made by the
** type's decode callback from its bytes, or a new userdata for a pointer
** sent by reference from this process (its push callback, given a
** reference of its own). */
static void dec_host(dec *d) {
  lua_State *L = d->L;
  /* Bytes from outside the process tree (the broker's, flags 0) never
  ** reach a host's callbacks, which may trust what their encode wrote. */
  if (!(d->flags & SK_MARSHAL_OBJECTS)) dec_fail(d, "host values are not accepted here");
  size_t nn;
  const char *s = get_bytes(d, &nn);
  const char *name = lua_pushlstring(L, s, nn);
  int mode = get_byte(d);
  size_t n = 0;
  const char *bytes = NULL;
  uint64_t slot = 0, gen = 0, pid = 0;
  if (mode == SK_HOST_CLONE) {
    bytes = get_bytes(d, &n);
  } else if (mode == SK_HOST_REF) {
    slot = get_varint(d), gen = get_varint(d), pid = get_varint(d);
  } else {
    dec_fail(d, "unknown host value mode");
  }
  const sk_hosttype *t = memchr(s, '\0', nn) ? NULL : sk_marshal_find_host(name, 0);
  if (t == NULL) {
    sk_error_raise(L, "marshal", "host type '%s' is not registered in this process (a host "
                   "registers it with skein_register_type, before skein_worker_main in its "
                   "main for its worker processes)", name);
  }
  if (mode == SK_HOST_CLONE) {
    if (t->ops.decode == NULL) {
      sk_error_raise(L, "marshal", "%s: a copy arrived, but the type has no decode callback "
                     "in this process", name);
    }
    lua_pushcfunction(L, p_host_decode);
    lua_pushlightuserdata(L, (void *)t);
    lua_pushlightuserdata(L, (void *)bytes);
    lua_pushinteger(L, (lua_Integer)n);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) host_fail(L, name, "its decode callback failed");
    lua_remove(L, -2);
    return;
  }
  if (pid != (uint64_t)getpid()) {
    sk_error_raise(L, "marshal", "a %s goes by reference only: this one belongs to process "
                   "%d, not this one", name, (int)(pid > INT32_MAX ? -1 : (int)pid));
  }
  sk_obj *o = t->ops.push && slot <= UINT32_MAX && gen <= UINT32_MAX
                  ? sk_obj_lookup((uint32_t)slot, (uint32_t)gen, name)
                  : NULL;
  if (o != NULL && o->type != &t->wrap) {
    sk_obj_release(o);
    o = NULL;
  }
  if (o == NULL) sk_error_raise(L, "marshal", "the %s this value refers to no longer exists", name);
  void *p = sk_marshal_host_pointer(o);
  t->ops.retain(p);                 /* for the userdata push makes */
  sk_obj_release(o);
  lua_pushcfunction(L, p_host_push);
  lua_pushlightuserdata(L, (void *)t);
  lua_pushlightuserdata(L, p);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    t->ops.release(p);
    host_fail(L, name, "its push callback failed");
  }
  lua_remove(L, -2);
}

static void dec_value(dec *d, int depth) {
  lua_State *L = d->L;
  if (depth > SK_MARSHAL_MAX_DEPTH) dec_fail(d, "nesting too deep");
  int tag = get_byte(d);
  /* A scalar takes the one slot its caller made room for; the rest nest. */
  if (tag > T_STR) luaL_checkstack(L, 8, "unmarshal");
  switch (tag) {
    case T_NIL: lua_pushnil(L); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    case T_TRUE: lua_pushboolean(L, 1); break;
    case T_INT: {
      uint64_t z = get_varint(d);
      lua_pushinteger(L, unzigzag(z));
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
      if (d->nextid == 1) lua_pushvalue(L, d->refs);
      else lua_rawgeti(L, d->refs, (lua_Integer)id + 1);
      break;
    }
    case T_LFUNC: dec_lfunc(d, depth); break;
    case T_CFUNC: dec_cfunc(d); break;
    case T_OBJ: dec_obj(d); break;
    case T_SHM: dec_shm(d); break;
    case T_HOST: dec_host(d); break;
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
  if (d->nextid < 2) return;        /* no table was taken */
  for (lua_Integer i = 1; i <= d->nextid; i++) {
    lua_pushnil(L);
    lua_rawseti(L, d->refs, i);
  }
  lua_pushvalue(L, d->refs);
  lua_setfield(L, LUA_REGISTRYINDEX, "skein.refs");
}

/* Pushes the refs slot, then the decoded values; returns their count.
** Raises on error. */
static int decode_values(dec *d) {
  lua_State *L = d->L;
  lua_pushnil(L);
  d->refs = lua_gettop(L);
  if (get_byte(d) != 'S' || get_byte(d) != SK_MARSHAL_FORMAT) dec_fail(d, "not a skein buffer");
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

static int p_decode(lua_State *L) { return decode_values(lua_touserdata(L, 1)); }

/* p_decode for sk_marshal_decode_into: stack 1 dec, 2 the table, 3 the
** first index. */
static int p_decode_into(lua_State *L) {
  dec *d = lua_touserdata(L, 1);
  lua_Integer at = lua_tointeger(L, 3);
  lua_pushnil(L);
  d->refs = lua_gettop(L);
  if (get_byte(d) != 'S' || get_byte(d) != SK_MARSHAL_FORMAT) dec_fail(d, "not a skein buffer");
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

/* Decodes a buffer that holds only nil, booleans and numbers (most task
** results) without the protected call, which costs more than such values:
** pushing them cannot raise. Returns their count, or -1 (having pushed
** nothing) for any other buffer, which the full decoder then reads, and
** judges when it is malformed. */
static int decode_scalars(lua_State *L, const uint8_t *p, const uint8_t *end) {
  if (end - p < 3 || p[0] != 'S' || p[1] != SK_MARSHAL_FORMAT || p[2] > 8) return -1;
  int n = p[2];
  if (!lua_checkstack(L, n)) return -1;
  p += 3;
  int i;
  for (i = 0; i < n; i++) {
    int t = p < end ? *p++ : -1;
    if (t == T_NIL) {
      lua_pushnil(L);
    } else if (t == T_FALSE || t == T_TRUE) {
      lua_pushboolean(L, t == T_TRUE);
    } else if (t == T_INT) {
      uint64_t z = 0;               /* at most 9 bytes (63 bits): no overflow to check */
      int shift = 0, more = 1;
      while (more && p < end && shift < 63) {
        z |= (uint64_t)(*p & 0x7f) << shift;
        more = *p++ & 0x80;
        shift += 7;
      }
      if (more) goto other;
      lua_pushinteger(L, unzigzag(z));
    } else if (t == T_FLOAT && end - p >= 8) {
      uint64_t bits = le64(p);
      p += 8;
      lua_Number x;
      memcpy(&x, &bits, 8);
      lua_pushnumber(L, x);
    } else {
      goto other;
    }
  }
  if (p == end) return n;
other:
  lua_pop(L, i);
  return -1;
}

int sk_marshal_decode(lua_State *L, const char *data, size_t len, int flags) {
  int fast = decode_scalars(L, (const uint8_t *)data, (const uint8_t *)data + len);
  if (fast >= 0) return fast;
  dec d = {L, (const uint8_t *)data, (const uint8_t *)data + len, 0, 0, flags, 0};
  int top = lua_gettop(L);
  lua_pushcfunction(L, p_decode);
  lua_pushlightuserdata(L, &d);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) return -1;
  return lua_gettop(L) - top;
}


int sk_marshal_decode_raw(lua_State *L, const char *data, size_t len, int flags) {
  dec d = {L, (const uint8_t *)data, (const uint8_t *)data + len, 0, 0, flags, 0};
  luaL_checkstack(L, 4, "unmarshal");
  int n = decode_values(&d);
  lua_remove(L, d.refs);
  return n;
}
