/*
** qitem.c — what a queue carries (sk_chan.h): items, the copies of Lua
** values that sit in a queue, and the stamped handles of queues and pipe
** ends.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_qstore.h"

/* ----------------------------------------------------------------- items */

void sk_item_free(sk_item *it) {
  if (it->kind == QI_LSTR) {
    free(it->u.buf);
  } else if (it->kind == QI_BUF) {
    sk_buf_free(it->u.buf);
    free(it->u.buf);
  }
  it->kind = QI_NIL;
}

/* Turns the marshaller's "item[1].x" paths (the first of its values) into
** "item.x", in both the error's path and its message. */
static void fix_path(lua_State *L) {
  if (!lua_istable(L, -1)) return;
  if (lua_getfield(L, -1, "path") != LUA_TSTRING) {
    lua_pop(L, 1);
    return;
  }
  size_t n;
  const char *p = lua_tolstring(L, -1, &n);
  if (n < 7 || memcmp(p, "item[1]", 7) != 0) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -2, "message");                       /* err, path, msg */
  const char *msg = lua_tostring(L, -1);
  const char *rest = msg && strncmp(msg, p, n) == 0 ? msg + n : NULL;
  lua_pushfstring(L, "item%s", p + 7);                  /* the new path */
  if (rest) {
    lua_pushfstring(L, "%s%s", lua_tostring(L, -1), rest);
    lua_setfield(L, -5, "message");
  }
  lua_setfield(L, -4, "path");
  lua_pop(L, 2);
}

int sk_item_encode_value(lua_State *L, int idx, sk_item *it, sk_queue *q) {
  it->len = 0;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: it->kind = QI_NIL; return 0;
    case LUA_TBOOLEAN: it->kind = lua_toboolean(L, idx) ? QI_TRUE : QI_FALSE; return 0;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        it->kind = QI_INT;
        it->u.i = lua_tointeger(L, idx);
      } else {
        it->kind = QI_FLOAT;
        it->u.n = lua_tonumber(L, idx);
      }
      return 0;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      if (n <= SK_ITEM_INLINE) {
        it->kind = QI_SSTR;
        it->len = (uint32_t)n;
        memcpy(it->u.s, s, n);
        return 0;
      }
      sk_buf *b = n < SIZE_MAX - sizeof *b ? malloc(sizeof *b + n) : NULL;
      if (b == NULL) break;
      memset(b, 0, sizeof *b);
      b->data = (char *)(b + 1);
      memcpy(b->data, s, n);
      b->len = b->cap = n;
      it->kind = QI_LSTR;
      it->u.buf = b;
      return 0;
    }
    default: {
      sk_buf *b = malloc(sizeof *b);
      if (b == NULL) break;
      int was = sk_marshal_xproc;
      if (q && sk_queue_crossed(q)) sk_marshal_xproc = 1;
      int rc = sk_marshal_encode(L, idx, 1, b, "item");
      sk_marshal_xproc = was;
      if (rc != 0) {
        free(b);
        fix_path(L);
        return -1;
      }
      it->kind = QI_BUF;
      it->u.buf = b;
      return 0;
    }
  }
  it->kind = QI_NIL;
  lua_pushliteral(L, "not enough memory for a queue item");
  return -1;
}

static int p_push_lstr(lua_State *L) {
  sk_buf *b = lua_touserdata(L, 1);
  lua_pushlstring(L, b->data, b->len);
  return 1;
}

void sk_item_push_value(lua_State *L, sk_item *it) {
  sk_buf *b;
  switch (it->kind) {
    case QI_NIL: lua_pushnil(L); break;
    case QI_FALSE: lua_pushboolean(L, 0); break;
    case QI_TRUE: lua_pushboolean(L, 1); break;
    case QI_INT: lua_pushinteger(L, it->u.i); break;
    case QI_FLOAT: lua_pushnumber(L, it->u.n); break;
    case QI_SSTR: lua_pushlstring(L, it->u.s, it->len); break;
    case QI_LSTR: {
      /* Copy under protection: a memory error must not leak the block. */
      b = it->u.buf;
      it->kind = QI_NIL;
      lua_pushcfunction(L, p_push_lstr);
      lua_pushlightuserdata(L, b);
      int st = lua_pcall(L, 1, 1, 0);
      free(b);
      if (st != LUA_OK) lua_error(L);
      break;
    }
    default: {
      b = it->u.buf;
      it->kind = QI_NIL;
      int top = lua_gettop(L);
      int n = sk_marshal_decode(L, b->data, b->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
      sk_buf_free(b);
      free(b);
      if (n < 0) lua_error(L);
      lua_settop(L, top + 1);
      break;
    }
  }
}

/* ------------------------------------------------------- stamped handles */

uintptr_t sk_stamp_key;
static uv_once_t stamp_once = UV_ONCE_INIT;

static void stamp_init(void) {
  uint64_t k;
  if (uv_random(NULL, NULL, &k, sizeof k, 0, NULL) != 0) k = uv_hrtime() * 0x9e3779b97f4a7c15u;
  sk_stamp_key = (uintptr_t)(k | 1);
}

void sk_stamped_push(lua_State *L, sk_obj *o, const char *mt) {
  uv_once(&stamp_once, stamp_init);
  sk_stamped *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->obj = o;
  h->stamp = (uintptr_t)h ^ sk_stamp_key;
  luaL_setmetatable(L, mt);
}
