/* src/mp_struct: structured OBS removal of input groups against float64 references written
 * here (Gauss-Jordan inverses of sub-matrices, the least-squares solution in closed form),
 * independent of the library's Cholesky/Schur code.
 *
 * Tolerance: relative 1e-9 (float64 throughout; the Hessians are well conditioned,
 * N = 4·cols random rows). Every check is written !(err <= tol) so that NaN fails. */
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

#include "mp_struct.h"

#define TOL 1e-9

static void fail_st(const char *what, mp_status st)
{
    if (st != MP_OK) fail_msg("%s: %s: %s", what, mp_status_str(st), mp_error_message());
}

/* H[n, n] = (2/N) XᵀX of N random rows; column `dead` (if >= 0) all zero. */
static double *random_hessian(prng *r, int64_t n, int64_t dead)
{
    int64_t N = 4 * n;
    double *X = dalloc(N * n), *H = dalloc(n * n);
    for (int64_t i = 0; i < N * n; i++) X[i] = prng_uniform(r, -1.0, 1.0);
    for (int64_t t = 0; t < N; t++) X[t * n + t % n] += 0.5; /* some correlation structure */
    if (dead >= 0)
        for (int64_t t = 0; t < N; t++) X[t * n + dead] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t t = 0; t < N; t++) s += X[t * n + i] * X[t * n + j];
            H[i * n + j] = 2.0 * s / (double)N;
        }
    free(X);
    return H;
}

/* Inverse of A[n, n] by Gauss-Jordan with partial pivoting (the reference). */
static double *ref_inverse(const double *A, int64_t n)
{
    double *M = dalloc(n * 2 * n), *out = dalloc(n * n);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) M[i * 2 * n + j] = A[i * n + j];
        M[i * 2 * n + n + i] = 1.0;
    }
    for (int64_t c = 0; c < n; c++) {
        int64_t p = c;
        for (int64_t i = c + 1; i < n; i++)
            if (fabs(M[i * 2 * n + c]) > fabs(M[p * 2 * n + c])) p = i;
        for (int64_t j = 0; j < 2 * n; j++) {
            double t = M[c * 2 * n + j];
            M[c * 2 * n + j] = M[p * 2 * n + j];
            M[p * 2 * n + j] = t;
        }
        double d = M[c * 2 * n + c];
        for (int64_t j = 0; j < 2 * n; j++) M[c * 2 * n + j] /= d;
        for (int64_t i = 0; i < n; i++) {
            if (i == c) continue;
            double f = M[i * 2 * n + c];
            for (int64_t j = 0; j < 2 * n; j++) M[i * 2 * n + j] -= f * M[c * 2 * n + j];
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) out[i * n + j] = M[i * 2 * n + n + j];
    free(M);
    return out;
}

/* The constrained least-squares optimum: W' minimising tr((W − W') H (W − W')ᵀ) with W'_S = 0
 * is W'_K = W_K + W_S H_SK H_KK⁻¹; its error W_S (H_SS − H_SK H_KK⁻¹ H_KS) W_Sᵀ. */
static void ref_remove(const double *W, int64_t rows, int64_t n, const double *H, const bool *inS,
                       double *Wout, double *err)
{
    int64_t nk = 0, ns = 0, K[256], S[256];
    for (int64_t j = 0; j < n; j++) {
        if (inS[j]) S[ns++] = j;
        else K[nk++] = j;
    }
    double *HKK = dalloc(nk * nk);
    for (int64_t a = 0; a < nk; a++)
        for (int64_t b = 0; b < nk; b++) HKK[a * nk + b] = H[K[a] * n + K[b]];
    double *Ki = ref_inverse(HKK, nk);
    /* M[ns, nk] = H_SK H_KK⁻¹ */
    double *M = dalloc(ns * nk + 1);
    for (int64_t a = 0; a < ns; a++)
        for (int64_t b = 0; b < nk; b++) {
            double s = 0.0;
            for (int64_t c = 0; c < nk; c++) s += H[S[a] * n + K[c]] * Ki[c * nk + b];
            M[a * nk + b] = s;
        }
    double e = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const double *w = W + r * n;
        for (int64_t j = 0; j < n; j++) Wout[r * n + j] = 0.0;
        for (int64_t b = 0; b < nk; b++) {
            double s = w[K[b]];
            for (int64_t a = 0; a < ns; a++) s += w[S[a]] * M[a * nk + b];
            Wout[r * n + K[b]] = s;
        }
        /* Schur complement C = H_SS − H_SK H_KK⁻¹ H_KS applied to w_S */
        for (int64_t a = 0; a < ns; a++)
            for (int64_t b = 0; b < ns; b++) {
                double c = H[S[a] * n + S[b]];
                for (int64_t t = 0; t < nk; t++) c -= M[a * nk + t] * H[K[t] * n + S[b]];
                e += w[S[a]] * c * w[S[b]];
            }
    }
    *err = e;
    free(HKK), free(Ki), free(M);
}

static double max_rel(const double *a, const double *b, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (isnan(e)) return NAN;
        if (e > num) num = e;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / (den + 1e-300);
}

/* One group (a head of 4 columns) and then a second: each removal equals the constrained
 * least-squares optimum, and the downdated inverse equals the inverse of the kept block. */
static void test_remove_vs_least_squares(void **state)
{
    (void)state;
    prng r = {11};
    int64_t n = 24, rows = 10;
    double *H = random_hessian(&r, n, -1), *W = dalloc(rows * n), *W0 = dalloc(rows * n);
    for (int64_t i = 0; i < rows * n; i++) W[i] = W0[i] = prng_uniform(&r, -1.0, 1.0);
    double *Hinv = dalloc(n * n), *Wref = dalloc(rows * n);
    fail_st("mp_struct_hinv", mp_struct_hinv(H, n, 0.0, Hinv));

    bool inS[24] = {false};
    int64_t g1[4] = {8, 9, 10, 11};
    for (int i = 0; i < 4; i++) inS[g1[i]] = true;
    double e_lib = 0.0, e_ref = 0.0, e_pred = 0.0;
    fail_st("mp_struct_error", mp_struct_error(W, rows, n, Hinv, g1, 4, &e_pred));
    fail_st("mp_struct_remove", mp_struct_remove(W, rows, n, Hinv, g1, 4, &e_lib));
    ref_remove(W0, rows, n, H, inS, Wref, &e_ref);
    double ew = max_rel(W, Wref, rows * n);
    print_message("one group: W rel %.2e, err %.12g vs %.12g\n", ew, e_lib, e_ref);
    if (!(ew <= TOL)) fail_msg("updated W differs from the least-squares optimum: %.3e", ew);
    if (!(fabs(e_lib - e_ref) <= TOL * fabs(e_ref))) fail_msg("err %.12g vs %.12g", e_lib, e_ref);
    if (!(fabs(e_pred - e_ref) <= TOL * fabs(e_ref))) fail_msg("predicted err %.12g", e_pred);

    /* The Schur downdate against a refactorisation of the kept block. */
    int64_t K[24], nk = 0;
    for (int64_t j = 0; j < n; j++)
        if (!inS[j]) K[nk++] = j;
    double *HKK = dalloc(nk * nk);
    for (int64_t a = 0; a < nk; a++)
        for (int64_t b = 0; b < nk; b++) HKK[a * nk + b] = H[K[a] * n + K[b]];
    double *Ki = ref_inverse(HKK, nk), *Hd = dalloc(nk * nk);
    for (int64_t a = 0; a < nk; a++)
        for (int64_t b = 0; b < nk; b++) Hd[a * nk + b] = Hinv[K[a] * n + K[b]];
    double eh = max_rel(Hd, Ki, nk * nk);
    print_message("Schur downdate vs refactorisation: rel %.2e\n", eh);
    if (!(eh <= TOL)) fail_msg("downdated inverse differs from the refactorisation: %.3e", eh);
    for (int i = 0; i < 4; i++)
        for (int64_t j = 0; j < n; j++)
            if (Hinv[g1[i] * n + j] != 0.0 || Hinv[j * n + g1[i]] != 0.0 || (j < rows && W[j * n + g1[i]] != 0.0))
                fail_msg("removed column %lld not zeroed", (long long)g1[i]);

    /* A second group removed from the updated layer = both removed at once from the dense. */
    int64_t g2[4] = {0, 1, 2, 3};
    double e2 = 0.0, e12 = 0.0;
    fail_st("mp_struct_remove 2", mp_struct_remove(W, rows, n, Hinv, g2, 4, &e2));
    for (int i = 0; i < 4; i++) inS[g2[i]] = true;
    ref_remove(W0, rows, n, H, inS, Wref, &e12);
    ew = max_rel(W, Wref, rows * n);
    print_message("two groups in sequence: W rel %.2e, err %.12g + %.12g vs %.12g\n", ew, e_lib,
                  e2, e12);
    if (!(ew <= TOL)) fail_msg("sequential removal differs from joint: %.3e", ew);
    if (!(fabs(e_lib + e2 - e12) <= TOL * fabs(e12))) fail_msg("errors do not add up");

    /* The refit of the kept columns on the dense layer is the same optimum. */
    bool keep[24];
    for (int64_t j = 0; j < n; j++) keep[j] = !inS[j];
    double *Wfit = dalloc(rows * n);
    fail_st("mp_struct_refit", mp_struct_refit(W0, rows, n, H, keep, 0.0, Wfit));
    double ef = max_rel(Wfit, Wref, rows * n);
    print_message("refit vs least squares: rel %.2e\n", ef);
    if (!(ef <= TOL)) fail_msg("refit differs from the least-squares optimum: %.3e", ef);
    free(H), free(W), free(W0), free(Hinv), free(Wref), free(HKK), free(Ki), free(Hd), free(Wfit);
}

/* Greedy removal of single columns (FFN neurons) picks, at every step, the column of least
 * error against the layer updated so far: checked against a brute force over the reference. */
static void test_greedy_order(void **state)
{
    (void)state;
    prng r = {12};
    int64_t n = 16, rows = 6, k = 6;
    double *H = random_hessian(&r, n, 5), *W = dalloc(rows * n), *W0 = dalloc(rows * n);
    for (int64_t i = 0; i < rows * n; i++) W[i] = W0[i] = prng_uniform(&r, -1.0, 1.0);
    for (int64_t t = 0; t < rows; t++) W0[t * n + 5] = W[t * n + 5] = 0.0; /* dead input */
    double *Hinv = dalloc(n * n), *Href = dalloc(n * n), *tmp = dalloc(rows * n);
    fail_st("mp_struct_hinv", mp_struct_hinv(H, n, 0.0, Hinv));
    bool alive[16];
    for (int64_t j = 0; j < n; j++) alive[j] = true;
    alive[3] = false; /* protected */
    int64_t order[6];
    double step_err[6];
    fail_st("mp_struct_greedy", mp_struct_greedy(W, rows, n, Hinv, 1, n, alive, k, order,
                                                 step_err));
    /* Reference: the dead column costs nothing and goes first; then at each step the column
     * whose removal (with all earlier ones) adds the least error. */
    memcpy(Href, H, (size_t)(n * n) * sizeof *H);
    Href[5 * n + 5] = 1.0;
    bool inS[16] = {false};
    double prev = 0.0;
    for (int64_t s = 0; s < k; s++) {
        int64_t best = -1;
        double best_add = INFINITY;
        for (int64_t j = 0; j < n; j++) {
            if (inS[j] || j == 3) continue;
            inS[j] = true;
            double e = 0.0;
            ref_remove(W0, rows, n, Href, inS, tmp, &e);
            inS[j] = false;
            if (e - prev < best_add - 1e-12) best_add = e - prev, best = j;
        }
        if (order[s] != best)
            fail_msg("step %lld: removed column %lld, the reference removes %lld", (long long)s,
                     (long long)order[s], (long long)best);
        if (!(fabs(step_err[s] - best_add) <= TOL * (fabs(best_add) + 1e-12)))
            fail_msg("step %lld: error %.12g vs reference %.12g", (long long)s, step_err[s],
                     best_add);
        inS[best] = true;
        prev += best_add;
        assert_false(alive[best]);
    }
    assert_int_equal(order[0], 5);
    free(H), free(W), free(W0), free(Hinv), free(Href), free(tmp);
}

/* --bias-compensation: the refit on the centred Hessian plus mp_struct_intercept is the
 * least-squares fit with an intercept, against the normal equations of [x_K, 1] solved by the
 * reference inverse; without a refit the intercept keeps the mean output (FLAP's). */
static void test_intercept(void **state)
{
    (void)state;
    prng r = {31};
    int64_t n = 12, rows = 5, N = 6 * n, K[12], nk = 0;
    double *X = dalloc(N * n), *W0 = dalloc(rows * n), *H = dalloc(n * n), *mu = dalloc(n);
    for (int64_t i = 0; i < N * n; i++) X[i] = prng_uniform(&r, -1.0, 1.0);
    for (int64_t t = 0; t < N; t++)
        for (int64_t j = 0; j < n; j++) X[t * n + j] += 0.8 + 0.1 * (double)j; /* means */
    for (int64_t i = 0; i < rows * n; i++) W0[i] = prng_uniform(&r, -1.0, 1.0);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < N; t++) mu[i] += X[t * n + i] / (double)N;
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t t = 0; t < N; t++) s += X[t * n + i] * X[t * n + j];
            H[i * n + j] = 2.0 * s / (double)N;
        }
    }
    bool keep[12];
    for (int64_t j = 0; j < n; j++) {
        keep[j] = j % 3 != 1;
        if (keep[j]) K[nk++] = j;
    }
    /* Reference: A = ZᵀZ, Z = [X_K, 1]; θ = A⁻¹ Zᵀ Y with Y = X W0ᵀ. */
    int64_t m = nk + 1;
    double *A = dalloc(m * m), *B = dalloc(m * rows);
    for (int64_t t = 0; t < N; t++) {
        double z[13], y[5];
        for (int64_t a = 0; a < nk; a++) z[a] = X[t * n + K[a]];
        z[nk] = 1.0;
        for (int64_t q = 0; q < rows; q++) {
            y[q] = 0.0;
            for (int64_t j = 0; j < n; j++) y[q] += X[t * n + j] * W0[q * n + j];
        }
        for (int64_t a = 0; a < m; a++) {
            for (int64_t b = 0; b < m; b++) A[a * m + b] += z[a] * z[b];
            for (int64_t q = 0; q < rows; q++) B[a * rows + q] += z[a] * y[q];
        }
    }
    double *Ai = ref_inverse(A, m), *Wref = dalloc(rows * n), *bref = dalloc(rows);
    for (int64_t q = 0; q < rows; q++)
        for (int64_t a = 0; a < m; a++) {
            double s = 0.0;
            for (int64_t c = 0; c < m; c++) s += Ai[a * m + c] * B[c * rows + q];
            if (a < nk) Wref[q * n + K[a]] = s;
            else bref[q] = s;
        }
    double *Hc = dalloc(n * n), *W = dalloc(rows * n), *b = dalloc(rows);
    memcpy(Hc, H, (size_t)(n * n) * sizeof *H);
    mp_struct_center(Hc, mu, n);
    fail_st("mp_struct_refit (centred)", mp_struct_refit(W0, rows, n, Hc, keep, 0.0, W));
    mp_struct_intercept(W0, W, rows, n, mu, b);
    double ew = max_rel(W, Wref, rows * n), eb = max_rel(b, bref, rows);
    print_message("refit with intercept vs normal equations: W rel %.2e, bias rel %.2e\n", ew, eb);
    if (!(ew <= TOL) || !(eb <= TOL))
        fail_msg("intercept fit differs from the least-squares optimum: W %.3e, bias %.3e", ew, eb);
    /* Without the intercept the fit is worse, so the test tells the two apart. */
    double *Wu = dalloc(rows * n);
    fail_st("mp_struct_refit", mp_struct_refit(W0, rows, n, H, keep, 0.0, Wu));
    if (!(max_rel(Wu, Wref, rows * n) > 1e-3)) fail_msg("the uncentred refit equals the centred");
    /* FLAP: W0 with its removed columns zeroed; the bias keeps the mean output. */
    for (int64_t q = 0; q < rows; q++)
        for (int64_t j = 0; j < n; j++) W[q * n + j] = keep[j] ? W0[q * n + j] : 0.0;
    mp_struct_intercept(W0, W, rows, n, mu, b);
    double em = 0.0;
    for (int64_t q = 0; q < rows; q++) {
        double dense = 0.0, cut = b[q];
        for (int64_t j = 0; j < n; j++) {
            dense += W0[q * n + j] * mu[j];
            cut += W[q * n + j] * mu[j];
        }
        double e = fabs(dense - cut) / fabs(dense);
        if (e > em) em = e;
    }
    print_message("FLAP bias: mean output rel %.2e\n", em);
    if (!(em <= TOL)) fail_msg("the FLAP bias does not keep the mean output: %.3e", em);
    free(X), free(W0), free(H), free(mu), free(A), free(B), free(Ai), free(Wref), free(bref);
    free(Hc), free(W), free(b), free(Wu);
}

static void test_errors(void **state)
{
    (void)state;
    double H[4] = {1.0, 2.0, 2.0, 1.0}; /* indefinite */
    double Hinv[4];
    assert_int_equal(mp_struct_hinv(H, 2, 0.0, Hinv), MP_ERR_NUMERIC);
    double I[4] = {1.0, 0.0, 0.0, 1.0}, W[2] = {1.0, 1.0};
    fail_st("hinv", mp_struct_hinv(I, 2, 0.0, Hinv));
    int64_t j = 0;
    fail_st("remove", mp_struct_remove(W, 1, 2, Hinv, &j, 1, NULL));
    /* The same column again: its inverse-Hessian block is zero now. */
    assert_int_equal(mp_struct_remove(W, 1, 2, Hinv, &j, 1, NULL), MP_ERR_NUMERIC);
    bool alive[2] = {false, false};
    int64_t order[1];
    assert_int_equal(mp_struct_greedy(W, 1, 2, Hinv, 1, 2, alive, 1, order, NULL),
                     MP_ERR_INTERNAL);
}

/* Kwon et al.'s mask tuning (mp_struct_scales with mp_struct_cross_add) against the normal
 * equations of the explicit least-squares problem: one column per kept unit, the unit's output
 * W[:, unit] x_unit over every row, fitted to the targets y. The cross term runs through
 * float32 products (sgemm), hence the tolerance 1e-4 here. */
static void test_mask_tuning(void **state)
{
    (void)state;
    enum { N = 64, COLS = 12, ROWS = 5, U = 4, NU = COLS / U };
    prng r = {7};
    float *X = falloc(N * COLS), *W = falloc(ROWS * COLS), *Y = falloc(N * ROWS);
    for (int64_t i = 0; i < N * COLS; i++) X[i] = (float)prng_uniform(&r, -1.0, 1.0);
    for (int64_t i = 0; i < ROWS * COLS; i++) W[i] = (float)prng_uniform(&r, -1.0, 1.0);
    for (int64_t t = 0; t < N; t++)
        for (int64_t o = 0; o < ROWS; o++) {
            double v = 0.0;
            for (int64_t a = 0; a < COLS; a++) v += (double)W[o * COLS + a] * X[t * COLS + a];
            Y[t * ROWS + o] = (float)(0.7 * v + prng_uniform(&r, -0.3, 0.3));
        }
    double *H = dalloc(COLS * COLS), *Wd = dalloc(ROWS * COLS), *cross = dalloc(COLS);
    for (int64_t a = 0; a < COLS; a++)
        for (int64_t b = 0; b < COLS; b++) {
            double v = 0.0;
            for (int64_t t = 0; t < N; t++) v += (double)X[t * COLS + a] * X[t * COLS + b];
            H[a * COLS + b] = 2.0 * v / N;
        }
    for (int64_t i = 0; i < ROWS * COLS; i++) Wd[i] = W[i];
    /* Two calls of half the rows each: the accumulation over batches. */
    fail_st("cross", mp_struct_cross_add(X, Y, W, N / 2, COLS, ROWS, cross));
    fail_st("cross", mp_struct_cross_add(X + N / 2 * COLS, Y + N / 2 * ROWS, W, N / 2, COLS, ROWS,
                                         cross));
    for (int64_t a = 0; a < COLS; a++) cross[a] *= 2.0 / N;
    bool keep[NU] = {true, false, true};
    double m[NU];
    fail_st("scales", mp_struct_scales(Wd, ROWS, COLS, H, cross, U, keep, 0.0, m));
    /* The reference: A[(t, o), i] = Σ_{a∈i} W[o, a] x[t, a] for the kept i. */
    int64_t K[NU], nk = 0;
    for (int64_t i = 0; i < NU; i++) if (keep[i]) K[nk++] = i;
    double *G = dalloc(nk * nk), *rhs = dalloc(nk);
    for (int64_t t = 0; t < N; t++)
        for (int64_t o = 0; o < ROWS; o++) {
            double A[NU];
            for (int64_t i = 0; i < nk; i++) {
                A[i] = 0.0;
                for (int64_t a = K[i] * U; a < (K[i] + 1) * U; a++)
                    A[i] += (double)W[o * COLS + a] * X[t * COLS + a];
            }
            for (int64_t i = 0; i < nk; i++) {
                rhs[i] += A[i] * Y[t * ROWS + o];
                for (int64_t j = 0; j < nk; j++) G[i * nk + j] += A[i] * A[j];
            }
        }
    double *Gi = ref_inverse(G, nk);
    for (int64_t i = 0; i < nk; i++) {
        double ref = 0.0;
        for (int64_t j = 0; j < nk; j++) ref += Gi[i * nk + j] * rhs[j];
        double e = fabs(m[K[i]] - ref) / fabs(ref);
        if (!(e <= 1e-4)) fail_msg("unit %lld: scale %.9g, reference %.9g", (long long)K[i], m[K[i]], ref);
    }
    if (m[1] != 0.0) fail_msg("the removed unit has scale %g, not 0", m[1]);
    /* Damping pulls every scale towards 1 (the untuned mask). */
    fail_st("scales", mp_struct_scales(Wd, ROWS, COLS, H, cross, U, keep, 1e8, m));
    for (int64_t i = 0; i < nk; i++)
        if (!(fabs(m[K[i]] - 1.0) <= 1e-6)) fail_msg("damped scale %.9g is not 1", m[K[i]]);
    /* Targets the layer itself produces with every unit kept: every scale is 1. */
    for (int64_t t = 0; t < N; t++)
        for (int64_t o = 0; o < ROWS; o++) {
            double v = 0.0;
            for (int64_t a = 0; a < COLS; a++) v += (double)W[o * COLS + a] * X[t * COLS + a];
            Y[t * ROWS + o] = (float)v;
        }
    memset(cross, 0, COLS * sizeof *cross);
    fail_st("cross", mp_struct_cross_add(X, Y, W, N, COLS, ROWS, cross));
    for (int64_t a = 0; a < COLS; a++) cross[a] *= 2.0 / N;
    bool all[NU] = {true, true, true};
    fail_st("scales", mp_struct_scales(Wd, ROWS, COLS, H, cross, U, all, 0.0, m));
    for (int64_t i = 0; i < NU; i++)
        if (!(fabs(m[i] - 1.0) <= 1e-4)) fail_msg("self-target scale %.9g is not 1", m[i]);
    if (mp_struct_scales(Wd, ROWS, COLS, H, cross, 5, all, 0.0, m) != MP_ERR_ARG)
        fail_msg("12 columns in units of 5 were accepted");
    free(X), free(W), free(Y), free(H), free(Wd), free(cross), free(G), free(rhs), free(Gi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remove_vs_least_squares),
        cmocka_unit_test(test_greedy_order),
        cmocka_unit_test(test_intercept),
        cmocka_unit_test(test_mask_tuning),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
