/* test_layers: each kernel of mp_layers.h against a naive float64 reference.
 *
 * Inputs are float32 values drawn from a seeded splitmix64 generator; the reference reads the
 * same float32 inputs widened to double and computes everything in double. The error is
 * scale-aware: max|y - ref| / (max|ref| + tiny). Tolerance 1e-5: float32 has a unit roundoff of
 * 6e-8, and these kernels (dot products of at most a few hundred terms, one exp/sqrt/cos per
 * element) should lose at most a few hundred ulps relative to the largest output. The check is
 * written `!(err <= tol)` so a NaN anywhere fails. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#include "mp_layers.h"
#include "mp_model.h"
#include "mp_status.h"

#define TOL 1e-5

static void fill_uniform(prng *r, float *x, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)prng_uniform(r, lo, hi);
}

/* max|y - ref| / (max|ref| + tiny); NaN in y propagates to NaN (fabs/compare keep it). */
static double rel_err(const float *y, const double *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - ref[i]);
        if (isnan(e)) return NAN;
        if (e > num) num = e;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return num / (den + 1e-300);
}

static void check_err(const char *what, double err, double tol)
{
    if (!(err <= tol)) fail_msg("%s: relative error %.3e > tolerance %.1e", what, err, tol);
}

/* ---------- references ---------- */

static void ref_rmsnorm(const float *x, const float *w, int64_t rows, int64_t d, double eps,
                        double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0.0;
        for (int64_t j = 0; j < d; j++) ss += (double)x[r * d + j] * x[r * d + j];
        double inv = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t j = 0; j < d; j++) y[r * d + j] = (double)w[j] * x[r * d + j] * inv;
    }
}

static void ref_layernorm(const float *x, const float *w, const float *b, int64_t rows, int64_t d,
                          double eps, double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        double mean = 0.0, var = 0.0;
        for (int64_t j = 0; j < d; j++) mean += x[r * d + j];
        mean /= (double)d;
        for (int64_t j = 0; j < d; j++) {
            double c = x[r * d + j] - mean;
            var += c * c;
        }
        var /= (double)d;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t j = 0; j < d; j++) y[r * d + j] = (x[r * d + j] - mean) * inv * w[j] + b[j];
    }
}

static void ref_rope(const float *x, int64_t T, int64_t nh, int64_t hd, double theta, double *y)
{
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            const float *xh = x + t * nh * hd + h * hd;
            double *yh = y + t * nh * hd + h * hd;
            for (int64_t i = 0; i < half; i++) {
                double a = (double)t * pow(theta, -2.0 * (double)i / (double)hd);
                double c = cos(a), s = sin(a);
                yh[i] = xh[i] * c - (double)xh[i + half] * s;
                yh[i + half] = xh[i + half] * c + (double)xh[i] * s;
            }
        }
}

static void ref_attention(const float *q, const float *k, const float *v, int64_t T, int64_t nh,
                          int64_t nkv, int64_t hd, double scale, double *out)
{
    double *p = dalloc(T);
    int64_t group = nh / nkv;
    for (int64_t h = 0; h < nh; h++) {
        int64_t kh = h / group;
        for (int64_t t = 0; t < T; t++) {
            double mx = -INFINITY;
            for (int64_t j = 0; j <= t; j++) {
                double s = 0.0;
                for (int64_t e = 0; e < hd; e++)
                    s += (double)q[t * nh * hd + h * hd + e] * k[j * nkv * hd + kh * hd + e];
                p[j] = s * scale;
                if (p[j] > mx) mx = p[j];
            }
            double z = 0.0;
            for (int64_t j = 0; j <= t; j++) {
                p[j] = exp(p[j] - mx);
                z += p[j];
            }
            for (int64_t e = 0; e < hd; e++) {
                double acc = 0.0;
                for (int64_t j = 0; j <= t; j++) acc += p[j] * v[j * nkv * hd + kh * hd + e];
                out[t * nh * hd + h * hd + e] = acc / z;
            }
        }
    }
    free(p);
}

static void ref_linear(const mp_linear *l, const float *x, int64_t rows, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < l->out; o++) {
            double acc = l->b ? (double)l->b[o] : 0.0;
            for (int64_t i = 0; i < l->in; i++)
                acc += (double)x[r * l->in + i] * l->w[o * l->in + i];
            y[r * l->out + o] = acc;
        }
}

/* ---------- tests ---------- */

static void run_rmsnorm(prng *r, int64_t rows, int64_t d, double eps, double scale, bool alias)
{
    float *x = falloc(rows * d), *w = falloc(d), *y = falloc(rows * d);
    double *ref = dalloc(rows * d);
    fill_uniform(r, x, rows * d, -scale, scale);
    fill_uniform(r, w, d, 0.5, 1.5);
    ref_rmsnorm(x, w, rows, d, eps, ref);
    if (alias) {
        memcpy(y, x, (size_t)(rows * d) * sizeof *y);
        mp_rmsnorm(y, w, rows, d, eps, y);
    } else {
        mp_rmsnorm(x, w, rows, d, eps, y);
    }
    char what[96];
    snprintf(what, sizeof what, "rmsnorm rows=%lld d=%lld scale=%g alias=%d", (long long)rows,
             (long long)d, scale, (int)alias);
    check_err(what, rel_err(y, ref, rows * d), TOL);
    free(x), free(w), free(y), free(ref);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    prng r = {11};
    run_rmsnorm(&r, 5, 67, 1e-5, 1.0, false);
    run_rmsnorm(&r, 5, 67, 1e-5, 1.0, true);
    run_rmsnorm(&r, 1, 1024, 1e-6, 30.0, false);
    /* Small inputs: eps matters (mean(x²) ~ 3e-7 vs eps 1e-5). */
    run_rmsnorm(&r, 3, 64, 1e-5, 1e-3, false);
}

static void run_layernorm(prng *r, int64_t rows, int64_t d, double eps, double offset, bool alias)
{
    float *x = falloc(rows * d), *w = falloc(d), *b = falloc(d), *y = falloc(rows * d);
    double *ref = dalloc(rows * d);
    fill_uniform(r, x, rows * d, offset - 1.0, offset + 1.0);
    fill_uniform(r, w, d, 0.5, 1.5);
    fill_uniform(r, b, d, -0.5, 0.5);
    ref_layernorm(x, w, b, rows, d, eps, ref);
    if (alias) {
        memcpy(y, x, (size_t)(rows * d) * sizeof *y);
        mp_layernorm(y, w, b, rows, d, eps, y);
    } else {
        mp_layernorm(x, w, b, rows, d, eps, y);
    }
    char what[96];
    snprintf(what, sizeof what, "layernorm rows=%lld d=%lld offset=%g alias=%d", (long long)rows,
             (long long)d, offset, (int)alias);
    check_err(what, rel_err(y, ref, rows * d), TOL);
    free(x), free(w), free(b), free(y), free(ref);
}

static void test_layernorm(void **state)
{
    (void)state;
    prng r = {22};
    run_layernorm(&r, 6, 53, 1e-5, 0.0, false);
    run_layernorm(&r, 6, 53, 1e-5, 0.0, true);
    /* A mean of 3 against a spread of 1: the variance must be taken about the mean. */
    run_layernorm(&r, 4, 768, 1e-5, 3.0, false);
}

static void run_rope(prng *r, int64_t T, int64_t nh, int64_t hd, double theta)
{
    int64_t n = T * nh * hd;
    float *x = falloc(n);
    double *ref = dalloc(n);
    fill_uniform(r, x, n, -1.0, 1.0);
    ref_rope(x, T, nh, hd, theta, ref);
    float *x2 = falloc(n);
    memcpy(x2, x, (size_t)n * sizeof(float));
    assert_int_equal(mp_rope(x, T, nh, hd, theta), MP_OK);
    /* The two-step form the block forward uses gives the same bits. */
    float *cs = falloc(T * hd);
    mp_rope_table(T, hd, theta, cs);
    mp_rope_apply(x2, T, nh, hd, cs);
    assert_memory_equal(x, x2, (size_t)n * sizeof(float));
    free(x2), free(cs);
    char what[96];
    snprintf(what, sizeof what, "rope T=%lld nh=%lld hd=%lld theta=%g", (long long)T, (long long)nh,
             (long long)hd, theta);
    check_err(what, rel_err(x, ref, n), TOL);
    free(x), free(ref);
}

static void test_rope(void **state)
{
    (void)state;
    prng r = {33};
    run_rope(&r, 7, 3, 16, 10000.0);
    run_rope(&r, 40, 2, 8, 10000.0);
    run_rope(&r, 33, 4, 64, 500000.0);
    run_rope(&r, 5, 1, 2, 10000.0);
}

static void run_attention_tol(prng *r, int64_t T, int64_t nh, int64_t nkv, int64_t hd, double amp,
                              double tol)
{
    float *q = falloc(T * nh * hd), *k = falloc(T * nkv * hd), *v = falloc(T * nkv * hd);
    float *out = falloc(T * nh * hd);
    double *ref = dalloc(T * nh * hd);
    fill_uniform(r, q, T * nh * hd, -amp, amp);
    fill_uniform(r, k, T * nkv * hd, -amp, amp);
    fill_uniform(r, v, T * nkv * hd, -1.0, 1.0);
    double scale = 1.0 / sqrt((double)hd);
    ref_attention(q, k, v, T, nh, nkv, hd, scale, ref);
    for (int64_t i = 0; i < T * nh * hd; i++) out[i] = NAN;
    mp_status st = mp_attention(q, k, v, T, nh, nkv, hd, scale, out);
    if (st != MP_OK) fail_msg("mp_attention: %s: %s", mp_status_str(st), mp_error_message());
    char what[96];
    snprintf(what, sizeof what, "attention T=%lld nh=%lld nkv=%lld hd=%lld", (long long)T,
             (long long)nh, (long long)nkv, (long long)hd);
    check_err(what, rel_err(out, ref, T * nh * hd), tol);
    free(q), free(k), free(v), free(out), free(ref);
}

static void run_attention(prng *r, int64_t T, int64_t nh, int64_t nkv, int64_t hd)
{
    run_attention_tol(r, T, nh, nkv, hd, 1.5, TOL);
}

static void test_attention_mha(void **state)
{
    (void)state;
    prng r = {44};
    run_attention(&r, 13, 8, 8, 16);
    run_attention(&r, 1, 8, 8, 16);
}

static void test_attention_gqa(void **state)
{
    (void)state;
    prng r = {55};
    run_attention(&r, 13, 8, 2, 16);
    run_attention(&r, 70, 8, 2, 32);
    run_attention(&r, 150, 4, 2, 16); /* several query tiles, the last one partial */
}

/* Scores up to ~200: exp without subtracting the row maximum overflows float32. The score
 * itself carries a float32 error of about |score| · 6e-8 · sqrt(hd), which exp turns into a
 * relative error of the same size in the weights: hence 2e-4 here. */
static void test_attention_large_scores(void **state)
{
    (void)state;
    prng r = {67};
    run_attention_tol(&r, 100, 4, 4, 8, 8.0, 2e-4);
}

static void test_attention_mqa(void **state)
{
    (void)state;
    prng r = {66};
    run_attention(&r, 13, 8, 1, 16);
    run_attention(&r, 2, 8, 1, 8);
}

/* Causality: changing k and v at the last position must leave every earlier output bitwise
 * unchanged. */
static void test_attention_causal(void **state)
{
    (void)state;
    prng r = {77};
    int64_t T = 9, nh = 8, nkv = 2, hd = 8;
    float *q = falloc(T * nh * hd), *k = falloc(T * nkv * hd), *v = falloc(T * nkv * hd);
    float *o1 = falloc(T * nh * hd), *o2 = falloc(T * nh * hd);
    fill_uniform(&r, q, T * nh * hd, -1, 1);
    fill_uniform(&r, k, T * nkv * hd, -1, 1);
    fill_uniform(&r, v, T * nkv * hd, -1, 1);
    assert_int_equal(mp_attention(q, k, v, T, nh, nkv, hd, 0.3, o1), MP_OK);
    for (int64_t e = 0; e < nkv * hd; e++) {
        k[(T - 1) * nkv * hd + e] += 5.0f;
        v[(T - 1) * nkv * hd + e] -= 7.0f;
    }
    assert_int_equal(mp_attention(q, k, v, T, nh, nkv, hd, 0.3, o2), MP_OK);
    assert_memory_equal(o1, o2, (size_t)((T - 1) * nh * hd) * sizeof(float));
    free(q), free(k), free(v), free(o1), free(o2);
}

static void test_swiglu(void **state)
{
    (void)state;
    prng r = {88};
    int64_t n = 2000;
    float *g = falloc(n), *u = falloc(n);
    double *ref = dalloc(n);
    fill_uniform(&r, g, n, -12.0, 12.0);
    fill_uniform(&r, u, n, -2.0, 2.0);
    /* Extremes: exp(±100) overflows float32; silu must still be finite. */
    g[0] = 100.0f, g[1] = -100.0f, g[2] = 0.0f, g[3] = 88.0f, g[4] = -88.0f;
    for (int64_t i = 0; i < n; i++) {
        double x = g[i];
        ref[i] = x / (1.0 + exp(-x)) * (double)u[i];
    }
    mp_swiglu(g, u, n);
    check_err("swiglu", rel_err(g, ref, n), TOL);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(g[i])) fail_msg("swiglu element %lld not finite", (long long)i);
    free(g), free(u), free(ref);
}

static void test_relu(void **state)
{
    (void)state;
    prng r = {99};
    int64_t n = 1001;
    float *x = falloc(n), *want = falloc(n);
    fill_uniform(&r, x, n, -3.0, 3.0);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = -1e-38f, x[3] = 1e-38f, x[4] = -INFINITY, x[5] = INFINITY;
    for (int64_t i = 0; i < n; i++) want[i] = x[i] > 0.0f ? x[i] : 0.0f;
    mp_relu(x, n);
    for (int64_t i = 0; i < n; i++)
        if (!(x[i] == want[i]))
            fail_msg("relu element %lld: %g vs %g", (long long)i, (double)x[i], (double)want[i]);
    free(x), free(want);
}

static void run_linear(prng *r, int64_t rows, int64_t in, int64_t out, bool bias)
{
    mp_linear l = {.out = out, .in = in, .present = true};
    l.w = falloc(out * in);
    l.b = bias ? falloc(out) : NULL;
    fill_uniform(r, l.w, out * in, -1.0, 1.0);
    if (bias) fill_uniform(r, l.b, out, -1.0, 1.0);
    float *x = falloc(rows * in), *y = falloc(rows * out);
    double *ref = dalloc(rows * out);
    fill_uniform(r, x, rows * in, -1.0, 1.0);
    for (int64_t i = 0; i < rows * out; i++) y[i] = NAN;
    ref_linear(&l, x, rows, ref);
    mp_status st = mp_linear_forward(&l, x, rows, y);
    if (st != MP_OK) fail_msg("mp_linear_forward: %s: %s", mp_status_str(st), mp_error_message());
    char what[96];
    snprintf(what, sizeof what, "linear rows=%lld in=%lld out=%lld bias=%d", (long long)rows,
             (long long)in, (long long)out, (int)bias);
    check_err(what, rel_err(y, ref, rows * out), TOL);
    free(l.w), free(l.b), free(x), free(y), free(ref);
}

static void test_linear_nobias(void **state)
{
    (void)state;
    prng r = {111};
    run_linear(&r, 9, 37, 23, false);
    run_linear(&r, 1, 64, 5, false);
    run_linear(&r, 130, 256, 200, false);
}

static void test_linear_bias(void **state)
{
    (void)state;
    prng r = {222};
    run_linear(&r, 9, 37, 23, true);
    run_linear(&r, 1, 64, 5, true);
    run_linear(&r, 130, 256, 200, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention_mha),
        cmocka_unit_test(test_attention_gqa),
        cmocka_unit_test(test_attention_mqa),
        cmocka_unit_test(test_attention_causal),
        cmocka_unit_test(test_attention_large_scores),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_linear_nobias),
        cmocka_unit_test(test_linear_bias),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
