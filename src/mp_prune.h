/* mp_prune: the one-shot pruning solvers for one linear layer W[rows, cols] (row-major,
 * nn.Linear layout), given its input Hessian H[cols, cols] (mp_hessian). Not collective,
 * except the *_dist variants: the factorisation on a ScaLAPACK grid of the ranks
 * (mp_comm_chol_inv_chol) and the OBS sweep split by rows of W over the ranks.
 *
 * Sparsity targets: unstructured (fraction `sparsity` of the weights) or N:M (in each group of
 * M consecutive inputs of a row, the N lowest-scoring weights are zeroed).
 *
 * SparseGPT (Frantar & Alistarh 2023, reference `fasterprune` semantics):
 *   dead inputs (H_jj = 0): W[:, j] = 0 and H_jj = 1;
 *   λ = damp · mean(diag H) added to the diagonal;
 *   U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU);
 *   columns swept in blocks of B; unstructured: per block, the threshold is the k-th smallest
 *   (k = int(rows·B·sparsity), 0-based) of w²/U_jj² over the rows × B block and every score
 *   `<=` it is pruned (so one weight more than the fraction, as the reference); N:M: at each
 *   group start the N lowest w²/U_jj² of the group (of the updated weights) are pruned;
 *   each pruned weight's error is spread over the later columns with row i of U (OBS update).
 *   When a Cholesky factorisation fails, λ is multiplied by 10 (up to MP_DAMP_ESCALATIONS
 *   times) and the attempt repeated; the damping used is returned.
 * Wanda (Sun et al. 2023): score |W_ij|·sqrt(H_jj); per output row the int(cols·sparsity)
 *   lowest (ties: lower index first) are zeroed; N:M per group; no update.
 * Magnitude: the int(rows·cols·sparsity) smallest |W| of the matrix (ties: lower flat index
 *   first); N:M per group.
 */
#ifndef MP_PRUNE_H
#define MP_PRUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_comm.h"
#include "mp_status.h"

#define MP_DAMP_ESCALATIONS 6

/* The largest M of an N:M pattern (a group's scores fit one small array). */
#define MP_NM_MAX_M 64

typedef struct {
    double sparsity; /* unstructured fraction, used when n == 0 */
    int n, m;        /* N:M when n > 0 */
} mp_sparsity;

/* The one rule every solver and the CLI apply: 0 <= sparsity < 1, and an N:M pattern has
 * 0 < N < M <= MP_NM_MAX_M and M dividing cols (cols <= 0: not checked). MP_ERR_ARG. */
MP_NODISCARD mp_status mp_sparsity_check(const mp_sparsity *sp, int64_t cols);
/* Parses "N:M" (decimal digits only) into sp, checked as above; MP_ERR_ARG naming text. */
MP_NODISCARD mp_status mp_sparsity_parse_nm(const char *text, mp_sparsity *sp);

typedef struct {
    double damp;       /* λ / mean(diag H) actually used */
    double lambda;     /* λ itself: what was added to the diagonal of the factored H */
    int escalations;   /* times the damping was raised */
    int64_t dead;      /* dead inputs */
} mp_obs_info;

/* Prepares H (row-major, symmetric, overwritten) for the sweep: dead inputs (also zeroing those
 * columns of W, which may be NULL), damping with escalation, and U, the upper Cholesky factor of
 * H⁻¹, written to hinv[n, n] as float32 (lower triangle zero). */
MP_NODISCARD mp_status mp_obs_prepare(double *H, int64_t n, float *W, int64_t rows,
                                      double damp, float *hinv, mp_obs_info *info);

/* mp_obs_prepare on a ScaLAPACK grid of all ranks of c (block size nb). Collective.
 * H, W and damp must be identical on all ranks; every rank gets the same hinv (float32, the
 * upper factor of H⁻¹, lower triangle zero), the same info and the same W (dead columns zeroed).
 * Dead inputs, damping and its escalation are mp_obs_prepare's code; only the factorisation
 * differs (pdpotrf, pdpotri, pdpotrf on every attempt), so the two agree to rounding and take
 * the same escalations unless a Cholesky is borderline. */
MP_NODISCARD mp_status mp_obs_prepare_dist(const mp_comm *c, double *H, int64_t n, float *W,
                                           int64_t rows, double damp, int nb, float *hinv,
                                           mp_obs_info *info);

/* Global threshold for an unstructured block when rows are split over ranks: given this rank's
 * scores (count values) returns in *thresh the k-th smallest (0-based) over all ranks. NULL for
 * a serial sweep. */
typedef struct {
    mp_status (*fn)(void *ud, const float *scores, int64_t count, int64_t k, float *thresh);
    void *ud;
    int64_t total_rows; /* rows over all ranks (for k) */
} mp_threshold_fn;

/* The OBS sweep on W[rows, cols] (rows may be a slice of the layer's rows) with the factor U
 * from mp_obs_prepare. loss (may be NULL) receives Σ e², e = (w − ŵ)/U_jj the error of each
 * column in the sweep's coordinates: the pruned minus the swept W is E·U, and U H_λ Uᵀ = I, so
 * Σ e² is tr(ΔW H_λ ΔWᵀ) on the damped H_λ, the OBS loss the sweep made (summed in float64). */
MP_NODISCARD mp_status mp_sparsegpt_sweep(float *W, int64_t rows, int64_t cols, const float *U,
                                          int64_t blocksize, const mp_sparsity *sp,
                                          const mp_threshold_fn *global, double *loss);

/* mp_sparsegpt_sweep with the rows of W split over the ranks of c. Collective.
 *   W[rows, cols]  in: identical on all ranks; out: the full pruned matrix on every rank.
 *   U[cols, cols]  the factor from mp_obs_prepare(_dist), identical on all ranks.
 * Rank r sweeps a contiguous range of rows (rows / size, the first rows % size ranks one
 * more; a rank may have none and still takes part in every block's collective). An
 * unstructured block's threshold is the k-th smallest of the scores all-gathered over the
 * ranks, so the mask is the serial one; N:M needs no communication. The pruned rows are then
 * all-gathered. Memory per rank: a rows x cols float copy and rows x blocksize scores beside
 * the serial workspace of its own rows. */
MP_NODISCARD mp_status mp_sparsegpt_sweep_dist(const mp_comm *c, float *W, int64_t rows,
                                               int64_t cols, const float *U, int64_t blocksize,
                                               const mp_sparsity *sp, double *loss);

MP_NODISCARD mp_status mp_wanda_prune(float *W, int64_t rows, int64_t cols, const double *hdiag,
                                      const mp_sparsity *sp);
MP_NODISCARD mp_status mp_magnitude_prune(float *W, int64_t rows, int64_t cols,
                                          const mp_sparsity *sp);

/* k-th smallest (0-based, 0 <= k < n) of v[n] (v is reordered). */
float mp_kth_smallest(float *v, int64_t n, int64_t k);
/* The same value by radix select, v not modified (no NaNs): three streaming passes over v with
 * 2048 counters, faster than the quickselect from some thousands of values on. */
float mp_kth_smallest_radix(const float *v, int64_t n, int64_t k);

/* Relative reconstruction error ‖(W − Ŵ)X‖² / ‖WX‖² = tr(ΔW H ΔWᵀ) / tr(W H Wᵀ), H the
 * (undamped) Hessian. */
MP_NODISCARD mp_status mp_recon_error(const float *W, const float *What, int64_t rows,
                                      int64_t cols, const double *H, double *err);

/* The same error with its denominator tr(W H Wᵀ) given (den: from the layer's outputs in the
 * forward pass that accumulated H), so that H is used once (one ssymm pass) for ‖ΔW‖²_H. */
MP_NODISCARD mp_status mp_recon_error_den(const float *W, const float *What, int64_t rows,
                                          int64_t cols, const double *H, double den,
                                          double *err);

/* The same error after a SparseGPT sweep with no pass over H at all: the numerator from the
 * sweep's loss (see mp_sparsegpt_sweep) as loss − λ‖ΔW‖², the squares summed over the live
 * columns only (a dead input's row and column of H are zero and the sweep saw its column
 * zeroed; only H's diagonal is read), den as above. W is the layer before the sweep, What
 * after, lambda mp_obs_info.lambda. Agrees with mp_recon_error to about 1e-7 relative (the
 * identity holds for the float32 sweep up to its rounding). */
MP_NODISCARD mp_status mp_recon_error_obs(const float *W, const float *What, int64_t rows,
                                          int64_t cols, const double *H, double loss,
                                          double lambda, double den, double *err);

#endif
