/* test_scalapack: the ScaLAPACK path (mp_comm_chol_inv_chol, mp_obs_prepare_dist,
 * mp_sparsegpt_sweep_dist) against the serial LAPACK path, forced on small matrices.
 * Run under mpiexec with 2, 3 and 4 ranks (a 1x2, 1x3 and 2x2 grid).
 *
 * Inputs come from a seeded splitmix64 generator, identical on every rank. Errors are
 * scale-aware: max|x - ref| / max|ref|, and every check is written `!(err <= tol)` so a NaN
 * fails. Each rank computes its error, the maximum over the ranks is taken (allreduce), and
 * every rank asserts on that, so a failure fails on all ranks together instead of leaving the
 * others waiting in a collective.
 *
 * Tolerances:
 *   U in double, 1e-10: the matrices are well conditioned (cond(H + λI) below 1e3 here), so
 *   two backward-stable factorisations (different blockings) agree to cond · n · eps ≈ 1e-11.
 *   hinv and pruned W in float32, 1e-5: float32 roundoff (6e-8) times the few hundred
 *   operations of the OBS update, with a margin; the zero masks must be identical.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <cmocka.h>

#include "test_util.h"

#include "mp_comm.h"
#include "mp_prune.h"
#include "mp_status.h"

/* LAPACK (Fortran ABI), for the double-precision serial reference of U. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);

#define TOL_U 1e-10
#define TOL_F32 1e-5

static mp_comm *g_comm;

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

/* H = XᵀX - shift · mean(diag XᵀX) · I, full symmetric, row-major; X is m x n uniform in
 * [-1, 1) with the columns listed in `dead` set to zero (dead inputs). m < n gives a rank
 * deficient Gram matrix. */
static double *make_hessian(uint64_t seed, int64_t n, int64_t m, double shift,
                            const int64_t *dead, int ndead)
{
    prng r = {seed};
    double *X = dalloc(m * n), *H = dalloc(n * n);
    for (int64_t i = 0; i < m * n; i++)
        X[i] = prng_uniform(&r, -1.0, 1.0);
    for (int d = 0; d < ndead; d++)
        for (int64_t i = 0; i < m; i++)
            X[i * n + dead[d]] = 0.0;
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)m, 1.0, X, (int)n, 0.0, H,
                (int)n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            H[i * n + j] = H[j * n + i];
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++)
        mean += H[j * n + j];
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++)
        if (H[j * n + j] != 0.0)
            H[j * n + j] -= shift * mean;
    free(X);
    return H;
}

static float *make_weights(uint64_t seed, int64_t rows, int64_t cols)
{
    prng r = {seed};
    float *W = falloc(rows * cols);
    for (int64_t i = 0; i < rows * cols; i++)
        W[i] = (float)prng_uniform(&r, -1.0, 1.0);
    return W;
}

static void add_damping(double *A, int64_t n, double frac)
{
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++)
        mean += A[j * n + j];
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++)
        A[j * n + j] += frac * mean;
}

/* Serial reference in double: the row-major upper triangle holds U with A⁻¹ = UᵀU. */
static void lapack_u(double *A, int64_t n)
{
    int N = (int)n, info = 0;
    dpotrf_("L", &N, A, &N, &info, 1);
    assert_int_equal(info, 0);
    dpotri_("L", &N, A, &N, &info, 1);
    assert_int_equal(info, 0);
    dpotrf_("L", &N, A, &N, &info, 1);
    assert_int_equal(info, 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            A[i * n + j] = 0.0;
}

static double rel_err_f64(const double *x, const double *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(x[i] - ref[i]);
        if (!(d <= num))
            num = d; /* NaN is kept */
        den = fmax(den, fabs(ref[i]));
    }
    return num / (den + 1e-300);
}

static double rel_err_f32(const float *x, const float *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)ref[i]);
        if (!(d <= num))
            num = d;
        den = fmax(den, fabs((double)ref[i]));
    }
    return num / (den + 1e-300);
}

/* Positions where exactly one of x, ref is zero. */
static int64_t mask_mismatch(const float *x, const float *ref, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += (x[i] == 0.0f) != (ref[i] == 0.0f);
    return bad;
}

/* The maximum of v over the ranks (NaN wins). */
static double max_over_ranks(double v)
{
    double buf[2] = {isnan(v) ? 1.0 : 0.0, isnan(v) ? 0.0 : v};
    assert_int_equal(mp_comm_allreduce_max_f64(g_comm, buf, 2), MP_OK);
    return buf[0] > 0.0 ? NAN : buf[1];
}

static int is_root(void) { return mp_comm_rank(g_comm) == 0; }

/* mp_comm_chol_inv_chol against LAPACK in double, several sizes (none a multiple of nb) and
 * both block sizes; once with U aliasing A. */
static void test_chol_matches_lapack(void **state)
{
    (void)state;
    const int64_t sizes[] = {150, 203, 257};
    const int nbs[] = {16, 32};
    for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++)
        for (size_t b = 0; b < sizeof nbs / sizeof *nbs; b++) {
            int64_t n = sizes[a];
            double *H = make_hessian(100 + a, n, 2 * n, 0.0, NULL, 0);
            add_damping(H, n, 0.01);
            double *ref = dcopy(H, n * n);
            lapack_u(ref, n);
            double *U = dalloc(n * n);
            /* Poison U: every entry must be written. */
            for (int64_t i = 0; i < n * n; i++)
                U[i] = NAN;
            int info = -1;
            int alias = a == 1 && b == 1;
            double *out = alias ? H : U;
            assert_int_equal(mp_comm_chol_inv_chol(g_comm, H, n, nbs[b], out, &info), MP_OK);
            double e = max_over_ranks(info == 0 ? rel_err_f64(out, ref, n * n) : NAN);
            if (is_root())
                print_message("chol n=%lld nb=%d%s: max rel err of U %.3g\n", (long long)n,
                              nbs[b], alias ? " (U aliases A)" : "", e);
            assert_int_equal(info, 0);
            if (!(e <= TOL_U))
                fail_msg("n=%lld nb=%d: rel err %g > %g", (long long)n, nbs[b], e, TOL_U);
            int64_t nonzero_lower = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < i; j++)
                    nonzero_lower += out[i * n + j] != 0.0;
            assert_int_equal(nonzero_lower, 0);
            free(H);
            free(ref);
            free(U);
        }
}

/* A matrix that is not positive definite: info > 0, the same on every rank. */
static void test_chol_not_pd(void **state)
{
    (void)state;
    int64_t n = 170;
    double *H = make_hessian(7, n, n / 4, 3e-4, NULL, 0);
    double *U = dalloc(n * n);
    int info = 0;
    assert_int_equal(mp_comm_chol_inv_chol(g_comm, H, n, 16, U, &info), MP_OK);
    assert_true(info > 0);
    double infos[2] = {(double)info, -(double)info};
    assert_int_equal(mp_comm_allreduce_max_f64(g_comm, infos, 2), MP_OK);
    assert_true(infos[0] == -infos[1]); /* max == min */
    free(H);
    free(U);
}

/* Runs the serial and the distributed prepare on copies of H and W and compares them. */
static void compare_prepare(const double *H, int64_t n, const float *W, int64_t rows,
                            double damp, int nb, mp_obs_info *ser, mp_obs_info *dist)
{
    double *H1 = dcopy(H, n * n), *H2 = dcopy(H, n * n);
    float *W1 = fcopy(W, rows * n), *W2 = fcopy(W, rows * n);
    float *h1 = falloc(n * n), *h2 = falloc(n * n);
    assert_int_equal(mp_obs_prepare(H1, n, W1, rows, damp, h1, ser), MP_OK);
    assert_int_equal(mp_obs_prepare_dist(g_comm, H2, n, W2, rows, damp, nb, h2, dist), MP_OK);
    double e = max_over_ranks(rel_err_f32(h2, h1, n * n));
    double ew = max_over_ranks(rel_err_f32(W2, W1, rows * n));
    double eh = max_over_ranks(rel_err_f64(H2, H1, n * n));
    if (is_root())
        print_message("prepare n=%lld nb=%d: damp %g/%g escalations %d/%d dead %lld/%lld "
                      "hinv rel err %.3g\n",
                      (long long)n, nb, ser->damp, dist->damp, ser->escalations,
                      dist->escalations, (long long)ser->dead, (long long)dist->dead, e);
    if (!(e <= TOL_F32))
        fail_msg("hinv rel err %g > %g", e, TOL_F32);
    if (!(ew == 0.0))
        fail_msg("W differs after prepare (%g)", ew);
    if (!(eh == 0.0))
        fail_msg("H differs after prepare (%g)", eh);
    assert_true(ser->damp == dist->damp);
    assert_int_equal(ser->escalations, dist->escalations);
    assert_int_equal(ser->dead, dist->dead);
    free(H1);
    free(H2);
    free(W1);
    free(W2);
    free(h1);
    free(h2);
}

/* A rank-deficient Gram matrix (m = n/4) shifted by -3e-4 · mean(diag) (roundoff that made a
 * singular Hessian indefinite): damping 1e-6, 1e-5 and 1e-4 fail by a wide margin, 1e-3 succeeds,
 * so both paths escalate exactly three times. */
static void test_escalation(void **state)
{
    (void)state;
    int64_t n = 170, rows = 9;
    double *H = make_hessian(11, n, n / 4, 3e-4, NULL, 0);
    float *W = make_weights(12, rows, n);
    const int nbs[] = {16, 32};
    for (int b = 0; b < 2; b++) {
        mp_obs_info ser, dist;
        compare_prepare(H, n, W, rows, 1e-6, nbs[b], &ser, &dist);
        assert_int_equal(ser.escalations, 3);
        assert_true(fabs(ser.damp - 1e-3) <= 1e-15);
    }
    free(H);
    free(W);
}

/* Dead inputs (zero row and column of H): the same count, the same zeroed columns of W. */
static void test_dead_inputs(void **state)
{
    (void)state;
    int64_t n = 181, rows = 13;
    const int64_t dead[] = {0, 3, 50, 77, 180};
    double *H = make_hessian(21, n, 2 * n, 0.0, dead, 5);
    float *W = make_weights(22, rows, n);
    mp_obs_info ser, dist;
    compare_prepare(H, n, W, rows, 0.01, 16, &ser, &dist);
    assert_int_equal(ser.dead, 5);
    assert_int_equal(ser.escalations, 0);
    free(H);
    free(W);
}

/* Compares a pruned W with the serial one: identical masks, values within TOL_F32. */
static void check_pruned(const float *Wd, const float *Ws, int64_t rows, int64_t cols,
                         const char *what)
{
    double e = max_over_ranks(rel_err_f32(Wd, Ws, rows * cols));
    double bad = max_over_ranks((double)mask_mismatch(Wd, Ws, rows * cols));
    int64_t zeros = 0;
    for (int64_t i = 0; i < rows * cols; i++)
        zeros += Ws[i] == 0.0f;
    if (is_root())
        print_message("%s: %lld/%lld zeros, mask mismatches %g, rel err %.3g\n", what,
                      (long long)zeros, (long long)(rows * cols), bad, e);
    assert_true(zeros > 0);
    if (!(bad == 0.0))
        fail_msg("%s: %g mask mismatches", what, bad);
    if (!(e <= TOL_F32))
        fail_msg("%s: rel err %g > %g", what, e, TOL_F32);
}

/* The distributed sweep with the serial U, then the whole distributed prepare + sweep, against
 * the serial prepare + sweep; rows = 2 leaves ranks without rows at 3 and 4 ranks. */
static void test_prune_matches_serial(void **state)
{
    (void)state;
    int64_t n = 200;
    const int64_t rows_list[] = {37, 2};
    const int64_t blocks[] = {32, 128};
    const mp_sparsity sps[] = {{0.5, 0, 0}, {0.0, 2, 4}};
    double *H = make_hessian(31, n, 3 * n, 0.0, NULL, 0);
    for (size_t ri = 0; ri < 2; ri++)
        for (size_t bi = 0; bi < 2; bi++)
            for (size_t si = 0; si < 2; si++) {
                int64_t rows = rows_list[ri], B = blocks[bi];
                const mp_sparsity *sp = &sps[si];
                char what[96];
                float *W = make_weights(32 + ri, rows, n);
                /* Serial reference. */
                double *Hs = dcopy(H, n * n);
                float *Ws = fcopy(W, rows * n), *hs = falloc(n * n);
                mp_obs_info is, id;
                assert_int_equal(mp_obs_prepare(Hs, n, Ws, rows, 0.01, hs, &is), MP_OK);
                float *Wprep = fcopy(Ws, rows * n);
                double ls = NAN, l1 = NAN;
                assert_int_equal(mp_sparsegpt_sweep(Ws, rows, n, hs, B, sp, NULL, &ls), MP_OK);
                /* Distributed sweep, same U. */
                float *W1 = fcopy(Wprep, rows * n);
                assert_int_equal(mp_sparsegpt_sweep_dist(g_comm, W1, rows, n, hs, B, sp, &l1), MP_OK);
                snprintf(what, sizeof what, "sweep rows=%lld B=%lld %s", (long long)rows,
                         (long long)B, sp->n ? "2:4" : "0.5");
                check_pruned(W1, Ws, rows, n, what);
                /* The sweep's loss summed over the ranks' rows against the serial one. */
                double rl = fabs(l1 - ls) / ls;
                if (is_root())
                    print_message("%s: loss %.10g (serial %.10g)\n", what, l1, ls);
                assert_true(ls > 0.0);
                if (!(rl <= TOL_F32))
                    fail_msg("%s: loss rel %g > %g", what, rl, TOL_F32);
                /* Distributed prepare + sweep. */
                double *Hd = dcopy(H, n * n);
                float *Wd = fcopy(W, rows * n), *hd = falloc(n * n);
                assert_int_equal(
                    mp_obs_prepare_dist(g_comm, Hd, n, Wd, rows, 0.01, 16, hd, &id), MP_OK);
                assert_int_equal(mp_sparsegpt_sweep_dist(g_comm, Wd, rows, n, hd, B, sp, NULL), MP_OK);
                snprintf(what, sizeof what, "prepare+sweep rows=%lld B=%lld %s",
                         (long long)rows, (long long)B, sp->n ? "2:4" : "0.5");
                check_pruned(Wd, Ws, rows, n, what);
                if (sp->n > 0)
                    for (int64_t g = 0; g < rows * n; g += 4) {
                        int z = 0;
                        for (int t = 0; t < 4; t++)
                            z += Wd[g + t] == 0.0f;
                        assert_true(z >= 2);
                    }
                free(W);
                free(Hs);
                free(Ws);
                free(hs);
                free(Wprep);
                free(W1);
                free(Hd);
                free(Wd);
                free(hd);
            }
    free(H);
}

/* Uneven all-gather, a rank sending nothing included. */
static void test_allgatherv(void **state)
{
    (void)state;
    int P = mp_comm_size(g_comm), rank = mp_comm_rank(g_comm);
    int64_t n = rank == 1 ? 0 : rank + 3, expect = 0;
    for (int r = 0; r < P; r++)
        expect += r == 1 ? 0 : r + 3;
    float *send = falloc(n), *recv = falloc(expect);
    for (int64_t i = 0; i < n; i++)
        send[i] = (float)(rank * 100 + i);
    int64_t total = -1;
    assert_int_equal(mp_comm_allgatherv_f32(g_comm, send, n, recv, &total), MP_OK);
    assert_int_equal(total, expect);
    int64_t k = 0;
    for (int r = 0; r < P; r++)
        for (int64_t i = 0; i < (r == 1 ? 0 : r + 3); i++)
            assert_true(recv[k++] == (float)(r * 100 + i));
    free(send);
    free(recv);
}

int main(int argc, char **argv)
{
    if (mp_comm_init(&argc, &argv) != MP_OK) {
        fprintf(stderr, "test_scalapack: %s\n", mp_error_message());
        return 1;
    }
    if (mp_comm_dup_world(&g_comm) != MP_OK) {
        fprintf(stderr, "test_scalapack: %s\n", mp_error_message());
        mp_comm_finalize();
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allgatherv),
        cmocka_unit_test(test_chol_matches_lapack),
        cmocka_unit_test(test_chol_not_pd),
        cmocka_unit_test(test_escalation),
        cmocka_unit_test(test_dead_inputs),
        cmocka_unit_test(test_prune_matches_serial),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mp_comm_free(&g_comm);
    mp_comm_finalize();
    return failed;
}
