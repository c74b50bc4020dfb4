/*
** test_stream.c — how a stream (runtime/core/sk_stream.h) buffers what it
** reads, which has no Lua face: small messages read into an empty stream
** take a buffer of their own size, not a read's worth, and keep it from one
** message to the next (a request/response server reads every message into
** an empty stream: a read-sized buffer per connection made 10 000 idle
** connections hold 40 MB, and one allocated and freed per message made
** malloc give its heap back and fault it in again every loop turn); a large
** transfer arriving into an empty stream comes through whole and in order,
** and the large buffer it needed is freed once emptied; the loop closes
** with nothing left open. Prints TAP.
**
** White-box: it reads the stream's buffer fields.
*/
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../runtime/core/sk_stream.h"

#include "tap.h"

/* Runs the loop until format `f` can be answered (at most 1000 turns). */
static int read_now(uv_loop_t *loop, sk_stream *s, const sk_rfmt *f, const char **out, size_t *len) {
  for (int i = 0; i < 1000; i++) {
    int r = sk_stream_read(s, f, out, len);
    if (r != 0) return r;
    uv_run(loop, UV_RUN_ONCE);
  }
  return 0;
}

/* Writes all of `p` to the blocking descriptor `fd`. */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(void) {
  uv_loop_t loop;
  int fds[2], err = 0;
  uv_loop_init(&loop);
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return 1;
  sk_stream *s = sk_stream_new(&loop, SK_STREAM_PIPE, &err);
  ok(s != NULL && uv_pipe_open(&s->u.pipe, fds[0]) == 0, "a stream over one end of a socket pair");

  sk_rfmt any = {.kind = SK_RF_ANY};
  const char *out;
  size_t len;
  char msg[64];
  for (int i = 0; i < 64; i++) msg[i] = (char)('a' + i % 26);
  char *kept = NULL;
  for (int round = 0; round < 3; round++) {
    write_all(fds[1], msg, sizeof msg);
    int r = read_now(&loop, s, &any, &out, &len);
    ok(r == 1 && len == sizeof msg && memcmp(out, msg, len) == 0, "round %d: \"any\" gives the 64 bytes",
       round);
    ok(s->rb.cap <= 64, "round %d: they take a buffer of their size (%zu bytes), not a read's worth",
       round, s->rb.cap);
    sk_stream_trim(s);
    if (round == 0) kept = s->rb.data;
    else ok(kept != NULL && s->rb.data == kept, "round %d: the emptied buffer was kept and reused", round);
  }

  /* A transfer larger than one read: the first read lands in the scratch,
  ** the rest straight in the stream's buffer; n-byte reads see it whole. */
  enum { BIG = 300 * 1024 };
  static char big[BIG], got[BIG];
  for (size_t i = 0; i < BIG; i++) big[i] = (char)(i * 7 + i / 1000);
  size_t have = 0;
  int whole = 1;
  size_t sent = 0;
  while (have < BIG && whole) {
    /* Fed as it is read, so that the blocking writes never wait: the
    ** stream stops reading ahead at SK_STREAM_READ_AHEAD. */
    if (sent < BIG && sent - have < 65536) {
      size_t chunk = BIG - sent < 32768 ? BIG - sent : 32768;
      write_all(fds[1], big + sent, chunk);
      sent += chunk;
    }
    sk_rfmt n = {.kind = SK_RF_N, .n = 1000 < BIG - have ? 1000 : BIG - have};
    int r = read_now(&loop, s, &n, &out, &len);
    if (r != 1 || len != n.n) whole = 0;
    else {
      memcpy(got + have, out, len);
      have += len;
    }
  }
  ok(whole && have == BIG && memcmp(got, big, BIG) == 0, "300 KiB arrive whole and in order");
  sk_stream_trim(s);
  ok(s->rb.data == NULL, "the large buffer they needed is freed once emptied");
  write_all(fds[1], msg, sizeof msg);
  ok(read_now(&loop, s, &any, &out, &len) == 1 && len == sizeof msg && s->rb.cap <= 64,
     "the next small message takes a small buffer again");

  close(fds[1]);
  sk_rfmt all = {.kind = SK_RF_ALL};
  int r = read_now(&loop, s, &all, &out, &len);
  ok(r == 1 && (out == NULL || len == 0), "then the end of the stream");
  sk_stream_close(s);
  uv_run(&loop, UV_RUN_DEFAULT);
  ok(uv_loop_close(&loop) == 0, "the loop closes with nothing left open");
  return tap_done();
}
