/* mp_chain: a block's removable structures in the order its owner would remove them, with
 * the score and cost of each, and the plan of a taken prefix (the units of search/mp_search).
 *
 * Attention: the o_proj input of block b has n_kv groups of G query heads of head_dim columns
 * each (GQA: group g owns heads [g·G, (g+1)·G)). Two kinds of unit keep the block legal GQA:
 *   a KV group: its kept query heads, its k/v rows, its o_proj columns;
 *   a head slot: one query head out of every kept group (q_per_kv drops by one everywhere).
 * FFN: `multiple` neurons at a time (gate/up rows and down_proj columns), so the width stays a
 * multiple of `multiple` (NViT's buckets in sorted order: the `multiple` neurons of least
 * score at that point form one unit, removed together).
 *
 * Scorers:
 *   MP_SCORE_OBS: ZipLM's greedy order. Each step removes the candidate of least structured
 *     OBS error per parameter against the layer as updated so far (mp_struct_remove updates
 *     W and H⁻¹ after each step); the unit's score is that error (an FFN bucket: the neurons
 *     of least single-column error now, and the joint error of removing them together).
 *   MP_SCORE_FLAP: FLAP's fluctuation Var(x_j)·‖W_{:,j}‖² per input column (needs the input
 *     means), summed over a unit's columns; fixed order, no update.
 *   MP_SCORE_WANDA_SP: Wanda-sp's mean over rows of |W_ij|·‖x_j‖, summed over the columns.
 *   MP_SCORE_MAGNITUDE: ‖W_{:,j}‖² summed over the unit's columns.
 *   MP_SCORE_FISHER, MP_SCORE_NVIT, MP_SCORE_TAYLOR: a score per input column given by the
 *     caller (src/mp_gradscore.h: a head's score spread evenly over its head_dim columns, a
 *     neuron's on its column), summed over the unit's columns; fixed order, no update.
 * For the fixed-order scorers a head slot removes, in every group, the kept head of least
 * score, and the chain takes its units by least score per cost.
 *
 * Costs are parameters of the block's linear layers (mp_block_params' count: weights and
 * biases) or FLOPs per token (2 per multiply-add) when `flops` is set; the attention score
 * products are not counted. Not collective.
 */
#ifndef MP_CHAIN_H
#define MP_CHAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_model.h"
#include "mp_plan.h"
#include "mp_status.h"

typedef enum {
    MP_SCORE_OBS,
    MP_SCORE_FLAP,
    MP_SCORE_WANDA_SP,
    MP_SCORE_MAGNITUDE,
    MP_SCORE_FISHER, /* the gradient scorers: column scores given (mp_chain_opts.given) */
    MP_SCORE_NVIT,
    MP_SCORE_TAYLOR,
    MP_SCORE_TAYLOR_ELEM /* LLM-Pruner's element-wise first-order importance */
} mp_scorer;
typedef enum { MP_UNIT_KV_GROUP, MP_UNIT_HEAD_SLOT, MP_UNIT_NEURONS } mp_unit_kind;

typedef struct {
    mp_scorer scorer;
    bool kv_groups, heads, ffn;  /* which units may go */
    bool sublayers;              /* the last KV group / neurons may go (sub-block absent) */
    int64_t ffn_multiple;        /* FFN unit size, >= 1 */
    int64_t min_kv, min_q_per_kv, min_ffn; /* floors (ignored for a whole sub-block when
                                              sublayers is set) */
    bool flops;                  /* costs in FLOPs per token rather than parameters */
    double damp;                 /* OBS damping, fraction of mean(diag H) */
    const double *given;         /* gradient scorers: [in] a score per input column of the
                                    layer (set per chain; not owned) */
} mp_chain_opts;

typedef struct {
    mp_unit_kind kind;
    int64_t group;   /* KV group (index in the block as read) for MP_UNIT_KV_GROUP */
    int64_t n_cols;  /* o_proj / down_proj input columns it removes */
    int64_t *cols;   /* [n_cols], indices in the block as read */
} mp_unit;

/* One sub-block's chain. score/cost/unit[n]. */
typedef struct {
    int64_t block;
    bool attn;         /* attention (o_proj input) or FFN (down_proj input) */
    int64_t n;
    double *score;
    double *cost;
    mp_unit *unit;
    double energy;     /* tr(W H Wᵀ) of the dense layer: the scale of a relative error */
} mp_block_chain;

void mp_block_chain_free(mp_block_chain *c);

/* The chain of block blk's attention (attn) or FFN, from the o_proj / down_proj weight of the
 * block and H, its input Hessian [in, in] (float64, finished); mean holds the input means [in]
 * (MP_SCORE_FLAP only, else may be NULL). seqlen sets the FLOPs of attention (its score
 * products per token grow with it). The chain runs to the floors; with stop_after >= 0 it
 * stops after that many units. W_out (may be NULL) receives the layer's weight [d, in] after
 * the chain's removals: OBS-updated for MP_SCORE_OBS, the dense weight with the removed
 * columns zero otherwise. Deterministic: the same inputs give the same chain. */
MP_NODISCARD mp_status mp_block_chain_build(const mp_model_config *cfg, const mp_block *blk,
                                            bool attn, const double *H, const double *mean,
                                            const mp_chain_opts *o, int64_t seqlen,
                                            int64_t stop_after, double *W_out,
                                            mp_block_chain *out);

/* The same, continuing from the plan `start` of this block (NULL: the dense block): the
 * structures that start removes are removed first, all at once with the exact update of the
 * remaining columns, and the chain holds only the units after them. Indices stay those of the
 * block as read. W_out then includes start's removals. */
MP_NODISCARD mp_status mp_block_chain_build_from(const mp_model_config *cfg, const mp_block *blk,
                                                 bool attn, const double *H, const double *mean,
                                                 const mp_chain_opts *o, int64_t seqlen,
                                                 const mp_block_plan *start, int64_t stop_after,
                                                 double *W_out, mp_block_chain *out);

/* The plan of block blk after its attention chain took `ta` units and its FFN chain `tf`
 * (either chain may be NULL: nothing taken). */
MP_NODISCARD mp_status mp_block_chain_plan(const mp_model_config *cfg, const mp_block *blk,
                                           const mp_block_chain *attn, int64_t ta,
                                           const mp_block_chain *ffn, int64_t tf,
                                           mp_plan *plan);

/* The same after start's removals (NULL: none) and the chains built from start. */
MP_NODISCARD mp_status mp_block_chain_plan_from(const mp_model_config *cfg, const mp_block *blk,
                                                const mp_block_plan *start,
                                                const mp_block_chain *attn, int64_t ta,
                                                const mp_block_chain *ffn, int64_t tf,
                                                mp_plan *plan);

/* Parameters (or FLOPs per token) of one unit as the chain counts them, for a block whose
 * attention has n_kv groups of q_per_kv heads: exposed for tests and the report. */
double mp_unit_cost(const mp_model_config *cfg, mp_unit_kind kind, int64_t n_kv,
                    int64_t q_per_kv, int64_t n_neurons, bool flops);

#endif
