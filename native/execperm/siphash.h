/*
 * SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012): the keyed hash of
 * execperm's verdict cache (execperm.c: why keyed, and the key drawn at every start). Its own header
 * so that test/enforcement/execperm-siphash.test.ts compiles this very source against the paper's
 * test vectors without the addon exporting anything. 64-bit output; the message is read as
 * little-endian 64-bit words, whatever the machine's byte order.
 */
#ifndef EXECPERM_SIPHASH_H
#define EXECPERM_SIPHASH_H
#include <stddef.h>
#include <stdint.h>

#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND                                                                                    \
  do {                                                                                               \
    v0 += v1, v1 = SIP_ROTL(v1, 13), v1 ^= v0, v0 = SIP_ROTL(v0, 32);                                \
    v2 += v3, v3 = SIP_ROTL(v3, 16), v3 ^= v2;                                                       \
    v0 += v3, v3 = SIP_ROTL(v3, 21), v3 ^= v0;                                                       \
    v2 += v1, v1 = SIP_ROTL(v1, 17), v1 ^= v2, v2 = SIP_ROTL(v2, 32);                                \
  } while (0)

/* SipHash-2-4 of data[0..len) under the key (k0, k1): the key's 16 bytes read as two little-endian words. */
static inline uint64_t siphash_2_4(uint64_t k0, uint64_t k1, const void *data, size_t len) {
  const unsigned char *in = data;
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  uint64_t b = (uint64_t)len << 56, m;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    m = 0;
    for (int j = 0; j < 8; j++) m |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= m;
    SIP_ROUND;
    SIP_ROUND;
    v0 ^= m;
  }
  for (int j = 0; i + (size_t)j < len; j++) b |= (uint64_t)in[i + j] << (8 * j);
  v3 ^= b;
  SIP_ROUND;
  SIP_ROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIP_ROUND;
  SIP_ROUND;
  SIP_ROUND;
  SIP_ROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

#endif
