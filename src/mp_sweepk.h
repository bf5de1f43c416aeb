/* mp_sweepk: the inner loops of the SparseGPT column sweep (src/mp_prune.c's sweep_run) on a
 * block of B columns held transposed, wt[c * ld + r] (column c of the block, row r), with its
 * errors et and prune flags mt in the same layout and U the row-major factor of H⁻¹ offset to
 * the block's diagonal (Ub[i * ucols + j] = U[i1 + i][i1 + j]).
 *
 * The kernels hold a vector of MP_SWEEPK_VL rows and MP_SWEEPK_G columns of the block in
 * registers, run the column-by-column OBS updates among those columns there, and carry the
 * group's errors to the later columns of the sub-block with one load and one store per column,
 * where a column at a time reads and writes every later column once per column. Each weight
 * sees the same float32 operations in the same order as the scalar loop (no fused
 * multiply-add, no reassociation), so the result is bit for bit the scalar loop's on every
 * CPU; only the loss, a float64 sum, is added in another order. An AVX2 build of the same
 * code is taken where the CPU has it; MPIPRUNE_SWEEP_KERNEL=scalar (the column loop only) or
 * =generic (no AVX2) chooses otherwise, for tests and measurements. Not collective; no
 * allocation. */
#ifndef MP_SWEEPK_H
#define MP_SWEEPK_H

#include <stdbool.h>
#include <stdint.h>

enum { MP_SWEEPK_VL = 8, MP_SWEEPK_G = 8 };

/* Whether the kernel takes an N:M pattern (n > 0) of group size m, or unstructured (n == 0):
 * the N:M groups must not straddle a kernel group (m divides MP_SWEEPK_G or the reverse).
 * False under MPIPRUNE_SWEEP_KERNEL=scalar. */
bool mp_sweepk_fits(int n, int m);

/* Sweeps columns [j0, j0 + nfull) of the block (nfull a multiple of MP_SWEEPK_G) for the rows
 * [r0, r0 + MP_SWEEPK_VL), carrying the updates up to column jend (the sub-block's end; the
 * columns [j0 + nfull, jend) are then left for the scalar loop). With n > 0 the N:M pattern's
 * flags are chosen in mt when a group of m columns starts, from the fully updated weights.
 * Rows past the layer's (up to ld) must hold zeros in wt and et. acc[MP_SWEEPK_VL] += the
 * squared errors per row lane. */
void mp_sweepk_rows(float *wt, float *et, unsigned char *mt, int64_t ld, const float *Ub,
                    int64_t ucols, int64_t j0, int64_t nfull, int64_t jend, int64_t r0, int n,
                    int m, double *acc);

/* dst[c * ldd + r] = src[r * lds + c] for r < nr, c < nc (8 x 8 tiles in AVX2 registers where
 * the CPU has it). */
void mp_sweepk_transpose(const float *restrict src, int64_t lds, float *restrict dst,
                         int64_t ldd, int64_t nr, int64_t nc);

#endif
