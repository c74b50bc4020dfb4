/*
** sk_stream.h — a byte stream on the loop (stream.c): a TCP connection, a
** Unix-socket connection or a pipe to a subprocess, with a read buffer and
** a bounded write queue. No Lua: the bindings (lua/net.c, lua/exec.c) turn
** its results into values and its waits into wait sources.
**
** Reading: the stream reads into its buffer (sk_rbuf) only while someone
** needs bytes (a reader whose format the buffer cannot answer yet, or a
** select waiting for it to become readable) or the buffer holds less than
** SK_STREAM_READ_AHEAD; beyond that it stops reading, so a peer that sends
** faster than the program reads is held back by TCP, not by memory. A line
** read ("l", "L") fails with UV_EMSGSIZE once more than `max_line` bytes
** arrived without an end of line.
**
** Writing: sk_stream_write tries the socket at once (uv_try_write) and
** queues what it could not write, copied; `wqueued` counts the bytes queued
** and not yet written. A writer waits (its binding's choice) while
** `wqueued` is above the high-water mark `hwm`, so memory stays bounded by
** the mark plus one write.
**
** Ownership: sk_stream_new's caller owns the stream until it calls
** sk_stream_close, which closes the handle; the memory is freed in the
** close callback. Waiters linked on a closed stream are woken and unlinked
** by sk_stream_close itself, so nothing points into it afterwards.
**
** Threading: a stream belongs to the thread of its loop.
*/
#ifndef SK_STREAM_H
#define SK_STREAM_H

#include <stddef.h>
#include <uv.h>

#include "sk_io.h"
#include "sk_port.h"
#include "sk_rbuf.h"

enum { SK_STREAM_TCP, SK_STREAM_PIPE };

#define SK_STREAM_READ_AHEAD (64 * 1024)
#define SK_STREAM_HWM (1024 * 1024)
#define SK_STREAM_MAX_LINE (1024 * 1024)
#define SK_STREAM_LINGER 10000  /* ms a closed stream waits to write out its queue */

typedef struct sk_stream {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } u;
  int kind;                     /* SK_STREAM_TCP or SK_STREAM_PIPE */
  sk_rbuf rb;
  size_t want;                  /* a reader needs more than the buffer holds */
  size_t max_line;
  size_t wqueued, hwm;
  int reading;                  /* uv_read_start is on */
  int eof;                      /* the peer ended its side: rb is all that is left */
  int rerr;                     /* a read error (libuv code), reported once rb is empty */
  int werr;                     /* the first write error: every later write reports it */
  int shut;                     /* shutdown was asked for */
  int closed;                   /* sk_stream_close was called */
  int nreqs;                    /* write and shutdown requests in flight */
  int handle_closing;           /* uv_close was called on the handle */
  uv_timer_t *linger;           /* a graceful close's limit (own close callback) */
  sk_iowaitlist readers;        /* waiting for bytes, the end or an error */
  sk_iowaitlist writers;        /* waiting for room (wqueued <= hwm) or a flush (0) */
  sk_waitlist selectors;        /* skein.select's records: woken when readable */
  char *name;                   /* what errors name (an address, "pid 12 stdout"); freed with it */
  void *data;                   /* the owner's */
} sk_stream;

/* A stream of `kind` on `loop` (its handle initialised, not connected), or
** NULL with *err set. */
sk_stream *sk_stream_new(uv_loop_t *loop, int kind, int *err);

/* Answers read format `f` from the buffer: 1 with the bytes in out/len
** (valid until the next call on the stream), *out NULL at the end of the
** stream; 0 when it must wait for more (reading is on, a waiter on
** `readers` is woken when something arrives); a libuv error code (< 0): a
** read error, UV_EMSGSIZE for a line over max_line, UV_EBADF when closed.
** "any" (SK_RF_ANY) gives whatever is buffered, at least one byte. */
int sk_stream_read(sk_stream *s, const sk_rfmt *f, const char **out, size_t *len);

/* Frees the buffer when it holds nothing and grew past 16 KiB (call once
** the bytes a read gave were used), so that an idle stream holds at most a
** small buffer. */
void sk_stream_trim(sk_stream *s);

/* 1 when a read would not wait (bytes buffered, the end or an error);
** otherwise 0, and reading is on so that it becomes so. */
int sk_stream_readable(sk_stream *s);

/* Writes the `n` buffers: what the socket does not take at once is queued
** (copied). 0, or a libuv error code (the first write error, UV_EPIPE after
** a shutdown, UV_EBADF when closed), in which case nothing was queued. */
int sk_stream_write(sk_stream *s, const uv_buf_t *bufs, unsigned n);

/* 1 when a writer may queue more (wqueued <= hwm, or the stream failed:
** the write will report it). */
int sk_stream_writable(const sk_stream *s);
/* 1 when everything queued was written (or can never be). */
int sk_stream_flushed(const sk_stream *s);

/* Ends the writing side once the queue drains (the peer reads the end).
** 0 or a libuv error code. */
int sk_stream_shutdown(sk_stream *s);

/* Closes the stream to its users: wakes and unlinks every waiter and stops
** reading. What was queued is still written out: the handle closes once
** the queue is empty, or after SK_STREAM_LINGER ms at most; its close
** callback frees the stream. Idempotent until the memory is gone. */
void sk_stream_close(sk_stream *s);
/* Closes at once, dropping what is queued. */
void sk_stream_abort(sk_stream *s);

/* The peer's or the local address as text (sk_addr_text); for a Unix
** socket, its path. 0 or a libuv error code. */
int sk_stream_addr(sk_stream *s, int peer, char *host, size_t n, int *port);

/* The select hooks: adds a waiter record woken when the stream becomes
** readable (1: readable already, nothing added; -1: out of memory), and
** removes the records of (port, slot). */
int sk_stream_add_selector(sk_stream *s, const sk_waiter *w);
void sk_stream_remove_selector(sk_stream *s, sk_port *port, uint32_t slot);

#endif
