/* mp_search: the coordinator's global selection of structures to remove, across every layer.
 *
 * Each layer (an attention or FFN sub-block of one block) offers a chain: its removable units
 * in the order its owner would remove them (ZipLM's greedy order under the OBS update, or a
 * fixed order for the baseline scorers), each with the score of removing it after the earlier
 * ones (the marginal error) and the cost it frees (parameters or FLOPs, from the cost model).
 * A chain can be taken only as a prefix. The selection takes prefixes of all chains that free
 * at least a target cost, greedily: always the next unit, over every chain, of least key
 * scale · score / cost + shift, until the target is reached, so it is met to within one unit.
 * Scores of different layers are made comparable by the chain's scale and shift
 * (mp_search_normalize).
 *
 * Deterministic: ties go to the chain of lower (block, kind), so the same scores give the same
 * plan on any rank count. search/ knows no file format and no MPI: plain arrays in, plain
 * arrays out.
 */
#ifndef MP_SEARCH_H
#define MP_SEARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_status.h"

typedef struct {
    int64_t block;
    int kind;             /* the caller's tag of the sub-block (e.g. 0 attention, 1 FFN) */
    int64_t n;            /* units, in removal order */
    const double *score;  /* [n] marginal error of each unit after the earlier ones, >= 0 */
    const double *cost;   /* [n] what each frees, > 0 */
    double scale;         /* comparability factor, > 0 (1: none) */
    double shift;         /* added to the scaled score per cost (0: none) */
} mp_chain;

/* How the scores of different layers are made comparable. */
typedef enum {
    MP_NORM_NONE,      /* as they are (layer-output errors in each layer's own units) */
    MP_NORM_RELATIVE,  /* divided by the layer's output energy tr(W H Wᵀ): relative error */
    MP_NORM_RESIDUAL,  /* divided by the energy of the residual stream the layer adds to
                          (2·E‖h‖² at its input, in the units of tr(ΔW H ΔWᵀ) = 2·E‖Δy‖²): the
                          later norms see the error relative to the stream */
    MP_NORM_ZSCORE,    /* per-layer standardisation (FLAP): the layer's scores per cost minus
                          their mean, over their standard deviation */
    MP_NORM_PROBE,     /* a loss-calibrated scale per layer: the measured change of the
                          calibration loss when a fixed fraction of the layer's units is
                          removed, over the sum of their scores */
} mp_norm_mode;

/* Takes prefixes taken[nc] of the chains freeing at least `target` (in cost units) by the
 * greedy rule above; *freed receives what they free (>= target unless every unit of every
 * chain is taken, which is MP_ERR_RANGE: the target cannot be met). target <= 0 takes
 * nothing. */
MP_NODISCARD mp_status mp_search_select(const mp_chain *chains, int64_t nc, double target,
                                        int64_t *taken, double *freed);

/* The uniform allocation (the baseline of OSSCAR and ZipLM's uniform setting): the same
 * share of every layer goes, as closely as its units allow. Takes prefixes freeing at least
 * `target`, always the next unit of the chain whose removed share (base[c], what was removed
 * from it before, plus what is taken, over total[c], the layer's whole cost) would be least
 * after it, ties by (block, kind); scores play no part in the allocation, only in each
 * layer's own order. MP_ERR_RANGE as mp_search_select. */
MP_NODISCARD mp_status mp_search_select_uniform(const mp_chain *chains, int64_t nc,
                                                const double *base, const double *total,
                                                double target, int64_t *taken, double *freed);

/* The cumulative share of the whole removal done after each of `rounds` rounds: halving steps
 * (1/2, 3/4, 7/8, ..., then 1 at the last), so early rounds remove most and later rounds refine
 * on rescored models (NViT's shrinking count steps, Týr's halving). cum[rounds]. */
void mp_search_schedule(int rounds, double *cum);

/* Sets the chain's scale and shift for mode: energy is the layer's tr(W H Wᵀ)
 * (MP_NORM_RELATIVE) or the residual stream's 2·E‖h‖² (MP_NORM_RESIDUAL), probe the measured loss change over the summed score of the units the
 * probe removed (MP_NORM_PROBE; a non-positive or non-finite probe falls back to 1). */
void mp_search_normalize(mp_chain *c, mp_norm_mode mode, double energy, double probe);

/* The mode of a --normalize name; MP_ERR_ARG when unknown. */
MP_NODISCARD mp_status mp_search_norm_parse(const char *name, mp_norm_mode *out);

#endif
