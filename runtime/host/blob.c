/*
** blob.c — immutable, reference-counted byte blocks in the shared segment
** (sk_blob.h): what the shared-state objects (lua/shared.c,
** lua/shared_table.c) store their variable-size data in.
*/
#include <stdlib.h>
#include <string.h>

#include "sk_blob.h"

static sk_blob *blob_alloc(size_t nobjs, size_t len) {
  if (len > SIZE_MAX / 2 || nobjs > UINT32_MAX || sk_shm_base(1) == NULL) return NULL;
  sk_blob *b = sk_shm_alloc(sizeof *b + nobjs * sizeof(sk_off) + len);
  if (b == NULL) return NULL;
  __atomic_store_n(&b->refs, 1, __ATOMIC_RELAXED);
  b->nobjs = 0;
  b->len = len;
  return b;
}

sk_blob *sk_blob_bytes(const char *data, size_t len) {
  sk_blob *b = blob_alloc(0, len);
  if (b) memcpy((char *)sk_blob_data(b), data, len);
  return b;
}

/* The objects a value mentions: those that can live in the segment move
** there and the blob holds a reference to each; the others stay in this
** process, pinned, and are reached by handle. */
sk_blob *sk_blob_from_buf(sk_buf *buf) {
  size_t n = 0;
  for (size_t i = 0; i < buf->nobjs; i++) {
    const sk_shm_ops *ops = buf->objs[i]->type->shm;
    if (ops && ops->share(buf->objs[i])) n++;
  }
  sk_blob *b = blob_alloc(n, buf->len);
  if (b) {
    for (size_t i = 0; i < buf->nobjs; i++) {
      sk_obj *o = buf->objs[i];
      sk_shm_obj *so = o->type->shm ? o->type->shm->shared(o) : NULL;
      if (so && b->nobjs < n) {
        sk_shm_obj_retain(so);
        b->objs[b->nobjs++] = sk_shm_off(so);
      } else {
        sk_shm_pin(o);
      }
    }
    memcpy((char *)sk_blob_data(b), buf->data, buf->len);
  }
  sk_buf_free(buf);
  return b;
}

void sk_blob_retain(sk_blob *b) { __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED); }

void sk_blob_release(sk_blob *b) {
  if (b == NULL || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  for (uint32_t i = 0; i < b->nobjs; i++) sk_shm_obj_release(sk_shm_ptr(b->objs[i]));
  sk_shm_free(b);
}

int sk_blob_encode(lua_State *L, int idx, const char *name, sk_blob **out) {
  sk_buf buf;
  idx = lua_absindex(L, idx);
  lua_pushfstring(L, "=%s", name);  /* "=name": the value itself is `name` */
  int rc = sk_marshal_encode_xproc(L, idx, 1, &buf, lua_tostring(L, -1));
  lua_remove(L, rc == 0 ? -1 : -2);
  if (rc != 0) return -1;
  *out = sk_blob_from_buf(&buf);
  if (*out == NULL) {
    sk_error_push(L, "marshal", "%s: not enough memory to store the value", name);
    return -1;
  }
  return 0;
}

void sk_blob_push_value(lua_State *L, sk_blob *b) {
  int n = sk_marshal_decode(L, sk_blob_data(b), b->len, SK_MARSHAL_CODE | SK_MARSHAL_OBJECTS);
  sk_blob_release(b);
  if (n < 0) lua_error(L);
  if (n != 1) luaL_error(L, "a shared entry holds %d values instead of 1", n);
}

static int p_push_bytes(lua_State *L) {
  const sk_blob *b = lua_touserdata(L, 1);
  lua_pushlstring(L, sk_blob_data(b), b->len);
  return 1;
}

void sk_blob_push_string(lua_State *L, sk_blob *b) {
  int ok = lua_checkstack(L, 3);
  if (ok) {
    lua_pushcfunction(L, p_push_bytes);
    lua_pushlightuserdata(L, b);
    ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
  }
  size_t len = b->len;
  sk_blob_release(b);
  if (!ok) sk_error_raise(L, "memory", "not enough memory for a string of %I bytes", (LUAI_UACINT)len);
}

