/*
** httpd_proto.c — the HTTP/1.1 server's engine (sk_httpd.h): a request parser on
** llhttp, and sk_httpd_poll, which feeds it a stream's buffered bytes.
**
** llhttp calls back with pieces of the target, header names and values and
** the body as they arrive (a piece may be split across reads); the parser
** appends them to its own buffers: `buf` holds the target, then each
** header's name (lower-cased) and value; `hdrs` indexes them; `body` holds
** the body. Both buffers are bounded by the limits before they grow, so a
** request can make the parser hold at most max_header + max_body bytes
** (plus the index, at most one entry per 4 header bytes).
**
** A callback that finds a limit passed records the status and returns an
** error, which stops llhttp at once (it then refuses every later call:
** the parser stays failed). on_message_complete returns HPE_PAUSED, so
** llhttp_execute stops right after the request's last byte and
** llhttp_get_error_pos says how much was used; sk_httpp_next resumes it.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <llhttp.h>

#include "sk_httpd.h"

struct sk_httpp {
  llhttp_t p;
  size_t max_header, max_body;
  char *buf;                    /* target, header names and values */
  size_t len, cap;
  sk_httphdr *hdrs;
  size_t nh, hcap;
  char *body;
  size_t blen, bcap;
  size_t hbytes;                /* header bytes counted against max_header */
  int hstate;                   /* 0 between headers, 1 in a name, 2 name done, 3 in a value */
  int started, headers_done, complete, failed, status;
  int want_continue;            /* the client waits for "100 Continue" */
  const char *reason;
  sk_httpreq req;
};

#define OWNER(p) ((sk_httpp *)(p)->data)

/* Fails the request with `status`; the callback returns what this does. */
static int fail(sk_httpp *h, int status, const char *reason) {
  h->status = status;
  h->reason = reason;
  llhttp_set_error_reason(&h->p, reason);
  return HPE_USER;
}

/* Grows `*b` (capacity `*cap`) to hold `need` bytes; 0, or -1 (no memory). */
static int grow(char **b, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  char *nb = realloc(*b, c);
  if (nb == NULL) return -1;
  *b = nb;
  *cap = c;
  return 0;
}

/* Appends header-section bytes, counting them against max_header. */
static int add_head(sk_httpp *h, const char *at, size_t n, int lower) {
  h->hbytes += n;
  if (h->hbytes > h->max_header) return fail(h, 431, "request header fields too large");
  if (n == 0) return 0;
  if (grow(&h->buf, &h->cap, h->len + n) != 0) return fail(h, 503, "out of memory");
  char *d = h->buf + h->len;
  if (lower) {
    for (size_t i = 0; i < n; i++) d[i] = (char)tolower((unsigned char)at[i]);
  } else {
    memcpy(d, at, n);
  }
  h->len += n;
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  OWNER(p)->started = 1;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  sk_httpp *h = OWNER(p);
  int rc = add_head(h, at, n, 0);
  if (rc == 0) h->req.target_len += n;
  return rc;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  sk_httpp *h = OWNER(p);
  if (h->hstate != 1) {
    /* A new header: 4 bytes (": " and CRLF) count besides its text. */
    h->hbytes += 4;
    if (h->nh == h->hcap) {
      size_t c = h->hcap ? h->hcap * 2 : 16;
      sk_httphdr *nh = realloc(h->hdrs, c * sizeof *nh);
      if (nh == NULL) return fail(h, 503, "out of memory");
      h->hdrs = nh;
      h->hcap = c;
    }
    h->hdrs[h->nh++] = (sk_httphdr){.name = h->len};
    h->hstate = 1;
  }
  int rc = add_head(h, at, n, 1);
  if (rc == 0) h->hdrs[h->nh - 1].name_len += n;
  return rc;
}

static int on_header_field_complete(llhttp_t *p) {
  sk_httpp *h = OWNER(p);
  /* llhttp lets ": value" through (no name piece came): a field name is
  ** a token of at least one character (RFC 9110 5.1). */
  if (h->hstate != 1 || h->hdrs[h->nh - 1].name_len == 0) return fail(h, 400, "empty header name");
  h->hstate = 2;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  sk_httpp *h = OWNER(p);
  if (h->nh == 0) return 0;
  sk_httphdr *hd = &h->hdrs[h->nh - 1];
  if (h->hstate != 3) {
    hd->value = h->len;
    h->hstate = 3;
  }
  int rc = add_head(h, at, n, 0);
  if (rc == 0) hd->value_len += n;
  return rc;
}

static int on_header_value_complete(llhttp_t *p) {
  OWNER(p)->hstate = 0;
  return 0;
}

/* 1 when header `name` (lower case) has the value `v` (any case). */
static int header_is(const sk_httpp *h, const char *name, const char *v) {
  size_t nl = strlen(name), vl = strlen(v);
  for (size_t i = 0; i < h->nh; i++) {
    const sk_httphdr *hd = &h->hdrs[i];
    if (hd->name_len == nl && memcmp(h->buf + hd->name, name, nl) == 0 && hd->value_len == vl &&
        strncasecmp(h->buf + hd->value, v, vl) == 0) {
      return 1;
    }
  }
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  sk_httpp *h = OWNER(p);
  h->headers_done = 1;
  h->hstate = 0;
  if (p->method == HTTP_CONNECT) {
    fail(h, 400, "CONNECT is not supported");
    return -1;
  }
  /* A protocol upgrade is not offered: the request is answered as any
  ** other (RFC 9110 7.8 lets a server ignore Upgrade). */
  p->upgrade = 0;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > h->max_body) {
    fail(h, 413, "content too large");
    return -1;
  }
  int body = (p->flags & F_CHUNKED) || p->content_length > 0;
  if (body && p->http_major == 1 && p->http_minor >= 1 && header_is(h, "expect", "100-continue")) {
    h->want_continue = 1;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  sk_httpp *h = OWNER(p);
  if (n > h->max_body - h->blen) return fail(h, 413, "content too large");
  if (grow(&h->body, &h->bcap, h->blen + n) != 0) return fail(h, 503, "out of memory");
  memcpy(h->body + h->blen, at, n);
  h->blen += n;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  sk_httpp *h = OWNER(p);
  h->complete = 1;
  h->req = (sk_httpreq){
      .method = llhttp_method_name((llhttp_method_t)p->method),
      .buf = h->buf,
      .target_len = h->req.target_len,
      .headers = h->hdrs,
      .nheaders = h->nh,
      .body = h->blen ? h->body : NULL,
      .body_len = h->blen,
      .major = p->http_major,
      .minor = p->http_minor,
      .keep_alive = llhttp_should_keep_alive(p),
  };
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

sk_httpp *sk_httpp_new(size_t max_header, size_t max_body) {
  sk_httpp *h = calloc(1, sizeof *h);
  if (h == NULL) return NULL;
  h->max_header = max_header ? max_header : SK_HTTP_MAX_HEADER;
  h->max_body = max_body ? max_body : SK_HTTP_MAX_BODY;
  llhttp_init(&h->p, HTTP_REQUEST, &settings);
  h->p.data = h;
  return h;
}

void sk_httpp_free(sk_httpp *h) {
  if (h == NULL) return;
  free(h->buf);
  free(h->hdrs);
  free(h->body);
  free(h);
}

/* Forgets the request: its buffers stay allocated for the next one, unless
** they grew past what an ordinary request needs. */
static void clear(sk_httpp *h) {
  h->len = h->nh = h->blen = h->hbytes = 0;
  h->hstate = h->started = h->headers_done = h->complete = h->want_continue = 0;
  h->req = (sk_httpreq){0};
  if (h->bcap > 64 * 1024) {
    free(h->body);
    h->body = NULL;
    h->bcap = 0;
  }
}

int sk_httpp_feed(sk_httpp *h, const char *data, size_t len, size_t *used) {
  *used = 0;
  if (h->failed) return SK_HTTP_ERROR;
  if (h->complete) return SK_HTTP_REQUEST;
  if (len == 0) return SK_HTTP_MORE;
  llhttp_errno_t e = llhttp_execute(&h->p, data, len);
  if (e == HPE_OK) {
    *used = len;
    return SK_HTTP_MORE;
  }
  const char *pos = llhttp_get_error_pos(&h->p);
  *used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
  if (e == HPE_PAUSED && h->complete) return SK_HTTP_REQUEST;
  h->failed = 1;
  if (h->status == 0) {
    h->status = 400;
    h->reason = llhttp_get_error_reason(&h->p);
    if (h->reason == NULL) h->reason = llhttp_errno_name(e);
  }
  return SK_HTTP_ERROR;
}

int sk_httpp_finish(sk_httpp *h) {
  if (h->failed) return SK_HTTP_ERROR;
  if (!h->started || h->complete) return SK_HTTP_EOF;
  h->failed = 1;
  h->status = 400;
  h->reason = "the request was cut short";
  return SK_HTTP_ERROR;
}

const sk_httpreq *sk_httpp_request(const sk_httpp *h) { return h->complete ? &h->req : NULL; }

void sk_httpp_next(sk_httpp *h) {
  if (!h->complete) return;
  clear(h);
  llhttp_resume(&h->p);
}

int sk_httpp_started(const sk_httpp *h) { return h->started; }
int sk_httpp_headers_done(const sk_httpp *h) { return h->headers_done; }
int sk_httpp_status(const sk_httpp *h) { return h->status; }
const char *sk_httpp_reason(const sk_httpp *h) { return h->reason ? h->reason : "bad request"; }

int sk_httpp_take_continue(sk_httpp *h) {
  if (!h->want_continue || h->failed || h->complete) return 0;
  h->want_continue = 0;
  return 1;
}

/* ------------------------------------------------------- on a stream */

int sk_httpd_poll(sk_stream *s, sk_httpp *h) {
  static const sk_rfmt any = {.kind = SK_RF_ANY};
  for (;;) {
    size_t have = sk_rbuf_len(&s->rb);
    if (s->closed) return UV_EBADF;
    if (have > 0) {
      size_t used;
      int r = sk_httpp_feed(h, s->rb.data + s->rb.start, have, &used);
      if (used > 0) {
        /* Consumes what llhttp used; the rest stays for the next request. */
        sk_rfmt n = {.kind = SK_RF_N, .n = used};
        const char *out;
        size_t len;
        sk_stream_read(s, &n, &out, &len);
      }
      if (sk_httpp_take_continue(h)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
        sk_stream_write(s, &b, 1);  /* a failure shows in the response's write */
      }
      if (r != SK_HTTP_MORE) return r;
    }
    /* Everything buffered was used: wait for more, or see the end. */
    const char *out;
    size_t len;
    int r = sk_stream_read(s, &any, &out, &len);
    if (r < 0) return r;
    if (r == 0) {
      sk_stream_trim(s);
      return SK_HTTP_MORE;
    }
    if (out == NULL) return sk_httpp_finish(h);
    /* Not reached: "any" gives bytes only when some are buffered. */
  }
}

/* ---------------------------------------------------------- responses */

const char *sk_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

void sk_http_date(char out[32]) {
  static _Thread_local time_t last = 0;
  static _Thread_local char text[64];
  time_t now = time(NULL);
  if (now != last) {
    /* Spelled out: strftime's names follow the locale, HTTP's do not. */
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    last = now;
  }
  memcpy(out, text, 30);
}
