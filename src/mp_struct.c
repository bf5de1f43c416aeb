#include "mp_struct.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"

/* LAPACK (Fortran ABI; a symmetric matrix is the same in row- and column-major order). */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
                   double *b, const int *ldb, int *info, size_t uplo_len);

/* A[n, n] symmetric positive definite -> its inverse, full. Returns the LAPACK info. */
static int spd_inverse(double *A, int64_t n)
{
    int N = (int)n, info = 0;
    dpotrf_("L", &N, A, &N, &info, 1);
    if (info == 0)
        dpotri_("L", &N, A, &N, &info, 1);
    if (info != 0)
        return info;
    /* Column-major lower = row-major upper: mirror it into the other triangle. */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            A[j * n + i] = A[i * n + j];
    return 0;
}

static mp_status check_dims(int64_t rows, int64_t cols)
{
    if (rows < 0 || cols <= 0 || rows > INT_MAX || cols > INT_MAX)
        return mp_error(MP_ERR_RANGE, "structured OBS: a %lld x %lld layer is out of range",
                        (long long)rows, (long long)cols);
    return MP_OK;
}

mp_status mp_struct_hinv(const double *H, int64_t n, double damp, double *Hinv)
{
    mp_status st = check_dims(0, n);
    if (st != MP_OK)
        return st;
    double mean = 0.0;
    memcpy(Hinv, H, (size_t)(n * n) * sizeof *Hinv);
    for (int64_t j = 0; j < n; j++) {
        if (Hinv[j * n + j] == 0.0)
            Hinv[j * n + j] = 1.0; /* a dead input: its weights carry nothing */
        mean += Hinv[j * n + j];
    }
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++)
        Hinv[j * n + j] += damp * mean;
    if (spd_inverse(Hinv, n) != 0)
        return mp_error(MP_ERR_NUMERIC, "structured OBS: the %lld x %lld Hessian is not positive "
                        "definite with damping %g", (long long)n, (long long)n, damp);
    return MP_OK;
}

/* B[ns, ns] = (Hinv[S, S])⁻¹. */
static mp_status block_inverse(const double *Hinv, int64_t cols, const int64_t *idx, int64_t ns,
                               double *B)
{
    for (int64_t a = 0; a < ns; a++) {
        if (idx[a] < 0 || idx[a] >= cols)
            return mp_error(MP_ERR_INTERNAL, "structured OBS: column %lld of %lld",
                            (long long)idx[a], (long long)cols);
        for (int64_t b = 0; b < ns; b++)
            B[a * ns + b] = Hinv[idx[a] * cols + idx[b]];
    }
    if (spd_inverse(B, ns) != 0)
        return mp_error(MP_ERR_NUMERIC, "structured OBS: the inverse Hessian of a group of %lld "
                        "columns is singular (a column removed twice?)", (long long)ns);
    return MP_OK;
}

/* E[rows, ns] = W[:, S] B and returns tr(W_S B W_Sᵀ) = Σ E ⊙ W_S. */
static double group_product(const double *W, int64_t rows, int64_t cols, const int64_t *idx,
                            int64_t ns, const double *B, double *E)
{
    double err = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const double *w = W + r * cols;
        for (int64_t a = 0; a < ns; a++) {
            double acc = 0.0;
            for (int64_t b = 0; b < ns; b++)
                acc += w[idx[b]] * B[b * ns + a];
            if (E)
                E[r * ns + a] = acc;
            err += acc * w[idx[a]];
        }
    }
    return err;
}

mp_status mp_struct_error(const double *W, int64_t rows, int64_t cols, const double *Hinv,
                          const int64_t *idx, int64_t ns, double *err)
{
    mp_status st = check_dims(rows, cols);
    if (st != MP_OK)
        return st;
    double *B = mp_malloc((size_t)(ns * ns) * sizeof *B);
    if (!B)
        return mp_error(MP_ERR_NOMEM, "structured OBS: cannot allocate a %lld x %lld block",
                        (long long)ns, (long long)ns);
    st = block_inverse(Hinv, cols, idx, ns, B);
    if (st == MP_OK)
        *err = group_product(W, rows, cols, idx, ns, B, NULL);
    free(B);
    return st;
}

mp_status mp_struct_remove(double *W, int64_t rows, int64_t cols, double *Hinv,
                           const int64_t *idx, int64_t ns, double *err)
{
    mp_status st = check_dims(rows, cols);
    if (st != MP_OK)
        return st;
    double *B = mp_malloc((size_t)(ns * ns) * sizeof *B);
    double *E = mp_malloc((size_t)(rows * ns) * sizeof *E);
    double *G = mp_malloc((size_t)(ns * cols) * sizeof *G);
    double *T = mp_malloc((size_t)(ns * cols) * sizeof *T);
    if (!B || !E || !G || !T)
        MP_FAIL(MP_ERR_NOMEM, "structured OBS: cannot allocate the update of %lld columns",
                (long long)ns);
    MP_TRY(block_inverse(Hinv, cols, idx, ns, B));
    double e = group_product(W, rows, cols, idx, ns, B, E);
    for (int64_t a = 0; a < ns; a++)
        memcpy(G + a * cols, Hinv + idx[a] * cols, (size_t)cols * sizeof *G);
    int R = (int)rows, C = (int)cols, S = (int)ns;
    /* W -= E · Hinv[S, :] */
    if (rows > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, C, S, -1.0, E, S, G, C, 1.0,
                    W, C);
    /* Hinv -= Hinv[:, S] · B · Hinv[S, :], with Hinv[:, S] = Hinv[S, :]ᵀ */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, C, S, 1.0, B, S, G, C, 0.0, T, C);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, C, S, -1.0, G, C, T, C, 1.0, Hinv,
                C);
    /* The removed columns are exactly zero (the update makes them so up to rounding). */
    for (int64_t a = 0; a < ns; a++) {
        int64_t j = idx[a];
        for (int64_t r = 0; r < rows; r++)
            W[r * cols + j] = 0.0;
        for (int64_t i = 0; i < cols; i++)
            Hinv[j * cols + i] = Hinv[i * cols + j] = 0.0;
    }
    if (err)
        *err = e;
done:
    free(B);
    free(E);
    free(G);
    free(T);
    return st;
}

mp_status mp_struct_greedy(double *W, int64_t rows, int64_t cols, double *Hinv, int64_t size,
                           int64_t n_groups, bool *alive, int64_t k, int64_t *order,
                           double *step_err)
{
    mp_status st = MP_OK;
    if (size <= 0 || n_groups * size != cols)
        return mp_error(MP_ERR_INTERNAL, "structured OBS: %lld groups of %lld for %lld columns",
                        (long long)n_groups, (long long)size, (long long)cols);
    int64_t *idx = mp_malloc((size_t)size * sizeof *idx);
    if (!idx)
        return mp_error(MP_ERR_NOMEM, "structured OBS: cannot allocate a group index");
    for (int64_t step = 0; step < k; step++) {
        int64_t best = -1;
        double best_err = INFINITY;
        for (int64_t g = 0; g < n_groups; g++) {
            if (!alive[g])
                continue;
            for (int64_t t = 0; t < size; t++)
                idx[t] = g * size + t;
            double e = 0.0;
            MP_TRY(mp_struct_error(W, rows, cols, Hinv, idx, size, &e));
            if (best < 0 || e < best_err) {
                best = g;
                best_err = e;
            }
        }
        if (best < 0)
            MP_FAIL(MP_ERR_INTERNAL, "structured OBS: %lld removals asked, fewer groups alive",
                    (long long)k);
        for (int64_t t = 0; t < size; t++)
            idx[t] = best * size + t;
        MP_TRY(mp_struct_remove(W, rows, cols, Hinv, idx, size, NULL));
        alive[best] = false;
        order[step] = best;
        if (step_err)
            step_err[step] = best_err;
    }
done:
    free(idx);
    return st;
}

mp_status mp_struct_refit(const double *Wd, int64_t rows, int64_t cols, const double *H,
                          const bool *keep, double damp, double *W)
{
    mp_status st = check_dims(rows, cols);
    if (st != MP_OK)
        return st;
    int64_t nk = 0;
    for (int64_t j = 0; j < cols; j++)
        nk += keep[j];
    memset(W, 0, (size_t)(rows * cols) * sizeof *W);
    if (nk == 0 || rows == 0)
        return MP_OK;
    int64_t *k = mp_malloc((size_t)nk * sizeof *k);
    double *A = mp_malloc((size_t)(nk * nk) * sizeof *A);
    double *HK = mp_malloc((size_t)(cols * nk) * sizeof *HK);  /* H[:, K] */
    double *X = mp_malloc((size_t)(rows * nk) * sizeof *X);    /* Wd H[:, K], then W_K */
    if (!k || !A || !HK || !X)
        MP_FAIL(MP_ERR_NOMEM, "structured refit: cannot allocate a %lld-column system",
                (long long)nk);
    for (int64_t j = 0, n = 0; j < cols; j++)
        if (keep[j])
            k[n++] = j;
    double mean = 0.0;
    for (int64_t a = 0; a < nk; a++) {
        for (int64_t b = 0; b < nk; b++)
            A[a * nk + b] = H[k[a] * cols + k[b]];
        if (A[a * nk + a] == 0.0)
            A[a * nk + a] = 1.0; /* a dead input */
        mean += A[a * nk + a];
    }
    mean /= (double)nk;
    for (int64_t a = 0; a < nk; a++)
        A[a * nk + a] += damp * mean;
    for (int64_t j = 0; j < cols; j++)
        for (int64_t a = 0; a < nk; a++)
            HK[j * nk + a] = H[j * cols + k[a]];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)nk, (int)cols, 1.0,
                Wd, (int)cols, HK, (int)nk, 0.0, X, (int)nk);
    /* W_K A = X, A symmetric: in column-major X[rows, nk] row-major is nk × rows, so one
     * dposv solves A Z = Xᵀ for every row at once. */
    int N = (int)nk, NR = (int)rows, info = 0;
    dposv_("L", &N, &NR, A, &N, X, &N, &info, 1);
    if (info != 0)
        MP_FAIL(MP_ERR_NUMERIC, "structured refit: the Hessian of the %lld kept columns is not "
                "positive definite with damping %g", (long long)nk, damp);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t a = 0; a < nk; a++)
            W[r * cols + k[a]] = X[r * nk + a];
done:
    free(k);
    free(A);
    free(HK);
    free(X);
    return st;
}

mp_status mp_struct_scales(const double *W, int64_t rows, int64_t cols, const double *H,
                           const double *cross, int64_t unit, const bool *keep, double damp,
                           double *m)
{
    mp_status st = check_dims(rows, cols);
    if (st != MP_OK)
        return st;
    if (unit < 1 || cols % unit != 0)
        return mp_error(MP_ERR_ARG, "mask tuning: %lld columns are not units of %lld",
                        (long long)cols, (long long)unit);
    int64_t nu = cols / unit, nk = 0;
    for (int64_t i = 0; i < nu; i++) {
        m[i] = 0.0;
        nk += keep[i];
    }
    if (nk == 0)
        return MP_OK;
    int64_t kc = nk * unit;
    int64_t *u = mp_malloc((size_t)nk * sizeof *u);
    double *WK = mp_malloc((size_t)(rows * kc) * sizeof *WK); /* W[:, kept columns] */
    double *WW = mp_malloc((size_t)(kc * kc) * sizeof *WW);   /* its Gram WKᵀ WK */
    double *A = mp_malloc((size_t)(nk * nk) * sizeof *A);
    double *r = mp_malloc((size_t)nk * sizeof *r);
    if (!u || !WK || !WW || !A || !r)
        MP_FAIL(MP_ERR_NOMEM, "mask tuning: cannot allocate a %lld-unit system", (long long)nk);
    for (int64_t i = 0, n = 0; i < nu; i++)
        if (keep[i])
            u[n++] = i;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t i = 0; i < nk; i++)
            memcpy(WK + t * kc + i * unit, W + t * cols + u[i] * unit,
                   (size_t)unit * sizeof *WK);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kc, (int)kc, (int)rows, 1.0, WK,
                (int)kc, WK, (int)kc, 0.0, WW, (int)kc);
    double mean = 0.0;
    for (int64_t i = 0; i < nk; i++) {
        r[i] = 0.0;
        for (int64_t a = 0; a < unit; a++)
            r[i] += cross[u[i] * unit + a];
        for (int64_t j = 0; j < nk; j++) {
            double g = 0.0;
            for (int64_t a = 0; a < unit; a++) {
                const double *ww = WW + (i * unit + a) * kc + j * unit;
                const double *hh = H + (u[i] * unit + a) * cols + u[j] * unit;
                for (int64_t b = 0; b < unit; b++)
                    g += ww[b] * hh[b];
            }
            A[i * nk + j] = g;
        }
        if (A[i * nk + i] == 0.0)
            A[i * nk + i] = 1.0; /* a dead unit: no output, its scale stays 1 */
        mean += A[i * nk + i];
    }
    mean /= (double)nk;
    for (int64_t i = 0; i < nk; i++) {
        A[i * nk + i] += damp * mean;
        r[i] += damp * mean;
    }
    int N = (int)nk, one = 1, info = 0;
    dposv_("L", &N, &one, A, &N, r, &N, &info, 1);
    if (info != 0)
        MP_FAIL(MP_ERR_NUMERIC, "mask tuning: the Gram matrix of the %lld kept units is not "
                "positive definite with damping %g", (long long)nk, damp);
    for (int64_t i = 0; i < nk; i++)
        m[u[i]] = r[i];
done:
    free(u);
    free(WK);
    free(WW);
    free(A);
    free(r);
    return st;
}

mp_status mp_struct_cross_add(const float *x, const float *y, const float *W, int64_t rows,
                              int64_t dim, int64_t out, double *cross)
{
    enum { CHUNK = 2048 };
    if (rows <= 0 || dim <= 0)
        return MP_OK;
    int64_t n = rows < CHUNK ? rows : CHUNK;
    float *u = mp_malloc((size_t)(n * dim) * sizeof *u);
    if (!u)
        return mp_error(MP_ERR_NOMEM, "mask tuning: cannot allocate %lld x %lld products",
                        (long long)n, (long long)dim);
    for (int64_t r0 = 0; r0 < rows; r0 += CHUNK) {
        int64_t m = rows - r0 < CHUNK ? rows - r0 : CHUNK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)dim, (int)out, 1.0f,
                    y + r0 * out, (int)out, W, (int)dim, 0.0f, u, (int)dim);
        for (int64_t t = 0; t < m; t++)
            for (int64_t a = 0; a < dim; a++)
                cross[a] += (double)x[(r0 + t) * dim + a] * (double)u[t * dim + a];
    }
    free(u);
    return MP_OK;
}

void mp_struct_center(double *H, const double *mean, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            H[i * n + j] -= 2.0 * mean[i] * mean[j];
}

void mp_struct_intercept(const double *Wd, const double *W, int64_t rows, int64_t cols,
                         const double *mean, double *bias)
{
    for (int64_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++)
            s += (Wd[r * cols + j] - W[r * cols + j]) * mean[j];
        bias[r] = s;
    }
}
