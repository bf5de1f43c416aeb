/* mp_kwon: the mask search and the mask rearrangement of Kwon et al., "A Fast Post-Training
 * Pruning Framework for Transformers" (2022), on plain arrays.
 *
 * Mask search: with the diagonal Fisher F_u = Σ_s (∂L_s/∂m_u)² of every unit's mask variable
 * (summed over calibration minibatches s), the loss increase of removing a set is about half
 * the sum of its units' Fisher, so the search keeps, under a cost budget, the units of most
 * Fisher. Over every layer at once: for each count h of kept attention units (the h of most
 * Fisher over all layers), the FFN neurons of most Fisher fill the rest of the budget; the h
 * whose kept Fisher is largest wins (Kwon et al.'s sweep over the number of heads). With one
 * cost per attention unit and one per neuron this is the exact optimum of the diagonal model.
 * Neurons are taken in buckets of `ffn_multiple` (a layer's neurons ranked by Fisher, bucket k
 * its ranks [k·N, (k+1)·N)), so kept widths stay multiples of N; N = 1 is the paper's search.
 *
 * Mask rearrangement: the diagonal drops the correlation between units of one layer. With the
 * count of kept units of a layer fixed, the pruned set P is rearranged to lower the layer's
 * block-diagonal Fisher loss Σ_s (Σ_{u∈P} g_s(u))²: starting from the units of least Fisher,
 * each remaining unit in ascending Fisher is added to P, and the unit of P whose return lowers
 * the loss most is taken back (a greedy swap per step).
 *
 * Deterministic: ties go to the lower (layer, index). No MPI, no file format.
 */
#ifndef MP_KWON_H
#define MP_KWON_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_status.h"

/* One block's units. A kind with n = 0 or min >= n keeps everything. */
typedef struct {
    int64_t n_att;            /* attention units (heads, or KV groups with their heads) */
    const double *att_fisher; /* [n_att] >= 0 */
    double att_cost;          /* what one attention unit costs, > 0 */
    int64_t att_min;          /* floor: at least this many stay */
    int64_t n_ffn;            /* FFN neurons */
    const double *ffn_fisher; /* [n_ffn] >= 0 */
    double ffn_cost;          /* what one neuron costs, > 0 */
    int64_t ffn_min;          /* floor (rounded up to a whole bucket) */
} mp_kwon_layer;

/* The search over L layers: att_keep[L], ffn_keep[L] get the counts kept (each layer keeps its
 * units of most Fisher), so that Σ_l att_keep·att_cost + ffn_keep·ffn_cost <= budget, the kept
 * Fisher as large as possible. *kept_fisher and *kept_cost (may be NULL) receive the winner's
 * totals, *att_total (may be NULL) its count of attention units. MP_ERR_RANGE when the floors
 * alone exceed the budget. */
MP_NODISCARD mp_status mp_kwon_search(const mp_kwon_layer *ly, int64_t L, int64_t ffn_multiple,
                                      double budget, int64_t *att_keep, int64_t *ffn_keep,
                                      double *kept_fisher, double *kept_cost,
                                      int64_t *att_total);

/* The rearrangement of one layer: g[nb, n] the per-minibatch mask gradients (g[s·n + u]),
 * `keep` kept units out of n. keep_out[n] gets the kept set; *swaps (may be NULL) the units
 * whose state differs from the diagonal choice (the `keep` of most Fisher); *loss_before and
 * *loss_after (may be NULL) the block-diagonal loss Σ_s (Σ_{u pruned} g_s(u))² of the two. */
MP_NODISCARD mp_status mp_kwon_rearrange(const double *g, int64_t nb, int64_t n, int64_t keep,
                                         bool *keep_out, int64_t *swaps, double *loss_before,
                                         double *loss_after);

/* Indices 0..n-1 ordered by v descending, ties by index (for the layer's diagonal choice). */
MP_NODISCARD mp_status mp_kwon_order(const double *v, int64_t n, int64_t *order);

#endif
