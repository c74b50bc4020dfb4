/*
** siphash.c — SipHash-2-4 (Aumasson and Bernstein), a keyed 64-bit hash.
** skein uses it as a message authentication code over Lua bytecode in
** marshalled buffers: only bytecode hashed with this process's key is ever
** given to lua_load, so a corrupted or forged buffer cannot feed the
** (unverified) bytecode loader.
*/
#include "sk_siphash.h"

#include <string.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t load64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

#define SIPROUND                                                  \
  do {                                                            \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);     \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                        \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                        \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);     \
  } while (0)

uint64_t sk_siphash(const uint8_t key[16], const void *data, size_t len) {
  const uint8_t *in = data;
  uint64_t k0 = load64(key), k1 = load64(key + 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
  uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
  uint64_t v3 = 0x7465646279746573ULL ^ k1;
  size_t full = len - (len % 8);
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = load64(in + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint8_t tail[8] = {0};
  memcpy(tail, in + full, len - full);
  uint64_t b = ((uint64_t)len << 56) | load64(tail);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}
