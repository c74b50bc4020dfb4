/*
** resp.c — a Redis client connection on the loop (sk_resp.h).
**
** The connection's life is a small state machine:
**   IDLE -> CONNECTING (sk_connect) -> HANDSHAKE (AUTH/SELECT written,
**   their replies awaited) -> READY (commands written as they come)
** and back to IDLE when the connection drops or an attempt fails; CLOSED
** at the end. Requests wait in `queue` until they are written, then in
** `sent` until their reply comes; replies come in the order commands were
** written, so the reply read is always the answer to the head of `sent`.
**
** Bytes are read from the stream with read format "any" and fed to a
** hiredis reader whose reply functions are resp.c's own (so every array
** and string the reader makes is checked first). The stream wakes the
** connection's own sk_iowait from its read callback; processing what came
** runs there and only wakes the requests' waiters (it never runs Lua).
** `busy` keeps that processing from running inside itself when a wake
** comes from a close it started.
**
** One timer (`timer`) serves three ends: the deadline of a connect and its
** handshake, the wait before the next attempt (backoff), and the watchdog
** of the first reply owed. `arm` computes what it waits for from the state.
*/
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/read.h>

#include "sk_net.h"
#include "sk_resp.h"
#include "sk_stream.h"

enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_READY, S_CLOSED };

struct sk_resp {
  uv_loop_t *loop;
  int state;
  char *host, *user, *password, *addr;
  int port, db;
  uint64_t connect_timeout;
  sk_connect *conn;             /* the connect in flight (S_CONNECTING) */
  sk_stream *s;                 /* the stream (S_HANDSHAKE, S_READY) */
  sk_resp_reader *reader;       /* the replies of the current connection */
  sk_iowait cw;                 /* linked on conn->waiters while connecting */
  sk_iowait rw;                 /* linked on s->readers while reading */
  sk_resp_req *qhead, *qtail;   /* made, not yet written */
  sk_resp_req *shead, *stail;   /* written, reply owed */
  uint64_t attempt_deadline;    /* ns: the connect/handshake must be done by then */
  uint64_t retry_at;            /* ns: no attempt before */
  unsigned backoff;             /* ms of the last wait between attempts; 0: none */
  uv_timer_t timer;
  uv_idle_t idle;               /* runs process() after a read callback woke it */
  int nhandles;                 /* handles not yet closed (the memory waits for 0) */
  int busy, again;              /* processing replies; more came meanwhile */
  int dropping;                 /* drop() runs */
  char *last_err;               /* why the last attempt failed (for messages) */
};

/* ------------------------------------------------------ reply objects */

/* The reader's functions. Each checks what hiredis 0.14 does not: an
** array's element count, and that a string lies inside the reader's
** buffer (a bulk length near 2^63 wraps hiredis's own check around). */
static sk_resp_reply *new_reply(const redisReadTask *t, int type) {
  sk_resp_reply *v = calloc(1, sizeof *v);
  if (v == NULL) return NULL;
  v->type = type;
  if (t->parent) {
    sk_resp_reply *p = t->parent->obj;
    if (t->idx < 0 || (size_t)t->idx >= p->elements) {
      free(v);
      return NULL;
    }
    p->element[t->idx] = v;
  }
  return v;
}

struct sk_resp_reader {
  redisReader *rd;
  const char *refused;          /* why a reply function refused a value */
};

static void *create_string(const redisReadTask *t, char *str, size_t len) {
  sk_resp_reader *r = t->privdata;
  redisReader *rd = r->rd;
  if (str < rd->buf || str > rd->buf + rd->len || len > (size_t)(rd->buf + rd->len - str)) {
    r->refused = "a string longer than the bytes received";
    return NULL;
  }
  char *copy = malloc(len + 1);
  if (copy == NULL) return NULL;
  sk_resp_reply *v = new_reply(t, t->type);
  if (v == NULL) {
    free(copy);
    return NULL;
  }
  memcpy(copy, str, len);
  copy[len] = '\0';
  v->str = copy;
  v->len = len;
  return v;
}

static void *create_array(const redisReadTask *t, int n) {
  if (n < 0 || n > SK_RESP_MAX_ELEMENTS) {
    ((sk_resp_reader *)t->privdata)->refused = "an array of more than 16777216 elements";
    return NULL;
  }
  sk_resp_reply **el = n ? calloc((size_t)n, sizeof *el) : NULL;
  if (n && el == NULL) return NULL;
  sk_resp_reply *v = new_reply(t, REDIS_REPLY_ARRAY);
  if (v == NULL) {
    free(el);
    return NULL;
  }
  v->element = el;
  v->elements = (size_t)n;
  return v;
}

static void *create_integer(const redisReadTask *t, long long i) {
  sk_resp_reply *v = new_reply(t, REDIS_REPLY_INTEGER);
  if (v) v->integer = i;
  return v;
}

static void *create_nil(const redisReadTask *t) { return new_reply(t, REDIS_REPLY_NIL); }

void sk_resp_reply_free(sk_resp_reply *v) {
  if (v == NULL) return;
  if (v->element) {
    for (size_t i = 0; i < v->elements; i++) sk_resp_reply_free(v->element[i]);
    free(v->element);
  }
  free(v->str);
  free(v);
}

static void free_object(void *o) { sk_resp_reply_free(o); }

static redisReplyObjectFunctions reply_fns = {create_string, create_array, create_integer,
                                              create_nil, free_object};

sk_resp_reader *sk_resp_reader_new(void) {
  sk_resp_reader *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->rd = redisReaderCreateWithFunctions(&reply_fns);
  if (r->rd == NULL) {
    free(r);
    return NULL;
  }
  r->rd->privdata = r;
  return r;
}

void sk_resp_reader_free(sk_resp_reader *r) {
  if (r == NULL) return;
  redisReaderFree(r->rd);
  free(r);
}

int sk_resp_reader_feed(sk_resp_reader *r, const char *buf, size_t len) {
  if (redisReaderFeed(r->rd, buf, len) != REDIS_OK) return -1;
  if (r->rd->len - r->rd->pos > SK_RESP_MAX_BUFFER) {
    r->refused = "a reply over " SK_RESP_MAX_BUFFER_TEXT;
    return -1;
  }
  return 0;
}

int sk_resp_reader_next(sk_resp_reader *r, sk_resp_reply **out) {
  void *v = NULL;
  *out = NULL;
  if (redisReaderGetReply(r->rd, &v) != REDIS_OK) return -1;
  *out = v;
  return v != NULL;
}

const char *sk_resp_reader_error(const sk_resp_reader *r) {
  if (r->refused) return r->refused;
  return r->rd->errstr[0] ? r->rd->errstr : "protocol error";
}

/* ------------------------------------------------------------ requests */

static void req_free(sk_resp_req *q) {
  free(q->cmd);
  free(q->msg);
  sk_resp_reply_free(q->reply);
  free(q);
}

/* The request is done: its owner is woken, or it is freed when the owner
** let it go already. Takes over `reply`. */
static void req_finish(sk_resp_req *q, int err, const char *msg, sk_resp_reply *reply) {
  free(q->cmd);
  q->cmd = NULL;
  if (q->released) {
    sk_resp_reply_free(reply);
    free(q->msg);
    q->msg = NULL;
    free(q);
    return;
  }
  q->done = 1;
  q->err = err;
  q->reply = reply;
  if (err && msg) q->msg = strdup(msg);
  sk_iowaitlist_wake(&q->waiters);
}

void sk_resp_release(sk_resp_req *q) {
  if (q == NULL) return;
  if (q->done) {
    req_free(q);
    return;
  }
  /* Still pending: the connection frees it when it is answered or failed
  ** (an unwritten one is skipped, never sent). */
  sk_iowait *w;
  while ((w = q->waiters.head.next) != &q->waiters.head) sk_iowait_unlink(w);
  q->released = 1;
}

/* Fails every request of the list starting at `head`. */
static void fail_list(sk_resp_req *head, int err, const char *msg) {
  while (head) {
    sk_resp_req *next = head->next;
    head->next = NULL;
    req_finish(head, err, head->internal ? NULL : msg, NULL);
    head = next;
  }
}

/* ------------------------------------------------------------- timing */

static void arm(sk_resp *r);
static void start_connect(sk_resp *r);
static void connected(sk_resp *r);
static void drop(sk_resp *r, int err_head, int err_rest, const char *msg);

static void on_timer(uv_timer_t *t) {
  sk_resp *r = t->data;
  uint64_t now = uv_hrtime();
  switch (r->state) {
  case S_IDLE:
    if (r->qhead && now >= r->retry_at) start_connect(r);
    else arm(r);
    return;
  case S_CONNECTING:
    if (r->conn && r->conn->done) {
      connected(r);
      return;
    }
    /* fall through */
  case S_HANDSHAKE:
    if (now >= r->attempt_deadline) {
      char msg[512];
      snprintf(msg, sizeof msg, "cannot connect to Redis at %s: timed out", r->addr);
      drop(r, SK_RESP_EDOWN, SK_RESP_EDOWN, msg);
    } else {
      arm(r);
    }
    return;
  case S_READY:
    if (r->shead && r->shead->deadline != UINT64_MAX && now >= r->shead->deadline) {
      char msg[512];
      snprintf(msg, sizeof msg, "connection to Redis at %s dropped: it did not answer in time",
               r->addr);
      drop(r, SK_RESP_ETIMEOUT, SK_RESP_ELOST, msg);
    } else {
      arm(r);
    }
    return;
  default:
    return;
  }
}

/* Sets the timer for what the state waits for (or stops it). */
static void arm(sk_resp *r) {
  uint64_t at = UINT64_MAX;
  switch (r->state) {
  case S_IDLE:
    if (r->qhead) at = r->retry_at;
    break;
  case S_CONNECTING:
    at = r->conn && r->conn->done ? 0 : r->attempt_deadline;
    break;
  case S_HANDSHAKE:
    at = r->attempt_deadline;
    break;
  case S_READY:
    if (r->shead) at = r->shead->deadline;
    break;
  default:
    break;
  }
  if (at == UINT64_MAX) {
    uv_timer_stop(&r->timer);
    return;
  }
  uint64_t now = uv_hrtime();
  uint64_t ms = at > now ? (at - now + 999999) / 1000000 : 0;
  uv_timer_start(&r->timer, on_timer, ms, 0);
}

/* ------------------------------------------------------------- writing */

/* Writes the request and moves it to `sent`. 0 or a libuv error. */
static int send_req(sk_resp *r, sk_resp_req *q) {
  uv_buf_t b = uv_buf_init(q->cmd, (unsigned)q->len);
  int rc = sk_stream_write(r->s, &b, 1);
  free(q->cmd);
  q->cmd = NULL;
  q->next = NULL;
  if (r->stail) r->stail->next = q;
  else r->shead = q;
  r->stail = q;
  return rc;
}

/* Writes what waits in `queue` (READY only), skipping requests whose owner
** gave up before they went out. */
static void flush_queue(sk_resp *r) {
  int was_empty = r->shead == NULL;
  while (r->state == S_READY && r->qhead) {
    sk_resp_req *q = r->qhead;
    r->qhead = q->next;
    if (r->qhead == NULL) r->qtail = NULL;
    if (q->released) {
      req_free(q);
      continue;
    }
    int rc = send_req(r, q);
    if (rc != 0) {
      char msg[512];
      snprintf(msg, sizeof msg, "connection to Redis at %s lost: %s", r->addr, uv_strerror(rc));
      drop(r, SK_RESP_ELOST, SK_RESP_ELOST, msg);
      return;
    }
  }
  if (was_empty && r->shead) arm(r);
}

/* ------------------------------------------------------------- reading */

static void process(sk_resp *r);
static void on_idle(uv_idle_t *h);

/* The stream woke the connection from its read callback, where processing
** must not run (it links the waiter again, and a wake that links itself
** again would be woken again at once): the idle handle runs it next, before
** the loop polls again. */
static void on_readable(sk_iowait *w) {
  sk_resp *r = (sk_resp *)((char *)w - offsetof(sk_resp, rw));
  uv_idle_start(&r->idle, on_idle);
}

static void on_idle(uv_idle_t *h) {
  uv_idle_stop(h);
  process(h->data);
}

/* The handshake's last reply came: commands may go. */
static void handshake_done(sk_resp *r) {
  r->state = S_READY;
  r->backoff = 0;
  r->retry_at = 0;
  free(r->last_err);
  r->last_err = NULL;
  arm(r);
  flush_queue(r);
}

/* One reply for the head of `sent`. */
static void deliver(sk_resp *r, sk_resp_reply *v) {
  sk_resp_req *q = r->shead;
  if (q == NULL) {
    /* Redis never speaks first in RESP2 (no subscriptions here). */
    sk_resp_reply_free(v);
    char msg[512];
    snprintf(msg, sizeof msg, "Redis at %s sent a reply nobody asked for", r->addr);
    drop(r, SK_RESP_EPROTO, SK_RESP_EPROTO, msg);
    return;
  }
  r->shead = q->next;
  if (r->shead == NULL) r->stail = NULL;
  q->next = NULL;
  if (q->internal) {
    if (v->type == REDIS_REPLY_ERROR) {
      char msg[768];
      snprintf(msg, sizeof msg, "Redis at %s refused %s: %.*s", r->addr,
               q->internal == 1 ? "the password (AUTH)" : "SELECT",
               (int)(v->len > 400 ? 400 : v->len), v->str ? v->str : "");
      sk_resp_reply_free(v);
      req_finish(q, 0, NULL, NULL);
      drop(r, SK_RESP_EAUTH, SK_RESP_EAUTH, msg);
      return;
    }
    sk_resp_reply_free(v);
    req_finish(q, 0, NULL, NULL);
    if (r->shead == NULL || !r->shead->internal) handshake_done(r);
    return;
  }
  req_finish(q, 0, NULL, v);
  arm(r);
}

static void process(sk_resp *r) {
  if (r->busy) {
    r->again = 1;
    return;
  }
  r->busy = 1;
  do {
    r->again = 0;
    while (r->s && (r->state == S_HANDSHAKE || r->state == S_READY)) {
      sk_stream *s = r->s;
      sk_rfmt f = {.kind = SK_RF_ANY};
      const char *p;
      size_t len;
      int rc = sk_stream_read(s, &f, &p, &len);
      if (rc == 0) {
        sk_iowait_link(&s->readers, &r->rw);
        break;
      }
      if (rc < 0 || p == NULL) {
        char msg[512];
        snprintf(msg, sizeof msg, "connection to Redis at %s lost: %s", r->addr,
                 rc < 0 ? uv_strerror(rc) : "it closed the connection");
        drop(r, SK_RESP_ELOST, SK_RESP_ELOST, msg);
        break;
      }
      int bad = sk_resp_reader_feed(r->reader, p, len) != 0;
      sk_stream_trim(s);
      while (!bad && r->s == s) {
        sk_resp_reply *v;
        int got = sk_resp_reader_next(r->reader, &v);
        if (got < 0) bad = 1;
        if (got <= 0) break;
        deliver(r, v);
      }
      if (bad) {
        char msg[512];
        snprintf(msg, sizeof msg, "Redis at %s sent a reply that cannot be read (%s)", r->addr,
                 sk_resp_reader_error(r->reader));
        drop(r, SK_RESP_EPROTO, SK_RESP_EPROTO, msg);
        break;
      }
    }
  } while (r->again && r->state != S_CLOSED);
  r->busy = 0;
}

/* ------------------------------------------------------- connecting */

/* Writes "<tag><v>\r\n" at p; returns the end. */
static char *put_head(char *p, char tag, size_t v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  *p++ = tag;
  while (n) *p++ = digits[--n];
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

static size_t head_len(size_t v) {
  size_t n = 3;                 /* the tag and CRLF */
  do {
    n++;
    v /= 10;
  } while (v);
  return n;
}

long long sk_resp_format(char **out, int argc, const char **argv, const size_t *lens) {
  *out = NULL;
  if (argc < 0) return -1;
  size_t total = head_len((size_t)argc);
  for (int i = 0; i < argc; i++) {
    size_t add = head_len(lens[i]) + lens[i] + 2;
    if (lens[i] > INT_MAX || add > INT_MAX - total) return -1;
    total += add;
  }
  char *buf = malloc(total + 1);
  if (buf == NULL) return -1;
  char *p = put_head(buf, '*', (size_t)argc);
  for (int i = 0; i < argc; i++) {
    p = put_head(p, '$', lens[i]);
    if (lens[i]) memcpy(p, argv[i], lens[i]);
    p += lens[i];
    *p++ = '\r';
    *p++ = '\n';
  }
  *p = '\0';
  *out = buf;
  return (long long)total;
}

/* Formats a command into a new request; NULL when out of memory. */
static sk_resp_req *make_req(int argc, const char **argv, const size_t *lens, uint64_t deadline) {
  sk_resp_req *q = calloc(1, sizeof *q);
  if (q == NULL) return NULL;
  char *cmd = NULL;
  long long n = sk_resp_format(&cmd, argc, argv, lens);
  if (n < 0) {
    free(q);
    return NULL;
  }
  q->cmd = cmd;
  q->len = (size_t)n;
  q->deadline = deadline;
  sk_iowaitlist_init(&q->waiters);
  return q;
}

/* Writes AUTH and SELECT (as configured) ahead of everything; 0, or -1
** when that failed (the connection was dropped). */
static int start_handshake(sk_resp *r) {
  const char *argv[3];
  size_t lens[3];
  int nq = 0, tag[2];
  sk_resp_req *hs[2];
  if (r->password) {
    int argc = 0;
    argv[argc] = "AUTH", lens[argc++] = 4;
    if (r->user) argv[argc] = r->user, lens[argc] = strlen(r->user), argc++;
    argv[argc] = r->password, lens[argc] = strlen(r->password), argc++;
    tag[nq] = 1;
    hs[nq++] = make_req(argc, argv, lens, UINT64_MAX);
  }
  if (r->db > 0) {
    char db[16];
    snprintf(db, sizeof db, "%d", r->db);
    argv[0] = "SELECT", lens[0] = 6;
    argv[1] = db, lens[1] = strlen(db);
    tag[nq] = 2;
    hs[nq++] = make_req(2, argv, lens, UINT64_MAX);
  }
  for (int i = 0; i < nq; i++) {
    if (hs[i] == NULL) {
      for (int j = 0; j < nq; j++) free(hs[j] ? hs[j]->cmd : NULL), free(hs[j]);
      drop(r, SK_RESP_ENOMEM, SK_RESP_ENOMEM, "out of memory");
      return -1;
    }
  }
  if (nq == 0) {
    handshake_done(r);
    return 0;
  }
  r->state = S_HANDSHAKE;
  for (int i = 0; i < nq; i++) {
    hs[i]->internal = tag[i];
    hs[i]->released = 1;    /* nobody waits on it: freed once answered */
    int rc = send_req(r, hs[i]);
    if (rc != 0) {
      for (int j = i + 1; j < nq; j++) free(hs[j]->cmd), free(hs[j]);
      char msg[512];
      snprintf(msg, sizeof msg, "cannot connect to Redis at %s: %s", r->addr, uv_strerror(rc));
      drop(r, SK_RESP_EDOWN, SK_RESP_EDOWN, msg);
      return -1;
    }
  }
  return 0;
}

/* The connect job is done: its waiters are woken from inside its own
** callback, where it must not be released, so the timer takes it from
** here at once (connected() runs from on_timer). */
static void on_connected(sk_iowait *w) {
  sk_resp *r = (sk_resp *)((char *)w - offsetof(sk_resp, cw));
  uv_timer_start(&r->timer, on_timer, 0, 0);
}

static void connected(sk_resp *r) {
  sk_connect *c = r->conn;
  if (c->err) {
    char msg[512];
    snprintf(msg, sizeof msg, "cannot connect to Redis at %s: %s", r->addr, uv_strerror(c->err));
    drop(r, SK_RESP_EDOWN, SK_RESP_EDOWN, msg);
    return;
  }
  r->s = sk_connect_take(c);
  sk_connect_release(c);
  r->conn = NULL;
  r->s->name = strdup(r->addr);
  sk_resp_reader_free(r->reader);
  r->reader = sk_resp_reader_new();
  if (r->reader == NULL) {
    drop(r, SK_RESP_ENOMEM, SK_RESP_ENOMEM, "out of memory");
    return;
  }
  if (start_handshake(r) != 0) return;
  process(r);               /* starts reading */
}

static void start_connect(sk_resp *r) {
  r->attempt_deadline = r->connect_timeout == UINT64_MAX ? UINT64_MAX
                                                          : uv_hrtime() + r->connect_timeout;
  int rc = sk_connect_start(r->loop, r->host, r->port, NULL, 1, &r->conn);
  if (rc != 0) {
    r->conn = NULL;
    r->state = S_CONNECTING;  /* drop() treats it as a failed attempt */
    char msg[512];
    snprintf(msg, sizeof msg, "cannot connect to Redis at %s: %s", r->addr, uv_strerror(rc));
    drop(r, SK_RESP_EDOWN, SK_RESP_EDOWN, msg);
    return;
  }
  r->state = S_CONNECTING;
  r->cw.wake = on_connected;
  sk_iowait_link(&r->conn->waiters, &r->cw);
  arm(r);
}

/* The connection is gone (or the attempt failed): the head of `sent` fails
** with err_head, every other pending request with err_rest. A failed
** attempt (not yet READY) fails the queue too and sets the backoff; a
** dropped working connection fails only what was sent (the queue waits for
** the next attempt, which starts at once). */
static void drop(sk_resp *r, int err_head, int err_rest, const char *msg) {
  if (r->dropping) return;
  r->dropping = 1;
  int was_attempt = r->state == S_CONNECTING || r->state == S_HANDSHAKE;
  if (r->conn) {
    sk_iowait_unlink(&r->cw);
    sk_connect_release(r->conn);
    r->conn = NULL;
  }
  if (r->s) {
    sk_iowait_unlink(&r->rw);
    sk_stream_abort(r->s);
    r->s = NULL;
  }
  if (r->reader) {
    sk_resp_reader_free(r->reader);
    r->reader = NULL;
  }
  r->state = r->state == S_CLOSED ? S_CLOSED : S_IDLE;
  sk_resp_req *sent = r->shead;
  r->shead = r->stail = NULL;
  if (sent) {
    sk_resp_req *rest = sent->next;
    sent->next = NULL;
    fail_list(sent, err_head, msg);
    fail_list(rest, err_rest, msg);
  }
  if (was_attempt || r->state == S_CLOSED) {
    sk_resp_req *q = r->qhead;
    r->qhead = r->qtail = NULL;
    fail_list(q, err_rest, msg);
  }
  if (was_attempt) {
    free(r->last_err);
    r->last_err = msg ? strdup(msg) : NULL;
    r->backoff = r->backoff ? r->backoff * 2 : SK_RESP_BACKOFF_MIN;
    if (r->backoff > SK_RESP_BACKOFF_MAX) r->backoff = SK_RESP_BACKOFF_MAX;
    r->retry_at = uv_hrtime() + (uint64_t)r->backoff * 1000000;
  }
  r->dropping = 0;
  if (r->state == S_IDLE && r->qhead) {
    if (uv_hrtime() >= r->retry_at) start_connect(r);
    else arm(r);
  } else if (r->state != S_CLOSED) {
    arm(r);
  }
}

/* --------------------------------------------------------------- API */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

sk_resp *sk_resp_new(uv_loop_t *loop, const sk_resp_opts *o) {
  sk_resp *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->loop = loop;
  r->host = strdup(o->host);
  r->user = dup_or_null(o->user);
  r->password = dup_or_null(o->password);
  size_t n = strlen(o->host) + 16;
  r->addr = malloc(n);
  if (r->host == NULL || r->addr == NULL || (o->user && !r->user) ||
      (o->password && !r->password)) {
    free(r->host), free(r->user), free(r->password), free(r->addr), free(r);
    return NULL;
  }
  if (strchr(o->host, ':')) snprintf(r->addr, n, "[%s]:%d", o->host, o->port);
  else snprintf(r->addr, n, "%s:%d", o->host, o->port);
  r->port = o->port;
  r->db = o->db;
  r->connect_timeout = o->connect_timeout;
  r->state = S_IDLE;
  r->rw.wake = on_readable;
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  uv_idle_init(loop, &r->idle);
  r->idle.data = r;
  r->nhandles = 2;
  return r;
}

const char *sk_resp_address(const sk_resp *r) { return r->addr; }

int sk_resp_connected(const sk_resp *r) { return r->state == S_READY; }

int sk_resp_command(sk_resp *r, int argc, const char **argv, const size_t *lens,
                    uint64_t deadline, sk_resp_req **out) {
  *out = NULL;
  if (r->state == S_CLOSED) return SK_RESP_ECLOSED;
  sk_resp_req *q = make_req(argc, argv, lens, deadline);
  if (q == NULL) return SK_RESP_ENOMEM;
  *out = q;
  if (r->state == S_READY && r->qhead == NULL) {
    int was_empty = r->shead == NULL;
    int rc = send_req(r, q);
    if (rc != 0) {
      char msg[512];
      snprintf(msg, sizeof msg, "connection to Redis at %s lost: %s", r->addr, uv_strerror(rc));
      drop(r, SK_RESP_ELOST, SK_RESP_ELOST, msg);
    } else if (was_empty) {
      arm(r);
    }
    return 0;
  }
  if (r->qtail) r->qtail->next = q;
  else r->qhead = q;
  r->qtail = q;
  if (r->state == S_IDLE) {
    if (uv_hrtime() >= r->retry_at) start_connect(r);
    else arm(r);
  }
  return 0;
}

static void free_closed(uv_handle_t *h) {
  sk_resp *r = h->data;
  if (--r->nhandles > 0) return;
  free(r->host);
  free(r->user);
  free(r->password);
  free(r->addr);
  free(r->last_err);
  free(r);
}

void sk_resp_close(sk_resp *r) {
  if (r->state == S_CLOSED) return;
  r->state = S_CLOSED;
  char msg[512];
  snprintf(msg, sizeof msg, "the connection to Redis at %s was closed", r->addr);
  drop(r, SK_RESP_ECLOSED, SK_RESP_ECLOSED, msg);
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, free_closed);
  uv_close((uv_handle_t *)&r->idle, free_closed);
}
