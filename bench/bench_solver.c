/* bench_solver: speed of the serial SparseGPT solve of one square layer (W[n, n], H[n, n]) and
 * of the Hessian accumulation, against sgemm / dgemm / ssyrk measured in the same run (the
 * machines are shared and noisy: compare the ratios, not the absolute rates).
 *
 * Usage: bench_solver [T] [reps] [n...]
 *   T     rows (tokens) of the Hessian accumulation (default 2048)
 *   reps  timed runs of each measurement; the best is reported (default 1). The BLAS
 *         references get one extra warm-up run; the solve is timed cold (one allocation each).
 *   n...  d_row = d_col sizes (default 1024 2048 4096)
 *
 * Flop model (what the GF/s columns divide by; B = blocksize = 128, rows = cols = n):
 *   prepare = 4n³/3, the reference algorithm's count: dpotrf of H (n³/3), dpotri = dtrtri
 *             (n³/3) + dlauum (n³/3), dpotrf of H⁻¹ (n³/3); all float64. mp_obs_prepare gets
 *             the same factor with 2n³/3 (dpotrf of the reversed H, dtrtri), so its "prep GF"
 *             is reference-equivalent GFLOP/s: the reference's work divided by our time.
 *             The O(n²) copies and the float32 conversion are not counted.
 *   sweep   = lazy + block:
 *             lazy  = rows·cols·(cols − B): per block of B columns one sgemm
 *                     rows × rest × B (2 flops per multiply-add), rest = columns after the
 *                     block; Σ over blocks of 2·rows·rest·B = rows·cols·(cols − B);
 *             block = rows·cols·(B − 1): inside a block each column's error updates the later
 *                     columns of the block (2 flops each, Σ_i (B−1−i) = B(B−1)/2 per row and
 *                     block). Counted dense; the code skips columns whose error is 0 (kept
 *                     weights), so about `sparsity` of it is executed.
 *             Together rows·cols·(cols − 1) ≈ n³.
 *   solve   = prepare + sweep ≈ 7n³/3; solve GF/s = solve flops / (prepare s + sweep s).
 *   hessian = mp_hessian_flops(n, T) = n(n+1)·T (ssyrk's count); ssyrk of the same shape
 *             (C[n, n] upper += Aᵀ A, A [T, n]) is counted the same.
 *   sgemm/dgemm = 2n³ (n×n×n).
 * Extra columns explain the time: "lapack s" is the reference's dpotrf + dpotri + dpotrf on a
 * copy (no mirror, no conversion), "lazy s" is the sweep's sgemm calls alone (same shapes, same
 * operands), so prepare − lapack and sweep − lazy are the non-BLAS parts.
 *
 * H = XᵀX / N + 1e-3·I with X [N = n, n] uniform in ±1 (splitmix64, seeded); W uniform in ±1.
 * Pruning: unstructured 0.5, blocksize 128, damp 0.01. The BLAS thread count is OpenBLAS's
 * (OPENBLAS_NUM_THREADS); the kernel set OpenBLAS picked is printed: a CPU newer than the
 * OpenBLAS build runs the generic Prescott kernels unless OPENBLAS_CORETYPE names one. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mp_blasinfo.h"
#include "mp_hessian.h"
#include "mp_prune.h"
#include "mp_status.h"

extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);

enum { BLOCKSIZE = 128 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64 */
static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in ±scale. */
static void fill(uint64_t seed, float *x, int64_t n, float scale)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * (float)((double)(sm64(&s) >> 40) * 0x1.0p-23 - 1.0);
}

static double gf(double flops, double s) { return flops / s * 1e-9; }

/* Best seconds of an n×n×n sgemm (dbl: dgemm) over reps after a warm-up. */
static double time_gemm(int64_t n, int reps, int dbl)
{
    size_t cnt = (size_t)(n * n), esz = dbl ? sizeof(double) : sizeof(float);
    void *a = malloc(cnt * esz), *b = malloc(cnt * esz), *c = malloc(cnt * esz);
    float *tmp = malloc(cnt * sizeof *tmp);
    double best = INFINITY;
    if (!a || !b || !c || !tmp)
        goto done;
    for (int k = 0; k < 2; k++) {
        fill(11 + (uint64_t)k, tmp, (int64_t)cnt, 1.0f);
        void *dst = k == 0 ? a : b;
        for (size_t i = 0; i < cnt; i++) {
            if (dbl)
                ((double *)dst)[i] = tmp[i];
            else
                ((float *)dst)[i] = tmp[i];
        }
    }
    for (int r = 0; r <= reps; r++) {
        double t0 = now_s();
        if (dbl)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0,
                        a, (int)n, b, (int)n, 0.0, c, (int)n);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f,
                        a, (int)n, b, (int)n, 0.0f, c, (int)n);
        double t = now_s() - t0;
        if (r > 0 && t < best)
            best = t;
    }
done:
    free(a), free(b), free(c), free(tmp);
    return best;
}

/* Best seconds of mp_hessian_add (hs) and of one cblas_ssyrk of the same shape (sy), x[T, n]. */
static int time_hessian(int64_t n, int64_t T, int reps, double *hs, double *sy)
{
    float *x = malloc((size_t)(T * n) * sizeof *x), *c = malloc((size_t)(n * n) * sizeof *c);
    mp_hessian h;
    int rc = 1;
    *hs = *sy = INFINITY;
    if (!x || !c)
        goto done;
    fill(21, x, T * n, 1.0f);
    if (mp_hessian_init(&h, n) != MP_OK) {
        fprintf(stderr, "hessian n=%lld: %s\n", (long long)n, mp_error_message());
        goto done;
    }
    for (int r = 0; r <= reps; r++) {
        double t0 = now_s();
        mp_status st = mp_hessian_add(&h, x, T);
        double t = now_s() - t0;
        if (st != MP_OK) {
            fprintf(stderr, "hessian n=%lld: %s\n", (long long)n, mp_error_message());
            mp_hessian_free(&h);
            goto done;
        }
        if (r > 0 && t < *hs)
            *hs = t;
        t0 = now_s();
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)T, 1.0f, x, (int)n, 0.0f,
                    c, (int)n);
        t = now_s() - t0;
        if (r > 0 && t < *sy)
            *sy = t;
    }
    mp_hessian_free(&h);
    rc = 0;
done:
    free(x), free(c);
    return rc;
}

/* The sweep's lazy sgemm calls alone: rows × rest × B per block, err [rows, B] random. */
static double time_lazy(float *W, int64_t n, const float *U, const float *err)
{
    double t0 = now_s();
    for (int64_t i1 = 0; i1 < n; i1 += BLOCKSIZE) {
        int64_t nb = n - i1 < BLOCKSIZE ? n - i1 : BLOCKSIZE;
        int64_t rest = n - (i1 + nb);
        if (rest > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)rest, (int)nb,
                        -1.0f, err, BLOCKSIZE, U + i1 * n + i1 + nb, (int)n, 1.0f, W + i1 + nb,
                        (int)n);
    }
    return now_s() - t0;
}

typedef struct {
    double prep, lapack, sweep, lazy;
    double damp;
    int escalations;
    double zeros; /* fraction of W zero after the sweep */
} solve_times;

/* Best of reps of each part of the solve for size n. */
static int time_solve(int64_t n, int reps, solve_times *out)
{
    size_t nn = (size_t)(n * n);
    float *x = malloc(nn * sizeof *x), *xh = malloc(nn * sizeof *xh);
    double *H = malloc(nn * sizeof *H), *Hw = malloc(nn * sizeof *Hw);
    float *W0 = malloc(nn * sizeof *W0), *W = malloc(nn * sizeof *W);
    float *U = malloc(nn * sizeof *U), *err = malloc((size_t)(n * BLOCKSIZE) * sizeof *err);
    int rc = 1;
    out->prep = out->lapack = out->sweep = out->lazy = INFINITY;
    if (!x || !xh || !H || !Hw || !W0 || !W || !U || !err) {
        fprintf(stderr, "n=%lld: out of memory\n", (long long)n);
        goto done;
    }
    /* H = XᵀX / N + 1e-3 I, N = n, built in float32 (ssyrk) and widened. */
    fill(31, x, (int64_t)nn, 1.0f);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)n, 1.0f / (float)n, x,
                (int)n, 0.0f, xh, (int)n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double v = (double)xh[i * n + j] + (i == j ? 1e-3 : 0.0);
            H[i * n + j] = v;
            H[j * n + i] = v;
        }
    fill(41, W0, (int64_t)nn, 1.0f);
    fill(51, err, n * BLOCKSIZE, 1.0f);
    mp_sparsity sp = {.sparsity = 0.5, .n = 0, .m = 0};
    for (int r = 0; r < reps; r++) {
        memcpy(Hw, H, nn * sizeof *Hw);
        memcpy(W, W0, nn * sizeof *W);
        mp_obs_info info;
        double t0 = now_s();
        mp_status st = mp_obs_prepare(Hw, n, W, n, 0.01, U, &info);
        double t1 = now_s();
        if (st == MP_OK)
            st = mp_sparsegpt_sweep(W, n, n, U, BLOCKSIZE, &sp, NULL, NULL);
        double t2 = now_s();
        if (st != MP_OK) {
            fprintf(stderr, "n=%lld: %s\n", (long long)n, mp_error_message());
            goto done;
        }
        if (t1 - t0 < out->prep)
            out->prep = t1 - t0;
        if (t2 - t1 < out->sweep)
            out->sweep = t2 - t1;
        out->damp = info.damp;
        out->escalations = info.escalations;
        int64_t z = 0;
        for (size_t i = 0; i < nn; i++)
            z += W[i] == 0.0f;
        out->zeros = (double)z / (double)nn;

        /* The same LAPACK calls as mp_obs_prepare, without its copies and conversions. */
        memcpy(Hw, H, nn * sizeof *Hw);
        double mean = 0.0;
        for (int64_t j = 0; j < n; j++)
            mean += H[j * n + j];
        for (int64_t j = 0; j < n; j++)
            Hw[j * n + j] += 0.01 * mean / (double)n;
        int N = (int)n, linfo = 0;
        t0 = now_s();
        dpotrf_("L", &N, Hw, &N, &linfo, 1);
        if (linfo == 0)
            dpotri_("L", &N, Hw, &N, &linfo, 1);
        if (linfo == 0)
            dpotrf_("L", &N, Hw, &N, &linfo, 1); /* lower triangle unmirrored: time only */
        t1 = now_s();
        if (linfo < 0) {
            fprintf(stderr, "n=%lld: LAPACK info %d\n", (long long)n, linfo);
            goto done;
        }
        if (t1 - t0 < out->lapack)
            out->lapack = t1 - t0;

        memcpy(W, W0, nn * sizeof *W);
        double tl = time_lazy(W, n, U, err);
        if (tl < out->lazy)
            out->lazy = tl;
    }
    rc = 0;
done:
    free(x), free(xh), free(H), free(Hw), free(W0), free(W), free(U), free(err);
    return rc;
}

int main(int argc, char **argv)
{
    int64_t T = 2048;
    int reps = 1;
    int64_t ns[16] = {1024, 2048, 4096};
    int nn = 3;
    if (argc > 1)
        T = strtoll(argv[1], NULL, 10);
    if (argc > 2)
        reps = (int)strtol(argv[2], NULL, 10);
    if (argc > 3) {
        nn = 0;
        for (int i = 3; i < argc && nn < 16; i++)
            ns[nn++] = strtoll(argv[i], NULL, 10);
    }
    int bad = T < 1 || reps < 1 || nn == 0;
    for (int i = 0; i < nn; i++)
        bad |= ns[i] < BLOCKSIZE || ns[i] > 32768;
    if (bad) {
        fprintf(stderr, "usage: bench_solver [T>=1] [reps>=1] [n (128..32768)...]\n");
        return 2;
    }
    printf("bench_solver: SparseGPT unstructured 0.5, blocksize %d, damp 0.01, rows = cols = n;"
           " Hessian T=%lld; reps=%d (best of) BLAS threads=%d core=%s\n", BLOCKSIZE,
           (long long)T, reps, openblas_get_num_threads(), openblas_get_corename());
    char bw[256];
    if (mp_blas_kernel_warning(bw, sizeof bw))
        printf("warning: %s\n", bw);
    printf("flops: prepare 4n^3/3 = the reference's potrf+potri+potrf (mpiprune does potrf+trtri,"
           " 2n^3/3: prepare GF is reference-equivalent); "
           "sweep n*n*(n-B) lazy sgemm + n*n*(B-1) in-block = n^2(n-1); solve = sum; "
           "gemm 2n^3; hessian/ssyrk n(n+1)T\n\n");
    printf("%5s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %7s %7s %7s\n", "n", "prep s",
           "lapack s", "sweep s", "lazy s", "prep GF", "sweep GF", "lazy GF", "solve GF",
           "sgemm GF", "dgemm GF", "sgemm s", "slv/sg", "prp/dg", "swp/sg");
    int rc = 0;
    double hs[16], sy[16];
    for (int i = 0; i < nn; i++) {
        int64_t n = ns[i];
        double d = (double)n, B = BLOCKSIZE;
        solve_times t;
        if (time_solve(n, reps, &t) != 0) {
            rc = 1;
            continue;
        }
        double sg = time_gemm(n, reps, 0), dg = time_gemm(n, reps, 1);
        double f_prep = 4.0 * d * d * d / 3.0, f_lazy = d * d * (d - B), f_blk = d * d * (B - 1);
        double f_sweep = f_lazy + f_blk, f_gemm = 2.0 * d * d * d;
        double g_solve = gf(f_prep + f_sweep, t.prep + t.sweep), g_sg = gf(f_gemm, sg);
        double g_dg = gf(f_gemm, dg);
        printf("%5lld %8.3f %8.3f %8.3f %8.3f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.3f "
               "%6.0f%% %6.0f%% %6.0f%%\n",
               (long long)n, t.prep, t.lapack, t.sweep, t.lazy, gf(f_prep, t.prep),
               gf(f_sweep, t.sweep), gf(f_lazy, t.lazy), g_solve, g_sg, g_dg, sg,
               100.0 * g_solve / g_sg, 100.0 * gf(f_prep, t.prep) / g_dg,
               100.0 * gf(f_sweep, t.sweep) / g_sg);
        printf("      damp used %.3g (%d escalations), zeros %.4f; non-BLAS: prepare %.3f s "
               "(%.0f%%), sweep %.3f s (%.0f%%)\n",
               t.damp, t.escalations, t.zeros, t.prep - t.lapack,
               100.0 * (t.prep - t.lapack) / t.prep, t.sweep - t.lazy,
               100.0 * (t.sweep - t.lazy) / t.sweep);
        fflush(stdout);
        if (time_hessian(n, T, reps, &hs[i], &sy[i]) != 0) {
            hs[i] = sy[i] = NAN;
            rc = 1;
        }
    }
    printf("\nHessian accumulation: mp_hessian_add of T=%lld rows x n (float32 ssyrk in chunks "
           "+ float64 accumulate) vs one cblas_ssyrk of the same shape\n", (long long)T);
    printf("%5s %10s %10s %10s %10s %8s\n", "n", "add s", "ssyrk s", "add GF", "ssyrk GF",
           "add/syrk");
    for (int i = 0; i < nn; i++) {
        double f = mp_hessian_flops(ns[i], T);
        printf("%5lld %10.4f %10.4f %10.1f %10.1f %7.0f%%\n", (long long)ns[i], hs[i], sy[i],
               gf(f, hs[i]), gf(f, sy[i]), 100.0 * sy[i] / hs[i]);
    }
    printf("\nslv/sg: solve GF/s over sgemm GF/s (target >= 50%%); prp/dg: prepare over dgemm; "
           "swp/sg: sweep over sgemm. lapack/lazy: the BLAS/LAPACK calls alone.\n");
    return rc;
}
