/*
** fs.c — skein.fs: whole-file and directory operations that suspend only
** the calling task (or pump the loop where it cannot yield) while the
** engine (host/fsops.c) runs them on libuv's thread pool.
**
** Each call keeps its job in a small userdata (a box) on its own stack
** through the wait. The box's __gc gives the job up (sk_fsjob_release):
** a call that leaves early (cancelled, a skein.timeout scope) leaves a
** running job orphaned, and the job's callback frees it.
*/
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../runtime/host/sk_fs.h"
#include "sk_bind.h"

#define FSJOB_MT "skein.fs.job"
#define FS_NAME "skein.fs"

static int box_gc(lua_State *L) {
  sk_fsjob **b = luaL_checkudata(L, 1, FSJOB_MT);
  if (*b) sk_fsjob_release(*b);
  *b = NULL;
  return 0;
}

static const char *verb(int op) {
  switch (op) {
  case SK_FS_READ: return "read";
  case SK_FS_WRITE: return "write";
  case SK_FS_APPEND: return "append to";
  case SK_FS_LIST: return "list";
  case SK_FS_MKDIR: return "create directory";
  case SK_FS_REMOVE: return "remove";
  default: return "stat";
  }
}

/* Raises kind "io" for a job that failed: `code` the errno name, `path`. */
static int raise_io(lua_State *L, sk_fsjob *j) {
  if (j->op == SK_FS_RENAME) {
    sk_error_push(L, "io", "cannot rename '%s' to '%s': %s", j->path, j->path2,
                  uv_strerror(j->err));
  } else {
    sk_error_push(L, "io", "cannot %s '%s': %s", verb(j->op), j->path, uv_strerror(j->err));
  }
  lua_pushstring(L, uv_err_name(j->err));
  lua_setfield(L, -2, "code");
  lua_pushstring(L, j->path);
  lua_setfield(L, -2, "path");
  return lua_error(L);
}

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  default: return "other";
  }
}

static int fs_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  (void)expired;
  sk_fsjob *j = obj;
  if (!j->done) return SK_WAIT_MORE;
  if (j->err == UV_ECANCELED) return sk_error_raise(L, "cancelled", "fs: job cancelled");
  if (j->err) return raise_io(L, j);
  switch (j->op) {
  case SK_FS_READ:
    lua_pushlstring(L, j->data ? j->data : "", j->len);
    free(j->data);      /* the box may stay uncollected a while: drop the bytes now */
    j->data = NULL;
    j->len = 0;
    return 1;
  case SK_FS_EXISTS: lua_pushboolean(L, j->exists); return 1;
  case SK_FS_STAT:
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)j->st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushnumber(L, (lua_Number)j->st.st_mtim.tv_sec + j->st.st_mtim.tv_nsec / 1e9);
    lua_setfield(L, -2, "mtime");
    lua_pushstring(L, type_name(j->st.st_mode));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(j->st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    return 1;
  case SK_FS_LIST:
    luaL_checkstack(L, 2, "fs.list");
    lua_createtable(L, (int)j->nnames, 0);
    for (size_t i = 0; i < j->nnames; i++) {
      lua_pushstring(L, j->names[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
  default: return 0;
  }
}

static int fs_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_fsjob *j = obj;
  if (j->done) return 1;
  j->waiter = c;
  return 0;
}

static int fs_unlink(void *obj, sk_ctx *c) {
  (void)c;
  ((sk_fsjob *)obj)->waiter = NULL;
  return 0;
}

static const sk_source fs_source = {
    .name = FS_NAME, .attempt = fs_attempt, .link = fs_link, .unlink = fs_unlink};

/* Queues a job and waits for it. Arguments are checked by the caller; the
** stack is cleared and the box pushed, so nothing else is kept. */
static int run_job(lua_State *L, int op, const char *path, const char *path2,
                   const char *data, size_t len, int opt) {
  sk_fsjob **b = lua_newuserdatauv(L, sizeof *b, 0);
  *b = NULL;
  luaL_setmetatable(L, FSJOB_MT);
  sk_fsjob *j = sk_fsjob_new(op, path, path2, data, len, opt);
  if (j == NULL) return sk_error_raise(L, "memory", "fs: out of memory");
  *b = j;
  lua_replace(L, 1);
  lua_settop(L, 1);
  sk_fsjob_start(j, sk_worker_of(L)->sched.loop);
  return sk_wait_on(L, &fs_source, j, SK_NO_DEADLINE, 0);
}

static int opt_flag(lua_State *L, int arg, const char *name) {
  if (lua_isnoneornil(L, arg)) return 0;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_getfield(L, arg, name);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int l_read(lua_State *L) {
  return run_job(L, SK_FS_READ, luaL_checkstring(L, 1), NULL, NULL, 0, 0);
}
static int write_common(lua_State *L, int op) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  return run_job(L, op, path, NULL, data, len, 0);
}
static int l_write(lua_State *L) { return write_common(L, SK_FS_WRITE); }
static int l_append(lua_State *L) { return write_common(L, SK_FS_APPEND); }
static int l_stat(lua_State *L) {
  return run_job(L, SK_FS_STAT, luaL_checkstring(L, 1), NULL, NULL, 0, 0);
}
static int l_exists(lua_State *L) {
  return run_job(L, SK_FS_EXISTS, luaL_checkstring(L, 1), NULL, NULL, 0, 0);
}
static int l_list(lua_State *L) {
  return run_job(L, SK_FS_LIST, luaL_checkstring(L, 1), NULL, NULL, 0, 0);
}
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  return run_job(L, SK_FS_MKDIR, path, NULL, NULL, 0, opt_flag(L, 2, "parents"));
}
static int l_remove(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  return run_job(L, SK_FS_REMOVE, path, NULL, NULL, 0, opt_flag(L, 2, "recursive"));
}
static int l_rename(lua_State *L) {
  const char *from = luaL_checkstring(L, 1);
  const char *to = luaL_checkstring(L, 2);
  return run_job(L, SK_FS_RENAME, from, to, NULL, 0, 0);
}

void sk_fs_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"read", l_read},     {"write", l_write}, {"append", l_append}, {"stat", l_stat},
      {"exists", l_exists}, {"list", l_list},   {"mkdir", l_mkdir},   {"remove", l_remove},
      {"rename", l_rename}, {NULL, NULL}};
  if (luaL_newmetatable(L, FSJOB_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "fs");
}
