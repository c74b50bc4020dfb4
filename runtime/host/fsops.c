/*
** fsops.c — the engine of skein.fs (sk_fs.h). Each job runs one whole
** operation (read a file, remove a tree) in a pool thread with libuv's
** synchronous fs calls, then its after-work callback, on the loop's
** thread, marks it done and wakes the waiting context. The callback calls
** no Lua; an orphaned job (its waiter left) is freed there.
*/
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sk_fs.h"

static int do_close(uv_file fd);

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

sk_fsjob *sk_fsjob_new(int op, const char *path, const char *path2, const char *data,
                       size_t len, int opt) {
  sk_fsjob *j = calloc(1, sizeof *j);
  if (j == NULL) return NULL;
  j->op = op;
  j->opt = opt;
  j->path = dup_n(path, strlen(path));
  j->path2 = path2 ? dup_n(path2, strlen(path2)) : NULL;
  j->data = data ? dup_n(data, len) : NULL;
  j->len = data ? len : 0;
  if (j->path == NULL || (path2 && j->path2 == NULL) || (data && j->data == NULL)) {
    sk_fsjob_free(j);
    return NULL;
  }
  return j;
}

void sk_fsjob_free(sk_fsjob *j) {
  if (j->op == SK_FS_OPEN && j->err == 0 && j->fd >= 0) do_close(j->fd);  /* never taken */
  free(j->path);
  free(j->path2);
  free(j->data);
  for (size_t i = 0; i < j->nnames; i++) free(j->names[i]);
  free(j->names);
  free(j);
}

/* ------------------------------------------------------------ the work */

/* Each helper returns 0 or a libuv error code; none leaves an fd open. */

static int do_close(uv_file fd) {
  uv_fs_t r;
  int rc = uv_fs_close(NULL, &r, fd, NULL);
  uv_fs_req_cleanup(&r);
  return rc;
}

static int do_read(sk_fsjob *j) {
  uv_fs_t r;
  int fd = uv_fs_open(NULL, &r, j->path, O_RDONLY, 0, NULL);
  uv_fs_req_cleanup(&r);
  if (fd < 0) return fd;
  size_t cap = 64 * 1024, len = 0;
  int rc = uv_fs_fstat(NULL, &r, fd, NULL);
  if (rc == 0 && r.statbuf.st_size + 1 > cap) cap = (size_t)r.statbuf.st_size + 1;
  uv_fs_req_cleanup(&r);
  char *buf = malloc(cap);
  if (buf == NULL) rc = UV_ENOMEM;
  while (rc >= 0) {
    if (len == cap) {
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        rc = UV_ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    uv_buf_t b = uv_buf_init(buf + len, (unsigned)(cap - len));
    rc = uv_fs_read(NULL, &r, fd, &b, 1, -1, NULL);
    uv_fs_req_cleanup(&r);
    if (rc == 0) break;
    if (rc > 0) len += (size_t)rc;
  }
  do_close(fd);
  if (rc < 0) {
    free(buf);
    return rc;
  }
  j->data = buf;
  j->len = len;
  return 0;
}

static int do_write(sk_fsjob *j, int append) {
  uv_fs_t r;
  int flags = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
  int fd = uv_fs_open(NULL, &r, j->path, flags, 0666, NULL);
  uv_fs_req_cleanup(&r);
  if (fd < 0) return fd;
  size_t off = 0;
  int rc = 0;
  while (off < j->len) {
    uv_buf_t b = uv_buf_init(j->data + off, (unsigned)(j->len - off > (1u << 30)
                                                          ? (1u << 30) : j->len - off));
    rc = uv_fs_write(NULL, &r, fd, &b, 1, -1, NULL);
    uv_fs_req_cleanup(&r);
    if (rc < 0) break;
    off += (size_t)rc;
    rc = 0;
  }
  int crc = do_close(fd);
  return rc < 0 ? rc : crc < 0 ? crc : 0;
}

static int do_stat(const char *path, uv_stat_t *st, int follow) {
  uv_fs_t r;
  int rc = follow ? uv_fs_stat(NULL, &r, path, NULL) : uv_fs_lstat(NULL, &r, path, NULL);
  if (rc == 0) *st = r.statbuf;
  uv_fs_req_cleanup(&r);
  return rc;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in `dir`, sorted, into names and n (owned by the caller). */
static int do_list(const char *dir, char ***names, size_t *n) {
  uv_fs_t r;
  int rc = uv_fs_scandir(NULL, &r, dir, 0, NULL);
  *names = NULL;
  *n = 0;
  if (rc < 0) {
    uv_fs_req_cleanup(&r);
    return rc;
  }
  size_t cap = rc > 0 ? (size_t)rc : 1;
  char **v = malloc(cap * sizeof *v);
  uv_dirent_t ent;
  size_t k = 0;
  int out = v ? 0 : UV_ENOMEM;
  while (uv_fs_scandir_next(&r, &ent) != UV_EOF) {
    if (out != 0) continue;
    if (k == cap) {
      char **nv = realloc(v, cap * 2 * sizeof *v);
      if (nv == NULL) {
        out = UV_ENOMEM;
        continue;
      }
      v = nv;
      cap *= 2;
    }
    if ((v[k] = dup_n(ent.name, strlen(ent.name))) == NULL) out = UV_ENOMEM;
    else k++;
  }
  uv_fs_req_cleanup(&r);
  if (out != 0) {
    for (size_t i = 0; i < k; i++) free(v[i]);
    free(v);
    return out;
  }
  qsort(v, k, sizeof *v, cmp_names);
  *names = v;
  *n = k;
  return 0;
}

static int do_mkdir_one(const char *path, int exist_ok) {
  uv_fs_t r;
  int rc = uv_fs_mkdir(NULL, &r, path, 0777, NULL);
  uv_fs_req_cleanup(&r);
  if (rc == UV_EEXIST && exist_ok) {
    uv_stat_t st;
    if (do_stat(path, &st, 1) == 0 && S_ISDIR(st.st_mode)) return 0;
  }
  return rc;
}

static int do_mkdir(sk_fsjob *j) {
  if (!j->opt) return do_mkdir_one(j->path, 0);
  char *p = j->path;
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    int rc = do_mkdir_one(p, 1);
    *s = '/';
    if (rc < 0) return rc;
  }
  return do_mkdir_one(p, 1);
}

static int do_remove(const char *path, int recursive) {
  uv_fs_t r;
  uv_stat_t st;
  int rc = do_stat(path, &st, 0);
  if (rc < 0) return rc;
  if (!S_ISDIR(st.st_mode)) {
    rc = uv_fs_unlink(NULL, &r, path, NULL);
    uv_fs_req_cleanup(&r);
    return rc;
  }
  if (recursive) {
    char **names;
    size_t n;
    if ((rc = do_list(path, &names, &n)) < 0) return rc;
    size_t plen = strlen(path);
    for (size_t i = 0; i < n; i++) {
      size_t nlen = strlen(names[i]);
      char *sub = rc == 0 ? malloc(plen + nlen + 2) : NULL;
      if (rc == 0 && sub == NULL) rc = UV_ENOMEM;
      if (sub) {
        memcpy(sub, path, plen);
        sub[plen] = '/';
        memcpy(sub + plen + 1, names[i], nlen + 1);
        rc = do_remove(sub, 1);
        free(sub);
      }
      free(names[i]);
    }
    free(names);
    if (rc < 0) return rc;
  }
  rc = uv_fs_rmdir(NULL, &r, path, NULL);
  uv_fs_req_cleanup(&r);
  return rc;
}

static void job_work(uv_work_t *w) {
  sk_fsjob *j = (sk_fsjob *)w;   /* `work` is the first member */
  uv_fs_t r;
  switch (j->op) {
  case SK_FS_READ: j->err = do_read(j); break;
  case SK_FS_WRITE: j->err = do_write(j, 0); break;
  case SK_FS_APPEND: j->err = do_write(j, 1); break;
  case SK_FS_STAT: j->err = do_stat(j->path, &j->st, 0); break;
  case SK_FS_EXISTS: {
    int rc = do_stat(j->path, &j->st, 1);
    j->exists = rc == 0;
    j->err = (rc == 0 || rc == UV_ENOENT || rc == UV_ENOTDIR) ? 0 : rc;
    break;
  }
  case SK_FS_LIST: j->err = do_list(j->path, &j->names, &j->nnames); break;
  case SK_FS_MKDIR: j->err = do_mkdir(j); break;
  case SK_FS_REMOVE: j->err = do_remove(j->path, j->opt); break;
  case SK_FS_RENAME:
    j->err = uv_fs_rename(NULL, &r, j->path, j->path2, NULL);
    uv_fs_req_cleanup(&r);
    break;
  case SK_FS_OPEN:
    j->fd = uv_fs_open(NULL, &r, j->path, j->oflags, 0666, NULL);
    uv_fs_req_cleanup(&r);
    j->err = j->fd < 0 ? j->fd : 0;
    break;
  case SK_FS_PREAD: {
    size_t want = j->len;
    j->len = 0;
    if ((j->data = malloc(want ? want : 1)) == NULL) {
      j->err = UV_ENOMEM;
      break;
    }
    uv_buf_t b = uv_buf_init(j->data, (unsigned)want);
    int rc = uv_fs_read(NULL, &r, j->fd, &b, 1, j->off, NULL);
    uv_fs_req_cleanup(&r);
    if (rc < 0) j->err = rc;
    else j->len = (size_t)rc;
    break;
  }
  case SK_FS_PWRITE: {
    size_t done = 0;
    while (done < j->len && j->err == 0) {
      uv_buf_t b = uv_buf_init(j->data + done, (unsigned)(j->len - done > (1u << 30)
                                                            ? (1u << 30) : j->len - done));
      int rc = uv_fs_write(NULL, &r, j->fd, &b, 1, j->off < 0 ? -1 : j->off + (int64_t)done,
                           NULL);
      uv_fs_req_cleanup(&r);
      if (rc < 0) j->err = rc;
      else done += (size_t)rc;
    }
    break;
  }
  }
}

static void job_after(uv_work_t *w, int status) {
  sk_fsjob *j = (sk_fsjob *)w;   /* `work` is the first member */
  if (status == UV_ECANCELED) j->err = UV_ECANCELED;
  j->done = 1;
  if (j->close_fd || (j->orphan && j->op == SK_FS_OPEN && j->err == 0)) {
    do_close(j->fd);   /* a regular file's close does not block */
    j->close_fd = 0;
    if (j->op == SK_FS_OPEN) j->fd = -1;
  }
  if (j->orphan) {
    sk_fsjob_free(j);
  } else if (j->waiter) {
    /* `waiter` stays set until the context unlinks (when it resumes): a
    ** file is in use by a call exactly while its job names a waiter. */
    sk_ctx_wake(j->waiter);
  }
}

int sk_fsjob_start(sk_fsjob *j, uv_loop_t *loop) {
  int rc = uv_queue_work(loop, &j->work, job_work, job_after);
  if (rc < 0) {
    j->err = rc;
    j->done = 1;
  }
  return rc;
}

void sk_fsjob_release(sk_fsjob *j) {
  j->waiter = NULL;
  if (j->done) {
    sk_fsjob_free(j);
  } else {
    j->orphan = 1;
    uv_cancel((uv_req_t *)&j->work);   /* not started yet: its callback runs with ECANCELED */
  }
}
