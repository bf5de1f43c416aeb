/* mp_struct: removing whole input groups of a linear layer (the columns of an attention head
 * or KV group in o_proj, of an FFN neuron in down_proj) with the optimal (OBS) update of the
 * columns that remain, and the exact least-squares refit of what remains.
 *
 * The layer is y = x Wᵀ with W[rows, cols] and the input Hessian H = (2/N) Σ x xᵀ [cols, cols]
 * (mp_hessian). For a set S of columns, the least increase of the output error
 * tr(ΔW H ΔWᵀ) over all W' with W'_S = 0 is the structured OBS error
 *     ε_S = tr(W_S (Hinv_SS)⁻¹ W_Sᵀ),   Hinv = H⁻¹,
 * reached by W' = W − W_S (Hinv_SS)⁻¹ Hinv[S, :] (ZipLM, SlimGPT, OSSCAR). After S is removed,
 * the inverse Hessian of the remaining inputs is the Schur downdate
 *     Hinv' = Hinv − Hinv[:, S] (Hinv_SS)⁻¹ Hinv[S, :]
 * (rows and columns of S then zero), so groups can be removed one after another, each scored
 * against the already updated layer. Everything here is float64 and serial (the owner rank of
 * the layer runs it). Not collective.
 */
#ifndef MP_STRUCT_H
#define MP_STRUCT_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_status.h"

/* Hinv[n, n] = (H + λI)⁻¹, λ = damp · mean(diag H), symmetric and full; dead inputs
 * (H_jj == 0) get H_jj = 1 first, as SparseGPT does. MP_ERR_NUMERIC when not positive
 * definite. */
MP_NODISCARD mp_status mp_struct_hinv(const double *H, int64_t n, double damp, double *Hinv);

/* ε_S of the column set idx[0..ns) (each < cols, distinct) for W[rows, cols] and Hinv. */
MP_NODISCARD mp_status mp_struct_error(const double *W, int64_t rows, int64_t cols,
                                       const double *Hinv, const int64_t *idx, int64_t ns,
                                       double *err);

/* Removes the columns idx[0..ns): W gets the OBS update and W_S = 0, Hinv the Schur downdate
 * (its rows and columns of S zero). *err (may be NULL) receives ε_S. */
MP_NODISCARD mp_status mp_struct_remove(double *W, int64_t rows, int64_t cols, double *Hinv,
                                        const int64_t *idx, int64_t ns, double *err);

/* Groups of `size` consecutive columns: group g is columns [g·size, (g+1)·size). Removes
 * `k` of the n_groups groups one at a time, each time the alive group of least ε against the
 * layer as updated so far (ZipLM's greedy order); alive[n_groups] says which groups may go
 * (false: already removed or protected) and is updated. order[k] gets the removed groups in
 * removal order, step_err[k] (may be NULL) their ε at removal. Ties go to the lower index. */
MP_NODISCARD mp_status mp_struct_greedy(double *W, int64_t rows, int64_t cols, double *Hinv,
                                        int64_t size, int64_t n_groups, bool *alive, int64_t k,
                                        int64_t *order, double *step_err);

/* The least-squares refit of the kept columns (OSSCAR): for keep[cols], W[:, keep] =
 * Wd H[:, keep] (H[keep, keep] + λI)⁻¹ (λ = damp · mean(diag H[keep, keep])), W[:, ~keep] = 0,
 * so that x_keep W_keepᵀ is the least-squares fit of the dense output x Wdᵀ on the calibration
 * inputs. Wd and W may not alias. */
MP_NODISCARD mp_status mp_struct_refit(const double *Wd, int64_t rows, int64_t cols,
                                       const double *H, const bool *keep, double damp,
                                       double *W);

/* Kwon et al.'s mask tuning: one scale per kept unit (a group of `unit` consecutive columns)
 * instead of a refit of every weight. With the kept units' columns scaled by m_i, the output
 * W diag(s) x is fitted to a target y (the unpruned model's), given H = (2/N) Σ x xᵀ and
 * cross[cols] = (2/N) Σ_t x_t ∘ (Wᵀ y_t):
 *     G m = r,  G_ij = Σ_{a∈i, b∈j} (WᵀW)_ab H_ab,  r_i = Σ_{a∈i} cross_a,
 * damped towards the untuned masks: (G + λI) m = r + λ·1, λ = damp · mean(diag G), so a
 * direction the data does not determine keeps its scale 1. keep[cols / unit] says which units
 * are kept; m[cols / unit] gets their scales (0 for the removed ones). Not collective. */
MP_NODISCARD mp_status mp_struct_scales(const double *W, int64_t rows, int64_t cols,
                                        const double *H, const double *cross, int64_t unit,
                                        const bool *keep, double damp, double *m);

/* cross[dim] += Σ_t x_t ∘ (Wᵀ y_t) over rows t, for x[rows, dim], y[rows, out] and the
 * layer's W[out, dim] in float32 (the right-hand side of mp_struct_scales before its 2/N),
 * in chunks of rows. Not collective. */
MP_NODISCARD mp_status mp_struct_cross_add(const float *x, const float *y, const float *W,
                                           int64_t rows, int64_t dim, int64_t out,
                                           double *cross);

/* FLAP's bias compensation, generalised to the refit. With the inputs' means μ[n], the centred
 * H − 2 μμᵀ (in place) is 2 × their covariance: a refit on it (mp_struct_refit) plus the
 * intercept bias[rows] = (Wd − W) μ (mp_struct_intercept) is the least-squares fit of x Wdᵀ by
 * x_keep W_keepᵀ + bias. Without a refit (W = Wd with the removed columns zeroed) the same
 * intercept is FLAP's: the removed columns' mean contribution W[:, ~keep] μ[~keep]. */
void mp_struct_center(double *H, const double *mean, int64_t n);
void mp_struct_intercept(const double *Wd, const double *W, int64_t rows, int64_t cols,
                         const double *mean, double *bias);

#endif
