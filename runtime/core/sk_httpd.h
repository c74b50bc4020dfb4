/*
** sk_httpd.h — the HTTP/1.1 server's engine (httpd_proto.c): a request parser on
** llhttp (the parser Node uses; the older http-parser is unmaintained) and
** the glue that feeds it a stream's read buffer. No Lua: lua/httpd.c turns
** a parsed request into a table and its waits into wait sources.
**
** The parser (sk_httpp) takes bytes in chunks of any size and hands out one
** request at a time: method, target, headers (names lower-cased, in
** order, repeated names kept apart), body. It stops after each request
** (llhttp is paused at the end of the message), so the bytes of a
** pipelined next request stay where they are until the caller asked for
** it: responses go out in request order by construction. Everything it
** keeps is bounded: the request line and header bytes by `max_header`
** (431), the body by `max_body` (413, known from Content-Length before a
** byte of it is read, or counted as chunks come in); a message llhttp
** refuses is 400. After an error the parser stays failed: the connection
** gets its one error response and closes.
**
** sk_httpd_poll reads the parser's input straight from a stream's buffer
** (s->rb): llhttp parses the buffered bytes in place and only the bytes it
** used are consumed, so the next pipelined request stays buffered and
** nothing is copied but what a request keeps (target, headers, body).
**
** Ownership: sk_httpp_new's caller owns the parser; sk_httpp_free frees it
** and everything a request it handed out pointed to.
**
** Threading: a parser belongs to one thread at a time.
*/
#ifndef SK_HTTPD_H
#define SK_HTTPD_H

#include <stddef.h>

#include "sk_stream.h"

#define SK_HTTP_MAX_HEADER (16 * 1024)
#define SK_HTTP_MAX_BODY (1024 * 1024)

/* What sk_httpp_feed, sk_httpp_finish and sk_httpd_poll return (libuv
** error codes, all negative, are sk_httpd_poll's too). */
enum {
  SK_HTTP_MORE = 0,             /* every byte used; the request is not complete yet */
  SK_HTTP_REQUEST = 1,          /* a request is complete: sk_httpp_request */
  SK_HTTP_ERROR = 2,            /* a bad request: sk_httpp_status, sk_httpp_reason */
  SK_HTTP_EOF = 3               /* the peer ended between two requests */
};

/* One header: offsets into the request's `buf`. */
typedef struct sk_httphdr {
  size_t name, name_len, value, value_len;
} sk_httphdr;

/* A complete request; valid until sk_httpp_next or sk_httpp_free. */
typedef struct sk_httpreq {
  const char *method;           /* static text ("GET") */
  const char *buf;              /* target, then each header's name and value */
  size_t target_len;            /* the target is buf[0, target_len) */
  const sk_httphdr *headers;
  size_t nheaders;
  const char *body;             /* NULL when empty */
  size_t body_len;
  int major, minor;             /* the HTTP version */
  int keep_alive;               /* the connection may carry another request */
} sk_httpreq;

typedef struct sk_httpp sk_httpp;

/* A parser with these limits (0: the default); NULL when out of memory. */
sk_httpp *sk_httpp_new(size_t max_header, size_t max_body);
void sk_httpp_free(sk_httpp *h);

/* Parses `len` bytes: SK_HTTP_MORE (all used), SK_HTTP_REQUEST (a request
** is complete; the bytes after it, from data + *used, are the next
** request's and were not looked at) or SK_HTTP_ERROR. *used: the bytes
** parsed. After SK_HTTP_REQUEST the parser takes no bytes until
** sk_httpp_next; after SK_HTTP_ERROR, never again. */
int sk_httpp_feed(sk_httpp *h, const char *data, size_t len, size_t *used);
/* The peer ended its side: SK_HTTP_EOF when that fell between requests,
** SK_HTTP_ERROR (400) when it cut one short. */
int sk_httpp_finish(sk_httpp *h);
/* The complete request (after SK_HTTP_REQUEST), else NULL. */
const sk_httpreq *sk_httpp_request(const sk_httpp *h);
/* Drops the request handed out and readies the parser for the next one. */
void sk_httpp_next(sk_httpp *h);

/* 1 once bytes of the request being read arrived; 1 once its headers are
** complete (its body may still be coming). */
int sk_httpp_started(const sk_httpp *h);
int sk_httpp_headers_done(const sk_httpp *h);
/* After SK_HTTP_ERROR: the status to answer (400, 413, 431) and why. */
int sk_httpp_status(const sk_httpp *h);
const char *sk_httpp_reason(const sk_httpp *h);
/* 1 (once per request) when the client waits for "100 Continue" before it
** sends the body it announced (Expect: 100-continue) and it may send it. */
int sk_httpp_take_continue(sk_httpp *h);

/* Feeds `h` from the bytes `s` has buffered, reading more as needed:
** SK_HTTP_REQUEST, SK_HTTP_ERROR, SK_HTTP_EOF, SK_HTTP_MORE (nothing more
** is buffered; reading is on and the stream's readers are woken when
** bytes come), or a libuv error code (a read error; UV_EBADF: closed).
** Answers "100 Continue" itself where the client asked for it. */
int sk_httpd_poll(sk_stream *s, sk_httpp *h);

/* The reason phrase of a status code ("OK"), "Unknown" for one it does
** not know. */
const char *sk_http_reason(int status);

/* Writes the current time as an HTTP date (29 bytes and a NUL) into out;
** recomputed at most once a second per thread. */
void sk_http_date(char out[32]);

#endif
