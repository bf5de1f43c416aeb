/* mp_dtype: element sizes, names and exact float conversions (see mp_dtype.h).
 *
 * All multi-byte loads and stores go through byte assembly so that any alignment and any host
 * byte order read and write little-endian data correctly.
 */
#include "mp_dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dt_table[MP_DT_COUNT] = {
    [MP_DT_BOOL] = {"BOOL", 1},    [MP_DT_U8] = {"U8", 1},
    [MP_DT_I8] = {"I8", 1},        [MP_DT_F8_E5M2] = {"F8_E5M2", 1},
    [MP_DT_F8_E4M3] = {"F8_E4M3", 1}, [MP_DT_I16] = {"I16", 2},
    [MP_DT_U16] = {"U16", 2},      [MP_DT_F16] = {"F16", 2},
    [MP_DT_BF16] = {"BF16", 2},    [MP_DT_I32] = {"I32", 4},
    [MP_DT_U32] = {"U32", 4},      [MP_DT_F32] = {"F32", 4},
    [MP_DT_F64] = {"F64", 8},      [MP_DT_I64] = {"I64", 8},
    [MP_DT_U64] = {"U64", 8},
};

size_t mp_dtype_size(mp_dtype dt)
{
    if ((int)dt < 0 || dt >= MP_DT_COUNT)
        return 0;
    return dt_table[dt].size;
}

const char *mp_dtype_name(mp_dtype dt)
{
    if ((int)dt < 0 || dt >= MP_DT_COUNT)
        return "?";
    return dt_table[dt].name;
}

bool mp_dtype_parse(const char *name, mp_dtype *out)
{
    if (!name)
        return false;
    for (int i = 0; i < MP_DT_COUNT; i++) {
        if (strcmp(name, dt_table[i].name) == 0) {
            if (out)
                *out = (mp_dtype)i;
            return true;
        }
    }
    return false;
}

bool mp_dtype_is_float(mp_dtype dt)
{
    return dt == MP_DT_F32 || dt == MP_DT_F16 || dt == MP_DT_BF16 || dt == MP_DT_F64;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float mp_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* Subnormal: normalise so that the implicit bit (0x400) is set. */
        uint32_t e32 = 127 - 15 + 1;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e32--;
        }
        return bits_f32(sign | (e32 << 23) | ((mant & 0x3ffu) << 13));
    }
    if (exp == 0x1f) /* inf, or NaN keeping its payload */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t mp_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {
        if (x == 0x7f800000u)
            return sign | 0x7c00u;
        /* NaN: keep the top payload bits, force the quiet bit so it cannot become inf. */
        return (uint16_t)(sign | 0x7c00u | 0x200u | ((x & 0x7fffffu) >> 13));
    }
    if (x >= 0x47800000u) /* >= 65536: beyond the rounding range of the largest f16 */
        return sign | 0x7c00u;
    uint32_t e = x >> 23;
    uint32_t mant = x & 0x7fffffu;
    if (e < 113) {
        /* Result is subnormal (or zero) in f16: value in units of 2^-24 is m * 2^(e-126). */
        if (e < 102) /* below half the smallest subnormal */
            return sign;
        uint32_t m = mant | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((e - 112u) << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is correct, up to inf */
    return (uint16_t)(sign | h);
}

float mp_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t mp_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN, sign and top payload kept */
    uint32_t lsb = (x >> 16) & 1u;
    return (uint16_t)((x + 0x7fffu + lsb) >> 16);
}

static uint16_t ld16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t ld32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t ld64(const unsigned char *p)
{
    return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}

static void st16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v & 0xffu);
    p[1] = (unsigned char)(v >> 8);
}

static void st32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)((v >> (8 * i)) & 0xffu);
}

static void st64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)((v >> (8 * i)) & 0xffu);
}

mp_status mp_dtype_to_f32(mp_dtype dt, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    switch (dt) {
    case MP_DT_F32:
        for (size_t i = 0; i < n; i++)
            dst[i] = bits_f32(ld32(p + 4 * i));
        return MP_OK;
    case MP_DT_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = mp_f16_to_f32(ld16(p + 2 * i));
        return MP_OK;
    case MP_DT_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = mp_bf16_to_f32(ld16(p + 2 * i));
        return MP_OK;
    case MP_DT_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = ld64(p + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = (float)d;
        }
        return MP_OK;
    default:
        return mp_error(MP_ERR_UNSUPPORTED, "dtype %s cannot be converted to float32",
                        mp_dtype_name(dt));
    }
}

mp_status mp_dtype_from_f32(mp_dtype dt, const float *src, size_t n, void *dst)
{
    unsigned char *p = dst;
    switch (dt) {
    case MP_DT_F32:
        for (size_t i = 0; i < n; i++)
            st32(p + 4 * i, f32_bits(src[i]));
        return MP_OK;
    case MP_DT_F16:
        for (size_t i = 0; i < n; i++)
            st16(p + 2 * i, mp_f32_to_f16(src[i]));
        return MP_OK;
    case MP_DT_BF16:
        for (size_t i = 0; i < n; i++)
            st16(p + 2 * i, mp_f32_to_bf16(src[i]));
        return MP_OK;
    case MP_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d = (double)src[i];
            uint64_t u;
            memcpy(&u, &d, sizeof u);
            st64(p + 8 * i, u);
        }
        return MP_OK;
    default:
        return mp_error(MP_ERR_UNSUPPORTED, "float32 cannot be converted to dtype %s",
                        mp_dtype_name(dt));
    }
}
