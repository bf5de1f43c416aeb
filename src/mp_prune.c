#include "mp_prune.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Fortran ABI). */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);

mp_status mp_obs_prepare(double *H, int64_t n, float *W, int64_t rows, double damp, float *hinv,
                         mp_obs_info *info)
{
    mp_status st = MP_OK;
    double *A = NULL;
    memset(info, 0, sizeof *info);
    if (n <= 0 || n > INT_MAX)
        return mp_error(MP_ERR_RANGE, "Hessian dimension %lld out of range", (long long)n);
    for (int64_t j = 0; j < n; j++) {
        if (!isfinite(H[j * n + j]))
            return mp_error(MP_ERR_NUMERIC, "Hessian has a non-finite diagonal entry");
        if (H[j * n + j] == 0.0) {
            H[j * n + j] = 1.0;
            info->dead++;
            if (W)
                for (int64_t r = 0; r < rows; r++)
                    W[r * n + j] = 0.0f;
        }
    }
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++)
        mean += H[j * n + j];
    mean /= (double)n;
    A = malloc((size_t)(n * n) * sizeof(double));
    if (!A)
        return mp_error(MP_ERR_NOMEM, "cannot allocate a %lld x %lld factor", (long long)n,
                        (long long)n);
    int N = (int)n, lapack_info = 0;
    double frac = damp;
    for (int attempt = 0;; attempt++) {
        memcpy(A, H, (size_t)(n * n) * sizeof(double));
        double lambda = frac * mean;
        for (int64_t j = 0; j < n; j++)
            A[j * n + j] += lambda;
        /* Symmetric, so the row-major array is also its column-major self; 'L' in column-major
         * is the upper triangle in row-major. */
        dpotrf_("L", &N, A, &N, &lapack_info, 1);
        if (lapack_info == 0)
            dpotri_("L", &N, A, &N, &lapack_info, 1);
        if (lapack_info == 0) {
            /* Mirror the inverse so both triangles hold it, then factor it. */
            for (int64_t c = 0; c < n; c++)
                for (int64_t r = c + 1; r < n; r++)
                    A[r * n + c] = A[c * n + r];
            dpotrf_("L", &N, A, &N, &lapack_info, 1);
        }
        if (lapack_info < 0)
            MP_FAIL(MP_ERR_INTERNAL, "LAPACK argument %d invalid", -lapack_info);
        if (lapack_info == 0)
            break;
        if (attempt == MP_DAMP_ESCALATIONS)
            MP_FAIL(MP_ERR_NUMERIC, "Hessian not positive definite even with damping %g of "
                    "mean(diag H)", frac);
        frac *= 10.0;
        info->escalations++;
    }
    info->damp = frac;
    /* Row-major upper triangle of A now holds U with H⁻¹ = UᵀU. */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            hinv[i * n + j] = j >= i ? (float)A[i * n + j] : 0.0f;
done:
    free(A);
    return st;
}

float mp_kth_smallest(float *v, int64_t n, int64_t k)
{
    /* Quickselect (Hoare partition, middle pivot); deterministic. */
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

static inline float obs_score(float w, float d) { return (w * w) / (d * d); }

/* Marks in mask[0..m) the n lowest scores (ties: lower index first). */
static void lowest_n(const float *score, int m, int n, unsigned char *mask)
{
    for (int i = 0; i < m; i++)
        mask[i] = 0;
    for (int t = 0; t < n; t++) {
        int best = -1;
        for (int i = 0; i < m; i++)
            if (!mask[i] && (best < 0 || score[i] < score[best]))
                best = i;
        if (best >= 0)
            mask[best] = 1;
    }
}

mp_status mp_sparsegpt_sweep(float *W, int64_t rows, int64_t cols, const float *U,
                             int64_t blocksize, const mp_sparsity *sp,
                             const mp_threshold_fn *global)
{
    mp_status st = MP_OK;
    int64_t B = blocksize;
    if (B <= 0 || (sp->n > 0 && (sp->m <= 0 || B % sp->m != 0 || cols % sp->m != 0)))
        return mp_error(MP_ERR_ARG, "block size %lld and %d:%d pattern do not fit %lld columns",
                        (long long)B, sp->n, sp->m, (long long)cols);
    if (rows > INT_MAX || cols > INT_MAX)
        return mp_error(MP_ERR_RANGE, "layer too large for BLAS int");
    float *err = malloc((size_t)(rows * B) * sizeof(float));
    float *scores = malloc((size_t)(rows * B + 1) * sizeof(float));
    unsigned char *mask = malloc((size_t)(rows * B + 1));
    if (!err || !scores || !mask)
        MP_FAIL(MP_ERR_NOMEM, "cannot allocate SparseGPT workspace for %lld rows",
                (long long)rows);
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
        int64_t nb = cols - i1 < B ? cols - i1 : B;
        if (sp->n == 0) {
            int64_t cnt = rows * nb;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < nb; c++)
                    scores[r * nb + c] = obs_score(W[r * cols + i1 + c],
                                                   U[(i1 + c) * cols + i1 + c]);
            float thresh;
            if (global && global->fn) {
                int64_t k = (int64_t)((double)(global->total_rows * nb) * sp->sparsity);
                MP_TRY(global->fn(global->ud, scores, cnt, k, &thresh));
            } else {
                int64_t k = (int64_t)((double)cnt * sp->sparsity);
                float *tmp = malloc((size_t)cnt * sizeof(float));
                if (!tmp)
                    MP_FAIL(MP_ERR_NOMEM, "cannot allocate SparseGPT scores");
                memcpy(tmp, scores, (size_t)cnt * sizeof(float));
                thresh = k < cnt ? mp_kth_smallest(tmp, cnt, k) : INFINITY;
                free(tmp);
            }
            for (int64_t t = 0; t < cnt; t++)
                mask[t] = scores[t] <= thresh;
        }
        for (int64_t r = 0; r < rows; r++) {
            float *w = W + r * cols + i1;
            unsigned char *mk = mask + r * nb;
            for (int64_t i = 0; i < nb; i++) {
                const float *urow = U + (i1 + i) * cols + i1;
                if (sp->n > 0 && i % sp->m == 0) {
                    float sc[64];
                    int m = sp->m;
                    for (int t = 0; t < m; t++)
                        sc[t] = obs_score(w[i + t], U[(i1 + i + t) * cols + i1 + i + t]);
                    lowest_n(sc, m, sp->n, mk + i);
                }
                float q = mk[i] ? 0.0f : w[i];
                float e = (w[i] - q) / urow[i];
                w[i] = q;
                err[r * B + i] = e;
                if (e != 0.0f)
                    for (int64_t j = i + 1; j < nb; j++)
                        w[j] -= e * urow[j];
            }
        }
        int64_t rest = cols - (i1 + nb);
        if (rest > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)rest, (int)nb,
                        -1.0f, err, (int)B, U + i1 * cols + i1 + nb, (int)cols, 1.0f,
                        W + i1 + nb, (int)cols);
    }
done:
    free(err);
    free(scores);
    free(mask);
    return st;
}

typedef struct {
    float score;
    int64_t idx;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score < y->score)
        return -1;
    if (x->score > y->score)
        return 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static mp_status check_nm(const mp_sparsity *sp, int64_t cols)
{
    if (sp->n > 0 && (sp->m > 64 || sp->n > sp->m || cols % sp->m != 0))
        return mp_error(MP_ERR_ARG, "%d:%d pattern does not fit %lld columns", sp->n, sp->m,
                        (long long)cols);
    return MP_OK;
}

static void prune_nm(float *W, int64_t rows, int64_t cols, const double *colscale,
                     const mp_sparsity *sp)
{
    float sc[64];
    unsigned char mk[64];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += sp->m) {
            float *w = W + r * cols + c0;
            for (int t = 0; t < sp->m; t++)
                sc[t] = (float)(fabs((double)w[t]) * (colscale ? colscale[c0 + t] : 1.0));
            lowest_n(sc, sp->m, sp->n, mk);
            for (int t = 0; t < sp->m; t++)
                if (mk[t])
                    w[t] = 0.0f;
        }
}

mp_status mp_wanda_prune(float *W, int64_t rows, int64_t cols, const double *hdiag,
                         const mp_sparsity *sp)
{
    mp_status st = check_nm(sp, cols);
    if (st != MP_OK)
        return st;
    double *scale = malloc((size_t)cols * sizeof(double));
    scored *row = malloc((size_t)cols * sizeof(scored));
    if (!scale || !row) {
        free(scale);
        free(row);
        return mp_error(MP_ERR_NOMEM, "cannot allocate Wanda scores");
    }
    for (int64_t j = 0; j < cols; j++)
        scale[j] = sqrt(hdiag[j] > 0.0 ? hdiag[j] : 0.0);
    if (sp->n > 0) {
        prune_nm(W, rows, cols, scale, sp);
    } else {
        int64_t k = (int64_t)((double)cols * sp->sparsity);
        for (int64_t r = 0; r < rows; r++) {
            float *w = W + r * cols;
            for (int64_t j = 0; j < cols; j++) {
                row[j].score = (float)(fabs((double)w[j]) * scale[j]);
                row[j].idx = j;
            }
            qsort(row, (size_t)cols, sizeof *row, cmp_scored);
            for (int64_t t = 0; t < k; t++)
                w[row[t].idx] = 0.0f;
        }
    }
    free(scale);
    free(row);
    return MP_OK;
}

mp_status mp_magnitude_prune(float *W, int64_t rows, int64_t cols, const mp_sparsity *sp)
{
    mp_status st = check_nm(sp, cols);
    if (st != MP_OK)
        return st;
    if (sp->n > 0) {
        prune_nm(W, rows, cols, NULL, sp);
        return MP_OK;
    }
    int64_t n = rows * cols, k = (int64_t)((double)n * sp->sparsity);
    scored *all = malloc((size_t)n * sizeof(scored));
    if (!all)
        return mp_error(MP_ERR_NOMEM, "cannot allocate magnitude scores for %lld weights",
                        (long long)n);
    for (int64_t i = 0; i < n; i++) {
        all[i].score = fabsf(W[i]);
        all[i].idx = i;
    }
    qsort(all, (size_t)n, sizeof *all, cmp_scored);
    for (int64_t t = 0; t < k; t++)
        W[all[t].idx] = 0.0f;
    free(all);
    return MP_OK;
}

mp_status mp_recon_error(const float *W, const float *What, int64_t rows, int64_t cols,
                         const double *H, double *err)
{
    /* tr(A H Aᵀ) = Σ_r a_r H a_rᵀ, in float64, a chunk of rows at a time (dsymm, BLAS 3). */
    enum { CHUNK = 128 };
    double *a = malloc((size_t)(CHUNK * cols) * sizeof(double));
    double *ah = malloc((size_t)(CHUNK * cols) * sizeof(double));
    if (!a || !ah) {
        free(a);
        free(ah);
        return mp_error(MP_ERR_NOMEM, "cannot allocate reconstruction workspace");
    }
    double num = 0.0, den = 0.0;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t r0 = 0; r0 < rows; r0 += CHUNK) {
            int64_t nr = rows - r0 < CHUNK ? rows - r0 : CHUNK;
            for (int64_t i = 0; i < nr * cols; i++) {
                int64_t k = r0 * cols + i;
                a[i] = pass == 0 ? (double)W[k] - (double)What[k] : (double)W[k];
            }
            cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)nr, (int)cols, 1.0, H,
                        (int)cols, a, (int)cols, 0.0, ah, (int)cols);
            double s = 0.0;
            for (int64_t i = 0; i < nr * cols; i++)
                s += a[i] * ah[i];
            if (pass == 0)
                num += s;
            else
                den += s;
        }
    free(a);
    free(ah);
    *err = den > 0.0 ? num / den : 0.0;
    return MP_OK;
}
