/* rng.h: the run's seeded random number generator.
 *
 * xoshiro256** (Blackman & Vigna, 2018), seeded through splitmix64 from one
 * 64-bit seed. A run owns one mb_rng (weights init, dropout, shuffling); the
 * same seed gives the same stream on every machine. The state is a plain
 * struct so that checkpoints can save and restore it byte for byte.
 */
#ifndef MB_RNG_H
#define MB_RNG_H

#include <stdint.h>

typedef struct mb_rng {
    uint64_t s[4];
    /* Box-Muller makes normals in pairs; the spare is kept for the next call. */
    int has_spare;
    double spare;
} mb_rng;

void mb_rng_seed(mb_rng *rng, uint64_t seed);
uint64_t mb_rng_next_u64(mb_rng *rng);
uint32_t mb_rng_next_u32(mb_rng *rng);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float mb_rng_uniform_f32(mb_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double mb_rng_uniform(mb_rng *rng);
/* Standard normal (Box-Muller). */
double mb_rng_normal(mb_rng *rng);
/* Uniform integer in [0, n), unbiased (Lemire's method); n > 0. */
uint64_t mb_rng_below(mb_rng *rng, uint64_t n);
/* Fisher-Yates shuffle of an int64 array. */
void mb_rng_shuffle_i64(mb_rng *rng, int64_t *a, int64_t n);

#endif
