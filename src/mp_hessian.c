#include "mp_alloc.h"
#include "mp_bf16.h"
#include "mp_hessian.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

mp_status mp_hessian_init(mp_hessian *h, int64_t dim)
{
    memset(h, 0, sizeof *h);
    if (dim <= 0 || dim > INT_MAX)
        return mp_error(MP_ERR_RANGE, "Hessian dimension %lld out of range", (long long)dim);
    h->dim = dim;
    h->sum = mp_calloc((size_t)(dim * dim), sizeof(double));
    h->chunk = mp_malloc((size_t)(dim * dim) * sizeof(float));
    if (!h->sum || !h->chunk) {
        mp_hessian_free(h);
        return mp_error(MP_ERR_NOMEM, "cannot allocate a %lld x %lld Hessian", (long long)dim,
                        (long long)dim);
    }
    return MP_OK;
}

void mp_hessian_free(mp_hessian *h)
{
    free(h->sum);
    free(h->chunk);
    free(h->xt);
    h->sum = NULL;
    h->chunk = NULL;
    h->xt = NULL;
}

mp_status mp_hessian_use_bf16(mp_hessian *h)
{
    if (h->xt)
        return MP_OK;
    h->xt = mp_malloc((size_t)(h->dim * MP_HESSIAN_CHUNK) * sizeof(uint16_t));
    if (!h->xt)
        return mp_error(MP_ERR_NOMEM, "cannot allocate bf16 scratch for a %lld-wide Hessian",
                        (long long)h->dim);
    return MP_OK;
}

/* Columns per panel of the bf16 product: the upper triangle in panels costs n²/2 + n·PANEL/2
 * multiply-adds per row instead of a full product's n². */
#define MP_HESSIAN_PANEL 256

/* chunk's upper triangle (and some of the lower, unused) = xᵀx for x[nr, n], bf16 inputs. */
static mp_status chunk_bf16(mp_hessian *h, const float *x, int64_t nr)
{
    int64_t n = h->dim;
    mp_bf16_from_f32_t(x, nr, n, h->xt); /* xt[n, nr] = xᵀ */
    for (int64_t i0 = 0; i0 < n; i0 += MP_HESSIAN_PANEL) {
        int64_t mi = n - i0 < MP_HESSIAN_PANEL ? n - i0 : MP_HESSIAN_PANEL;
        mp_status st = mp_bf16_gemm_nt(mi, n - i0, nr, h->xt + i0 * nr, nr, h->xt + i0 * nr, nr,
                                       h->chunk + i0 * n + i0, n);
        if (st != MP_OK)
            return st;
    }
    return MP_OK;
}

mp_status mp_hessian_add(mp_hessian *h, const float *x, int64_t rows)
{
    int64_t n = h->dim;
    for (int64_t r0 = 0; r0 < rows; r0 += MP_HESSIAN_CHUNK) {
        int64_t nr = rows - r0 < MP_HESSIAN_CHUNK ? rows - r0 : MP_HESSIAN_CHUNK;
        /* Row-major upper triangle of xᵀx. */
        if (h->xt) {
            mp_status st = chunk_bf16(h, x + r0 * n, nr);
            if (st != MP_OK)
                return st;
        } else {
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)nr, 1.0f, x + r0 * n,
                        (int)n, 0.0f, h->chunk, (int)n);
        }
        for (int64_t i = 0; i < n; i++) {
            double *s = h->sum + i * n;
            const float *c = h->chunk + i * n;
            for (int64_t j = i; j < n; j++)
                s[j] += (double)c[j];
        }
    }
    h->rows += rows;
    return MP_OK;
}

void mp_hessian_merge(mp_hessian *h, const double *other_sum, int64_t other_rows)
{
    int64_t n = h->dim;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++)
            h->sum[i * n + j] += other_sum[i * n + j];
    h->rows += other_rows;
}

void mp_hessian_finish(const mp_hessian *h, double *out)
{
    /* The lower triangle is written in tiles: a column at a time strides n·8 bytes per write,
     * a cache line and a page for each of n²/2 values (0.3 s at n = 5632). */
    enum { T = 32 };
    int64_t n = h->dim;
    double scale = h->rows > 0 ? 2.0 / (double)h->rows : 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += T)
        for (int64_t j0 = i0; j0 < n; j0 += T) {
            int64_t i1 = i0 + T < n ? i0 + T : n, j1 = j0 + T < n ? j0 + T : n;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0 > i ? j0 : i; j < j1; j++)
                    out[i * n + j] = h->sum[i * n + j] * scale;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < i1 && i <= j; i++)
                    out[j * n + i] = out[i * n + j];
        }
}

double mp_hessian_flops(int64_t dim, int64_t rows)
{
    return (double)dim * (double)(dim + 1) * (double)rows;
}
