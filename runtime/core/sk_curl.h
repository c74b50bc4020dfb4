/*
** sk_curl.h — HTTP transfers on libcurl's multi interface, driven by a
** libuv loop (curl.c; no Lua).
**
** A *multi* (sk_curlm) is one CURLM on one loop: its connection cache, DNS
** cache and limits. Every worker has one, made on its first request
** (lua/httpc.c), and every skein.http.session another of its own. A
** *transfer* (sk_xfer) is one request on one multi, over an easy handle
** the multi keeps on a small free list between transfers.
**
** Who calls curl when: curl's socket and timer callbacks only start, stop
** or close a uv_poll_t or the multi's uv_timer_t; curl_multi_socket_action
** runs only from our poll and timer callbacks, never from inside a curl
** callback, and those callbacks then read curl's finished transfers
** (curl_multi_info_read) and wake their waiters (sk_iowaitlist). A
** transfer's own callbacks (body, headers, upload) fill or drain its
** buffers and wake; they call nothing else. Code outside libuv's callbacks
** (the binding) calls curl only to add, pause/unpause and remove a
** transfer. A poll stops before curl closes its socket (CURL_POLL_REMOVE,
** and CURLOPT_CLOSESOCKETFUNCTION for the sockets curl closes itself), and
** every handle is freed in its close callback.
**
** DNS: this libcurl resolves names on a thread of its own (the threaded
** resolver, curl_version_info's AsynchDNS without c-ares). The loop polls
** the socket pair that thread signals; giving a transfer up while it
** resolves detaches the thread (CURLOPT_QUICK_EXIT) instead of joining it,
** so the loop never waits for getaddrinfo.
**
** Threading: a multi and its transfers belong to the thread of its loop.
*/
#ifndef SK_CURL_H
#define SK_CURL_H

#include <stddef.h>

#include <curl/curl.h>
#include <uv.h>

#include "sk_io.h"
#include "sk_rbuf.h"

typedef struct sk_curlm sk_curlm;
typedef struct sk_xfer sk_xfer;

/* What a transfer asks for. Strings are copied by sk_xfer_start. */
typedef struct sk_xfer_opts {
  const char *method;           /* "GET", "POST", "HEAD", anything else */
  const char *url;
  const char *const *headers;   /* "Name: value" lines, NULL-terminated; may be NULL */
  const char *body;             /* a whole body, or NULL */
  size_t body_len;
  int body_iter;                /* the body comes in pieces (sk_xfer_feed) */
  long timeout_ms, connect_timeout_ms;  /* 0: none */
  int follow;                   /* follow redirects */
  long max_redirects;           /* -1: curl's default */
  int decompress;               /* ask for and decode gzip, deflate, br */
  const char *cafile;           /* NULL: the system's */
  const char *user_agent;
  int stream;                   /* the body is read as it arrives */
  size_t max_body;              /* 0: no limit (a whole body only) */
} sk_xfer_opts;

/* One transfer. The binding reads the fields below; the engine writes them. */
struct sk_xfer {
  sk_curlm *cm;                 /* NULL once its multi closed under it */
  CURL *easy;                   /* NULL once released */
  sk_xfer *prev, *next;         /* in cm's list of transfers */
  int done;                     /* curl finished it: `result` says how */
  CURLcode result;
  int too_large;                /* the body passed max_body */
  int stream;
  size_t max_body;
  sk_rbuf body;                 /* the body received and not yet read */
  /* The response head: the lines of the last response's header block. */
  char *head;
  size_t head_len, head_cap;
  int head_done;                /* the final response's head is complete */
  int follow, saw_location;
  /* The body sent in pieces: the current piece (malloc'd), how much of it
  ** curl took, whether the last piece was given, whether curl waits. */
  char *up;
  size_t up_len, up_off;
  int up_iter, up_eof, need_body;
  int recv_paused, send_paused;
  int want;                     /* a reader waits for more of the body */
  int added;                    /* in the multi (not finished, not removed) */
  int closed;                   /* its multi closed under it */
  int nomem;                    /* a buffer could not grow */
  struct curl_slist *headers;
  char errbuf[CURL_ERROR_SIZE];
  sk_iowaitlist waiters;        /* woken on progress: body, head, need_body, done */
};

/* Makes a multi on `loop`; NULL when out of memory or curl fails to
** start (sk_curl_load_error then says why). max_conns, max_per_host: 0 for
** no limit. */
sk_curlm *sk_curlm_new(uv_loop_t *loop, long max_conns, long max_per_host);
/* Removes every transfer (each is marked done with CURLE_ABORTED_BY_CALLBACK
** and detached, its waiters woken), cleans the CURLM up and closes the
** loop handles (freed in their close callbacks, which also free `cm`
** itself once the last is closed). */
void sk_curlm_close(sk_curlm *cm);

/* Starts a transfer; 0 with *out, or a CURLcode (CURLE_OUT_OF_MEMORY,
** CURLE_FAILED_INIT...) with nothing started. */
int sk_xfer_start(sk_curlm *cm, const sk_xfer_opts *o, sk_xfer **out);
/* Gives the next piece of the body (copied), or the end (data NULL). */
int sk_xfer_feed(sk_xfer *x, const char *data, size_t len);
/* Called after the reader took bytes from x->body: lets a transfer held
** back by a full buffer go on, or `want` (a reader waits for more) lets it
** go on whatever the buffer holds. */
void sk_xfer_consumed(sk_xfer *x, int want);
/* Stops the transfer (if running) and frees it; its easy handle goes back
** to the free list. */
void sk_xfer_free(sk_xfer *x);
/* The response's status, the URL after redirects (valid until the
** transfer is freed). */
long sk_xfer_status(sk_xfer *x);
const char *sk_xfer_url(sk_xfer *x);

/* The CURLE_ name of a code without its prefix ("COULDNT_CONNECT"). */
const char *sk_curl_code_name(int code);
/* libcurl's message for a CURLcode (curl_easy_strerror). */
const char *sk_curl_strerror(int code);
/* NULL when libcurl is loaded and initialised (the first call loads it:
** see curl.c), else why it is not, as a sentence. */
const char *sk_curl_load_error(void);

#endif
