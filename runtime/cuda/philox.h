/* philox.h: Philox4x32-10 counter-based RNG (Salmon et al., SC'11; Random123), host and device.
 *
 * A (counter, key) pair maps to four independent 32-bit words with no state,
 * so dropout masks are a pure function of (seed, offset, element index): the
 * same seed gives the same masks on every run, whatever the launch
 * configuration or thread order. Layout used by the dropout kernels:
 *   key     = {seed low 32 bits, seed high 32 bits}
 *   counter = {element / 4 (low, high 32 bits), offset (low, high 32 bits)}
 * and element i takes word i % 4. offset advances by one per dropout call of
 * a step (the model keeps the count), so no two calls share a stream.
 * Checked against Random123's known-answer vectors (tests/c/test_cuda_host.c).
 */
#ifndef MB_CUDA_PHILOX_H
#define MB_CUDA_PHILOX_H

#include <stdint.h>

#include "hd.h"

#define MB_PHILOX_M0 0xD2511F53u
#define MB_PHILOX_M1 0xCD9E8D57u
#define MB_PHILOX_W0 0x9E3779B9u
#define MB_PHILOX_W1 0xBB67AE85u

MB_HD void mb_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += MB_PHILOX_W0;
            k1 += MB_PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)MB_PHILOX_M0 * c0, p1 = (uint64_t)MB_PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* A 32-bit word to a float uniform in [0, 1) (24 bits, exact in float). */
MB_HD float mb_philox_uniform(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

/* The four words for elements 4*group .. 4*group+3 of dropout call `offset`. */
MB_HD void mb_philox_words(uint64_t seed, uint64_t offset, uint64_t group, uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)group, (uint32_t)(group >> 32), (uint32_t)offset, (uint32_t)(offset >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    mb_philox4x32_10(ctr, key, out);
}

/* 1 (keep) with probability 1 - p for element i of dropout call `offset`. */
MB_HD int mb_philox_keep(uint64_t seed, uint64_t offset, uint64_t i, float p) {
    uint32_t w[4];
    mb_philox_words(seed, offset, i >> 2, w);
    return mb_philox_uniform(w[i & 3]) >= p;
}

#endif
