/* test_util: helpers shared by the cmocka tests: a seeded PRNG (rand() is not used anywhere)
 * and allocations that fail the test instead of returning NULL. Include after <cmocka.h>. */
#ifndef MP_TEST_UTIL_H
#define MP_TEST_UTIL_H

#include <stdint.h>
#include <stdlib.h>

/* splitmix64 (Steele, Lea, Flood 2014): a 64-bit state advanced by a Weyl constant and mixed. */
typedef struct {
    uint64_t s;
} prng;

static inline uint64_t prng_next(prng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi), 53 random bits. */
static inline double prng_uniform(prng *r, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(prng_next(r) >> 11) * 0x1.0p-53);
}

static inline double *dalloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

static inline float *falloc(int64_t n)
{
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

#endif
