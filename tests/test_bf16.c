/* test_bf16: the bf16 products of --compute bf16 against float64 references on the rounded
 * inputs: the converters, mp_bf16_gemm_nt (strided, several shapes), a linear layer with bias,
 * the Hessian in panels; repeatability; the mode names. Run twice by CTest: with the default
 * backend (oneDNN where the CPU has bf16 kernels) and with MPIPRUNE_BF16_EMULATE=1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_bf16.h"
#include "mp_dtype.h"
#include "mp_hessian.h"
#include "mp_layers.h"
#include "test_util.h"

/* Products of bf16 values are exact in float32: only the float32 sums round, by at most about
 * k·2⁻²⁴ of Σ|a||b| (in practice √k·2⁻²⁴). */
#define SUM_RTOL 1e-5

static uint16_t *balloc(int64_t n)
{
    uint16_t *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

static void fill(prng *r, float *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)prng_uniform(r, -scale, scale);
}

static void test_names(void **state)
{
    (void)state;
    mp_compute c = MP_COMPUTE_F32;
    assert_int_equal(mp_compute_parse("bf16", &c), MP_OK);
    assert_int_equal(c, MP_COMPUTE_BF16);
    assert_string_equal(mp_compute_name(c), "bf16");
    assert_int_equal(mp_compute_parse("f32", &c), MP_OK);
    assert_int_equal(c, MP_COMPUTE_F32);
    assert_int_equal(mp_compute_parse("fp16", &c), MP_ERR_ARG);
    assert_non_null(strstr(mp_error_message(), "fp16"));
    assert_int_equal(mp_compute_parse(NULL, &c), MP_ERR_ARG);
    const char *b = mp_bf16_backend();
    assert_true(strlen(b) > 0);
    const char *emu = getenv("MPIPRUNE_BF16_EMULATE");
    if (emu && strcmp(emu, "1") == 0)
        assert_false(mp_bf16_native());
    assert_true(mp_bf16_native() == (strncmp(b, "oneDNN", 6) == 0));
    print_message("bf16 backend: %s\n", b);
}

static void test_convert(void **state)
{
    (void)state;
    prng r = {7};
    int64_t rows = 37, cols = 45;
    float *x = falloc(rows * cols);
    fill(&r, x, rows * cols, 3.0);
    x[5] = NAN;
    x[6] = -INFINITY;
    uint16_t *a = balloc(rows * cols), *t = balloc(rows * cols);
    mp_bf16_from_f32(x, rows * cols, a);
    mp_bf16_from_f32_t(x, rows, cols, t);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            assert_int_equal(a[i * cols + j], mp_f32_to_bf16(x[i * cols + j]));
            assert_int_equal(t[j * rows + i], a[i * cols + j]);
        }
    assert_true(isnan(mp_bf16_to_f32(a[5])));
    free(x);
    free(a);
    free(t);
}

/* c = a bᵀ against float64 on the rounded inputs, strided, padding untouched. */
static void check_gemm(int64_t m, int64_t n, int64_t k, uint64_t seed)
{
    prng r = {seed};
    int64_t lda = k + 3, ldb = k + 5, ldc = n + 2;
    float *af = falloc(m * lda), *bfl = falloc(n * ldb);
    fill(&r, af, m * lda, 1.0);
    fill(&r, bfl, n * ldb, 2.0);
    uint16_t *a = balloc(m * lda), *b = balloc(n * ldb);
    mp_bf16_from_f32(af, m * lda, a);
    mp_bf16_from_f32(bfl, n * ldb, b);
    float *c = falloc(m * ldc), *c2 = falloc(m * ldc);
    for (int64_t i = 0; i < m * ldc; i++)
        c[i] = c2[i] = 12345.0f;
    assert_int_equal(mp_bf16_gemm_nt(m, n, k, a, lda, b, ldb, c, ldc), MP_OK);
    assert_int_equal(mp_bf16_gemm_nt(m, n, k, a, lda, b, ldb, c2, ldc), MP_OK);
    assert_memory_equal(c, c2, (size_t)(m * ldc) * sizeof(float)); /* repeatable */
    double worst = 0.0, worst_f32 = 0.0;
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0, sa = 0.0, sf = 0.0;
            for (int64_t p = 0; p < k; p++) {
                double x = mp_bf16_to_f32(a[i * lda + p]), y = mp_bf16_to_f32(b[j * ldb + p]);
                s += x * y;
                sa += fabs(x * y);
                sf += (double)af[i * lda + p] * bfl[j * ldb + p];
            }
            double e = fabs((double)c[i * ldc + j] - s) / sa;
            double ef = fabs((double)c[i * ldc + j] - sf) / sa;
            worst = e > worst ? e : worst;
            worst_f32 = ef > worst_f32 ? ef : worst_f32;
        }
        for (int64_t j = n; j < ldc; j++)
            assert_true(c[i * ldc + j] == 12345.0f);
    }
    print_message("gemm %lld x %lld x %lld: error %.2e of sum|ab| (vs unrounded inputs %.2e)\n",
                  (long long)m, (long long)n, (long long)k, worst, worst_f32);
    assert_true(worst <= SUM_RTOL);
    /* Against the unrounded inputs the error is the inputs' rounding (2⁻⁹ each): the products
     * did see bf16, not float32 (seen on every element but a lucky few of a tiny product). */
    assert_true(worst_f32 < 1e-2);
    if (m * n >= 64)
        assert_true(worst_f32 > 10 * SUM_RTOL);
    free(af);
    free(bfl);
    free(a);
    free(b);
    free(c);
    free(c2);
}

static void test_gemm(void **state)
{
    (void)state;
    check_gemm(37, 53, 300, 1);
    check_gemm(256, 300, 1024, 2);
    check_gemm(1, 1, 17, 3);
    check_gemm(64, 576, 64, 4);
}

static void test_gemm_edges(void **state)
{
    (void)state;
    uint16_t a[4] = {0}, b[4] = {0};
    float c[4] = {1, 2, 3, 4};
    assert_int_equal(mp_bf16_gemm_nt(2, 2, 0, a, 0, b, 0, c, 2), MP_OK);
    for (int i = 0; i < 4; i++)
        assert_true(c[i] == 0.0f);
    assert_int_equal(mp_bf16_gemm_nt(-1, 2, 2, a, 2, b, 2, c, 2), MP_ERR_RANGE);
    assert_int_equal(mp_bf16_gemm_nt(2, 2, 2, a, 1, b, 2, c, 2), MP_ERR_RANGE); /* lda < k */
    assert_int_equal(mp_bf16_gemm_nt(0, 2, 2, a, 2, b, 2, c, 2), MP_OK);
}

static void test_linear(void **state)
{
    (void)state;
    prng r = {11};
    int64_t rows = 70, in = 96, out = 40;
    float *w = falloc(out * in), *bias = falloc(out), *x = falloc(rows * in);
    float *y = falloc(rows * out);
    fill(&r, w, out * in, 0.5);
    fill(&r, bias, out, 1.0);
    fill(&r, x, rows * in, 2.0);
    uint16_t *wb = balloc(out * in);
    mp_bf16_from_f32(w, out * in, wb);
    mp_linear l = {.out = out, .in = in, .w = w, .b = bias, .present = true, .wbf = wb};
    assert_int_equal(mp_linear_forward(&l, x, rows, y), MP_OK);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < out; j++) {
            double s = bias[j], sa = fabs(bias[j]);
            for (int64_t p = 0; p < in; p++) {
                double v = (double)mp_bf16_to_f32(mp_f32_to_bf16(x[i * in + p])) *
                           mp_bf16_to_f32(wb[j * in + p]);
                s += v;
                sa += fabs(v);
            }
            assert_true(fabs(y[i * out + j] - s) <= SUM_RTOL * sa);
        }
    free(w);
    free(bias);
    free(x);
    free(y);
    free(wb);
}

/* 1500 rows (two chunks) of width 300 (two panels). */
static void test_hessian(void **state)
{
    (void)state;
    prng r = {5};
    int64_t rows = 1500, n = 300;
    float *x = falloc(rows * n);
    fill(&r, x, rows * n, 1.5);
    mp_hessian h;
    assert_int_equal(mp_hessian_init(&h, n), MP_OK);
    assert_int_equal(mp_hessian_use_bf16(&h), MP_OK);
    assert_int_equal(mp_hessian_add(&h, x, 700), MP_OK);
    assert_int_equal(mp_hessian_add(&h, x + 700 * n, rows - 700), MP_OK);
    double *H = dalloc(n * n);
    mp_hessian_finish(&h, H);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double s = 0.0, sa = 0.0;
            for (int64_t t = 0; t < rows; t++) {
                double v = (double)mp_bf16_to_f32(mp_f32_to_bf16(x[t * n + i])) *
                           mp_bf16_to_f32(mp_f32_to_bf16(x[t * n + j]));
                s += v;
                sa += fabs(v);
            }
            s *= 2.0 / (double)rows;
            sa *= 2.0 / (double)rows;
            double e = fabs(H[i * n + j] - s) / sa;
            worst = e > worst ? e : worst;
            assert_true(H[j * n + i] == H[i * n + j]);
        }
    print_message("bf16 Hessian 300 wide, 1500 rows: error %.2e of sum|x x|\n", worst);
    assert_true(worst <= SUM_RTOL);
    mp_hessian_free(&h);
    free(H);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),  cmocka_unit_test(test_convert),
        cmocka_unit_test(test_gemm),   cmocka_unit_test(test_gemm_edges),
        cmocka_unit_test(test_linear), cmocka_unit_test(test_hessian),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
