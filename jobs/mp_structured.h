/* mp_structured: structured pruning by a global iterative search (--method structured).
 *
 * Units are KV groups, query heads (one per kept group at a time, so GQA stays legal) and FFN
 * neurons in buckets of --ffn-multiple (src/mp_chain.h). A search round is one pass over all
 * blocks of the model as the current plan prunes it:
 *   for each block, on every rank's calibration sequences,
 *     1. the dense attention runs on the block's (pruned-model) inputs and the input Hessian
 *        of o_proj over every head is accumulated (each head's output depends on its own
 *        q/k/v only, so the kept heads' part is the pruned model's);
 *     2. the partial Hessians are summed in rank order on the sub-block's owner rank, which
 *        compensates o_proj for the plan's removals (least-squares refit of the kept columns,
 *        OSSCAR; the same as the OBS update of the removed ones) and broadcasts it;
 *     3. the pruned attention runs, and the same is done for the FFN and down_proj;
 *     4. the pruned block produces the inputs of the next block.
 *   At the end of the pass every owner builds its sub-blocks' removal chains from the kept
 *   Hessians, continuing from the current plan (ZipLM's greedy OBS order, or FLAP / Wanda-sp /
 *   magnitude scores); rank 0 (the coordinator) gathers every chain, makes the layers'
 *   scores comparable (--normalize) and takes the globally cheapest units until this round's
 *   share of the budget is removed (mp_search_select; --allocation uniform instead removes the
 *   same share of every layer), and the owners turn the taken prefixes into the new plan.
 * Round shares halve (1/2, 3/4, ..., 1: mp_search_schedule), so later rounds refine the
 * allocation on rescored, compensated models (NViT's iterative global pruning). After the last
 * round the prune job's block pass (mp_prune_job.c) writes the model at the plan's widths,
 * each block compensated as in steps 1-3 (and then SparseGPT-pruned with --then sparsegpt).
 * --bias-compensation (FLAP) gives every o_proj and down_proj a bias: the removed inputs'
 * mean contribution, or with the refit its intercept on the inputs' covariance (mp_struct.h);
 * the OBS chains are then those of the centred problem.
 * A checkpoint after each round holds the plan and the trace; a resumed search starts at the
 * next round from the embeddings. Private to jobs/.
 */
#ifndef MP_STRUCTURED_H
#define MP_STRUCTURED_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "mp_prune_state_internal.h"

/* Saved block inputs (float64) of the windows a rank backpropagates together, per round of a
 * gradient scorer. */
#define MP_GRAD_MEMORY ((int64_t)1 << 30)
/* Whether the scorer ranks by gradients (fisher, nvit, taylor: a gradient pass per round). */
bool mp_structured_gradient(mp_scorer s);
/* The mp_gscores_compute_ex flags the scorer needs (taylor-element: MP_GSCORE_ELEMENT). */
int mp_structured_grad_flags(mp_scorer s);
/* Parses o->st's texts (target, units, floors, scorer, ...) into its fields; MP_ERR_ARG with
 * the option's name otherwise. Not collective. */
MP_NODISCARD mp_status mp_structured_parse(mp_prune_opts *o);
/* Adds the structured options that change the result to obj; false when out of memory. */
MP_NODISCARD bool mp_structured_options_json(const mp_prune_opts *o, cJSON *obj);
/* The search's rounds from J->search_round on; J->plan ends as the final plan. Collective. */
MP_NODISCARD mp_status mp_structured_search(job *J);
/* Cuts blk (block blk->index loaded dense, as read) to J->plan's block, compensating o_proj
 * and down_proj on the block's inputs J->h. With advance, J->h becomes the block's output
 * (the caller then runs nothing); otherwise J->h is unchanged. Collective. */
MP_NODISCARD mp_status mp_structured_block(job *J, mp_block *blk, bool advance);
/* The output config's bias switches for cfg (the plan's widths applied): with
 * --bias-compensation o_proj and down_proj have biases. */
void mp_structured_out_config(const job *J, mp_model_config *cfg);
/* With --bias-compensation, zero o_proj/down_proj biases where blk has none (so every block
 * carries what the written config says). Not collective. */
MP_NODISCARD mp_status mp_structured_add_biases(const job *J, mp_block *blk);
/* Rank 0: report.json's "structured" object (budget, plan, costs, per-round trace). */
MP_NODISCARD cJSON *mp_structured_report(const job *J);
/* Rank 0: report.svg (kept heads and FFN width per block, calibration loss per round). */
MP_NODISCARD mp_status mp_structured_svg(const job *J, char **text);

#endif
