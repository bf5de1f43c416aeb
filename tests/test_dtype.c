/* test_dtype: exact F16/BF16 <-> F32 conversions, rounding, and the array converters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <string.h>

#include "mp_dtype.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Same value and same sign bit (distinguishes -0 from 0). */
static void assert_same_float(float got, float want)
{
    if (bits(got) != bits(want)) {
        print_error("got %a (0x%08x), want %a (0x%08x)\n", (double)got, bits(got),
                    (double)want, bits(want));
        fail();
    }
}

static void test_f16_to_f32_special(void **state)
{
    (void)state;
    assert_same_float(mp_f16_to_f32(0x0000), 0.0f);
    assert_same_float(mp_f16_to_f32(0x8000), -0.0f);
    assert_same_float(mp_f16_to_f32(0x0001), ldexpf(1.0f, -24));     /* smallest subnormal */
    assert_same_float(mp_f16_to_f32(0x8001), -ldexpf(1.0f, -24));
    assert_same_float(mp_f16_to_f32(0x03ff), ldexpf(1023.0f, -24));  /* largest subnormal */
    assert_same_float(mp_f16_to_f32(0x0400), ldexpf(1.0f, -14));     /* smallest normal */
    assert_same_float(mp_f16_to_f32(0x3c00), 1.0f);
    assert_same_float(mp_f16_to_f32(0xc000), -2.0f);
    assert_same_float(mp_f16_to_f32(0x3555), 0x1.554p-2f);
    assert_same_float(mp_f16_to_f32(0x7bff), 65504.0f);              /* max */
    assert_same_float(mp_f16_to_f32(0xfbff), -65504.0f);
    assert_same_float(mp_f16_to_f32(0x7c00), INFINITY);
    assert_same_float(mp_f16_to_f32(0xfc00), -INFINITY);
    assert_true(isnan(mp_f16_to_f32(0x7e00)));
    assert_true(isnan(mp_f16_to_f32(0x7c01))); /* signalling NaN stays NaN */
    assert_true(isnan(mp_f16_to_f32(0xfe00)));
    assert_true(signbit(mp_f16_to_f32(0xfe00)));
}

static void test_bf16_to_f32_special(void **state)
{
    (void)state;
    assert_same_float(mp_bf16_to_f32(0x0000), 0.0f);
    assert_same_float(mp_bf16_to_f32(0x8000), -0.0f);
    assert_same_float(mp_bf16_to_f32(0x0001), ldexpf(1.0f, -133));   /* smallest subnormal */
    assert_same_float(mp_bf16_to_f32(0x007f), ldexpf(127.0f, -133)); /* largest subnormal */
    assert_same_float(mp_bf16_to_f32(0x3f80), 1.0f);
    assert_same_float(mp_bf16_to_f32(0xc040), -3.0f);
    assert_same_float(mp_bf16_to_f32(0x7f7f), ldexpf(255.0f, 120)); /* max */
    assert_same_float(mp_bf16_to_f32(0x7f80), INFINITY);
    assert_same_float(mp_bf16_to_f32(0xff80), -INFINITY);
    assert_true(isnan(mp_bf16_to_f32(0x7fc0)));
    assert_true(isnan(mp_bf16_to_f32(0x7f81)));
}

static void test_f32_to_f16_rounding(void **state)
{
    (void)state;
    const float ulp = ldexpf(1.0f, -10); /* f16 ulp at 1.0 */
    assert_int_equal(mp_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(mp_f32_to_f16(1.0f + ulp / 2), 0x3c00);             /* tie -> even */
    assert_int_equal(mp_f32_to_f16(1.0f + 3 * ulp / 2), 0x3c02);         /* tie -> even */
    assert_int_equal(mp_f32_to_f16(1.0f + ulp / 2 + ldexpf(1, -20)), 0x3c01); /* above tie */
    assert_int_equal(mp_f32_to_f16(1.0f + ulp / 2 - ldexpf(1, -20)), 0x3c00); /* below tie */
    assert_int_equal(mp_f32_to_f16(-1.0f - ulp / 2), 0xbc00);
    assert_int_equal(mp_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(mp_f32_to_f16(-0.0f), 0x8000);
    /* overflow */
    assert_int_equal(mp_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(mp_f32_to_f16(65519.996f), 0x7bff);
    assert_int_equal(mp_f32_to_f16(65520.0f), 0x7c00); /* tie with 65536 -> even = inf */
    assert_int_equal(mp_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(mp_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(mp_f32_to_f16(FLT_MAX), 0x7c00);
    assert_int_equal(mp_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(mp_f32_to_f16(-INFINITY), 0xfc00);
    /* subnormal results (unit 2^-24) */
    assert_int_equal(mp_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    assert_int_equal(mp_f32_to_f16(-ldexpf(1.0f, -24)), 0x8001);
    assert_int_equal(mp_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);  /* 0.5 unit: tie -> 0 */
    assert_int_equal(mp_f32_to_f16(ldexpf(3.0f, -26)), 0x0001);  /* 0.75 unit */
    assert_int_equal(mp_f32_to_f16(ldexpf(3.0f, -25)), 0x0002);  /* 1.5 units: tie -> 2 */
    assert_int_equal(mp_f32_to_f16(ldexpf(5.0f, -25)), 0x0002);  /* 2.5 units: tie -> 2 */
    assert_int_equal(mp_f32_to_f16(ldexpf(1023.0f, -24)), 0x03ff);
    assert_int_equal(mp_f32_to_f16(ldexpf(2047.0f, -25)), 0x0400); /* 1023.5 -> normal */
    assert_int_equal(mp_f32_to_f16(ldexpf(1.0f, -30)), 0x0000);
    assert_int_equal(mp_f32_to_f16(-1e-10f), 0x8000);
    assert_int_equal(mp_f32_to_f16(FLT_TRUE_MIN), 0x0000);
    /* NaN stays NaN, whatever its payload */
    uint16_t n1 = mp_f32_to_f16(NAN);
    uint16_t n2 = mp_f32_to_f16(from_bits(0x7f800001u)); /* payload only in the low bits */
    uint16_t n3 = mp_f32_to_f16(from_bits(0xffc00000u));
    assert_true((n1 & 0x7c00) == 0x7c00 && (n1 & 0x3ff) != 0);
    assert_true((n2 & 0x7c00) == 0x7c00 && (n2 & 0x3ff) != 0);
    assert_true((n3 & 0x7c00) == 0x7c00 && (n3 & 0x3ff) != 0 && (n3 & 0x8000));
}

static void test_f32_to_bf16_rounding(void **state)
{
    (void)state;
    const float ulp = ldexpf(1.0f, -7);
    assert_int_equal(mp_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(mp_f32_to_bf16(1.0f + ulp / 2), 0x3f80);     /* tie -> even */
    assert_int_equal(mp_f32_to_bf16(1.0f + 3 * ulp / 2), 0x3f82); /* tie -> even */
    assert_int_equal(mp_f32_to_bf16(1.0f + ulp / 2 + ldexpf(1, -20)), 0x3f81);
    assert_int_equal(mp_f32_to_bf16(-0.0f), 0x8000);
    /* overflow */
    assert_int_equal(mp_f32_to_bf16(ldexpf(255.0f, 120)), 0x7f7f);
    assert_int_equal(mp_f32_to_bf16(FLT_MAX), 0x7f80);
    assert_int_equal(mp_f32_to_bf16(-FLT_MAX), 0xff80);
    assert_int_equal(mp_f32_to_bf16(INFINITY), 0x7f80);
    /* subnormal results */
    assert_int_equal(mp_f32_to_bf16(from_bits(0x00008000u)), 0x0000); /* tie -> 0 */
    assert_int_equal(mp_f32_to_bf16(from_bits(0x00018000u)), 0x0002); /* tie -> 2 */
    assert_int_equal(mp_f32_to_bf16(from_bits(0x00010001u)), 0x0001);
    assert_int_equal(mp_f32_to_bf16(from_bits(0x00008001u)), 0x0001);
    assert_int_equal(mp_f32_to_bf16(ldexpf(1.0f, -133)), 0x0001);
    /* NaN stays NaN, even with a payload only in the low 16 bits */
    uint16_t n1 = mp_f32_to_bf16(NAN);
    uint16_t n2 = mp_f32_to_bf16(from_bits(0x7f800001u));
    uint16_t n3 = mp_f32_to_bf16(from_bits(0xff800001u));
    assert_true(isnan(mp_bf16_to_f32(n1)));
    assert_true(isnan(mp_bf16_to_f32(n2)));
    assert_true(isnan(mp_bf16_to_f32(n3)) && (n3 & 0x8000));
}

/* Every f16 pattern widens to the value its fields define and narrows back to itself. */
static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t s = h >> 15, e = (h >> 10) & 0x1f, mnt = h & 0x3ff;
        float f = mp_f16_to_f32((uint16_t)h);
        if (e == 0x1f) {
            if (mnt == 0)
                assert_same_float(f, s ? -INFINITY : INFINITY);
            else
                assert_true(isnan(f));
        } else {
            float want = e == 0 ? ldexpf((float)mnt, -24)
                                : ldexpf((float)(1024 + mnt), (int)e - 25);
            assert_same_float(f, s ? -want : want);
        }
        uint16_t back = mp_f32_to_f16(f);
        if (isnan(f)) {
            assert_true(isnan(mp_f16_to_f32(back)));
        } else if (back != h) {
            print_error("f16 0x%04x -> %a -> 0x%04x\n", h, (double)f, back);
            fail();
        }
    }
}

static void test_bf16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mp_bf16_to_f32((uint16_t)h);
        assert_int_equal(bits(f), h << 16);
        uint16_t back = mp_f32_to_bf16(f);
        if (isnan(f)) {
            assert_true(isnan(mp_bf16_to_f32(back)));
        } else if (back != h) {
            print_error("bf16 0x%04x -> %a -> 0x%04x\n", h, (double)f, back);
            fail();
        }
    }
}

/* Array converters: little-endian, at an odd address. */
static void test_arrays_unaligned(void **state)
{
    (void)state;
    unsigned char buf[1 + 8 * 4];
    float vals[4] = {1.0f, -2.5f, 0.25f, 65504.0f}, out[4];
    /* F16 little-endian bytes of 1.0 = 0x3c00 -> 00 3c */
    assert_int_equal(mp_dtype_from_f32(MP_DT_F16, vals, 4, buf + 1), MP_OK);
    assert_int_equal(buf[1], 0x00);
    assert_int_equal(buf[2], 0x3c);
    assert_int_equal(mp_dtype_to_f32(MP_DT_F16, buf + 1, 4, out), MP_OK);
    for (int i = 0; i < 4; i++)
        assert_same_float(out[i], vals[i]);
    assert_int_equal(mp_dtype_from_f32(MP_DT_BF16, vals, 4, buf + 1), MP_OK);
    assert_int_equal(buf[1], 0x80);
    assert_int_equal(buf[2], 0x3f);
    assert_int_equal(mp_dtype_to_f32(MP_DT_BF16, buf + 1, 3, out), MP_OK);
    for (int i = 0; i < 3; i++)
        assert_same_float(out[i], vals[i]);
    assert_int_equal(mp_dtype_from_f32(MP_DT_F32, vals, 4, buf + 1), MP_OK);
    assert_int_equal(buf[4], 0x3f); /* 1.0f = 0x3f800000 */
    assert_int_equal(mp_dtype_to_f32(MP_DT_F32, buf + 1, 4, out), MP_OK);
    for (int i = 0; i < 4; i++)
        assert_same_float(out[i], vals[i]);
    assert_int_equal(mp_dtype_from_f32(MP_DT_F64, vals, 4, buf + 1), MP_OK);
    assert_int_equal(buf[8], 0x3f); /* 1.0 = 0x3ff0000000000000 */
    assert_int_equal(buf[7], 0xf0);
    assert_int_equal(mp_dtype_to_f32(MP_DT_F64, buf + 1, 4, out), MP_OK);
    for (int i = 0; i < 4; i++)
        assert_same_float(out[i], vals[i]);
    assert_int_equal(mp_dtype_to_f32(MP_DT_I64, buf, 1, out), MP_ERR_UNSUPPORTED);
    assert_int_equal(mp_dtype_from_f32(MP_DT_U8, vals, 1, buf), MP_ERR_UNSUPPORTED);
}

static void test_names_sizes(void **state)
{
    (void)state;
    mp_dtype dt;
    for (int i = 0; i < MP_DT_COUNT; i++) {
        assert_true(mp_dtype_parse(mp_dtype_name((mp_dtype)i), &dt));
        assert_int_equal(dt, i);
        assert_true(mp_dtype_size((mp_dtype)i) >= 1);
    }
    assert_false(mp_dtype_parse("F33", &dt));
    assert_false(mp_dtype_parse("f32", &dt));
    assert_int_equal(mp_dtype_size(MP_DT_BF16), 2);
    assert_int_equal(mp_dtype_size(MP_DT_I64), 8);
    assert_int_equal(mp_dtype_size(MP_DT_F8_E4M3), 1);
    assert_true(mp_dtype_is_float(MP_DT_F16));
    assert_false(mp_dtype_is_float(MP_DT_I32));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_to_f32_special),  cmocka_unit_test(test_bf16_to_f32_special),
        cmocka_unit_test(test_f32_to_f16_rounding), cmocka_unit_test(test_f32_to_bf16_rounding),
        cmocka_unit_test(test_f16_exhaustive),      cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_arrays_unaligned),    cmocka_unit_test(test_names_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
