/*
** shm_wake.c — wait lists in the segment and wakes across processes: each
** process's mailbox ring and the dispatcher thread that empties it
** (sk_shm.h; the layout is shm_seg.h).
*/
#define _GNU_SOURCE
#include "shm_seg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sk_port.h"

/* ---------------------------------------------------------- waiters */

int sk_shm_proc_live(uint32_t slot, uint32_t gen) {
  if (slot >= MAX_PROCS) return 0;
  proc_rec *p = &hdr()->procs[slot];
  return __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == P_LIVE &&
         __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == gen;
}

static void *dispatch_main(void *arg);
static pthread_once_t dispatch_once = PTHREAD_ONCE_INIT;

static void start_dispatcher(void) {
  pthread_t t;
  pthread_attr_t a;
  sigset_t all, old;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&a, 64 * 1024);
  /* The dispatcher takes no signal: Ctrl-C belongs to the workers. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  if (pthread_create(&t, &a, dispatch_main, NULL) != 0) {
    fprintf(stderr, "skein: cannot start the cross-process wake thread\n");
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&a);
}

int sk_shm_waiter_self(sk_shm_waiter *w, uint32_t port, uint32_t slot, uint32_t gen) {
  if (sk_shm_self_slot < 0) return -1;   /* the process table was full */
  pthread_once(&dispatch_once, start_dispatcher);
  memset(w, 0, sizeof *w);
  w->proc = (uint32_t)sk_shm_self_slot;
  w->proc_gen = hdr()->procs[sk_shm_self_slot].gen;
  w->port = port;
  w->slot = slot;
  w->gen = gen;
  return 0;
}

int sk_shm_waitlist_add(sk_off *head, const sk_shm_waiter *w) {
  sk_shm_waiter *n = sk_shm_alloc(sizeof *n);
  if (n == NULL) return -1;
  *n = *w;
  n->next = 0;
  sk_off *link = head;
  while (*link) link = &((sk_shm_waiter *)sk_shm_ptr(*link))->next;
  *link = sk_shm_off(n);
  return 0;
}

/* Unlinks the records `match` accepts; returns how many. */
static int remove_if(sk_off *head, int (*match)(const sk_shm_waiter *, const void *),
                     const void *ud) {
  int n = 0;
  sk_off *link = head;
  while (*link) {
    sk_shm_waiter *w = sk_shm_ptr(*link);
    if (match(w, ud)) {
      *link = w->next;
      sk_shm_free(w);
      n++;
    } else {
      link = &w->next;
    }
  }
  return n;
}

typedef struct who {
  uint32_t port, slot;
} who;

static int match_self(const sk_shm_waiter *w, const void *ud) {
  const who *x = ud;
  return w->proc == (uint32_t)sk_shm_self_slot && w->port == x->port && w->slot == x->slot;
}

static int match_gone(const sk_shm_waiter *w, const void *ud) {
  return !sk_shm_proc_live(w->proc, w->proc_gen);
}

int sk_shm_waitlist_remove(sk_off *head, uint32_t port, uint32_t slot) {
  who x = {port, slot};
  return remove_if(head, match_self, &x);
}

int sk_shm_waitlist_purge(sk_off *head) { return remove_if(head, match_gone, NULL); }

int sk_shm_waitlist_pop(sk_off *head, sk_shm_waiter *out) {
  while (*head) {
    sk_shm_waiter *w = sk_shm_ptr(*head);
    *head = w->next;
    int live = sk_shm_proc_live(w->proc, w->proc_gen);
    if (live) *out = *w;
    sk_shm_free(w);
    if (live) return 1;
  }
  return 0;
}

static void wake_local(uint32_t port, uint32_t slot, uint32_t gen, int *rc) {
  sk_port *p = sk_port_by_id(port);
  if (p == NULL) {
    *rc = -1;
    return;
  }
  *rc = sk_port_wake(p, slot, gen);
  sk_port_release(p);
}

static long futex(uint32_t *addr, int op, uint32_t val) {
  return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

int sk_shm_wake(const sk_shm_waiter *w) {
  int rc;
  if (w->proc == (uint32_t)sk_shm_self_slot) {
    wake_local(w->port, w->slot, w->gen, &rc);
    return rc;
  }
  if (w->proc >= MAX_PROCS) return -1;
  proc_rec *p = &hdr()->procs[w->proc];
  for (int tries = 0;; tries++) {
    sk_shm_lock(&p->lock);
    if (p->state != P_LIVE || p->gen != w->proc_gen) {
      sk_shm_unlock(&p->lock);
      return -1;
    }
    if (p->tail - p->head < RING) {
      ring_ent *e = &p->ring[p->tail % RING];
      e->port = w->port;
      e->slot = w->slot;
      e->gen = w->gen;
      __atomic_store_n(&p->tail, p->tail + 1, __ATOMIC_RELEASE);
      sk_shm_unlock(&p->lock);
      break;
    }
    pid_t pid = p->pid;
    sk_shm_unlock(&p->lock);
    /* Full: its dispatcher drains in microseconds unless the process is
    ** stopped or gone. */
    if (tries % 1000 == 999 && kill(pid, 0) != 0 && errno == ESRCH) return -1;
    if (tries > 200000) return -1;
    struct timespec ts = {0, 5000};
    nanosleep(&ts, NULL);
  }
  __atomic_add_fetch(&p->bell, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&p->sleeping, __ATOMIC_SEQ_CST)) futex(&p->bell, FUTEX_WAKE, 1);
  return 0;
}

/* The dispatcher: moves the wakes other processes append to this process's
** mailbox onto the ports of its workers. */
static void *dispatch_main(void *arg) {
  proc_rec *me = &hdr()->procs[sk_shm_self_slot];
  ring_ent batch[64];
  for (;;) {
    uint32_t bell = __atomic_load_n(&me->bell, __ATOMIC_SEQ_CST);
    unsigned n = 0;
    sk_shm_lock(&me->lock);
    while (me->head != me->tail && n < 64) batch[n++] = me->ring[me->head++ % RING];
    sk_shm_unlock(&me->lock);
    for (unsigned i = 0; i < n; i++) {
      int rc;
      wake_local(batch[i].port, batch[i].slot, batch[i].gen, &rc);
    }
    if (n) continue;
    __atomic_store_n(&me->sleeping, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&me->bell, __ATOMIC_SEQ_CST) == bell) futex(&me->bell, FUTEX_WAIT, bell);
    __atomic_store_n(&me->sleeping, 0, __ATOMIC_SEQ_CST);
  }
  return arg;
}

