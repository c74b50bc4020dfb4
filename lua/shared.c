/*
** shared.c — skein.shared: shared state that every worker holding a handle
** reads and writes in place (Python's multiprocessing Value, Array and
** Manager dict/list). This file has skein.shared.value and
** skein.shared.array; the table lives in shared_table.c, and the blobs
** every object stores its variable-size data in are runtime/host/blob.c.
**
** Each object is an sk_obj (reference counted, sent to other workers by
** reference) with one mutex guarding its state. The mutex is held only for
** a few plain C operations: no Lua call, no allocation that could raise and
** no blob release ever happens while it is held.
**
** Layout (see sk_shared.h): a value is a fixed-size header whose string, if
** any, is an immutable blob; an array is a single block, header then its n
** 8-byte elements inline, so it moves into shared memory as is.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sk_shared.h"

#define VALUE_MT "skein.shared.Value"
#define ARRAY_MT "skein.shared.Array"

/* ---------------------------------------------------------- common bits */

/* Pushes a number as Lua shows it (for __tostring). */
static void add_number(luaL_Buffer *b, lua_State *L, int is_int, lua_Integer i, lua_Number n) {
  if (is_int) lua_pushinteger(L, i);
  else lua_pushnumber(L, n);
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  luaL_addvalue(b);
}

/* Converts the number at idx to an integer without losing anything, or
** raises naming `what`. Floats with an exact integer value are accepted. */
static lua_Integer check_exact_integer(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER) {
    luaL_error(L, "%s must be an integer, got %s", what, luaL_typename(L, idx));
  }
  int ok;
  lua_Integer i = lua_tointegerx(L, idx, &ok);
  if (!ok) {
    lua_pushvalue(L, idx);
    luaL_error(L, "%s must be an integer, got %s (no exact integer value)", what,
               luaL_tolstring(L, -1, NULL));
  }
  return i;
}

/* ---------------------------------------------------------------- value */

enum { V_NIL, V_BOOL, V_INT, V_FLOAT, V_STR };

/* A scalar as a value stores it. */
typedef struct scalar {
  int tag;
  union {
    int b;
    lua_Integer i;
    lua_Number n;
    sk_off s;                   /* an sk_blob, counted */
  } u;
} scalar;

/* A value's state, in the shared segment (every process reaches it). */
typedef struct sk_value {
  sk_shm_obj obj;
  sk_xw w;                      /* its lock (nobody waits on a value) */
  scalar v;
} sk_value;

/* Reads the scalar at idx into *s (allocating a blob for a string); raises
** for other types. Called with no lock held. */
static void scalar_check(lua_State *L, int idx, scalar *s, const char *what) {
  switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL: s->tag = V_NIL; break;
    case LUA_TBOOLEAN:
      s->tag = V_BOOL;
      s->u.b = lua_toboolean(L, idx);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        s->tag = V_INT;
        s->u.i = lua_tointeger(L, idx);
      } else {
        s->tag = V_FLOAT;
        s->u.n = lua_tonumber(L, idx);
      }
      break;
    case LUA_TSTRING: {
      size_t n;
      const char *p = lua_tolstring(L, idx, &n);
      sk_blob *b = sk_blob_bytes(p, n);
      if (b == NULL) sk_error_raise(L, "memory", "not enough memory for a shared string");
      s->tag = V_STR;
      s->u.s = sk_shm_off(b);
      break;
    }
    default:
      luaL_error(L, "%s must be nil, a boolean, a number or a string, got %s "
                 "(use skein.shared.table for structured values)", what, luaL_typename(L, idx));
  }
}

static void scalar_clear(scalar *s) {
  if (s->tag == V_STR) sk_blob_release(sk_shm_ptr(s->u.s));
  s->tag = V_NIL;
}

/* Pushes a scalar, consuming it (its string's reference is released before
** anything can raise). */
static void scalar_push(lua_State *L, scalar *s) {
  switch (s->tag) {
    case V_BOOL: lua_pushboolean(L, s->u.b); break;
    case V_INT: lua_pushinteger(L, s->u.i); break;
    case V_FLOAT: lua_pushnumber(L, s->u.n); break;
    case V_STR:
      s->tag = V_NIL;
      sk_blob_push_string(L, sk_shm_ptr(s->u.s));
      break;
    default: lua_pushnil(L); break;
  }
}

/* Lua's == between an integer and a float: equal when the float holds
** exactly that integer. */
static int int_eq_float(lua_Integer i, lua_Number n) {
  return n >= -0x1p63 && n < 0x1p63 && floor(n) == n && (lua_Integer)n == i;
}

/* 1 when the stored scalar equals the Lua value at idx by Lua's ==
** (1 == 1.0, strings by content). Reads only: safe under the lock. */
static int scalar_equals(lua_State *L, const scalar *s, int idx) {
  switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL: return s->tag == V_NIL;
    case LUA_TBOOLEAN: return s->tag == V_BOOL && !s->u.b == !lua_toboolean(L, idx);
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        return (s->tag == V_INT && s->u.i == i) || (s->tag == V_FLOAT && int_eq_float(i, s->u.n));
      } else {
        lua_Number n = lua_tonumber(L, idx);
        return (s->tag == V_FLOAT && s->u.n == n) || (s->tag == V_INT && int_eq_float(s->u.i, n));
      }
    case LUA_TSTRING: {
      size_t n;
      const char *p = lua_tolstring(L, idx, &n);
      const sk_blob *b = s->tag == V_STR ? sk_shm_ptr(s->u.s) : NULL;
      return b && b->len == n && memcmp(sk_blob_data(b), p, n) == 0;
    }
    default: return 0;
  }
}

static void value_free(sk_shm_obj *o) { scalar_clear(&((sk_value *)o)->v); }

static const sk_shm_type value_shm_type = {NULL, value_free};
static const sk_shm_ops value_shm = {SK_SHM_VALUE, sk_xobj_shared, sk_xobj_shared, sk_xobj_view};
static const sk_objtype value_type = {VALUE_MT, sk_xobj_destroy, &value_shm};

static void push_value(lua_State *L, sk_obj *o) { sk_handle_push(L, o, VALUE_MT); }

static sk_value *check_value(lua_State *L, int idx) {
  return SK_XSTATE(sk_value, sk_handle_check(L, idx, VALUE_MT));
}

/* The value's lock. A holder that died left at most a scalar half
** written: a number is one store, and a string is published by one store
** of its offset after its tag (a torn one reads as nil). */
static void vlock(sk_value *v) { sk_xw_lock(&v->w); }
static void vunlock(sk_value *v) { sk_xw_unlock(&v->w); }

/* Makes the value (its state and this process's view) holding the scalar
** at the light userdata 1; raises when out of memory. */
static int p_value_new(lua_State *L) {
  scalar *s = lua_touserdata(L, 1);
  sk_obj *o = sk_xobj_new(L, &value_type, sizeof(sk_value));
  sk_value *v = SK_XSTATE(sk_value, o);
  sk_xw_init(&v->w);
  v->v = *s;
  s->tag = V_NIL;               /* the value owns its string now */
  push_value(L, o);
  return 1;
}

/* skein.shared.value([init]) -> value holding nil, a boolean, a number or a
** string */
static int l_value_new(lua_State *L) {
  scalar s;
  scalar_check(L, 1, &s, "a shared value");
  /* Made in protected mode: a raise must not leak the string. */
  lua_pushcfunction(L, p_value_new);
  lua_pushlightuserdata(L, &s);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    scalar_clear(&s);
    return lua_error(L);
  }
  return 1;
}

/* Copies the stored scalar out (retaining its string). */
static scalar value_read(sk_value *v) {
  vlock(v);
  scalar s = v->v;
  if (s.tag == V_STR) sk_blob_retain(sk_shm_ptr(s.u.s));
  vunlock(v);
  return s;
}

/* value:get() -> the current value */
static int l_value_get(lua_State *L) {
  scalar s = value_read(check_value(L, 1));
  scalar_push(L, &s);
  return 1;
}

/* value:set(v) */
static int l_value_set(lua_State *L) {
  sk_value *v = check_value(L, 1);
  luaL_checkany(L, 2);
  scalar s;
  scalar_check(L, 2, &s, "the new value");
  vlock(v);
  scalar old = v->v;
  v->v = s;
  vunlock(v);
  scalar_clear(&old);
  return 0;
}

/* value:add(d) -> new value, atomically; Lua's arithmetic (integer + integer
** stays an integer and wraps around, anything with a float is a float). */
static int l_value_add(lua_State *L) {
  sk_value *v = check_value(L, 1);
  if (lua_type(L, 2) != LUA_TNUMBER) luaL_typeerror(L, 2, "number");
  int dint = lua_isinteger(L, 2);
  lua_Integer di = dint ? lua_tointeger(L, 2) : 0;
  lua_Number dn = lua_tonumber(L, 2);
  vlock(v);
  scalar *s = &v->v;
  int tag = s->tag;
  if (tag == V_INT && dint) {
    s->u.i = (lua_Integer)((lua_Unsigned)s->u.i + (lua_Unsigned)di);
  } else if (tag == V_INT) {
    s->tag = V_FLOAT;
    s->u.n = (lua_Number)s->u.i + dn;
  } else if (tag == V_FLOAT) {
    s->u.n += dn;
  }
  scalar now = *s;
  vunlock(v);
  if (tag != V_INT && tag != V_FLOAT) {
    static const char *const names[] = {"nil", "a boolean", "", "", "a string"};
    return sk_error_raise(L, "usage", "cannot add to a shared value holding %s (not a number)", names[tag]);
  }
  scalar_push(L, &now);
  return 1;
}

/* value:cas(old, new) -> true when the value equalled `old` (by ==) and was
** replaced by `new`, false otherwise; atomic. */
static int l_value_cas(lua_State *L) {
  sk_value *v = check_value(L, 1);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  int t = lua_type(L, 2);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING) {
    return luaL_error(L, "cas: the expected value must be nil, a boolean, a number or a "
                      "string, got %s", luaL_typename(L, 2));
  }
  scalar s;
  scalar_check(L, 3, &s, "the new value");
  vlock(v);
  int eq = scalar_equals(L, &v->v, 2);
  scalar old = s;
  if (eq) {
    old = v->v;
    v->v = s;
  }
  vunlock(v);
  scalar_clear(&old);  /* the replaced value, or the unused new one */
  lua_pushboolean(L, eq);
  return 1;
}

static int l_value_tostring(lua_State *L) {
  sk_handle *h = luaL_checkudata(L, 1, VALUE_MT);
  if (h->obj == NULL) {
    lua_pushliteral(L, "skein.shared.value (closed)");
    return 1;
  }
  scalar s = value_read(SK_XSTATE(sk_value, h->obj));
  if (s.tag == V_STR) {
    scalar_push(L, &s);
    size_t n;
    const char *p = lua_tolstring(L, -1, &n);
    lua_pushliteral(L, "skein.shared.value(\"");
    lua_pushlstring(L, p, n > 40 ? 40 : n);
    lua_pushstring(L, n > 40 ? "...\")" : "\")");
    lua_concat(L, 3);
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "skein.shared.value(");
  if (s.tag == V_INT || s.tag == V_FLOAT) add_number(&b, L, s.tag == V_INT, s.u.i, s.u.n);
  else luaL_addstring(&b, s.tag == V_NIL ? "nil" : s.u.b ? "true" : "false");
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}

/* ---------------------------------------------------------------- array */

enum { A_NUMBER, A_INTEGER };

/* One block in the shared segment: the header, then n elements inline.
** Every element is one 8-byte store, so a holder of the lock that died
** left no element torn. */
typedef struct sk_array {
  sk_shm_obj obj;
  sk_xw w;                      /* its lock (nobody waits on an array) */
  int kind;
  size_t n;
  union {
    lua_Integer i;
    lua_Number d;
  } items[];
} sk_array;

#define ARRAY_MAX ((size_t)1 << 34)

static const sk_shm_type array_shm_type = {NULL, NULL};
static const sk_shm_ops array_shm = {SK_SHM_ARRAY, sk_xobj_shared, sk_xobj_shared, sk_xobj_view};
static const sk_objtype array_type = {ARRAY_MT, sk_xobj_destroy, &array_shm};

static void push_array(lua_State *L, sk_obj *o) { sk_handle_push(L, o, ARRAY_MT); }

static sk_array *check_array(lua_State *L, int idx) {
  return SK_XSTATE(sk_array, sk_handle_check(L, idx, ARRAY_MT));
}

/* Reads an element for array `a` from the Lua value at idx. */
static void check_item(lua_State *L, sk_array *a, int idx, lua_Integer *i, lua_Number *d,
                       const char *what) {
  if (a->kind == A_INTEGER) {
    *i = check_exact_integer(L, idx, what);
  } else {
    if (lua_type(L, idx) != LUA_TNUMBER) {
      luaL_error(L, "%s must be a number, got %s", what, luaL_typename(L, idx));
    }
    *d = lua_tonumber(L, idx);
  }
}

/* Reads a 1-based index and returns it 0-based; raises when out of range. */
static size_t check_index(lua_State *L, sk_array *a, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) {
    luaL_error(L, "shared array index must be an integer, got %s", luaL_typename(L, idx));
  }
  int ok;
  lua_Integer i = lua_tointegerx(L, idx, &ok);
  if (!ok) {
    lua_pushvalue(L, idx);
    luaL_error(L, "shared array index must be an integer, got %s", luaL_tolstring(L, -1, NULL));
  }
  if (i < 1 || (lua_Unsigned)i > a->n) {
    luaL_error(L, "shared array index %I out of range (1..%I)", (LUAI_UACINT)i,
               (LUAI_UACINT)a->n);
  }
  return (size_t)(i - 1);
}

static void push_item(lua_State *L, sk_array *a, lua_Integer i, lua_Number d) {
  if (a->kind == A_INTEGER) lua_pushinteger(L, i);
  else lua_pushnumber(L, d);
}

/* skein.shared.array(kind, n | table) -> array of n zeros or of the
** table's elements; kind is "number" (doubles) or "integer" (int64). */
static int l_array_new(lua_State *L) {
  static const char *const kinds[] = {"number", "integer", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  size_t n;
  if (lua_type(L, 2) == LUA_TTABLE) {
    n = lua_rawlen(L, 2);
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer len = check_exact_integer(L, 2, "shared array length");
    luaL_argcheck(L, len >= 0, 2, "length must not be negative");
    n = (size_t)len;
  } else {
    return luaL_typeerror(L, 2, "length or table");
  }
  luaL_argcheck(L, n <= ARRAY_MAX, 2, "array too long");
  /* Validate the elements before allocating, so nothing leaks on a raise. */
  sk_array probe = {.kind = kind};
  if (lua_type(L, 2) == LUA_TTABLE) {
    for (size_t k = 1; k <= n; k++) {
      lua_rawgeti(L, 2, (lua_Integer)k);
      lua_Integer i;
      lua_Number d;
      lua_pushfstring(L, "element %I", (LUAI_UACINT)k);
      check_item(L, &probe, -2, &i, &d, lua_tostring(L, -1));
      lua_pop(L, 2);
    }
  }
  sk_obj *o = sk_xobj_new(L, &array_type, sizeof(sk_array) + n * sizeof probe.items[0]);
  sk_array *a = SK_XSTATE(sk_array, o);
  sk_xw_init(&a->w);
  a->kind = kind;
  a->n = n;
  if (lua_type(L, 2) == LUA_TTABLE) {
    for (size_t k = 0; k < n; k++) {
      lua_rawgeti(L, 2, (lua_Integer)k + 1);
      if (kind == A_INTEGER) a->items[k].i = lua_tointeger(L, -1);
      else a->items[k].d = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
  }
  push_array(L, o);
  return 1;
}

/* array:get(i) / a[i] -> the element */
static int l_array_get(lua_State *L) {
  sk_array *a = check_array(L, 1);
  size_t k = check_index(L, a, 2);
  sk_xw_lock(&a->w);
  lua_Integer i = a->items[k].i;
  lua_Number d = a->items[k].d;
  sk_xw_unlock(&a->w);
  push_item(L, a, i, d);
  return 1;
}

/* array:set(i, v) / a[i] = v */
static int l_array_set(lua_State *L) {
  sk_array *a = check_array(L, 1);
  size_t k = check_index(L, a, 2);
  lua_Integer i = 0;
  lua_Number d = 0;
  check_item(L, a, 3, &i, &d, a->kind == A_INTEGER ? "integer array element" : "number array element");
  sk_xw_lock(&a->w);
  if (a->kind == A_INTEGER) a->items[k].i = i;
  else a->items[k].d = d;
  sk_xw_unlock(&a->w);
  return 0;
}

/* array:add(i, d) -> new element, atomically (integers wrap around) */
static int l_array_add(lua_State *L) {
  sk_array *a = check_array(L, 1);
  size_t k = check_index(L, a, 2);
  lua_Integer i = 0;
  lua_Number d = 0;
  check_item(L, a, 3, &i, &d, "the amount to add");
  sk_xw_lock(&a->w);
  if (a->kind == A_INTEGER) {
    i = a->items[k].i = (lua_Integer)((lua_Unsigned)a->items[k].i + (lua_Unsigned)i);
  } else {
    d = a->items[k].d += d;
  }
  sk_xw_unlock(&a->w);
  push_item(L, a, i, d);
  return 1;
}

/* array:fill(v): every element becomes v */
static int l_array_fill(lua_State *L) {
  sk_array *a = check_array(L, 1);
  lua_Integer i = 0;
  lua_Number d = 0;
  check_item(L, a, 2, &i, &d, "the fill value");
  sk_xw_lock(&a->w);
  for (size_t k = 0; k < a->n; k++) {
    if (a->kind == A_INTEGER) a->items[k].i = i;
    else a->items[k].d = d;
  }
  sk_xw_unlock(&a->w);
  return 0;
}

static int l_array_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_array(L, 1)->n);
  return 1;
}

/* array:totable() -> a plain table with a consistent snapshot */
static int l_array_totable(lua_State *L) {
  sk_array *a = check_array(L, 1);
  size_t n = a->n;
  luaL_argcheck(L, n < INT32_MAX, 1, "array too long for a Lua table");
  /* Copy under the lock into Lua-owned memory (so a raise leaks nothing). */
  void *copy = lua_newuserdatauv(L, n * sizeof a->items[0] + 1, 0);
  lua_createtable(L, (int)n, 0);
  sk_xw_lock(&a->w);
  memcpy(copy, a->items, n * sizeof a->items[0]);
  sk_xw_unlock(&a->w);
  for (size_t k = 0; k < n; k++) {
    lua_Integer i;
    lua_Number d;
    memcpy(&i, (char *)copy + k * 8, 8);
    memcpy(&d, (char *)copy + k * 8, 8);
    push_item(L, a, i, d);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

/* a[i] for integers, methods for names */
static int l_array_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
  }
  return l_array_get(L);
}

static int l_array_newindex(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    return luaL_error(L, "cannot set field '%s' of a shared array (index it with 1..#a)",
                      lua_tostring(L, 2));
  }
  return l_array_set(L);
}

static int l_array_tostring(lua_State *L) {
  sk_handle *h = luaL_checkudata(L, 1, ARRAY_MT);
  if (h->obj == NULL) {
    lua_pushliteral(L, "skein.shared.array (closed)");
    return 1;
  }
  sk_array *a = SK_XSTATE(sk_array, h->obj);
  enum { SHOW = 16 };
  size_t shown = a->n < SHOW ? a->n : SHOW;
  lua_Integer items[SHOW];
  sk_xw_lock(&a->w);
  memcpy(items, a->items, shown * sizeof items[0]);
  sk_xw_unlock(&a->w);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "skein.shared.array(\"%s\", {", a->kind == A_INTEGER ? "integer" : "number");
  luaL_addvalue(&b);
  for (size_t k = 0; k < shown; k++) {
    lua_Number d;
    memcpy(&d, &items[k], sizeof d);
    if (k) luaL_addstring(&b, ", ");
    add_number(&b, L, a->kind == A_INTEGER, items[k], d);
  }
  if (a->n > shown) {
    lua_pushfstring(L, ", ... (%I elements)", (LUAI_UACINT)a->n);
    luaL_addvalue(&b);
  }
  luaL_addstring(&b, "})");
  luaL_pushresult(&b);
  return 1;
}

/* ----------------------------------------------------------------- open */

void sk_shared_open(lua_State *L) {
  static const luaL_Reg value_methods[] = {{"get", l_value_get},
                                           {"set", l_value_set},
                                           {"add", l_value_add},
                                           {"cas", l_value_cas},
                                           {NULL, NULL}};
  static const luaL_Reg array_methods[] = {
      {"get", l_array_get},   {"set", l_array_set},         {"add", l_array_add},
      {"fill", l_array_fill}, {"len", l_array_len},         {"totable", l_array_totable},
      {NULL, NULL}};
  static const luaL_Reg value_meta[] = {{"__eq", sk_handle_eq}, {NULL, NULL}};
  static const luaL_Reg array_meta[] = {{"__eq", sk_handle_eq},
                                        {"__newindex", l_array_newindex},
                                        {"__len", l_array_len},
                                        {NULL, NULL}};
  static const sk_type value = {.name = VALUE_MT, .methods = value_methods,
                                .gc = sk_handle_release, .close = sk_handle_release,
                                .tostring = l_value_tostring, .meta = value_meta,
                                .push = push_value};
  static const sk_type array = {.name = ARRAY_MT, .methods = array_methods,
                                .index = l_array_index, .gc = sk_handle_release,
                                .close = sk_handle_release, .tostring = l_array_tostring,
                                .meta = array_meta, .push = push_array};
  sk_type_register(L, &value);
  sk_type_register(L, &array);
  sk_xobj_register(&value_type);
  sk_xobj_register(&array_type);
  sk_shm_register_type(SK_SHM_VALUE, &value_shm_type);
  sk_shm_register_type(SK_SHM_ARRAY, &array_shm_type);

  lua_newtable(L);  /* skein.shared */
  lua_pushcfunction(L, l_value_new);
  lua_setfield(L, -2, "value");
  lua_pushcfunction(L, l_array_new);
  lua_setfield(L, -2, "array");
  lua_setfield(L, -2, "shared");
}
