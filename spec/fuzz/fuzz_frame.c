/*
** fuzz_frame.c — libFuzzer target for the frame reader of the process
** protocol (runtime/core/frame.c), the one both sides of a worker's socket
** cut their byte streams with.
**
** Input: a mode byte, a seed byte, then the stream. The mode picks the
** header check (none, the parent's type rules, the child's, or a stateful
** one that, like the pool's, looks at the first payload bytes as they come
** in) and the seed the sizes of the reads. The stream is read twice: all
** at once, and in small pieces of seeded sizes through small buffers (so
** the reader grows, moves what is left to the front, and asks the check
** again as a frame comes in; its memory must follow the bytes that came,
** not the length a header claims). Both reads must see the same frames and end
** the same way (a refused frame at the same place, or the same bytes left
** over), and every frame must be exactly the bytes of the stream at its
** place: its header is sk_frame_head(type, len) and its payload the len
** bytes after. The check is only ever shown bytes that are in. Then the
** frames are written with sk_frame_write2 to a socketpair and read back:
** the writer must give the same stream.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../runtime/core/sk_frame.h"

#define MAXF 4096

typedef struct seen {
  int n;                        /* frames handed out */
  int type[MAXF];
  size_t len[MAXF], at[MAXF];   /* payload length, header offset in the stream */
  int end;                      /* SK_FRAME_BAD or SK_FRAME_MORE */
  size_t bad_at;                /* the refused frame's offset */
} seen;

typedef struct ctx {
  int mode;
  const uint8_t *stream;        /* the whole stream, to compare with */
  size_t size;
  size_t base;                  /* stream offset of the reader's data[0] */
  const sk_frame_reader *r;
} ctx;

static void check_fail(const char *what) {
  fprintf(stderr, "fuzz_frame: %s\n", what);
  abort();
}

/* The check: it may read the header and `avail` payload bytes, no more
** (ASan catches a read past what is in when the buffer ends there). */
static int check(void *ud, const uint8_t *head, size_t avail) {
  ctx *c = ud;
  size_t len = sk_frame_len(head);
  if (avail > len) check_fail("check shown more bytes than the frame holds");
  size_t at = c->base + (size_t)((const char *)head - c->r->data);
  if (at + SK_FRAME_HEAD + avail > c->size) check_fail("check shown bytes not in the stream");
  if (memcmp(head, c->stream + at, SK_FRAME_HEAD + avail) != 0) check_fail("check shown other bytes");
  unsigned sum = 0;
  for (size_t i = 0; i < avail; i++) sum += head[SK_FRAME_HEAD + i];
  switch (c->mode) {
    case 0: return 0;
    case 1: return !sk_frame_type_ok(head, SK_FRAME_TO_PARENT);
    case 2: return !sk_frame_type_ok(head, SK_FRAME_TO_CHILD);
    default:
      /* Like the pool's check: a job id must start with 'j', known once in. */
      if (!sk_frame_type_ok(head, SK_FRAME_TO_PARENT)) return 1;
      if ((head[4] == 'R' || head[4] == 'F') && (len < 9 || (avail >= 1 && head[5] != 'j'))) return 1;
      return sum == 0xdeadbeefu;   /* keeps the loop above */
  }
}

/* Reads the stream through a reader, in pieces of the seeded sizes (0:
** all at once), recording what comes out. */
static void read_stream(const uint8_t *s, size_t size, int mode, unsigned seed, seen *out) {
  sk_frame_reader r = {0};
  ctx c = {mode, s, size, 0, &r};
  size_t fed = 0, most = 0;       /* most: the most bytes the reader held */
  out->n = 0;
  for (;;) {
    sk_frame f;
    int rc = sk_frame_next(&r, check, &c, &f);
    if (rc == SK_FRAME_OK) {
      size_t at = c.base + (size_t)(f.payload - r.data) - SK_FRAME_HEAD;
      uint8_t head[SK_FRAME_HEAD];
      sk_frame_head(head, f.type, f.len);
      if (at + SK_FRAME_HEAD + f.len > size || memcmp(head, s + at, SK_FRAME_HEAD) != 0 ||
          memcmp(f.payload, s + at + SK_FRAME_HEAD, f.len) != 0) {
        check_fail("a frame is not the stream's bytes at its place");
      }
      if (out->n < MAXF) {
        out->type[out->n] = f.type;
        out->len[out->n] = f.len;
        out->at[out->n] = at;
      }
      out->n++;
      continue;
    }
    if (rc == SK_FRAME_BAD) {
      sk_frame again;
      if (f.payload != NULL || sk_frame_next(&r, check, &c, &again) != SK_FRAME_BAD ||
          again.type != f.type || again.len != f.len) {
        check_fail("a refused frame is not refused the same way again");
      }
      const uint8_t *h = sk_frame_partial(&r);
      if (h == NULL || h[4] != f.type || sk_frame_len(h) != f.len) check_fail("partial is not the refused frame");
      out->end = SK_FRAME_BAD;
      out->bad_at = c.base + (size_t)((const char *)h - r.data);
      break;
    }
    if (fed == size) {
      const uint8_t *h = sk_frame_partial(&r);
      size_t left = r.len - r.off;
      if ((left >= SK_FRAME_HEAD) != (h != NULL)) check_fail("partial disagrees with what is left");
      out->end = SK_FRAME_MORE;
      out->bad_at = size - left;
      break;
    }
    size_t piece = size - fed, room;
    size_t min = 1;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      piece = 1 + (seed >> 16) % 23;
      if (piece > size - fed) piece = size - fed;
      min = 1 + (seed >> 8) % 7;
    }
    size_t before = r.off;
    char *to = sk_frame_space(&r, min, &room);
    if (to == NULL) check_fail("out of memory");
    c.base += before;             /* sk_frame_space moved the unread bytes to the front */
    if (room < min) check_fail("less room than asked");
    if (r.len > most) most = r.len;
    if (r.cap > 4 * most + 2 * min + 4096) check_fail("the reader holds memory the bytes did not bring");
    if (piece > room) piece = room;
    memcpy(to, s + fed, piece);
    sk_frame_fill(&r, piece);
    if (r.len > most) most = r.len;
    fed += piece;
  }
  sk_frame_reader_free(&r);
}

static int sv[2] = {-1, -1};

/* Writes the frames again with the blocking writer (split into two parts
** at a seeded place) and reads the socket back: the same bytes. Each frame
** is read back before the next is written, so that many small frames never
** fill the socket (each write is a buffer of its own there). */
static void write_back(const uint8_t *s, const seen *a, unsigned seed) {
  size_t total = 0;
  for (int i = 0; i < a->n && i < MAXF; i++) total += SK_FRAME_HEAD + a->len[i];
  if (total == 0 || total > 65536 || a->n > MAXF) return;
  if (sv[0] < 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return;
  uint8_t *back = malloc(total);
  size_t got = 0;
  for (int i = 0; i < a->n; i++) {
    const uint8_t *p = s + a->at[i] + SK_FRAME_HEAD;
    size_t split = a->len[i] ? (seed + (unsigned)i) % (a->len[i] + 1) : 0;
    if (sk_frame_write2(sv[1], a->type[i], p, split, p + split, a->len[i] - split) != 0) {
      check_fail("the writer failed");
    }
    size_t end = got + SK_FRAME_HEAD + a->len[i];
    while (got < end) {
      ssize_t n = recv(sv[0], back + got, end - got, 0);
      if (n <= 0) check_fail("the socket ended early");
      got += (size_t)n;
    }
  }
  if (memcmp(back, s + a->at[0], total) != 0) check_fail("the writer wrote other bytes");
  free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int mode = data[0] & 3;
  unsigned seed = data[1] | 1u;
  const uint8_t *s = data + 2;
  size_t n = size - 2;
  static seen whole, pieces;
  read_stream(s, n, mode, 0, &whole);
  read_stream(s, n, mode, seed, &pieces);
  if (whole.n != pieces.n || whole.end != pieces.end || whole.bad_at != pieces.bad_at) {
    check_fail("reading in pieces ends otherwise than reading at once");
  }
  for (int i = 0; i < whole.n && i < MAXF; i++) {
    if (whole.type[i] != pieces.type[i] || whole.len[i] != pieces.len[i] || whole.at[i] != pieces.at[i]) {
      check_fail("reading in pieces gives other frames");
    }
  }
  write_back(s, &whole, seed);
  return 0;
}
