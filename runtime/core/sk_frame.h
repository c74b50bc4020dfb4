/*
** sk_frame.h — the frames of the process protocol, both sides: the one
** place that knows the header layout, which types go which way, their
** length rules, how a frame is written and how a byte stream is cut into
** frames.
**
** A frame is a 5-byte header — the payload's length (uint32 little-endian)
** and a type byte — then the payload: at most SK_FRAME_MAX bytes, which
** every writer refuses to exceed. The types:
**
**   parent -> child: 'K' start (marshal key + process slot, 20 bytes, the
**                    first frame), 'I' init (a pool's flags byte, then the
**                    initializer; a process's init call), 'J' job, 'Q' quit
**                    (empty), 'A' an RPC answer (8-byte call id first);
**   child -> parent: 'R' result, 'F' failure, 'O' ready (empty), 'E'
**                    initializer failed, 'S' job started (its 8-byte id),
**                    'C' an RPC call, 'X' the shared-object references the
**                    next 'R' or 'F' hands over (12 bytes each).
**
** The reader checks every frame's header (through the caller's check,
** which knows what the other side may send *now*) before waiting for its
** payload, so a bogus length is refused at once instead of swallowing
** whatever follows. What a refused frame means (kill the worker, end the
** loop) is the caller's to decide: past it the stream cannot be framed.
**
** Core: libc only. Errors are -1 (writers) or SK_FRAME_BAD (the reader).
*/
#ifndef SK_FRAME_H
#define SK_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define SK_FRAME_HEAD 5
#define SK_FRAME_MAX ((size_t)0xffffffffu)

/* Which way a frame travels. */
enum { SK_FRAME_TO_CHILD = 1, SK_FRAME_TO_PARENT = 2 };

/* Writes the header of a frame of `type` with a `len`-byte payload (len at
** most SK_FRAME_MAX: the caller checks). */
void sk_frame_head(uint8_t head[SK_FRAME_HEAD], int type, size_t len);
/* The payload length a header announces. */
size_t sk_frame_len(const uint8_t head[SK_FRAME_HEAD]);
/* 1 when a frame with this header may travel in direction `dir` at all:
** its type is one of that direction's, and its length fits the type's
** fixed rule ('K' 20 bytes; 'O' and 'Q' empty; 'S' 8; 'A' at least 8).
** The callers' checks add what depends on their state. */
int sk_frame_type_ok(const uint8_t head[SK_FRAME_HEAD], int dir);

/* Blocking writers for a worker process's side (a non-blocking socket is
** waited on with poll). The payload is pre[0..plen) then data[0..len),
** sent in one system call when the socket takes it all. 0, or -1 (the
** peer is gone, or the payload is over SK_FRAME_MAX). */
int sk_frame_write(int fd, int type, const void *data, size_t len);
int sk_frame_write2(int fd, int type, const void *pre, size_t plen, const void *data, size_t len);

/* The incremental reader: bytes come in through sk_frame_space and
** sk_frame_fill (a libuv read callback, or recv), whole frames go out
** through sk_frame_next. A payload handed out stays valid until the next
** sk_frame_space, which moves what is left to the front. */
typedef struct sk_frame_reader {
  char *data;
  size_t len, cap;              /* bytes in, room */
  size_t off;                   /* bytes already handed out as frames */
} sk_frame_reader;

typedef struct sk_frame {
  int type;
  size_t len;                   /* the payload's length, as its header says */
  const char *payload;          /* NULL for a refused frame */
} sk_frame;

/* What the reader asks about each frame before it hands it out: `head` is
** its header, `avail` how many of its payload bytes are in so far (they
** follow the header). Returns 0 to go on, anything else to refuse it. It
** may be asked again, with more bytes in, until the frame is whole. */
typedef int (*sk_frame_check)(void *ud, const uint8_t *head, size_t avail);

enum { SK_FRAME_BAD = -1, SK_FRAME_MORE = 0, SK_FRAME_OK = 1 };

/* Room for the next read: at least `min` free bytes, and more for a frame
** whose header is in (up to its end, growing at most by what the reader
** holds already, so a bogus length costs no memory). Returns where to read
** to (*room bytes), or NULL when out of memory. */
char *sk_frame_space(sk_frame_reader *r, size_t min, size_t *room);
/* `n` bytes were read to where sk_frame_space said. */
void sk_frame_fill(sk_frame_reader *r, size_t n);
/* The next frame: SK_FRAME_OK with *f filled; SK_FRAME_MORE when no whole
** frame is in; SK_FRAME_BAD when `check` (NULL: none) refused the next
** one (f->type and f->len say what its header claimed; it stays where it
** is, so asking again refuses it again). */
int sk_frame_next(sk_frame_reader *r, sk_frame_check check, void *ud, sk_frame *f);
/* The header of a frame begun but not whole, or NULL (for reporting a
** frame cut short by the end of the stream). */
const uint8_t *sk_frame_partial(const sk_frame_reader *r);
/* Drops every byte not yet handed out. */
void sk_frame_drop(sk_frame_reader *r);
void sk_frame_reader_free(sk_frame_reader *r);

#endif
