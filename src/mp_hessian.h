/* mp_hessian: accumulation of a linear layer's input Hessian H = (2/N) Σ x xᵀ.
 *
 * Rows of x are added in chunks with ssyrk (float32, as SparseGPT's reference; or bf16 products,
 * mp_hessian_use_bf16) and each chunk is added into a float64 accumulator, so the sum over many chunks does not lose precision.
 * N is the number of rows (tokens) added: H is the mean, times 2, of the outer products. The
 * scale does not change SparseGPT's result (its damping is relative to mean(diag H)) nor Wanda's
 * per-row ranking. Not collective.
 */
#ifndef MP_HESSIAN_H
#define MP_HESSIAN_H

#include <stdint.h>

#include "mp_status.h"

/* Rows per float32 ssyrk before the float64 accumulate: bounds float32 rounding growth. */
#define MP_HESSIAN_CHUNK 1024

typedef struct {
    int64_t dim;
    double *sum;    /* [dim, dim], Σ x xᵀ (upper triangle until mp_hessian_finish) */
    float *chunk;   /* [dim, dim] scratch */
    int64_t rows;   /* N: rows added so far */
    uint16_t *xt;   /* NULL, or [dim, chunk rows] scratch: products with bf16 inputs */
} mp_hessian;

MP_NODISCARD mp_status mp_hessian_init(mp_hessian *h, int64_t dim);
void mp_hessian_free(mp_hessian *h);
/* From now on each chunk's xᵀx is a product with bf16 inputs and float32 accumulation
 * (mp_bf16, --compute bf16), its upper triangle in panels of columns; the float64 sum is kept. */
MP_NODISCARD mp_status mp_hessian_use_bf16(mp_hessian *h);
/* Σ += xᵀx for x[rows, dim]. */
MP_NODISCARD mp_status mp_hessian_add(mp_hessian *h, const float *x, int64_t rows);
/* Adds another partial sum (same dim) elementwise: h->sum += other, h->rows += rows. */
void mp_hessian_merge(mp_hessian *h, const double *other_sum, int64_t other_rows);
/* out[dim, dim] = (2/N) Σ, symmetric (both triangles). N = 0 gives zeros. out may be h->sum
 * (only its upper triangle is read). */
void mp_hessian_finish(const mp_hessian *h, double *out);
/* Floating-point operations of adding `rows` rows (ssyrk counts dim²·rows). */
double mp_hessian_flops(int64_t dim, int64_t rows);

#endif
