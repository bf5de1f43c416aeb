/* test_prune: the serial pruning solvers of mp_prune and the Hessian of mp_hessian, on tiny
 * layers, against independent float64 brute-force references written here.
 *
 *   SparseGPT: mp_obs_prepare + mp_sparsegpt_sweep against a float64 re-implementation of the
 *     reference `fasterprune` (own Cholesky and triangular inverse, the upper Cholesky factor
 *     of H⁻¹, the block-wise sweep with its lazy update); plus the OBS property that a single
 *     pruned weight's update is the minimiser of the quadratic error over the later columns.
 *   Dead inputs, damping escalation and an unfixable Hessian.
 *   Wanda, magnitude (unstructured and N:M) against brute-force sorts, ties included.
 *   mp_kth_smallest against sorting; mp_recon_error against ‖(W − Ŵ)X‖² / ‖WX‖² computed from X;
 *   mp_hessian against Σ x xᵀ in float64.
 *
 * Inputs come from a seeded splitmix64 generator. Errors are scale-aware, max|x − ref| / max|ref|,
 * and every check is written `!(err <= tol)` so that a NaN fails.
 *
 * Tolerances:
 *   TOL_SWEEP 1e-4: mp works in float32 (U, W, the updates), the reference in float64. The
 *     Hessians here are well conditioned (X has 3x more rows than columns, 1% damping), so the
 *     float32 roundoff (6e-8) grows by the few hundred operations of the OBS update and the
 *     conditioning of U; observed errors are printed and are around 1e-6.
 *   TOL_U 1e-5: U is LAPACK's float64 factor rounded to float32.
 *   TOL_RECON 1e-6: mp_recon_error multiplies in float32 (ssymm) and sums the dot products in
 *   float64; a report figure needs no more.
 *   TOL_HESS 1e-5: mp_hessian sums float32 ssyrk chunks of up to 1024 rows.
 *   TOL_RECON_OBS 1e-6: mp_recon_error_obs takes the numerator from the float32 sweep's own
 *     loss (an identity of exact arithmetic) against tr(ΔW H ΔWᵀ) of the swept W in float64;
 *     observed errors are printed.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#include "mp_hessian.h"
#include "mp_prune.h"
#include "mp_status.h"

#define TOL_SWEEP 1e-4
#define TOL_U 1e-5
#define TOL_RECON 1e-6
#define TOL_HESS 1e-5
#define TOL_RECON_OBS 1e-6

/* Uniform integer in [0, n). */
static int64_t prng_int(prng *r, int64_t n) { return (int64_t)(prng_next(r) % (uint64_t)n); }

static double *dcopy(const double *x, int64_t n)
{
    double *p = dalloc(n);
    memcpy(p, x, (size_t)n * sizeof *p);
    return p;
}

static float *fcopy(const float *x, int64_t n)
{
    float *p = falloc(n);
    memcpy(p, x, (size_t)n * sizeof *p);
    return p;
}

/* max|x - ref| / max|ref|; NaN anywhere gives NaN. */
static double rel_err_fd(const float *x, const double *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - ref[i]);
        if (!(d <= num))
            num = d;
        den = fmax(den, fabs(ref[i]));
    }
    return num / (den + 1e-300);
}

static double rel_err_dd(const double *x, const double *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(x[i] - ref[i]);
        if (!(d <= num))
            num = d;
        den = fmax(den, fabs(ref[i]));
    }
    return num / (den + 1e-300);
}

/* Random weights, |w| in [0.05, 1): none is zero, so every zero afterwards was pruned. */
static float *make_weights(uint64_t seed, int64_t rows, int64_t cols)
{
    prng r = {seed};
    float *W = falloc(rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) {
        double v = prng_uniform(&r, 0.05, 1.0);
        W[i] = (float)((prng_next(&r) & 1) ? v : -v);
    }
    return W;
}

/* H = (2/m) XᵀX, full symmetric, row-major, from X[m, n] uniform in [-1, 1) with column j scaled
 * by a factor in [0.3, 3) (so diag H varies) and a shared component (so H is not near-diagonal);
 * the columns listed in `dead` are zero. */
static double *make_gram(uint64_t seed, int64_t n, int64_t m, const int64_t *dead, int ndead)
{
    prng r = {seed};
    double *X = dalloc(m * n), *H = dalloc(n * n), *scale = dalloc(n);
    for (int64_t j = 0; j < n; j++)
        scale[j] = prng_uniform(&r, 0.3, 3.0);
    for (int64_t i = 0; i < m; i++) {
        double common = prng_uniform(&r, -1.0, 1.0);
        for (int64_t j = 0; j < n; j++)
            X[i * n + j] = scale[j] * (prng_uniform(&r, -1.0, 1.0) + 0.5 * common);
    }
    for (int d = 0; d < ndead; d++)
        for (int64_t i = 0; i < m; i++)
            X[i * n + dead[d]] = 0.0;
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) {
            double s = 0.0;
            for (int64_t i = 0; i < m; i++)
                s += X[i * n + a] * X[i * n + b];
            H[a * n + b] = 2.0 * s / (double)m;
        }
    free(X);
    free(scale);
    return H;
}

/* ---- float64 reference linear algebra (no LAPACK) ---- */

/* In place: the lower Cholesky factor L of A[n, n] (A = L Lᵀ), upper triangle cleared. Returns
 * false when A is not (numerically) positive definite. */
static bool ref_chol_lower(double *A, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int64_t k = 0; k < j; k++)
            d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0.0))
            return false;
        double ljj = sqrt(d);
        A[j * n + j] = ljj;
        for (int64_t i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (int64_t k = 0; k < j; k++)
                s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / ljj;
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            A[i * n + j] = 0.0;
    return true;
}

/* U[n, n] = upper Cholesky factor of A⁻¹ (A⁻¹ = UᵀU) for a positive definite A (not modified):
 * L = chol(A), A⁻¹ = L⁻ᵀ L⁻¹, L2 = chol(A⁻¹), U = L2ᵀ. */
static void ref_upper_of_inverse(const double *A, int64_t n, double *U)
{
    double *L = dcopy(A, n * n), *Li = dalloc(n * n), *Ai = dalloc(n * n);
    assert_true(ref_chol_lower(L, n));
    /* Li = L⁻¹, lower triangular, by forward substitution column by column. */
    for (int64_t c = 0; c < n; c++) {
        Li[c * n + c] = 1.0 / L[c * n + c];
        for (int64_t i = c + 1; i < n; i++) {
            double s = 0.0;
            for (int64_t k = c; k < i; k++)
                s += L[i * n + k] * Li[k * n + c];
            Li[i * n + c] = -s / L[i * n + i];
        }
    }
    /* A⁻¹ = Liᵀ Li. */
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) {
            double s = 0.0;
            for (int64_t k = (a > b ? a : b); k < n; k++)
                s += Li[k * n + a] * Li[k * n + b];
            Ai[a * n + b] = s;
        }
    assert_true(ref_chol_lower(Ai, n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            U[i * n + j] = Ai[j * n + i];
    free(L);
    free(Li);
    free(Ai);
}

/* Solves A x = b (A positive definite, not modified) in float64. */
static void ref_solve(const double *A, int64_t n, const double *b, double *x)
{
    double *L = dcopy(A, n * n);
    assert_true(ref_chol_lower(L, n));
    for (int64_t i = 0; i < n; i++) {
        double s = b[i];
        for (int64_t k = 0; k < i; k++)
            s -= L[i * n + k] * x[k];
        x[i] = s / L[i * n + i];
    }
    for (int64_t i = n - 1; i >= 0; i--) {
        double s = x[i];
        for (int64_t k = i + 1; k < n; k++)
            s -= L[k * n + i] * x[k];
        x[i] = s / L[i * n + i];
    }
    free(L);
}

/* Dead inputs and damping as the reference: H (modified) gets H_jj = 1 where it was 0 (those
 * columns of W zeroed), then frac · mean(diag H) on the diagonal. Returns the dead count. */
static int64_t ref_dead_and_damp(double *H, int64_t n, double *W, int64_t rows, double frac)
{
    int64_t dead = 0;
    for (int64_t j = 0; j < n; j++)
        if (H[j * n + j] == 0.0) {
            H[j * n + j] = 1.0;
            dead++;
            for (int64_t r = 0; r < rows; r++)
                W[r * n + j] = 0.0;
        }
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++)
        mean += H[j * n + j];
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++)
        H[j * n + j] += frac * mean;
    return dead;
}

/* Insertion sort of idx[0..n) by (key ascending, index ascending). */
static void sort_by_key(const double *key, int64_t *idx, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    for (int64_t i = 1; i < n; i++) {
        int64_t v = idx[i], j = i - 1;
        while (j >= 0 && (key[idx[j]] > key[v] || (key[idx[j]] == key[v] && idx[j] > v))) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The reference `fasterprune` in float64 on W[rows, cols] (in place), H[cols, cols] (not
 * modified), damping frac, block size B. Returns the dead count. Written after the Python:
 *   for i1 in blocks: W1 = W[:, i1:i2]; Hinv1 = U[i1:i2, i1:i2]
 *     unstructured: tmp = W1² / diag(Hinv1)²; thresh = sort(tmp)[int(numel · s)];
 *                   mask = tmp <= thresh
 *     for i: (N:M at i % M == 0: the N lowest of W1[:, i:i+M]² / diag²)
 *       q = w masked to 0; err = (w − q) / d; W1[:, i:] −= err · Hinv1[i, i:]; Q1[:, i] = q
 *     W[:, i1:i2] = Q1; W[:, i2:] −= Err1 · U[i1:i2, i2:] */
static int64_t ref_sparsegpt(double *W, int64_t rows, int64_t cols, const double *H0,
                             double frac, int64_t B, const mp_sparsity *sp)
{
    double *H = dcopy(H0, cols * cols), *U = dalloc(cols * cols);
    int64_t dead = ref_dead_and_damp(H, cols, W, rows, frac);
    ref_upper_of_inverse(H, cols, U);
    double *W1 = dalloc(rows * B), *Q1 = dalloc(rows * B), *E1 = dalloc(rows * B);
    double *tmp = dalloc(rows * B), *sorted = dalloc(rows * B), *gsc = dalloc(sp->m + 1);
    int64_t *gidx = calloc((size_t)sp->m + 1, sizeof *gidx);
    unsigned char *mask = calloc((size_t)(rows * B), 1);
    assert_non_null(gidx);
    assert_non_null(mask);
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
        int64_t i2 = i1 + B < cols ? i1 + B : cols, cnt = i2 - i1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cnt; c++)
                W1[r * cnt + c] = W[r * cols + i1 + c];
        memset(mask, 0, (size_t)(rows * cnt));
        if (sp->n == 0) {
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cnt; c++) {
                    double d = U[(i1 + c) * cols + i1 + c];
                    tmp[r * cnt + c] = W1[r * cnt + c] * W1[r * cnt + c] / (d * d);
                }
            memcpy(sorted, tmp, (size_t)(rows * cnt) * sizeof *sorted);
            qsort(sorted, (size_t)(rows * cnt), sizeof *sorted, cmp_double);
            int64_t k = (int64_t)((double)(rows * cnt) * sp->sparsity);
            assert_true(k < rows * cnt);
            for (int64_t t = 0; t < rows * cnt; t++)
                mask[t] = tmp[t] <= sorted[k];
        }
        for (int64_t i = 0; i < cnt; i++) {
            const double *urow = U + (i1 + i) * cols + i1;
            if (sp->n > 0 && i % sp->m == 0)
                for (int64_t r = 0; r < rows; r++) {
                    for (int t = 0; t < sp->m; t++) {
                        double w = W1[r * cnt + i + t], d = urow[i + t * (cols + 1)];
                        gsc[t] = w * w / (d * d);
                    }
                    sort_by_key(gsc, gidx, sp->m);
                    for (int t = 0; t < sp->n; t++)
                        mask[r * cnt + i + gidx[t]] = 1;
                }
            for (int64_t r = 0; r < rows; r++) {
                double w = W1[r * cnt + i];
                double q = mask[r * cnt + i] ? 0.0 : w;
                double e = (w - q) / urow[i];
                for (int64_t j = i; j < cnt; j++)
                    W1[r * cnt + j] -= e * urow[j];
                Q1[r * cnt + i] = q;
                E1[r * cnt + i] = e;
            }
        }
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cnt; c++)
                W[r * cols + i1 + c] = Q1[r * cnt + c];
            for (int64_t j = i2; j < cols; j++) {
                double s = 0.0;
                for (int64_t c = 0; c < cnt; c++)
                    s += E1[r * cnt + c] * U[(i1 + c) * cols + j];
                W[r * cols + j] -= s;
            }
        }
    }
    free(H);
    free(U);
    free(W1);
    free(Q1);
    free(E1);
    free(tmp);
    free(sorted);
    free(gsc);
    free(gidx);
    free(mask);
    return dead;
}

/* Positions where exactly one of x, ref is zero. */
static int64_t mask_mismatch(const float *x, const double *ref, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += (x[i] == 0.0f) != (ref[i] == 0.0);
    return bad;
}

static int64_t count_zeros(const float *x, int64_t n)
{
    int64_t z = 0;
    for (int64_t i = 0; i < n; i++)
        z += x[i] == 0.0f;
    return z;
}

/* Zeros of W[:, c0:c0+nc]. */
static int64_t count_zeros_cols(const float *W, int64_t rows, int64_t cols, int64_t c0,
                                int64_t nc)
{
    int64_t z = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = c0; c < c0 + nc; c++)
            z += W[r * cols + c] == 0.0f;
    return z;
}

/* mp_obs_prepare + mp_sparsegpt_sweep on copies of H and W against ref_sparsegpt: identical
 * masks and values within TOL_SWEEP; the prepared U against the reference within TOL_U.
 * Returns mp's pruned W (caller frees) and its info. */
/* mp_recon_error_obs after a sweep of W0 into W against tr(ΔW H ΔWᵀ) / tr(W0 H W0ᵀ) in float64
 * from the swept W itself, H undamped (dead columns have zero rows and columns in H). */
static void check_recon_obs(const double *H, const float *W0, const float *W, int64_t rows,
                            int64_t cols, double loss, double lambda, const char *what)
{
    double num = 0.0, den = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t a = 0; a < cols; a++)
            for (int64_t b = 0; b < cols; b++) {
                double h = H[a * cols + b];
                double da = (double)W0[r * cols + a] - (double)W[r * cols + a];
                double db = (double)W0[r * cols + b] - (double)W[r * cols + b];
                num += da * h * db;
                den += (double)W0[r * cols + a] * h * (double)W0[r * cols + b];
            }
    double e = NAN, ref = num / den;
    assert_int_equal(mp_recon_error_obs(W0, W, rows, cols, H, loss, lambda, den, &e), MP_OK);
    double rel = fabs(e - ref) / ref;
    print_message("recon from the sweep's loss, %s: %.10g against %.10g (rel %.3g)\n", what, e,
                  ref, rel);
    assert_true(ref > 0.0);
    if (!(rel <= TOL_RECON_OBS))
        fail_msg("%s: recon from the sweep's loss rel err %g > %g", what, rel, TOL_RECON_OBS);
}

static float *check_sparsegpt(const double *H, const float *W0, int64_t rows, int64_t cols,
                              int64_t B, const mp_sparsity *sp, mp_obs_info *info)
{
    char what[128];
    char pat[32];
    if (sp->n)
        snprintf(pat, sizeof pat, "%d:%d", sp->n, sp->m);
    else
        snprintf(pat, sizeof pat, "unstructured %g", sp->sparsity);
    snprintf(what, sizeof what, "rows=%lld cols=%lld B=%lld %s", (long long)rows,
             (long long)cols, (long long)B, pat);
    double *Hm = dcopy(H, cols * cols);
    float *W = fcopy(W0, rows * cols), *U = falloc(cols * cols);
    mp_error_clear();
    assert_int_equal(mp_obs_prepare(Hm, cols, W, rows, 0.01, U, info), MP_OK);
    assert_int_equal(info->escalations, 0);
    assert_true(info->damp == 0.01);

    /* U against the reference factor. */
    double *Hr = dcopy(H, cols * cols), *Ur = dalloc(cols * cols), *Wdummy = dalloc(rows * cols);
    int64_t dead = ref_dead_and_damp(Hr, cols, Wdummy, rows, 0.01);
    assert_int_equal(dead, info->dead);
    ref_upper_of_inverse(Hr, cols, Ur);
    double eu = rel_err_fd(U, Ur, cols * cols);
    if (!(eu <= TOL_U))
        fail_msg("%s: U rel err %g > %g", what, eu, TOL_U);

    double loss = NAN;
    assert_int_equal(mp_sparsegpt_sweep(W, rows, cols, U, B, sp, NULL, &loss), MP_OK);
    check_recon_obs(H, W0, W, rows, cols, loss, info->lambda, what);

    double *Wr = dalloc(rows * cols);
    for (int64_t i = 0; i < rows * cols; i++)
        Wr[i] = (double)W0[i];
    assert_int_equal(ref_sparsegpt(Wr, rows, cols, H, 0.01, B, sp), info->dead);
    int64_t bad = mask_mismatch(W, Wr, rows * cols);
    double e = rel_err_fd(W, Wr, rows * cols);
    /* The update must have moved the kept weights (else the comparison proves little). */
    double moved = 0.0;
    for (int64_t i = 0; i < rows * cols; i++)
        if (W[i] != 0.0f)
            moved = fmax(moved, fabs((double)W[i] - (double)W0[i]));
    print_message("sparsegpt %s: dead %lld, %lld/%lld zeros, mask mismatches %lld, U err %.3g, "
                  "W rel err %.3g, max update %.3g\n",
                  what, (long long)info->dead, (long long)count_zeros(W, rows * cols),
                  (long long)(rows * cols), (long long)bad, eu, e, moved);
    if (bad != 0)
        fail_msg("%s: %lld mask mismatches against the float64 reference", what, (long long)bad);
    if (!(e <= TOL_SWEEP))
        fail_msg("%s: rel err %g > %g against the float64 reference", what, e, TOL_SWEEP);
    if (!(moved >= 1e-3))
        fail_msg("%s: the OBS update did not move the kept weights (%g)", what, moved);
    free(Hm);
    free(U);
    free(Hr);
    free(Ur);
    free(Wdummy);
    free(Wr);
    return W;
}

/* Unstructured: per block of nb columns exactly int(rows·nb·s) + 1 zeros (the reference's `<=`
 * keeps one more than the fraction; no ties here). N:M: exactly max(N, zeros already) per group. */
static void check_sparsegpt_counts(const float *W, const float *W0, int64_t rows, int64_t cols,
                                   int64_t B, const mp_sparsity *sp)
{
    if (sp->n == 0) {
        for (int64_t i1 = 0; i1 < cols; i1 += B) {
            int64_t nb = cols - i1 < B ? cols - i1 : B;
            int64_t k = (int64_t)((double)(rows * nb) * sp->sparsity);
            assert_int_equal(count_zeros_cols(W, rows, cols, i1, nb), k + 1);
        }
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < cols; g += sp->m) {
                int64_t z = 0, z0 = 0;
                for (int t = 0; t < sp->m; t++) {
                    z += W[r * cols + g + t] == 0.0f;
                    z0 += W0[r * cols + g + t] == 0.0f;
                }
                assert_int_equal(z, z0 > sp->n ? z0 : sp->n);
            }
    }
}

/* 1. SparseGPT against the float64 reference: several shapes (a partial last block included),
 * block sizes 8 and 16 (so several blocks and lazy updates), unstructured 0.5 and 2:4. */
static void test_sparsegpt_vs_reference(void **state)
{
    (void)state;
    const struct {
        int64_t rows, cols, B;
    } cases[] = {{8, 16, 8}, {13, 40, 16}, {24, 48, 16}, {17, 36, 8}, {24, 48, 8}, {9, 32, 64}};
    const mp_sparsity sps[] = {{0.5, 0, 0}, {0.0, 2, 4}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t rows = cases[c].rows, cols = cases[c].cols, B = cases[c].B;
        double *H = make_gram(1000 + c, cols, 3 * cols, NULL, 0);
        float *W0 = make_weights(2000 + c, rows, cols);
        for (size_t s = 0; s < 2; s++) {
            mp_obs_info info;
            float *W = check_sparsegpt(H, W0, rows, cols, B, &sps[s], &info);
            assert_int_equal(info.dead, 0);
            check_sparsegpt_counts(W, W0, rows, cols, B, &sps[s]);
            free(W);
        }
        free(H);
        free(W0);
    }
}

/* 1a. The register kernel of the sweep (src/mp_sweepk): shapes that run it over several
 * sub-blocks of a 128-column block, with rows not a multiple of its vector and columns that
 * leave a partial group to the scalar loop, and N:M patterns it takes (2:4, 4:8, 8:16) and one
 * it leaves to the column loop (3:6), each against the float64 reference; then the same sweep
 * with the kernel off (MPIPRUNE_SWEEP_KERNEL=scalar) and without AVX2 (=generic) gives the
 * same weights bit for bit and the same loss to 1e-12 (only its float64 sum is reordered). */
static void test_sparsegpt_kernel(void **state)
{
    (void)state;
    const struct {
        int64_t rows, cols, B;
        mp_sparsity sp;
    } cases[] = {{37, 256, 128, {0.5, 0, 0}},  {19, 204, 128, {0.5, 0, 0}},
                 {37, 256, 128, {0.0, 2, 4}},  {21, 256, 128, {0.0, 4, 8}},
                 {21, 256, 128, {0.0, 8, 16}}, {21, 96, 48, {0.0, 3, 6}}};
    const char *modes[] = {"scalar", "generic"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t rows = cases[c].rows, cols = cases[c].cols, B = cases[c].B;
        const mp_sparsity *sp = &cases[c].sp;
        double *H = make_gram(3000 + c, cols, 3 * cols, NULL, 0);
        float *W0 = make_weights(4000 + c, rows, cols);
        mp_obs_info info;
        float *W = check_sparsegpt(H, W0, rows, cols, B, sp, &info);
        check_sparsegpt_counts(W, W0, rows, cols, B, sp);
        double *Hm = dcopy(H, cols * cols);
        float *U = falloc(cols * cols);
        assert_int_equal(mp_obs_prepare(Hm, cols, NULL, rows, 0.01, U, &info), MP_OK);
        float *Wa = fcopy(W0, rows * cols);
        double la = NAN;
        assert_int_equal(mp_sparsegpt_sweep(Wa, rows, cols, U, B, sp, NULL, &la), MP_OK);
        assert_memory_equal(Wa, W, (size_t)(rows * cols) * sizeof *W);
        for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
            float *Wm = fcopy(W0, rows * cols);
            double lm = NAN;
            assert_int_equal(setenv("MPIPRUNE_SWEEP_KERNEL", modes[m], 1), 0);
            mp_status st = mp_sparsegpt_sweep(Wm, rows, cols, U, B, sp, NULL, &lm);
            assert_int_equal(unsetenv("MPIPRUNE_SWEEP_KERNEL"), 0);
            assert_int_equal(st, MP_OK);
            if (memcmp(Wm, Wa, (size_t)(rows * cols) * sizeof *Wm) != 0)
                fail_msg("case %zu: MPIPRUNE_SWEEP_KERNEL=%s changes the weights", c, modes[m]);
            if (!(fabs(lm - la) <= 1e-12 * la))
                fail_msg("case %zu: MPIPRUNE_SWEEP_KERNEL=%s loss %.17g vs %.17g", c, modes[m],
                         lm, la);
            free(Wm);
        }
        free(Wa);
        free(U);
        free(Hm);
        free(W);
        free(H);
        free(W0);
    }
}

/* 1b. The OBS property: one row, one pruned weight (sparsity 0 prunes exactly the lowest score
 * in a single block), the later weights are moved to the minimiser of the quadratic error
 * δ Hλ δᵀ (δ = ŵ − w) with δ_p = −w_p and the earlier weights fixed, i.e. δ_F = Hλ_FF⁻¹ Hλ_Fp w_p
 * over F = {p+1, ..., n−1}; and the gradient (Hλ δ)_F of the result vanishes. */
static void test_obs_single_prune(void **state)
{
    (void)state;
    const int64_t n = 24;
    const int64_t ps[] = {0, 11, 23};
    double *H = make_gram(77, n, 3 * n, NULL, 0);
    double *Hl = dcopy(H, n * n), *dummy = dalloc(n);
    ref_dead_and_damp(Hl, n, dummy, 1, 0.01);
    for (size_t pi = 0; pi < sizeof ps / sizeof *ps; pi++) {
        int64_t p = ps[pi];
        float *w0 = make_weights(78 + pi, 1, n);
        for (int64_t j = 0; j < n; j++)
            w0[j] = w0[j] < 0.0f ? w0[j] - 0.5f : w0[j] + 0.5f;
        w0[p] = 0.01f; /* the lowest score by far */
        double *Hm = dcopy(H, n * n);
        float *w = fcopy(w0, n), *U = falloc(n * n);
        mp_obs_info info;
        assert_int_equal(mp_obs_prepare(Hm, n, w, 1, 0.01, U, &info), MP_OK);
        const mp_sparsity sp = {0.0, 0, 0};
        assert_int_equal(mp_sparsegpt_sweep(w, 1, n, U, n, &sp, NULL, NULL), MP_OK);
        assert_int_equal(count_zeros(w, n), 1);
        assert_true(w[p] == 0.0f);

        /* Closed form. */
        int64_t nf = n - 1 - p;
        double *expect = dalloc(n);
        for (int64_t j = 0; j < n; j++)
            expect[j] = j == p ? 0.0 : (double)w0[j];
        if (nf > 0) {
            double *Hff = dalloc(nf * nf), *b = dalloc(nf), *x = dalloc(nf);
            for (int64_t a = 0; a < nf; a++) {
                for (int64_t c = 0; c < nf; c++)
                    Hff[a * nf + c] = Hl[(p + 1 + a) * n + p + 1 + c];
                b[a] = Hl[(p + 1 + a) * n + p] * (double)w0[p];
            }
            ref_solve(Hff, nf, b, x);
            for (int64_t a = 0; a < nf; a++)
                expect[p + 1 + a] += x[a];
            free(Hff);
            free(b);
            free(x);
        }
        double e = rel_err_fd(w, expect, n);
        /* Gradient of the quadratic error over the free weights at mp's result. */
        double gmax = 0.0, hmax = 0.0, dmax = 0.0;
        for (int64_t j = 0; j < n; j++)
            dmax = fmax(dmax, fabs((double)w[j] - (double)w0[j]));
        for (int64_t a = 0; a < n * n; a++)
            hmax = fmax(hmax, fabs(Hl[a]));
        for (int64_t i = p + 1; i < n; i++) {
            double g = 0.0;
            for (int64_t j = 0; j < n; j++)
                g += Hl[i * n + j] * ((double)w[j] - (double)w0[j]);
            if (!(fabs(g) <= gmax))
                gmax = fabs(g);
        }
        double grel = gmax / (hmax * dmax * (double)n);
        print_message("obs single prune p=%lld: rel err vs closed form %.3g, rel gradient %.3g\n",
                      (long long)p, e, grel);
        if (!(e <= TOL_SWEEP))
            fail_msg("p=%lld: rel err %g > %g against the closed form", (long long)p, e,
                     TOL_SWEEP);
        if (!(grel <= TOL_SWEEP))
            fail_msg("p=%lld: gradient %g > %g: not a minimiser", (long long)p, grel, TOL_SWEEP);
        for (int64_t j = 0; j < p; j++)
            assert_true(w[j] == w0[j]);
        free(w0);
        free(Hm);
        free(w);
        free(U);
        free(expect);
    }
    free(H);
    free(Hl);
    free(dummy);
}

/* 2. Dead inputs (zero row and column of H): counted, their columns of W zero after prepare and
 * after the sweep, and the rest pruned as the reference (to the target counts). */
static void test_dead_inputs(void **state)
{
    (void)state;
    const int64_t rows = 12, cols = 40, B = 16;
    const int64_t dead[] = {0, 5, 17, 18, 39};
    const int ndead = 5;
    double *H = make_gram(300, cols, 3 * cols, dead, ndead);
    float *W0 = make_weights(301, rows, cols);
    const mp_sparsity sps[] = {{0.5, 0, 0}, {0.0, 2, 4}};

    /* After prepare alone: the dead columns and nothing else zeroed. */
    {
        double *Hm = dcopy(H, cols * cols);
        float *W = fcopy(W0, rows * cols), *U = falloc(cols * cols);
        mp_obs_info info;
        assert_int_equal(mp_obs_prepare(Hm, cols, W, rows, 0.01, U, &info), MP_OK);
        assert_int_equal(info.dead, ndead);
        assert_int_equal(count_zeros(W, rows * cols), ndead * rows);
        for (int d = 0; d < ndead; d++)
            for (int64_t r = 0; r < rows; r++)
                assert_true(W[r * cols + dead[d]] == 0.0f);
        /* A NULL W is allowed. */
        double *Hn = dcopy(H, cols * cols);
        assert_int_equal(mp_obs_prepare(Hn, cols, NULL, rows, 0.01, U, &info), MP_OK);
        assert_int_equal(info.dead, ndead);
        free(Hm);
        free(Hn);
        free(W);
        free(U);
    }
    for (size_t s = 0; s < 2; s++) {
        mp_obs_info info;
        float *W = check_sparsegpt(H, W0, rows, cols, B, &sps[s], &info);
        assert_int_equal(info.dead, ndead);
        for (int d = 0; d < ndead; d++)
            for (int64_t r = 0; r < rows; r++)
                assert_true(W[r * cols + dead[d]] == 0.0f);
        /* Counts against the prepared W0 (dead columns zero): the dead zeros are part of the
         * target, as in the reference. */
        float *W0d = fcopy(W0, rows * cols);
        for (int d = 0; d < ndead; d++)
            for (int64_t r = 0; r < rows; r++)
                W0d[r * cols + dead[d]] = 0.0f;
        check_sparsegpt_counts(W, W0d, rows, cols, B, &sps[s]);
        /* The live columns are pruned too, not only the dead ones. */
        int64_t live_zeros = count_zeros(W, rows * cols) - ndead * rows;
        assert_true(live_zeros >= (rows * cols) / 2 - ndead * rows);
        free(W0d);
        free(W);
    }
    free(H);
    free(W0);
}

/* H = x xᵀ − shift · mean(diag x xᵀ) · I: rank one, shifted to indefinite. Its eigenvalues are
 * |x|² − c and −c (n − 1 times), c = shift · m0, m0 = |x|²/n, and mean(diag H) = m0 (1 − shift),
 * so H + frac · mean(diag H) · I is positive definite iff frac > shift / (1 − shift). */
static double *make_rank1_shifted(uint64_t seed, int64_t n, double shift)
{
    prng r = {seed};
    double *x = dalloc(n), *H = dalloc(n * n), m0 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = prng_uniform(&r, 0.5, 1.5);
        m0 += x[i] * x[i];
    }
    m0 /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            H[i * n + j] = x[i] * x[j] - (i == j ? shift * m0 : 0.0);
    free(x);
    return H;
}

/* 3. Damping escalation on a singular (rank one, shifted) Hessian: deterministic failures by a
 * wide margin; the escalation count, the damping returned and the factor all checked. Then
 * Hessians that no damping fixes: MP_ERR_NUMERIC with a message. */
static void test_damping_escalation(void **state)
{
    (void)state;
    const int64_t n = 16, rows = 5;
    /* shift 0.3: needs frac > 0.43: 0.01, 0.1 fail, 1 succeeds. shift 3e-4: needs frac > 3.0e-4:
     * 1e-6, 1e-5, 1e-4 fail, 1e-3 succeeds. */
    const struct {
        double shift, damp;
        int esc;
    } cases[] = {{0.3, 0.01, 2}, {3e-4, 1e-6, 3}, {0.0, 0.01, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        double *H = make_rank1_shifted(400 + c, n, cases[c].shift);
        if (cases[c].shift == 0.0) /* a plain PD Hessian as the control */
            for (int64_t i = 0; i < n; i++)
                H[i * n + i] += 1.0;
        double *Hm = dcopy(H, n * n);
        float *W = make_weights(410 + c, rows, n), *U = falloc(n * n);
        mp_obs_info info;
        assert_int_equal(mp_obs_prepare(Hm, n, W, rows, cases[c].damp, U, &info), MP_OK);
        double expect = cases[c].damp * pow(10.0, info.escalations);
        print_message("escalation shift %g damp %g: %d escalations, damp used %g\n",
                      cases[c].shift, cases[c].damp, info.escalations, info.damp);
        assert_int_equal(info.escalations, cases[c].esc);
        assert_int_equal(info.dead, 0);
        if (!(fabs(info.damp - expect) <= 1e-12 * expect))
            fail_msg("damp %g != %g * 10^%d", info.damp, cases[c].damp, info.escalations);
        /* U is the factor of (H + damp used · mean(diag H) · I)⁻¹. */
        double *Hr = dcopy(H, n * n), *Ur = dalloc(n * n), *dummy = dalloc(rows * n);
        ref_dead_and_damp(Hr, n, dummy, rows, info.damp);
        ref_upper_of_inverse(Hr, n, Ur);
        double eu = rel_err_fd(U, Ur, n * n);
        if (!(eu <= TOL_U))
            fail_msg("shift %g: U rel err %g > %g", cases[c].shift, eu, TOL_U);
        const mp_sparsity sp = {0.5, 0, 0};
        assert_int_equal(mp_sparsegpt_sweep(W, rows, n, U, 8, &sp, NULL, NULL), MP_OK);
        for (int64_t i = 0; i < rows * n; i++)
            assert_true(isfinite(W[i]));
        free(H);
        free(Hm);
        free(W);
        free(U);
        free(Hr);
        free(Ur);
        free(dummy);
    }

    /* Not fixable: −1000 · I (damping relative to a negative mean only makes it worse), and a
     * positive diagonal with off-diagonals far beyond the largest damping (0.01 · 10⁶ · mean). */
    for (int c = 0; c < 2; c++) {
        const int64_t m = 8;
        double *H = dalloc(m * m);
        for (int64_t i = 0; i < m; i++)
            H[i * m + i] = c == 0 ? -1000.0 : 1.0;
        if (c == 1) {
            H[0 * m + 1] = 1e9;
            H[1 * m + 0] = 1e9;
        }
        float *U = falloc(m * m);
        mp_obs_info info;
        mp_error_clear();
        mp_status st = mp_obs_prepare(H, m, NULL, 0, 0.01, U, &info);
        print_message("unfixable case %d: %s: %s\n", c, mp_status_str(st), mp_error_message());
        assert_int_equal(st, MP_ERR_NUMERIC);
        assert_true(strlen(mp_error_message()) > 0);
        assert_non_null(strstr(mp_error_message(), "positive definite"));
        assert_int_equal(info.escalations, MP_DAMP_ESCALATIONS);
        free(H);
        free(U);
    }

    /* A non-finite diagonal is a numeric error, not a dead input. */
    {
        const int64_t m = 4;
        double *H = dalloc(m * m);
        for (int64_t i = 0; i < m; i++)
            H[i * m + i] = 1.0;
        H[2 * m + 2] = NAN;
        float *U = falloc(m * m);
        mp_obs_info info;
        mp_error_clear();
        assert_int_equal(mp_obs_prepare(H, m, NULL, 0, 0.01, U, &info), MP_ERR_NUMERIC);
        assert_true(strlen(mp_error_message()) > 0);
        free(H);
        free(U);
    }
}

/* Brute-force check of one row (or group) pruned by lowest score: among the nc entries of w
 * (stride 1) with scores sc, the `k` lowest by (score, index) are zero and the others equal
 * the original w0. */
static void check_lowest_pruned(const float *w, const float *w0, const double *sc, int64_t nc,
                                int64_t k, const char *what, int64_t where)
{
    int64_t *idx = calloc((size_t)nc, sizeof *idx);
    assert_non_null(idx);
    sort_by_key(sc, idx, nc);
    for (int64_t t = 0; t < nc; t++) {
        int64_t j = idx[t];
        if (t < k && w[j] != 0.0f)
            fail_msg("%s %lld: entry %lld (rank %lld of %lld, score %g) not pruned", what,
                     (long long)where, (long long)j, (long long)t, (long long)nc, sc[j]);
        if (t >= k && w[j] != w0[j])
            fail_msg("%s %lld: entry %lld (rank %lld, score %g) changed from %g to %g", what,
                     (long long)where, (long long)j, (long long)t, sc[j], (double)w0[j],
                     (double)w[j]);
    }
    free(idx);
}

/* Weights with many exact ties in |w|: multiples of 1/16 in (0, 1], random signs. */
static float *make_tied_weights(uint64_t seed, int64_t rows, int64_t cols)
{
    prng r = {seed};
    float *W = falloc(rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = (float)(1 + prng_int(&r, 16)) / 16.0f;
        W[i] = (prng_next(&r) & 1) ? v : -v;
    }
    return W;
}

/* 4. Wanda: per row exactly int(cols·s) zeros, the row's lowest |W_ij|·sqrt(H_jj) (ties: lower
 * index first), the rest unchanged; N:M per group. hdiag has a zero and a negative entry (both
 * score 0) and repeated values, W has tied magnitudes, so ties occur at the boundary. */
static void test_wanda(void **state)
{
    (void)state;
    const int64_t rows = 9, cols = 40;
    prng r = {500};
    double *hd = dalloc(cols);
    for (int64_t j = 0; j < cols; j++)
        hd[j] = j % 5 == 0 ? 4.0 : prng_uniform(&r, 0.1, 9.0);
    hd[3] = 0.0;
    hd[7] = -2.0;
    double *sc = dalloc(cols);
    const mp_sparsity sps[] = {{0.5, 0, 0}, {0.3, 0, 0}, {0.77, 0, 0},
                               {0.0, 2, 4}, {0.0, 1, 4}, {0.0, 3, 8}};
    for (size_t s = 0; s < sizeof sps / sizeof *sps; s++) {
        for (int tied = 0; tied < 2; tied++) {
            float *W0 = tied ? make_tied_weights(510 + s, rows, cols)
                             : make_weights(520 + s, rows, cols);
            float *W = fcopy(W0, rows * cols);
            assert_int_equal(mp_wanda_prune(W, rows, cols, hd, &sps[s]), MP_OK);
            for (int64_t i = 0; i < rows; i++) {
                const float *w = W + i * cols, *w0 = W0 + i * cols;
                for (int64_t j = 0; j < cols; j++)
                    sc[j] = fabs((double)w0[j]) * sqrt(hd[j] > 0.0 ? hd[j] : 0.0);
                if (sps[s].n == 0) {
                    int64_t k = (int64_t)((double)cols * sps[s].sparsity);
                    assert_int_equal(count_zeros(w, cols), k);
                    check_lowest_pruned(w, w0, sc, cols, k, "wanda row", i);
                } else {
                    for (int64_t g = 0; g < cols; g += sps[s].m) {
                        assert_int_equal(count_zeros(w + g, sps[s].m), sps[s].n);
                        check_lowest_pruned(w + g, w0 + g, sc + g, sps[s].m, sps[s].n,
                                            "wanda group at", i * cols + g);
                    }
                }
            }
            free(W0);
            free(W);
        }
    }
    /* A hand-made row whose tie straddles the boundary: |w| 0.3 at 1, 2, 5; k = int(8·0.4) = 3
     * prunes 7 (0.1), 1 and 2, and keeps 5. 2:4 on the same row: group 0,
     * |w| = {0.5, 0.3, 0.3, 0.9}, prunes 1, 2; group 1, {0.5, 0.3, 0.7, 0.1}, prunes 5, 7. */
    {
        const float row[8] = {0.5f, -0.3f, 0.3f, 0.9f, -0.5f, 0.3f, 0.7f, 0.1f};
        const double h4[8] = {4, 4, 4, 4, 4, 4, 4, 4};
        float w[8];
        const mp_sparsity s4 = {0.4, 0, 0}, nm = {0.0, 2, 4}, nm13 = {0.0, 1, 4};
        memcpy(w, row, sizeof w);
        assert_int_equal(mp_wanda_prune(w, 1, 8, h4, &s4), MP_OK);
        const float e1[8] = {0.5f, 0.0f, 0.0f, 0.9f, -0.5f, 0.3f, 0.7f, 0.0f};
        assert_memory_equal(w, e1, sizeof w);
        memcpy(w, row, sizeof w);
        assert_int_equal(mp_wanda_prune(w, 1, 8, h4, &nm), MP_OK);
        const float e2[8] = {0.5f, 0.0f, 0.0f, 0.9f, -0.5f, 0.0f, 0.7f, 0.0f};
        assert_memory_equal(w, e2, sizeof w);
        /* 1:4: the tie 0.3 at 1 and 2 goes to the lower index. */
        memcpy(w, row, sizeof w);
        assert_int_equal(mp_wanda_prune(w, 1, 8, h4, &nm13), MP_OK);
        const float e3[8] = {0.5f, 0.0f, 0.3f, 0.9f, -0.5f, 0.3f, 0.7f, 0.0f};
        assert_memory_equal(w, e3, sizeof w);
    }
    /* Bad N:M: M not dividing cols, M > 64. */
    {
        float *W = make_weights(530, 2, 40);
        const mp_sparsity bad1 = {0.0, 2, 3}, bad2 = {0.0, 2, 80};
        assert_int_equal(mp_wanda_prune(W, 2, 40, hd, &bad1), MP_ERR_ARG);
        assert_int_equal(mp_wanda_prune(W, 2, 40, hd, &bad2), MP_ERR_ARG);
        free(W);
    }
    free(hd);
    free(sc);
}

/* 5. Magnitude: exactly int(rows·cols·s) zeros, all |pruned| <= all |kept|, ties broken by the
 * lower flat index, kept weights unchanged; N:M per group (the N smallest |w|). */
static void test_magnitude(void **state)
{
    (void)state;
    const int64_t rows = 11, cols = 24, n = rows * cols;
    const mp_sparsity sps[] = {{0.5, 0, 0}, {0.37, 0, 0}, {0.9, 0, 0}, {0.0, 2, 4}, {0.0, 5, 8}};
    double *sc = dalloc(n);
    for (size_t s = 0; s < sizeof sps / sizeof *sps; s++)
        for (int tied = 0; tied < 2; tied++) {
            float *W0 = tied ? make_tied_weights(600 + s, rows, cols)
                             : make_weights(610 + s, rows, cols);
            float *W = fcopy(W0, n);
            assert_int_equal(mp_magnitude_prune(W, rows, cols, &sps[s]), MP_OK);
            for (int64_t i = 0; i < n; i++)
                sc[i] = fabs((double)W0[i]);
            if (sps[s].n == 0) {
                int64_t k = (int64_t)((double)n * sps[s].sparsity);
                assert_int_equal(count_zeros(W, n), k);
                double maxp = 0.0, mink = INFINITY;
                for (int64_t i = 0; i < n; i++) {
                    if (W[i] == 0.0f)
                        maxp = fmax(maxp, sc[i]);
                    else
                        mink = fmin(mink, sc[i]);
                }
                if (!(maxp <= mink))
                    fail_msg("magnitude %g: pruned |w| %g above kept %g", sps[s].sparsity, maxp,
                             mink);
                /* Ties at the boundary: a pruned weight of the boundary magnitude precedes
                 * every kept one of that magnitude. */
                int64_t last_pruned = -1, first_kept = n;
                for (int64_t i = 0; i < n; i++)
                    if (sc[i] == maxp) {
                        if (W[i] == 0.0f)
                            last_pruned = i;
                        else if (first_kept == n)
                            first_kept = i;
                    }
                assert_true(last_pruned < first_kept);
                check_lowest_pruned(W, W0, sc, n, k, "magnitude matrix", 0);
            } else {
                for (int64_t g = 0; g < n; g += sps[s].m) {
                    assert_int_equal(count_zeros(W + g, sps[s].m), sps[s].n);
                    check_lowest_pruned(W + g, W0 + g, sc + g, sps[s].m, sps[s].n,
                                        "magnitude group at", g);
                }
            }
            free(W0);
            free(W);
        }
    {
        float *W = make_weights(620, 2, 24);
        const mp_sparsity bad = {0.0, 2, 5};
        assert_int_equal(mp_magnitude_prune(W, 2, 24, &bad), MP_ERR_ARG);
        free(W);
    }
    free(sc);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* 6. mp_kth_smallest and mp_kth_smallest_radix against sorting, every k, arrays with and
 * without duplicates, sorted, reversed and constant; the quickselect leaves the array a
 * permutation of its input, the radix select leaves it as it was. */
static void test_kth_smallest(void **state)
{
    (void)state;
    const int64_t sizes[] = {1, 2, 3, 5, 8, 17, 64, 129, 300};
    prng r = {700};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        float *v = falloc(n), *sorted = falloc(n), *work = falloc(n), *after = falloc(n);
        for (int kind = 0; kind < 6; kind++) {
            for (int64_t i = 0; i < n; i++) {
                switch (kind) {
                case 0: v[i] = (float)prng_uniform(&r, -1.0, 1.0); break;
                case 1: v[i] = (float)prng_int(&r, 4); break;           /* many duplicates */
                case 2: v[i] = (float)prng_int(&r, 2) - 0.5f; break;    /* two values */
                case 3: v[i] = 2.5f; break;                              /* constant */
                case 4: v[i] = (float)i * 0.25f; break;                  /* sorted */
                default: v[i] = (float)(n - i) + (float)(i % 3); break; /* reversed, dups */
                }
            }
            memcpy(sorted, v, (size_t)n * sizeof *v);
            qsort(sorted, (size_t)n, sizeof *sorted, cmp_float);
            for (int64_t k = 0; k < n; k++) {
                memcpy(work, v, (size_t)n * sizeof *v);
                float got = mp_kth_smallest(work, n, k), rad = mp_kth_smallest_radix(v, n, k);
                if (!(rad == sorted[k]))
                    fail_msg("radix n=%lld kind=%d k=%lld: got %g, sorted gives %g",
                             (long long)n, kind, (long long)k, (double)rad, (double)sorted[k]);
                if (!(got == sorted[k]))
                    fail_msg("n=%lld kind=%d k=%lld: got %g, sorted gives %g", (long long)n,
                             kind, (long long)k, (double)got, (double)sorted[k]);
                memcpy(after, work, (size_t)n * sizeof *v);
                qsort(after, (size_t)n, sizeof *after, cmp_float);
                assert_memory_equal(after, sorted, (size_t)n * sizeof *v);
            }
        }
        free(v);
        free(sorted);
        free(work);
        free(after);
    }
    /* The radix select on larger arrays, signs, zeros of both signs, infinities, subnormals
     * and values that differ in the lowest bits only (the last of its three digits). */
    const float special[] = {-0.0f, 0.0f, -INFINITY, INFINITY, 1e-42f, -1e-42f, -1e30f, 1.0f,
                             nextafterf(1.0f, 2.0f), nextafterf(1.0f, 0.0f)};
    for (int kind = 0; kind < 3; kind++) {
        const int64_t n = 5003;
        float *v = falloc(n), *sorted = falloc(n), *copy = falloc(n);
        for (int64_t i = 0; i < n; i++)
            v[i] = kind == 0   ? (float)prng_uniform(&r, 0.0, 1.0) * (float)prng_uniform(&r, 0.0, 1.0)
                   : kind == 1 ? special[prng_int(&r, 10)]
                               : 1.0f + (float)prng_int(&r, 64) * 0x1p-23f;
        memcpy(sorted, v, (size_t)n * sizeof *v);
        memcpy(copy, v, (size_t)n * sizeof *v);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_float);
        for (int64_t k = 0; k < n; k += 1 + k / 50) {
            float rad = mp_kth_smallest_radix(v, n, k);
            if (!(rad == sorted[k]))
                fail_msg("radix n=%lld kind=%d k=%lld: got %g, sorted gives %g", (long long)n,
                         kind, (long long)k, (double)rad, (double)sorted[k]);
        }
        assert_memory_equal(copy, v, (size_t)n * sizeof *v);
        free(v);
        free(sorted);
        free(copy);
    }
}

/* Σ_t Σ_r ((A X_tᵀ)_r)² for A[rows, cols] (double), X[N, cols] (float). */
static double sum_sq_ax(const double *A, int64_t rows, int64_t cols, const float *X, int64_t N)
{
    double s = 0.0;
    for (int64_t t = 0; t < N; t++)
        for (int64_t r = 0; r < rows; r++) {
            double y = 0.0;
            for (int64_t j = 0; j < cols; j++)
                y += A[r * cols + j] * (double)X[t * cols + j];
            s += y * y;
        }
    return s;
}

/* 7. mp_hessian against (2/N) Σ x xᵀ in float64 (added in pieces that cross the 1024-row chunk;
 * merge of two partial sums), and mp_recon_error against ‖(W − Ŵ)Xᵀ‖² / ‖WXᵀ‖² from X directly:
 * with the float64 H (TOL_RECON), with mp's H (TOL_HESS), and with integer X, where the
 * float32 chunks are exact so mp's H gives TOL_RECON too. */
static void test_hessian_recon(void **state)
{
    (void)state;
    const int64_t dim = 40, N = 2500, rows = 150;
    const int64_t pieces[] = {700, 1800};
    for (int integer = 0; integer < 2; integer++) {
        prng r = {800 + (uint64_t)integer};
        float *X = falloc(N * dim);
        for (int64_t i = 0; i < N * dim; i++)
            X[i] = integer ? (float)(prng_int(&r, 9) - 4)
                           : (float)(prng_uniform(&r, -1.0, 1.0) * (1.0 + (double)(i % dim) / 8));
        /* Direct float64 H. */
        double *Hd = dalloc(dim * dim);
        for (int64_t a = 0; a < dim; a++)
            for (int64_t b = 0; b < dim; b++) {
                double s = 0.0;
                for (int64_t t = 0; t < N; t++)
                    s += (double)X[t * dim + a] * (double)X[t * dim + b];
                Hd[a * dim + b] = 2.0 / (double)N * s;
            }
        mp_hessian h, h2;
        assert_int_equal(mp_hessian_init(&h, dim), MP_OK);
        assert_int_equal(mp_hessian_init(&h2, dim), MP_OK);
        assert_int_equal(mp_hessian_add(&h, X, pieces[0]), MP_OK);
        assert_int_equal(mp_hessian_add(&h, X + pieces[0] * dim, pieces[1]), MP_OK);
        assert_int_equal(h.rows, N);
        double *Hm = dalloc(dim * dim), *Hm2 = dalloc(dim * dim);
        mp_hessian_finish(&h, Hm);
        /* The same from two partial sums merged. */
        mp_hessian_free(&h);
        assert_int_equal(mp_hessian_init(&h, dim), MP_OK);
        assert_int_equal(mp_hessian_add(&h, X, pieces[0]), MP_OK);
        assert_int_equal(mp_hessian_add(&h2, X + pieces[0] * dim, pieces[1]), MP_OK);
        mp_hessian_merge(&h, h2.sum, h2.rows);
        assert_int_equal(h.rows, N);
        mp_hessian_finish(&h, Hm2);
        for (int64_t a = 0; a < dim; a++)
            for (int64_t b = 0; b < dim; b++)
                assert_true(Hm[a * dim + b] == Hm[b * dim + a]);
        double eh = rel_err_dd(Hm, Hd, dim * dim), eh2 = rel_err_dd(Hm2, Hd, dim * dim);
        double tol_h = integer ? 1e-15 : TOL_HESS;
        print_message("hessian (%s X): rel err %.3g, merged %.3g\n", integer ? "integer" : "real",
                      eh, eh2);
        if (!(eh <= tol_h))
            fail_msg("hessian rel err %g > %g", eh, tol_h);
        if (!(eh2 <= tol_h))
            fail_msg("merged hessian rel err %g > %g", eh2, tol_h);

        /* Reconstruction error of a magnitude-pruned W. */
        float *W = make_weights(810 + (uint64_t)integer, rows, dim), *What = fcopy(W, rows * dim);
        const mp_sparsity sp = {0.5, 0, 0};
        assert_int_equal(mp_magnitude_prune(What, rows, dim, &sp), MP_OK);
        double *Dw = dalloc(rows * dim), *Wd = dalloc(rows * dim);
        for (int64_t i = 0; i < rows * dim; i++) {
            Dw[i] = (double)W[i] - (double)What[i];
            Wd[i] = (double)W[i];
        }
        double direct = sum_sq_ax(Dw, rows, dim, X, N) / sum_sq_ax(Wd, rows, dim, X, N);
        double e_d = NAN, e_m = NAN, zero = NAN;
        assert_int_equal(mp_recon_error(W, What, rows, dim, Hd, &e_d), MP_OK);
        assert_int_equal(mp_recon_error(W, What, rows, dim, Hm, &e_m), MP_OK);
        assert_int_equal(mp_recon_error(W, W, rows, dim, Hm, &zero), MP_OK);
        /* With the denominator given (as the pipeline takes it from the layer's outputs). */
        double e_g = NAN, den_direct = sum_sq_ax(Wd, rows, dim, X, N) * 2.0 / (double)N;
        assert_int_equal(mp_recon_error_den(W, What, rows, dim, Hd, den_direct, &e_g), MP_OK);
        double rg = fabs(e_g - direct) / direct;
        if (!(rg <= TOL_RECON))
            fail_msg("recon with the denominator given: rel err %g > %g", rg, TOL_RECON);
        double rd = fabs(e_d - direct) / direct, rm = fabs(e_m - direct) / direct;
        double tol_m = integer ? TOL_RECON : TOL_HESS;
        print_message("recon (%s X): direct %.10g, with float64 H %.10g (rel %.3g), with mp H "
                      "%.10g (rel %.3g)\n",
                      integer ? "integer" : "real", direct, e_d, rd, e_m, rm);
        assert_true(direct > 0.0);
        if (!(rd <= TOL_RECON))
            fail_msg("recon with float64 H: rel err %g > %g", rd, TOL_RECON);
        if (!(rm <= tol_m))
            fail_msg("recon with mp H: rel err %g > %g", rm, tol_m);
        assert_true(zero == 0.0);
        mp_hessian_free(&h);
        mp_hessian_free(&h2);
        free(X);
        free(Hd);
        free(Hm);
        free(Hm2);
        free(W);
        free(What);
        free(Dw);
        free(Wd);
    }
}

/* One rule for sparsity and N:M in every solver (review R6): N == M, M > 64, a fraction of 1 and
 * M not dividing the columns are refused alike by Wanda and magnitude. */
static void test_sparsity_rule(void **state)
{
    (void)state;
    float W[64] = {0};
    double hd[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    mp_sparsity bad[] = {{0.0, 4, 4}, {0.0, 2, 65}, {1.0, 0, 0}, {-0.1, 0, 0}, {0.0, 2, 3},
                         {0.0, -1, 4}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(mp_sparsity_check(&bad[i], 8), MP_ERR_ARG);
        assert_int_equal(mp_wanda_prune(W, 8, 8, hd, &bad[i]), MP_ERR_ARG);
        assert_int_equal(mp_magnitude_prune(W, 8, 8, &bad[i]), MP_ERR_ARG);
    }
    mp_sparsity sp;
    assert_int_equal(mp_sparsity_parse_nm("2:4", &sp), MP_OK);
    assert_int_equal(sp.n, 2);
    assert_int_equal(sp.m, 4);
    const char *texts[] = {"4:4", "0:4", "2:65", "2:4x", "99999999999999999999:4", ":4", "2:",
                           "-1:4", "2 :4", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        assert_int_equal(mp_sparsity_parse_nm(texts[i], &sp), MP_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sparsegpt_vs_reference),
        cmocka_unit_test(test_sparsegpt_kernel),
        cmocka_unit_test(test_obs_single_prune),
        cmocka_unit_test(test_dead_inputs),
        cmocka_unit_test(test_damping_escalation),
        cmocka_unit_test(test_wanda),
        cmocka_unit_test(test_magnitude),
        cmocka_unit_test(test_kth_smallest),
        cmocka_unit_test(test_hessian_recon),
        cmocka_unit_test(test_sparsity_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
