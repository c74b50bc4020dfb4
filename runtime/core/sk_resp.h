/*
** sk_resp.h — a Redis client connection on the loop (resp.c): RESP spoken
** with hiredis's reply reader and command formatter over skein's own
** stream (sk_stream), not hiredis's own I/O. No Lua: the binding
** (lua/broker.c) turns replies into values and waits on requests through
** the one wait protocol.
**
** A connection is opened lazily: the first command connects (sk_connect),
** then sends AUTH (password, or ACL user and password) and SELECT where
** they are configured, and only once Redis accepted them the commands
** queued meanwhile, pipelined: each command is written as soon as it is
** made and replies are matched to commands in order. The same handshake is
** replayed on every reconnect.
**
** Every command has a deadline (uv_hrtime, ns; UINT64_MAX: none). A command
** that has not been written when its caller gave up (the request was
** released) is never sent. The reply Redis owes first has a watchdog: when
** its deadline passes without it, the connection is presumed stalled and is
** dropped (that request fails with SK_RESP_ETIMEOUT).
**
** When the connection drops (the peer closed it, a read or write error, a
** reply the reader cannot parse, a stalled reply), every pending command
** fails with SK_RESP_ELOST: whether Redis ran a command whose reply was
** lost cannot be known, so nothing is sent twice. A connect or handshake
** that fails fails the commands waiting for it (SK_RESP_EDOWN, SK_RESP_EAUTH).
** The next command reconnects, but never sooner than the backoff after a
** failed attempt (doubling from SK_RESP_BACKOFF_MIN to SK_RESP_BACKOFF_MAX
** ms, back to none after a handshake succeeds); commands made meanwhile
** wait for that attempt.
**
** Replies are parsed defensively: arrays of more than SK_RESP_MAX_ELEMENTS
** elements, a bulk string claiming bytes past what was read, or more than
** SK_RESP_MAX_BUFFER bytes buffered for one reply are protocol errors, and
** a protocol error drops the connection.
**
** Ownership: the caller of sk_resp_new owns the connection until
** sk_resp_close (its memory goes once its timers are closed). A request
** made by sk_resp_command belongs to its caller, who must call
** sk_resp_release once (before or after it is done); the connection keeps
** a released request that is still pending only until it is answered or
** failed, then frees it. A request never points back to its connection, so
** either may go first.
**
** Threading: a connection belongs to the thread of its loop.
*/
#ifndef SK_RESP_H
#define SK_RESP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sk_io.h"

#define SK_RESP_BACKOFF_MIN 50      /* ms */
#define SK_RESP_BACKOFF_MAX 2000    /* ms */
#define SK_RESP_MAX_ELEMENTS (1 << 24)
#define SK_RESP_MAX_BUFFER ((size_t)600 << 20)
#define SK_RESP_MAX_BUFFER_TEXT "600 MiB"

/* Why a request failed. */
enum {
  SK_RESP_OK = 0,
  SK_RESP_EDOWN,      /* no connection could be made (refused, unreachable, timed out) */
  SK_RESP_EAUTH,      /* Redis refused AUTH or SELECT */
  SK_RESP_ELOST,      /* the connection dropped before the reply came */
  SK_RESP_EPROTO,     /* a reply could not be parsed (the connection was dropped) */
  SK_RESP_ETIMEOUT,   /* no reply by the deadline (the connection was dropped) */
  SK_RESP_ECLOSED,    /* the connection was closed by its owner */
  SK_RESP_ENOMEM
};

/* A reply value (the layout of hiredis's redisReply, made by resp.c's own
** reader functions). type is one of hiredis's REDIS_REPLY_* values. */
typedef struct sk_resp_reply {
  int type;
  long long integer;
  size_t len;
  char *str;
  size_t elements;
  struct sk_resp_reply **element;
} sk_resp_reply;

typedef struct sk_resp_req {
  struct sk_resp_req *next;     /* in the connection's queue or sent list */
  char *cmd;                    /* the formatted command until it is written */
  size_t len;
  uint64_t deadline;            /* uv_hrtime ns; UINT64_MAX: none */
  int internal;                 /* a handshake command (AUTH, SELECT) */
  int done;                     /* answered (reply) or failed (err) */
  int released;                 /* its owner let it go */
  int err;                      /* SK_RESP_* when failed */
  char *msg;                    /* what failed, naming the address (malloc'd) */
  sk_resp_reply *reply;         /* the reply once answered (freed with the request) */
  sk_iowaitlist waiters;        /* woken once it is done */
} sk_resp_req;

typedef struct sk_resp_opts {
  const char *host;
  int port;
  const char *user;             /* ACL user, or NULL */
  const char *password;         /* or NULL: no AUTH */
  int db;                       /* SELECT db when > 0 */
  uint64_t connect_timeout;     /* ns for a connect and its handshake */
} sk_resp_opts;

typedef struct sk_resp sk_resp;

/* A connection (not connected yet) or NULL when out of memory. The options'
** strings are copied. */
sk_resp *sk_resp_new(uv_loop_t *loop, const sk_resp_opts *o);

/* Queues command argv[0..argc) (lengths in lens) with `deadline`: 0 with
** *out the request, or SK_RESP_ENOMEM / SK_RESP_ECLOSED (nothing made). */
int sk_resp_command(sk_resp *r, int argc, const char **argv, const size_t *lens,
                    uint64_t deadline, sk_resp_req **out);

/* The caller lets the request go: freed now when done, else once it is. */
void sk_resp_release(sk_resp_req *q);

/* "host:port", what errors name. */
const char *sk_resp_address(const sk_resp *r);

/* 1 while a connection is up and its handshake done. */
int sk_resp_connected(const sk_resp *r);

/* Fails every pending request with SK_RESP_ECLOSED, closes the stream and
** frees the connection once its handles are closed. */
void sk_resp_close(sk_resp *r);

/* Formats a command (argc arguments, binary-safe) as RESP, a multi-bulk
** array of bulk strings, into a new NUL-terminated buffer *out that the
** caller frees; returns its length (without the NUL), or -1 (*out NULL)
** when out of memory or the command would pass INT_MAX bytes. The bytes are
** what hiredis's redisFormatCommandArgv makes, without its sprintf per
** argument. */
long long sk_resp_format(char **out, int argc, const char **argv, const size_t *lens);

/* Frees a reply tree (what the reader made). */
void sk_resp_reply_free(sk_resp_reply *v);

/* The reply reader on its own (what a connection parses with; the fuzz
** target spec/fuzz/fuzz_resp.c drives it): hiredis's reader with resp.c's
** checked reply functions. feed: 0, or -1 when the bytes buffered for one
** reply pass SK_RESP_MAX_BUFFER. next: 1 with a reply the caller frees
** (sk_resp_reply_free), 0 when more bytes are needed, -1 on a protocol
** error (sk_resp_reader_error says why; the reader is then unusable). */
typedef struct sk_resp_reader sk_resp_reader;
sk_resp_reader *sk_resp_reader_new(void);
void sk_resp_reader_free(sk_resp_reader *r);
int sk_resp_reader_feed(sk_resp_reader *r, const char *buf, size_t len);
int sk_resp_reader_next(sk_resp_reader *r, sk_resp_reply **out);
const char *sk_resp_reader_error(const sk_resp_reader *r);

#endif
