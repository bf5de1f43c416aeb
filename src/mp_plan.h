/* mp_plan: which structures of each block a structured pruning keeps, as plain arrays.
 *
 * search/ produces a plan, jobs/ applies it to blocks, checkpoints and reports it; the plan
 * knows no file format. Indices refer to the structures of the block as the model was read
 * (before the plan):
 *   kv[0..n_kv)            kept KV groups, ascending; group g owns k/v rows [g·hd, (g+1)·hd)
 *                          and the query heads [g·G, (g+1)·G), G = n_heads / n_kv_heads
 *   q[i·q_per_kv + j]      the j-th kept query head of kept group kv[i], as an index 0..G-1
 *                          inside its group, ascending in j; the same count in every group, so
 *                          the pruned block is still legal GQA
 *   ffn[0..n_ffn)          kept FFN neurons, ascending (gate/up rows, down columns)
 * n_kv == 0 removes the attention sub-block, n_ffn == 0 the FFN sub-block.
 */
#ifndef MP_PLAN_H
#define MP_PLAN_H

#include <stdint.h>

#include "mp_model.h"
#include "mp_status.h"

typedef struct {
    int64_t n_kv;
    int64_t *kv;
    int64_t q_per_kv;
    int64_t *q;
    int64_t n_ffn;
    int64_t *ffn;
} mp_block_plan;

typedef struct {
    int64_t n_blocks;
    mp_block_plan *b;
} mp_plan;

/* The plan that keeps everything of every block of cfg. */
MP_NODISCARD mp_status mp_plan_identity(const mp_model_config *cfg, mp_plan *plan);
void mp_plan_free(mp_plan *plan);
/* Replaces block b's arrays by copies of the given ones (q has n_kv·q_per_kv entries). */
MP_NODISCARD mp_status mp_plan_set_block(mp_plan *plan, int64_t b, int64_t n_kv,
                                         const int64_t *kv, int64_t q_per_kv, const int64_t *q,
                                         int64_t n_ffn, const int64_t *ffn);
/* MP_ERR_FORMAT naming `what` when an index is out of range, repeated or not ascending, or the
 * plan has another block count than cfg. */
MP_NODISCARD mp_status mp_plan_check(const mp_model_config *cfg, const mp_plan *plan,
                                     const char *what);
/* The widths of block b after the plan. */
mp_block_shape mp_plan_block_shape(const mp_model_config *cfg, const mp_plan *plan, int64_t b);
/* cfg with every block at its planned widths (per_layer set unless they come out uniform). */
void mp_plan_apply_config(const mp_model_config *cfg, const mp_plan *plan,
                          mp_model_config *out);
/* Cuts a block loaded at cfg's widths down to the plan's block (rows of q/k/v/gate/up and
 * columns of o/down, their biases; a removed sub-block's tensors and norm are freed). The
 * block's shape becomes mp_plan_block_shape. */
MP_NODISCARD mp_status mp_block_apply_plan(const mp_model_config *cfg, const mp_block_plan *bp,
                                           mp_block *blk);

#endif
