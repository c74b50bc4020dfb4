/*
** sk_siphash.h — SipHash-2-4, the keyed hash that authenticates bytecode in
** marshalled buffers.
*/
#ifndef SK_SIPHASH_H
#define SK_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t sk_siphash(const uint8_t key[16], const void *data, size_t len);

#endif
