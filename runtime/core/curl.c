/*
** curl.c — HTTP transfers on libcurl's multi interface, driven by a libuv
** loop (sk_curl.h has the rules: who calls curl when, and the resolver).
*/
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sk_curl.h"

/* ------------------------------------------------------------ libcurl
**
** libcurl is loaded the first time a worker makes a multi, not linked into
** the binary: its dependencies (TLS, Kerberos, LDAP, IDN, ... some thirty
** shared objects) cost every process start about 15 ms of dynamic linking
** on the machine this was measured on, and most skein processes (pool
** workers, `skein.process` children, scripts) never speak HTTP. Only the
** functions below are used; `cu` is written once, under `global_once`, and
** read-only after. */
/* The soname loaded: the one libcurl4-openssl-dev's libcurl.so links to
** (a build may name another with -DSK_LIBCURL=...). */
#ifndef SK_LIBCURL
#define SK_LIBCURL "libcurl.so.4"
#endif

typedef struct curl_api {
  CURLcode (*global_init)(long);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_cleanup)(CURLM *);
  CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
  CURLMcode (*multi_add_handle)(CURLM *, CURL *);
  CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
  CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
  CURLMsg *(*multi_info_read)(CURLM *, int *);
  CURL *(*easy_init)(void);
  void (*easy_cleanup)(CURL *);
  void (*easy_reset)(CURL *);
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  CURLcode (*easy_pause)(CURL *, int);
  const char *(*easy_strerror)(CURLcode);
  struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
  void (*slist_free_all)(struct curl_slist *);
} curl_api;

static curl_api cu;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc = -1;           /* 0 once libcurl is loaded and initialised */
static char load_error[256];

/* Resolves every entry of `cu` from `lib`; 0, or -1 naming what is missing. */
static int resolve(void *lib) {
  static const struct { const char *name; size_t at; } syms[] = {
#define SYM(f) {"curl_" #f, offsetof(curl_api, f)}
      SYM(global_init),      SYM(multi_init),       SYM(multi_cleanup),
      SYM(multi_setopt),     SYM(multi_add_handle), SYM(multi_remove_handle),
      SYM(multi_socket_action), SYM(multi_info_read), SYM(easy_init),
      SYM(easy_cleanup),     SYM(easy_reset),       SYM(easy_setopt),
      SYM(easy_getinfo),     SYM(easy_pause),       SYM(easy_strerror),
      SYM(slist_append),     SYM(slist_free_all),
#undef SYM
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    void *f = dlsym(lib, syms[i].name);
    if (f == NULL) {
      snprintf(load_error, sizeof load_error, "libcurl has no %s", syms[i].name);
      return -1;
    }
    memcpy((char *)&cu + syms[i].at, &f, sizeof f);
  }
  return 0;
}

/* Runs once per process. The library stays loaded for the process's life
** (its global state, and every handle made from it, depend on that). */
static void global_init(void) {
  void *lib = dlopen(SK_LIBCURL, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    const char *why = dlerror();
    snprintf(load_error, sizeof load_error, "cannot load %s: %s", SK_LIBCURL,
             why ? why : "unknown error");
    return;
  }
  if (resolve(lib) != 0) return;
  CURLcode rc = cu.global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    snprintf(load_error, sizeof load_error, "curl_global_init failed: %s",
             cu.easy_strerror(rc));
    return;
  }
  global_rc = 0;
}

const char *sk_curl_load_error(void) {
  pthread_once(&global_once, global_init);
  return global_rc == 0 ? NULL : load_error;
}

const char *sk_curl_strerror(int code) {
  if (sk_curl_load_error() != NULL) return "libcurl is not loaded";
  return cu.easy_strerror((CURLcode)code);
}

/* A stream response holds at most this much unread before curl is paused
** (CURL_WRITEFUNC_PAUSE); a waiting reader lets it go on regardless. */
#define BODY_MARK (256 * 1024)
/* Easy handles a multi keeps for reuse. */
#define FREE_EASY 8
/* How many idle connections a multi keeps at least (Node's http.Agent
** keeps 256 free sockets by default). */
#define IDLE_CONNS 256

/* One socket curl asked us to watch: a poll handle, freed in its close
** callback. A multi keeps its sockets in a list (`socks`) and finds them by
** descriptor, so nothing depends on curl's per-socket pointer staying
** right across the two ways a socket goes (CURL_POLL_REMOVE, and curl's
** close-socket callback).
**
** A connection's socket (`conn`: opened by on_opensocket, so curl closes
** it through on_closesocket and never behind our back) outlives
** CURL_POLL_REMOVE, which curl sends each time a transfer on it ends: it
** is marked `idle` and its poll left as it was, so that the next transfer
** on the connection costs no poll handle and no epoll_ctl calls. An event
** on an idle socket (the server closed it) only stops its poll; curl finds
** the connection dead when it next looks. Any other socket (the threaded
** resolver's, closed by curl itself) is closed at CURL_POLL_REMOVE. */
typedef struct sk_sock {
  uv_poll_t poll;
  sk_curlm *cm;
  curl_socket_t fd;
  int conn;                     /* opened by on_opensocket */
  int idle;                     /* removed by curl; the poll may still run */
  int events;                   /* what the poll watches (0: stopped) */
  struct sk_sock *prev, *next;
} sk_sock;

/* A multi. `timer` is curl's timeout; `keep` keeps the loop alive while a
** transfer runs (curl's own handles are unreferenced, so idle connections
** in curl's cache never keep a worker from ending). `cm` itself is freed
** by the close callback of the last of its two timers. */
struct sk_curlm {
  CURLM *m;
  uv_loop_t *loop;
  uv_timer_t *timer, *keep;
  int open;                     /* timers not yet closed */
  int closing;
  sk_sock *socks;
  sk_xfer *xfers;               /* every transfer not yet freed */
  size_t running;               /* transfers added to the multi */
  CURL *free_easy[FREE_EASY];
  int nfree;
};

static const char *const code_names[] = {
  [CURLE_ABORTED_BY_CALLBACK] = "ABORTED_BY_CALLBACK",
  [CURLE_OK] = "OK",
  [CURLE_UNSUPPORTED_PROTOCOL] = "UNSUPPORTED_PROTOCOL",
  [CURLE_FAILED_INIT] = "FAILED_INIT",
  [CURLE_URL_MALFORMAT] = "URL_MALFORMAT",
  [CURLE_NOT_BUILT_IN] = "NOT_BUILT_IN",
  [CURLE_COULDNT_RESOLVE_PROXY] = "COULDNT_RESOLVE_PROXY",
  [CURLE_COULDNT_RESOLVE_HOST] = "COULDNT_RESOLVE_HOST",
  [CURLE_COULDNT_CONNECT] = "COULDNT_CONNECT",
  [CURLE_WEIRD_SERVER_REPLY] = "WEIRD_SERVER_REPLY",
  [CURLE_REMOTE_ACCESS_DENIED] = "REMOTE_ACCESS_DENIED",
  [CURLE_FTP_ACCEPT_FAILED] = "FTP_ACCEPT_FAILED",
  [CURLE_FTP_WEIRD_PASS_REPLY] = "FTP_WEIRD_PASS_REPLY",
  [CURLE_FTP_ACCEPT_TIMEOUT] = "FTP_ACCEPT_TIMEOUT",
  [CURLE_FTP_WEIRD_PASV_REPLY] = "FTP_WEIRD_PASV_REPLY",
  [CURLE_FTP_WEIRD_227_FORMAT] = "FTP_WEIRD_227_FORMAT",
  [CURLE_FTP_CANT_GET_HOST] = "FTP_CANT_GET_HOST",
  [CURLE_HTTP2] = "HTTP2",
  [CURLE_FTP_COULDNT_SET_TYPE] = "FTP_COULDNT_SET_TYPE",
  [CURLE_PARTIAL_FILE] = "PARTIAL_FILE",
  [CURLE_FTP_COULDNT_RETR_FILE] = "FTP_COULDNT_RETR_FILE",
  [CURLE_QUOTE_ERROR] = "QUOTE_ERROR",
  [CURLE_HTTP_RETURNED_ERROR] = "HTTP_RETURNED_ERROR",
  [CURLE_WRITE_ERROR] = "WRITE_ERROR",
  [CURLE_UPLOAD_FAILED] = "UPLOAD_FAILED",
  [CURLE_READ_ERROR] = "READ_ERROR",
  [CURLE_OUT_OF_MEMORY] = "OUT_OF_MEMORY",
  [CURLE_OPERATION_TIMEDOUT] = "OPERATION_TIMEDOUT",
  [CURLE_FTP_PORT_FAILED] = "FTP_PORT_FAILED",
  [CURLE_FTP_COULDNT_USE_REST] = "FTP_COULDNT_USE_REST",
  [CURLE_RANGE_ERROR] = "RANGE_ERROR",
  [CURLE_HTTP_POST_ERROR] = "HTTP_POST_ERROR",
  [CURLE_SSL_CONNECT_ERROR] = "SSL_CONNECT_ERROR",
  [CURLE_BAD_DOWNLOAD_RESUME] = "BAD_DOWNLOAD_RESUME",
  [CURLE_FILE_COULDNT_READ_FILE] = "FILE_COULDNT_READ_FILE",
  [CURLE_LDAP_CANNOT_BIND] = "LDAP_CANNOT_BIND",
  [CURLE_LDAP_SEARCH_FAILED] = "LDAP_SEARCH_FAILED",
  [CURLE_FUNCTION_NOT_FOUND] = "FUNCTION_NOT_FOUND",
  [CURLE_BAD_FUNCTION_ARGUMENT] = "BAD_FUNCTION_ARGUMENT",
  [CURLE_INTERFACE_FAILED] = "INTERFACE_FAILED",
  [CURLE_TOO_MANY_REDIRECTS] = "TOO_MANY_REDIRECTS",
  [CURLE_UNKNOWN_OPTION] = "UNKNOWN_OPTION",
  [CURLE_SETOPT_OPTION_SYNTAX] = "SETOPT_OPTION_SYNTAX",
  [CURLE_GOT_NOTHING] = "GOT_NOTHING",
  [CURLE_SSL_ENGINE_NOTFOUND] = "SSL_ENGINE_NOTFOUND",
  [CURLE_SSL_ENGINE_SETFAILED] = "SSL_ENGINE_SETFAILED",
  [CURLE_SEND_ERROR] = "SEND_ERROR",
  [CURLE_RECV_ERROR] = "RECV_ERROR",
  [CURLE_SSL_CERTPROBLEM] = "SSL_CERTPROBLEM",
  [CURLE_SSL_CIPHER] = "SSL_CIPHER",
  [CURLE_PEER_FAILED_VERIFICATION] = "PEER_FAILED_VERIFICATION",
  [CURLE_BAD_CONTENT_ENCODING] = "BAD_CONTENT_ENCODING",
  [CURLE_FILESIZE_EXCEEDED] = "FILESIZE_EXCEEDED",
  [CURLE_USE_SSL_FAILED] = "USE_SSL_FAILED",
  [CURLE_SEND_FAIL_REWIND] = "SEND_FAIL_REWIND",
  [CURLE_SSL_ENGINE_INITFAILED] = "SSL_ENGINE_INITFAILED",
  [CURLE_LOGIN_DENIED] = "LOGIN_DENIED",
  [CURLE_TFTP_NOTFOUND] = "TFTP_NOTFOUND",
  [CURLE_TFTP_PERM] = "TFTP_PERM",
  [CURLE_REMOTE_DISK_FULL] = "REMOTE_DISK_FULL",
  [CURLE_TFTP_ILLEGAL] = "TFTP_ILLEGAL",
  [CURLE_TFTP_UNKNOWNID] = "TFTP_UNKNOWNID",
  [CURLE_REMOTE_FILE_EXISTS] = "REMOTE_FILE_EXISTS",
  [CURLE_TFTP_NOSUCHUSER] = "TFTP_NOSUCHUSER",
  [CURLE_SSL_CACERT_BADFILE] = "SSL_CACERT_BADFILE",
  [CURLE_REMOTE_FILE_NOT_FOUND] = "REMOTE_FILE_NOT_FOUND",
  [CURLE_SSH] = "SSH",
  [CURLE_SSL_SHUTDOWN_FAILED] = "SSL_SHUTDOWN_FAILED",
  [CURLE_AGAIN] = "AGAIN",
  [CURLE_SSL_CRL_BADFILE] = "SSL_CRL_BADFILE",
  [CURLE_SSL_ISSUER_ERROR] = "SSL_ISSUER_ERROR",
  [CURLE_FTP_PRET_FAILED] = "FTP_PRET_FAILED",
  [CURLE_RTSP_CSEQ_ERROR] = "RTSP_CSEQ_ERROR",
  [CURLE_RTSP_SESSION_ERROR] = "RTSP_SESSION_ERROR",
  [CURLE_FTP_BAD_FILE_LIST] = "FTP_BAD_FILE_LIST",
  [CURLE_CHUNK_FAILED] = "CHUNK_FAILED",
  [CURLE_NO_CONNECTION_AVAILABLE] = "NO_CONNECTION_AVAILABLE",
  [CURLE_SSL_PINNEDPUBKEYNOTMATCH] = "SSL_PINNEDPUBKEYNOTMATCH",
  [CURLE_SSL_INVALIDCERTSTATUS] = "SSL_INVALIDCERTSTATUS",
  [CURLE_HTTP2_STREAM] = "HTTP2_STREAM",
  [CURLE_RECURSIVE_API_CALL] = "RECURSIVE_API_CALL",
  [CURLE_AUTH_ERROR] = "AUTH_ERROR",
  [CURLE_HTTP3] = "HTTP3",
  [CURLE_QUIC_CONNECT_ERROR] = "QUIC_CONNECT_ERROR",
  [CURLE_PROXY] = "PROXY",
  [CURLE_SSL_CLIENTCERT] = "SSL_CLIENTCERT",
  [CURLE_UNRECOVERABLE_POLL] = "UNRECOVERABLE_POLL",
};

const char *sk_curl_code_name(int code) {
  if (code >= 0 && (size_t)code < sizeof code_names / sizeof code_names[0] && code_names[code]) {
    return code_names[code];
  }
  return "UNKNOWN";
}

/* ------------------------------------------------------------ sockets */

static void free_sock(uv_handle_t *h) { free(h->data); }

/* Stops watching a socket and closes its poll (before curl closes the
** descriptor: libuv must not poll a closed one). */
static void sock_close(sk_sock *k) {
  sk_curlm *cm = k->cm;
  if (k->prev) k->prev->next = k->next;
  else cm->socks = k->next;
  if (k->next) k->next->prev = k->prev;
  k->prev = k->next = NULL;
  uv_poll_stop(&k->poll);
  uv_close((uv_handle_t *)&k->poll, free_sock);
}

static sk_sock *sock_find(sk_curlm *cm, curl_socket_t fd) {
  for (sk_sock *k = cm->socks; k; k = k->next) {
    if (k->fd == fd) return k;
  }
  return NULL;
}

/* A new socket's poll handle (not started), first in the multi's list. */
static sk_sock *sock_new(sk_curlm *cm, curl_socket_t fd) {
  sk_sock *k = calloc(1, sizeof *k);
  if (k == NULL) return NULL;
  if (uv_poll_init_socket(cm->loop, &k->poll, fd) != 0) {
    free(k);
    return NULL;
  }
  k->poll.data = k;
  k->cm = cm;
  k->fd = fd;
  uv_unref((uv_handle_t *)&k->poll);
  k->next = cm->socks;
  if (cm->socks) cm->socks->prev = k;
  cm->socks = k;
  return k;
}

static void keep_tick(uv_timer_t *t) { (void)t; }

static void keep_update(sk_curlm *cm) {
  if (cm->closing) return;
  if (cm->running > 0 && !uv_is_active((uv_handle_t *)cm->keep)) {
    uv_timer_start(cm->keep, keep_tick, 3600 * 1000, 3600 * 1000);
  } else if (cm->running == 0) {
    uv_timer_stop(cm->keep);
  }
}

/* Reads what curl finished and wakes those who wait for it. Runs only from
** our own libuv callbacks, after curl_multi_socket_action returned. */
static void drain(sk_curlm *cm) {
  CURLMsg *msg;
  int left;
  while ((msg = cu.multi_info_read(cm->m, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *e = msg->easy_handle;
    CURLcode res = msg->data.result;
    sk_xfer *x = NULL;
    cu.easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    cu.multi_remove_handle(cm->m, e);
    if (x == NULL) continue;
    x->added = 0;
    x->done = 1;
    x->result = res;
    cm->running--;
    sk_iowaitlist_wake(&x->waiters);
  }
  keep_update(cm);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sk_sock *k = h->data;
  sk_curlm *cm = k->cm;
  if (k->idle) {
    /* Curl is not watching it: the server closed an idle connection (or
    ** sent what nobody asked for). Stop; curl finds out on its own. */
    uv_poll_stop(&k->poll);
    k->events = 0;
    return;
  }
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  int running;
  /* `k` may be closed inside (CURL_POLL_REMOVE): not touched after. */
  cu.multi_socket_action(cm->m, k->fd, flags, &running);
  drain(cm);
}

static void on_timeout(uv_timer_t *t) {
  sk_curlm *cm = t->data;
  int running;
  cu.multi_socket_action(cm->m, CURL_SOCKET_TIMEOUT, 0, &running);
  drain(cm);
}

/* CURLMOPT_SOCKETFUNCTION: only starts, changes or stops a poll. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)e;
  (void)socketp;
  sk_curlm *cm = userp;
  sk_sock *k = sock_find(cm, s);
  if (what == CURL_POLL_REMOVE) {
    if (k && k->conn && !cm->closing) k->idle = 1;
    else if (k) sock_close(k);
    return 0;
  }
  if (cm->closing) return 0;
  if (k == NULL && (k = sock_new(cm, s)) == NULL) return -1;
  k->idle = 0;
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  if (ev != k->events) {
    if (uv_poll_start(&k->poll, ev, on_poll) != 0) return -1;
    k->events = ev;
  }
  return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: a connection's socket, known from the start
** as one that curl closes through on_closesocket. */
static curl_socket_t on_opensocket(void *clientp, curlsocktype purpose,
                                   struct curl_sockaddr *a) {
  sk_curlm *cm = clientp;
  (void)purpose;
  /* Close-on-exec, as every descriptor skein opens: a program skein.exec
  ** or os.execute runs must not hold a connection open. */
  curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (s == CURL_SOCKET_BAD || cm->closing) return s;
  /* A descriptor closed behind our back left its poll: not this socket's. */
  sk_sock *k = sock_find(cm, s);
  if (k) sock_close(k);
  k = sock_new(cm, s);
  if (k) k->conn = 1;           /* else on_socket makes a plain one */
  return s;
}

/* CURLMOPT_TIMERFUNCTION: only arms or stops our timer. */
static int on_timer(CURLM *m, long ms, void *userp) {
  (void)m;
  sk_curlm *cm = userp;
  if (cm->closing) return 0;
  if (ms < 0) uv_timer_stop(cm->timer);
  else uv_timer_start(cm->timer, on_timeout, (uint64_t)ms, 0);
  return 0;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the poll stops before the descriptor
** closes, whatever curl told the socket callback. */
static int on_closesocket(void *clientp, curl_socket_t s) {
  sk_curlm *cm = clientp;
  sk_sock *k = sock_find(cm, s);
  if (k) sock_close(k);
  return close(s);
}

/* -------------------------------------------------------------- multi */

static void free_timer(uv_handle_t *h) {
  sk_curlm *cm = h->data;
  free(h);
  if (--cm->open == 0) free(cm);
}

sk_curlm *sk_curlm_new(uv_loop_t *loop, long max_conns, long max_per_host) {
  if (sk_curl_load_error() != NULL) return NULL;
  sk_curlm *cm = calloc(1, sizeof *cm);
  if (cm == NULL) return NULL;
  cm->loop = loop;
  cm->timer = malloc(sizeof *cm->timer);
  cm->keep = malloc(sizeof *cm->keep);
  cm->m = cu.multi_init();
  if (cm->timer == NULL || cm->keep == NULL || cm->m == NULL) {
    if (cm->m) cu.multi_cleanup(cm->m);
    free(cm->timer);
    free(cm->keep);
    free(cm);
    return NULL;
  }
  uv_timer_init(loop, cm->timer);
  uv_timer_init(loop, cm->keep);
  cm->timer->data = cm->keep->data = cm;
  uv_unref((uv_handle_t *)cm->timer);
  cm->open = 2;
  cu.multi_setopt(cm->m, CURLMOPT_SOCKETFUNCTION, on_socket);
  cu.multi_setopt(cm->m, CURLMOPT_SOCKETDATA, cm);
  cu.multi_setopt(cm->m, CURLMOPT_TIMERFUNCTION, on_timer);
  cu.multi_setopt(cm->m, CURLMOPT_TIMERDATA, cm);
  /* The cache of idle connections keeps IDLE_CONNS of them (or max_conns):
  ** curl's default, 4 per easy handle in the multi, shrinks as transfers
  ** end, so a burst of transfers that all finish together (a pool's
  ** requests between two rounds) lost most of its connections and
  ** opened them again on the next round. */
  cu.multi_setopt(cm->m, CURLMOPT_MAXCONNECTS, max_conns > IDLE_CONNS ? max_conns : (long)IDLE_CONNS);
  if (max_conns > 0) cu.multi_setopt(cm->m, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_conns);
  if (max_per_host > 0) cu.multi_setopt(cm->m, CURLMOPT_MAX_HOST_CONNECTIONS, max_per_host);
  return cm;
}

static void xfer_unlink(sk_xfer *x) {
  sk_curlm *cm = x->cm;
  if (x->prev) x->prev->next = x->next;
  else cm->xfers = x->next;
  if (x->next) x->next->prev = x->prev;
  x->prev = x->next = NULL;
}

void sk_curlm_close(sk_curlm *cm) {
  /* Every transfer first: removed, its easy handle cleaned up, detached,
  ** its waiters told (they find it done and closed). */
  while (cm->xfers) {
    sk_xfer *x = cm->xfers;
    if (x->added) cu.multi_remove_handle(cm->m, x->easy);
    xfer_unlink(x);
    x->added = 0;
    cu.easy_cleanup(x->easy);
    x->easy = NULL;
    x->cm = NULL;
    if (!x->done) {
      x->done = 1;
      x->closed = 1;
      x->result = CURLE_ABORTED_BY_CALLBACK;
    }
    sk_iowaitlist_wake(&x->waiters);
  }
  cm->running = 0;
  while (cm->nfree > 0) cu.easy_cleanup(cm->free_easy[--cm->nfree]);
  /* Closing the cached connections tells the socket callback to remove
  ** each socket; the timer callback is ignored from now on. */
  cm->closing = 1;
  cu.multi_cleanup(cm->m);
  cm->m = NULL;
  while (cm->socks) sock_close(cm->socks);
  uv_close((uv_handle_t *)cm->timer, free_timer);
  uv_close((uv_handle_t *)cm->keep, free_timer);
}

/* ---------------------------------------------------------- transfers */

static void wake(sk_xfer *x) { sk_iowaitlist_wake(&x->waiters); }

/* CURLOPT_WRITEFUNCTION: the body into the buffer. A whole body stops the
** transfer past max_body; a streamed one pauses over the mark while no
** reader waits (curl keeps the piece and gives it again on unpause). */
static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  sk_xfer *x = ud;
  size_t len = size * n;
  if (x->stream) {
    if (!x->want && sk_rbuf_len(&x->body) >= BODY_MARK) {
      x->recv_paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
  } else if (x->max_body && sk_rbuf_len(&x->body) + len > x->max_body) {
    x->too_large = 1;
    return 0;
  }
  size_t room;
  char *dst = sk_rbuf_space(&x->body, len, &room);
  if (dst == NULL) {
    x->nomem = 1;
    return 0;
  }
  memcpy(dst, p, len);
  sk_rbuf_commit(&x->body, len);
  x->head_done = 1;
  wake(x);
  return len;
}

static int is_redirect(long code) {
  return code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
}

/* CURLOPT_HEADERFUNCTION: keeps the lines of the last response's head; the
** head is final at its blank line unless it is an interim (1xx) or a
** redirect curl follows. Trailers after it are not kept. */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  sk_xfer *x = ud;
  size_t len = size * n;
  if (x->head_done) return len;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    x->head_len = 0;
    x->saw_location = 0;
  }
  if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
    long code = 0;
    cu.easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && !(x->follow && x->saw_location && is_redirect(code))) {
      x->head_done = 1;
      wake(x);
    }
    return len;
  }
  if (len >= 9 && strncasecmp(p, "location:", 9) == 0) x->saw_location = 1;
  if (x->head_len + len > x->head_cap) {
    size_t cap = x->head_cap ? x->head_cap * 2 : 1024;
    while (cap < x->head_len + len) cap *= 2;
    char *h = realloc(x->head, cap);
    if (h == NULL) {
      x->nomem = 1;
      return 0;
    }
    x->head = h;
    x->head_cap = cap;
  }
  memcpy(x->head + x->head_len, p, len);
  x->head_len += len;
  return len;
}

/* CURLOPT_READFUNCTION: the body given in pieces. With the piece used up
** and more to come, it pauses the upload and asks (need_body). */
static size_t on_upload(char *buf, size_t size, size_t n, void *ud) {
  sk_xfer *x = ud;
  size_t room = size * n;
  if (x->up_off < x->up_len) {
    size_t k = x->up_len - x->up_off;
    if (k > room) k = room;
    memcpy(buf, x->up + x->up_off, k);
    x->up_off += k;
    return k;
  }
  if (x->up_eof) return 0;
  x->need_body = 1;
  x->send_paused = 1;
  wake(x);
  return CURL_READFUNC_PAUSE;
}

/* Tells curl which directions stay paused (outside curl's callbacks only). */
static void repause(sk_xfer *x) {
  if (!x->added) return;
  int mask = (x->recv_paused ? CURLPAUSE_RECV : 0) | (x->send_paused ? CURLPAUSE_SEND : 0);
  cu.easy_pause(x->easy, mask);
}

int sk_xfer_feed(sk_xfer *x, const char *data, size_t len) {
  free(x->up);
  x->up = NULL;
  x->up_len = x->up_off = 0;
  if (data == NULL) {
    x->up_eof = 1;
  } else {
    x->up = malloc(len ? len : 1);
    if (x->up == NULL) return CURLE_OUT_OF_MEMORY;
    memcpy(x->up, data, len);
    x->up_len = len;
  }
  x->need_body = 0;
  if (x->send_paused) {
    x->send_paused = 0;
    repause(x);
  }
  return 0;
}

void sk_xfer_consumed(sk_xfer *x, int want) {
  x->want = want;
  if (x->recv_paused && (want || sk_rbuf_len(&x->body) < BODY_MARK)) {
    x->recv_paused = 0;
    repause(x);
  }
}

long sk_xfer_status(sk_xfer *x) {
  long code = 0;
  if (x->easy) cu.easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  return code;
}

const char *sk_xfer_url(sk_xfer *x) {
  char *url = NULL;
  if (x->easy) cu.easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
  return url;
}

#define SET(opt, val)                                                                          \
  do {                                                                                         \
    if (rc == CURLE_OK) rc = cu.easy_setopt(e, opt, val);                                    \
  } while (0)

static int setup(sk_xfer *x, CURL *e, const sk_xfer_opts *o) {
  CURLcode rc = CURLE_OK;
  for (const char *const *h = o->headers; h && *h; h++) {
    struct curl_slist *l = cu.slist_append(x->headers, *h);
    if (l == NULL) return CURLE_OUT_OF_MEMORY;
    x->headers = l;
  }
  SET(CURLOPT_URL, o->url);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
  SET(CURLOPT_QUICK_EXIT, 1L);
#endif
  SET(CURLOPT_PRIVATE, (char *)x);
  SET(CURLOPT_ERRORBUFFER, x->errbuf);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, x);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, x);
  SET(CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
  SET(CURLOPT_OPENSOCKETDATA, x->cm);
  SET(CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
  SET(CURLOPT_CLOSESOCKETDATA, x->cm);
  SET(CURLOPT_FOLLOWLOCATION, o->follow ? 1L : 0L);
  if (o->max_redirects >= 0) SET(CURLOPT_MAXREDIRS, o->max_redirects);
  if (o->decompress) SET(CURLOPT_ACCEPT_ENCODING, "");
  if (o->cafile) SET(CURLOPT_CAINFO, o->cafile);
  if (o->user_agent) SET(CURLOPT_USERAGENT, o->user_agent);
  if (o->timeout_ms > 0) SET(CURLOPT_TIMEOUT_MS, o->timeout_ms);
  if (o->connect_timeout_ms > 0) SET(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
  if (strncasecmp(o->url, "https:", 6) == 0) SET(CURLOPT_PIPEWAIT, 1L);
  int has_body = o->body != NULL || o->body_iter;
  if (has_body) {
    SET(CURLOPT_POST, 1L);
    if (o->body) {
      SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
      SET(CURLOPT_COPYPOSTFIELDS, o->body);
    } else {
      SET(CURLOPT_READFUNCTION, on_upload);
      SET(CURLOPT_READDATA, x);
    }
    if (strcmp(o->method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, o->method);
  } else if (strcmp(o->method, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else if (strcmp(o->method, "GET") != 0) {
    SET(CURLOPT_CUSTOMREQUEST, o->method);
  }
  if (x->headers) SET(CURLOPT_HTTPHEADER, x->headers);
  return rc;
}

static void xfer_destroy(sk_xfer *x) {
  sk_rbuf_free(&x->body);
  free(x->head);
  free(x->up);
  cu.slist_free_all(x->headers);
  free(x);
}

int sk_xfer_start(sk_curlm *cm, const sk_xfer_opts *o, sk_xfer **out) {
  *out = NULL;
  if (cm->closing) return CURLE_FAILED_INIT;
  sk_xfer *x = calloc(1, sizeof *x);
  if (x == NULL) return CURLE_OUT_OF_MEMORY;
  sk_iowaitlist_init(&x->waiters);
  x->cm = cm;
  x->stream = o->stream;
  x->max_body = o->max_body;
  x->follow = o->follow;
  x->up_iter = o->body_iter;
  CURL *e = cm->nfree > 0 ? cm->free_easy[--cm->nfree] : cu.easy_init();
  if (e == NULL) {
    xfer_destroy(x);
    return CURLE_OUT_OF_MEMORY;
  }
  x->easy = e;
  int rc = setup(x, e, o);
  if (rc == CURLE_OK && cu.multi_add_handle(cm->m, e) != CURLM_OK) rc = CURLE_FAILED_INIT;
  if (rc != CURLE_OK) {
    cu.easy_cleanup(e);
    xfer_destroy(x);
    return rc;
  }
  x->added = 1;
  x->next = cm->xfers;
  if (cm->xfers) cm->xfers->prev = x;
  cm->xfers = x;
  cm->running++;
  keep_update(cm);
  *out = x;
  return 0;
}

void sk_xfer_free(sk_xfer *x) {
  sk_curlm *cm = x->cm;
  if (cm) {
    if (x->added) {
      cu.multi_remove_handle(cm->m, x->easy);
      x->added = 0;
      cm->running--;
      keep_update(cm);
    }
    xfer_unlink(x);
    cu.easy_reset(x->easy);
    if (cm->nfree < FREE_EASY) cm->free_easy[cm->nfree++] = x->easy;
    else cu.easy_cleanup(x->easy);
    x->easy = NULL;
  }
  wake(x);
  xfer_destroy(x);
}
