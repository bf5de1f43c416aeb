/* mp_checked: overflow-checked size arithmetic for sizes that come from files.
 *
 * Every product or sum of sizes read from a header, a sidecar or a config is computed with
 * these; on overflow they return false and leave *out unchanged, so the caller reports the
 * file as malformed instead of running into undefined behaviour (ggml's ggml_new_object,
 * CHOLMOD's mult_size_t). */
#ifndef MP_CHECKED_H
#define MP_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* *out = a * b; false (and *out untouched) when the product does not fit. */
static inline bool mp_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

static inline bool mp_add_i64(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

static inline bool mp_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

static inline bool mp_mul_size(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

#endif
