/* rng.c: xoshiro256** with splitmix64 seeding, uniform, normal, shuffle. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void mb_rng_seed(mb_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
    rng->has_spare = 0;
    rng->spare = 0.0;
}

uint64_t mb_rng_next_u64(mb_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t mb_rng_next_u32(mb_rng *rng) { return (uint32_t)(mb_rng_next_u64(rng) >> 32); }

float mb_rng_uniform_f32(mb_rng *rng) {
    return (float)(mb_rng_next_u64(rng) >> 40) * (1.0f / 16777216.0f);
}

double mb_rng_uniform(mb_rng *rng) {
    return (double)(mb_rng_next_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
}

double mb_rng_normal(mb_rng *rng) {
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare;
    }
    double u1, u2;
    do u1 = mb_rng_uniform(rng); while (u1 <= 0.0);
    u2 = mb_rng_uniform(rng);
    double r = sqrt(-2.0 * log(u1));
    double theta = 2.0 * M_PI * u2;
    rng->spare = r * sin(theta);
    rng->has_spare = 1;
    return r * cos(theta);
}

uint64_t mb_rng_below(mb_rng *rng, uint64_t n) {
    /* Lemire's nearly divisionless method on 64 bits via 128-bit product. */
    uint64_t x = mb_rng_next_u64(rng);
    __uint128_t m = (__uint128_t)x * n;
    uint64_t l = (uint64_t)m;
    if (l < n) {
        uint64_t t = (0 - n) % n;
        while (l < t) {
            x = mb_rng_next_u64(rng);
            m = (__uint128_t)x * n;
            l = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

void mb_rng_shuffle_i64(mb_rng *rng, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mb_rng_below(rng, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
