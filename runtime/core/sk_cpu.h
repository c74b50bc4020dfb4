/*
** sk_cpu.h — what a spinning loop tells the CPU between two looks at a
** shared word (the queue engine's locks, a thread-pool worker waiting for
** work): a pause, so the spinner gives the core's resources to its sibling
** and leaves the spin politely when the word changes.
*/
#ifndef SK_CPU_H
#define SK_CPU_H

static inline void sk_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif
