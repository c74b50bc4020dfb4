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

#include <fcntl.h>

#include "../runtime/core/sk_rbuf.h"
#include "../runtime/host/sk_fs.h"
#include "sk_bind.h"

#define FSJOB_MT "skein.fs.job"
#define FS_NAME "skein.fs"
#define FILE_MT "skein.File"

static int push_file(lua_State *L, sk_fsjob *j);
static int l_file_read(lua_State *L);

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
  case SK_FS_OPEN: return "open";
  default: return "stat";
  }
}

/* Raises kind "io" for a job that failed: `code` the errno name, `path`. */
static int raise_io(lua_State *L, sk_fsjob *j) {
  if (j->op == SK_FS_RENAME) {
    return sk_io_error_raise(L, j->err, "path", j->path, "cannot rename '%s' to '%s'", j->path,
                             j->path2);
  }
  return sk_io_error_raise(L, j->err, "path", j->path, "cannot %s '%s'", verb(j->op), j->path);
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
  case SK_FS_OPEN: return push_file(L, j);
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
    .name = FS_NAME, .what = "fs", .attempt = fs_attempt, .link = fs_link, .unlink = fs_unlink};

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


/* ------------------------------------------------------------ files
**
** A file is a userdata holding its fd, the offset of its next read or
** write (`pos`: reads and writes go through pread/pwrite at offsets of
** its own, so a job left by a cancelled call moves nothing) and a read
** buffer (core/rbuf.c). At most one job runs for a file; a call finds a
** job left by a cancelled one and waits for it first (a read's bytes are
** kept). Closing a file while a job uses its fd hands the fd to the job,
** whose callback closes it. */

enum { W_READ, W_WRITE, W_SEEK };

typedef struct sk_file {
  int fd;                   /* -1 once closed */
  int append, readable, writable, eof;
  int64_t pos;              /* the offset just past the buffered bytes */
  sk_rbuf rb;
  sk_fsjob *job;            /* the job in flight or finished, not yet taken in */
  int want;                 /* what the current call does (W_*) */
  sk_rfmt fmt;              /* W_READ */
  char *wdata;              /* W_WRITE: bytes not yet handed to a job */
  size_t wlen;
  int wstarted, wdone;      /* this call's write job was started / is done */
  int64_t seek_to;          /* W_SEEK */
  char *path;
} sk_file;

static sk_file *check_file(lua_State *L, int idx) {
  sk_file *f = luaL_checkudata(L, idx, FILE_MT);
  if (f->fd < 0) sk_error_raise(L, "closed", "file '%s' is closed", f->path ? f->path : "?");
  return f;
}

/* Closes the fd now, or hands it to the job that still uses it. */
static void file_close(sk_file *f) {
  if (f->fd < 0) return;
  if (f->job && !f->job->done) {
    f->job->close_fd = 1;
    sk_fsjob_release(f->job);
  } else {
    if (f->job) sk_fsjob_release(f->job);
    uv_fs_t r;
    uv_fs_close(NULL, &r, f->fd, NULL);
    uv_fs_req_cleanup(&r);
  }
  f->job = NULL;
  f->fd = -1;
  sk_rbuf_free(&f->rb);
  free(f->wdata);
  f->wdata = NULL;
}

static int file_gc(lua_State *L) {
  sk_file *f = luaL_checkudata(L, 1, FILE_MT);
  file_close(f);
  free(f->path);
  f->path = NULL;
  return 0;
}

static int l_file_close(lua_State *L) {
  sk_file *f = luaL_checkudata(L, 1, FILE_MT);
  if (f->job && f->job->waiter) {
    return sk_error_raise(L, "usage", "file '%s' is in use by another task", f->path);
  }
  file_close(f);
  return 0;
}

static int l_file_tostring(lua_State *L) {
  sk_file *f = luaL_checkudata(L, 1, FILE_MT);
  lua_pushfstring(L, "skein.File (%s%s)", f->path ? f->path : "?", f->fd < 0 ? ", closed" : "");
  return 1;
}

static int push_file(lua_State *L, sk_fsjob *j) {
  sk_file *f = lua_newuserdatauv(L, sizeof *f, 0);
  memset(f, 0, sizeof *f);
  f->fd = -1;
  luaL_setmetatable(L, FILE_MT);
  f->path = malloc(strlen(j->path) + 1);
  if (f->path == NULL) return sk_error_raise(L, "memory", "fs.open: out of memory");
  strcpy(f->path, j->path);
  f->fd = j->fd;            /* the file owns it now: its __gc closes it */
  j->fd = -1;
  f->readable = (j->oflags & O_ACCMODE) != O_WRONLY;
  f->writable = (j->oflags & O_ACCMODE) != O_RDONLY;
  f->append = (j->oflags & O_APPEND) != 0;
  if (j->opt) {              /* fs.lines: the iterator, then the file to close */
    lua_pushvalue(L, -1);
    lua_pushstring(L, "l");
    lua_pushcclosure(L, l_file_read, 2);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_rotate(L, -4, -1);   /* iterator, nil, nil, file */
    return 4;
  }
  return 1;
}

/* Starts a job for `f`; raises kind "memory" (holding nothing) on failure. */
static void file_start(lua_State *L, sk_file *f, int op, char *data, size_t len, int64_t off) {
  sk_fsjob *j = sk_fsjob_new(op, f->path, NULL, NULL, 0, 0);
  if (j == NULL) {
    free(data);
    sk_error_raise(L, "memory", "fs: out of memory");
  }
  j->fd = f->fd;
  j->off = off;
  j->data = data;
  j->len = len;
  f->job = j;
  sk_fsjob_start(j, sk_worker_of(L)->sched.loop);
}

/* Takes in a finished job; raises its error when it failed. */
static void file_absorb(lua_State *L, sk_file *f) {
  sk_fsjob *j = f->job;
  f->job = NULL;
  if (j->err == 0 && j->op == SK_FS_PREAD) {
    size_t room;
    char *dst = sk_rbuf_space(&f->rb, j->len ? j->len : 1, &room);
    if (dst == NULL) {
      sk_fsjob_release(j);
      sk_error_raise(L, "memory", "fs: out of memory");
    }
    memcpy(dst, j->data, j->len);
    sk_rbuf_commit(&f->rb, j->len);
    f->pos += (int64_t)j->len;
    f->eof = j->len == 0;
  } else if (j->err == 0 && j->op == SK_FS_PWRITE) {
    if (!f->append) f->pos += (int64_t)j->len;
    if (f->want == W_WRITE && f->wstarted) f->wdone = 1;   /* not a cancelled call's */
    f->wstarted = 0;
  }
  if (j->err != 0 && j->err != UV_ECANCELED) {
    int err = j->err, op = j->op == SK_FS_PREAD ? SK_FS_READ : SK_FS_WRITE;
    sk_fsjob_release(j);
    f->wdone = 0;
    sk_io_error_raise(L, err, "path", f->path, "cannot %s '%s'", verb(op), f->path);
  }
  sk_fsjob_release(j);
}

static int file_attempt(lua_State *L, void *obj, int round, int expired) {
  (void)round;
  (void)expired;
  sk_file *f = obj;
  for (;;) {
    if (f->job) {
      if (!f->job->done) return SK_WAIT_MORE;
      file_absorb(L, f);
    }
    if (f->want == W_READ) {
      const char *out;
      size_t len;
      if (sk_rbuf_take(&f->rb, &f->fmt, f->eof, &out, &len)) {
        if (out) lua_pushlstring(L, out, len);
        else lua_pushnil(L);
        f->eof = 0;          /* a file may grow: look again next time */
        return 1;
      }
      size_t have = sk_rbuf_len(&f->rb), want = 64 * 1024;
      if (f->fmt.kind == SK_RF_N && f->fmt.n > have && f->fmt.n - have > want) {
        want = f->fmt.n - have;
        if (want > ((size_t)1 << 30)) want = (size_t)1 << 30;   /* one job reads at most 1 GiB */
      }
      file_start(L, f, SK_FS_PREAD, NULL, want, f->pos);
    } else if (f->want == W_WRITE) {
      if (f->wdone) {
        f->wdone = 0;
        lua_settop(L, 1);
        return 1;            /* the file, as io's write returns it */
      }
      int64_t at = f->append ? -1 : f->pos - (int64_t)sk_rbuf_len(&f->rb);
      if (!f->append) f->pos = at;
      sk_rbuf_clear(&f->rb);
      f->eof = 0;
      char *d = f->wdata;
      f->wdata = NULL;
      f->wstarted = 1;
      file_start(L, f, SK_FS_PWRITE, d, f->wlen, at);
    } else {
      sk_rbuf_clear(&f->rb);
      f->eof = 0;
      f->pos = f->seek_to;
      lua_pushinteger(L, (lua_Integer)f->pos);
      return 1;
    }
  }
}

static int file_link(void *obj, sk_ctx *c, int round) {
  (void)round;
  sk_file *f = obj;
  if (f->job == NULL || f->job->done) return 1;
  f->job->waiter = c;
  return 0;
}

static int file_unlink(void *obj, sk_ctx *c) {
  (void)c;
  sk_file *f = obj;
  if (f->job) f->job->waiter = NULL;
  return 0;
}

/* The file at index 1 again after a wake; NULL when another task closed it. */
static void *file_check(lua_State *L) {
  sk_file *f = lua_touserdata(L, 1);
  return f && f->fd >= 0 ? f : NULL;
}

static const sk_source file_source = {.name = FILE_MT, .what = "file", .attempt = file_attempt,
                                      .link = file_link, .unlink = file_unlink,
                                      .check = file_check};

static sk_file *file_for_call(lua_State *L, int idx) {
  sk_file *f = check_file(L, idx);
  if (f->job && f->job->waiter) {
    sk_error_raise(L, "usage", "file '%s' is in use by another task", f->path);
  }
  return f;
}

/* file:read([fmt]) -> string, or nil at the end; the formats of streams:
** a count, "l", "L", "a". Also the iterator of fs.lines (upvalues: the
** file and "l"). */
static int l_file_read(lua_State *L) {
  if (lua_type(L, lua_upvalueindex(1)) != LUA_TNONE) {
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
  }
  sk_file *f = file_for_call(L, 1);
  if (!f->readable) return sk_error_raise(L, "usage", "file '%s' is not open for reading", f->path);
  sk_rfmt fmt;
  if (lua_isnoneornil(L, 2)) {
    sk_rfmt_parse("l", &fmt);
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "byte count must not be negative");
    fmt.kind = SK_RF_N;
    fmt.keep_eol = 0;
    fmt.n = (size_t)n;
  } else if (sk_rfmt_parse(luaL_checkstring(L, 2), &fmt) != 0) {
    return luaL_argerror(L, 2, "invalid format (expected a count, \"l\", \"L\" or \"a\")");
  }
  f->fmt = fmt;
  f->want = W_READ;
  lua_settop(L, 1);
  return sk_wait_on(L, &file_source, f, SK_NO_DEADLINE, 0);
}

/* file:write(...) -> file; strings and numbers, written in one job. */
static int l_file_write(lua_State *L) {
  sk_file *f = file_for_call(L, 1);
  if (!f->writable) return sk_error_raise(L, "usage", "file '%s' is not open for writing", f->path);
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++) luaL_checklstring(L, i, NULL);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 2; i <= n; i++) {
    lua_pushvalue(L, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  char *d = malloc(len ? len : 1);
  if (d == NULL) return sk_error_raise(L, "memory", "fs: out of memory");
  memcpy(d, s, len);
  free(f->wdata);
  f->wdata = d;
  f->wlen = len;
  f->wdone = f->wstarted = 0;
  f->want = W_WRITE;
  lua_settop(L, 1);
  return sk_wait_on(L, &file_source, f, SK_NO_DEADLINE, 0);
}

/* file:seek([whence [, offset]]) -> the new position, as io's seek. */
static int l_file_seek(lua_State *L) {
  static const char *const names[] = {"set", "cur", "end", NULL};
  sk_file *f = file_for_call(L, 1);
  int whence = luaL_checkoption(L, 2, "cur", names);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  int64_t base = 0;
  if (whence == 1) {
    base = f->pos - (int64_t)sk_rbuf_len(&f->rb);
  } else if (whence == 2) {
    uv_fs_t r;                /* fstat answers from the inode: it does not block */
    int rc = uv_fs_fstat(NULL, &r, f->fd, NULL);
    base = (int64_t)r.statbuf.st_size;
    uv_fs_req_cleanup(&r);
    if (rc < 0) {
      return sk_io_error_raise(L, rc, "path", f->path, "cannot seek '%s'", f->path);
    }
  }
  luaL_argcheck(L, base + off >= 0, 3, "position would be negative");
  f->seek_to = base + off;
  f->want = W_SEEK;
  lua_settop(L, 1);
  return sk_wait_on(L, &file_source, f, SK_NO_DEADLINE, 0);
}

static int open_flags(const char *mode) {
  int plus = strchr(mode, '+') != NULL;
  switch (mode[0]) {
  case 'r': return plus ? O_RDWR : O_RDONLY;
  case 'w': return (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC;
  case 'a': return (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND;
  default: return -1;
  }
}

static int open_common(lua_State *L, const char *path, const char *mode, int lines) {
  int fl = open_flags(mode);
  size_t ml = strlen(mode);
  if (fl < 0 || strspn(mode + 1, "+b") != ml - 1) {
    return luaL_argerror(L, 2, "invalid mode (expected r, w or a, with + or b)");
  }
  sk_fsjob **b = lua_newuserdatauv(L, sizeof *b, 0);
  *b = NULL;
  luaL_setmetatable(L, FSJOB_MT);
  sk_fsjob *j = sk_fsjob_new(SK_FS_OPEN, path, NULL, NULL, 0, lines);
  if (j == NULL) return sk_error_raise(L, "memory", "fs: out of memory");
  j->oflags = fl | O_CLOEXEC;
  *b = j;
  lua_replace(L, 1);
  lua_settop(L, 1);
  sk_fsjob_start(j, sk_worker_of(L)->sched.loop);
  return sk_wait_on(L, &fs_source, j, SK_NO_DEADLINE, 0);
}

/* skein.fs.open(path, [mode]) -> file */
static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  return open_common(L, path, luaL_optstring(L, 2, "r"), 0);
}

/* skein.fs.lines(path) -> iterator, nil, nil, file (closed by the for loop) */
static int l_lines(lua_State *L) {
  return open_common(L, luaL_checkstring(L, 1), "r", 1);
}

void sk_fs_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"read", l_read},     {"write", l_write}, {"append", l_append}, {"stat", l_stat},
      {"exists", l_exists}, {"list", l_list},   {"mkdir", l_mkdir},   {"remove", l_remove},
      {"rename", l_rename}, {"open", l_open},     {"lines", l_lines},   {NULL, NULL}};
  static const luaL_Reg file_methods[] = {
      {"read", l_file_read}, {"write", l_file_write}, {"seek", l_file_seek},
      {"close", l_file_close}, {NULL, NULL}};
  static const sk_type file_type = {.name = FILE_MT, .methods = file_methods,
                                    .gc = file_gc, .close = file_gc,
                                    .tostring = l_file_tostring};
  sk_type_register(L, &file_type);
  if (luaL_newmetatable(L, FSJOB_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "fs");
}
