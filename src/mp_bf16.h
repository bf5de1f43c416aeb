/* mp_bf16: matrix products with bfloat16 inputs and float32 accumulation (--compute bf16).
 *
 * bf16 keeps float32's exponent and 8 of its 24 significand bits; values are rounded to nearest,
 * ties to even (NaN stays NaN), as mp_dtype's mp_f32_to_bf16. The product of two bf16 values is exact in float32, so a product
 * "bf16 in, f32 accumulate" differs from sgemm on the rounded inputs only in summation order.
 *
 * The products run on oneDNN's matmul when mpiprune was built with it (CMake finds Debian's
 * libdnnl-dev) and oneDNN has a bf16 kernel for this CPU (AVX512-BF16, AMX). Otherwise they are
 * emulated: sgemm on the inputs widened back to float32 — the same rounding of the inputs, none
 * of the speed; mp_bf16_native() says which, mp_bf16_backend() names it.
 *
 * oneDNN's threads are OpenMP's: when OMP_NUM_THREADS is not set, the first product sets them to
 * OpenBLAS's thread count, so one setting (OPENBLAS_NUM_THREADS) sizes both. Process-wide state
 * (the oneDNN engine) is made on first use; call from one thread. Not collective.
 */
#ifndef MP_BF16_H
#define MP_BF16_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_status.h"

/* Where matrix products of the pruning passes run. */
typedef enum { MP_COMPUTE_F32, MP_COMPUTE_BF16 } mp_compute;

/* "f32" / "bf16" <-> mp_compute; the parse fails (MP_ERR_ARG) on any other name. */
const char *mp_compute_name(mp_compute c);
MP_NODISCARD mp_status mp_compute_parse(const char *name, mp_compute *out);

/* out[i] = x[i] rounded to bf16 (mp_f32_to_bf16 of mp_dtype), i < n. */
void mp_bf16_from_f32(const float *x, int64_t n, uint16_t *out);
/* The transpose, rounded: out[j * rows + i] = round(x[i * cols + j]) for x[rows, cols]. */
void mp_bf16_from_f32_t(const float *x, int64_t rows, int64_t cols, uint16_t *out);

/* c[m, n] (row stride ldc) = a · bᵀ for bf16 a[m, k] (row stride lda) and b[n, k] (ldb), float32
 * accumulation. Dimensions up to INT32_MAX. MP_ERR_INTERNAL when oneDNN fails (named). */
MP_NODISCARD mp_status mp_bf16_gemm_nt(int64_t m, int64_t n, int64_t k, const uint16_t *a,
                                       int64_t lda, const uint16_t *b, int64_t ldb, float *c,
                                       int64_t ldc);

/* Whether the products run on a bf16 kernel of oneDNN (false: emulated, see above). */
bool mp_bf16_native(void);
/* What runs them, one line: "oneDNN 2.6.3, brg:avx512_core_amx_bf16", or "emulated (sgemm on
 * bf16-rounded inputs): <why>". */
const char *mp_bf16_backend(void);

#endif
