/* mp_gradscore: gradient-based importance of heads, KV groups and FFN neurons, from a float64
 * forward and backward pass over every rank's calibration sequences (src/mp_grad.h).
 *
 * A rank takes its sequences in chunks: embeds them, runs every block (loading one block at a
 * time and keeping each block's input: checkpointing at block boundaries), takes the loss and
 * its gradient, then backpropagates block by block from the last, recomputing each block from
 * its saved input. What a sequence s leaves per unit u is a number a_s(u) per kind:
 *   m_s(u)  = ∂L_s/∂m_u of the unit's mask (a head's attention output, a neuron's activation);
 *   wg_s(u) = Σ_{w∈u} w·∂L_s/∂w over the unit's weights and biases (a head: its q rows and
 *             o_proj columns; a KV group: its heads' and its k/v rows; a neuron: its gate/up
 *             rows, or fc1's, and its down_proj column),
 * with L_s the sequence's mean next-token NLL. Rank 0 gathers them in sequence order (so the
 * result does not depend on the rank count) and sums:
 *   fisher(u) = Σ_s m_s(u)²         Kwon et al.'s diagonal Fisher of the mask variables
 *                                   (a KV group: the sum over its heads);
 *   nvit(u)   = Σ_s wg_s(u)²        NViT's saliency (Σ_{w∈S} w g)² per minibatch, a minibatch
 *                                   being one calibration sequence;
 *   taylor(u) = |Σ_s wg_s(u)|       LLM-Pruner's first-order (vector-wise) importance of the
 *                                   whole calibration loss;
 *   taylor_element(u) = Σ_{w∈u} |w·Σ_s ∂L_s/∂w|   its element-wise variant (MP_GSCORE_ELEMENT
 *                                   only): every weight's gradient of the whole loss, so each
 *                                   block's weight gradients are summed over the rank's
 *                                   sequences (float64, all blocks held until the last chunk)
 *                                   and then over ranks in rank order on rank 0, which makes it
 *                                   depend on the rank count in float64 rounding only.
 * Masks come from a plan (units it removes are masked to 0; their scores are those of putting
 * them back, and the search never takes them again). Collective.
 */
#ifndef MP_GRADSCORE_H
#define MP_GRADSCORE_H

#include <stdint.h>

#include "mp_comm.h"
#include "mp_model.h"
#include "mp_plan.h"
#include "mp_status.h"

typedef enum {
    MP_GSCORE_FISHER,
    MP_GSCORE_NVIT,
    MP_GSCORE_TAYLOR,
    MP_GSCORE_TAYLOR_ELEM, /* 0 unless computed with MP_GSCORE_ELEMENT */
    MP_GSCORE_COUNT
} mp_gscore;

/* What mp_gscores_compute_ex computes beyond the three per-window scores. */
enum {
    MP_GSCORE_WINDOWS = 1, /* rank 0 keeps every sequence's mask gradients (n_win, win) */
    MP_GSCORE_ELEMENT = 2, /* taylor_element, from every weight's gradient */
};

typedef struct {
    int64_t n_blocks;
    mp_block_shape *shape;           /* [n_blocks] widths as read */
    double **head;                   /* [b][kind · nh + h] */
    double **kv;                     /* [b][kind · nkv + g] */
    double **ffn;                    /* [b][kind · ffn + j] */
    double loss;                     /* mean float64 loss over all sequences */
    int64_t n_chan;                  /* d, or 0 for a model with project_in/out */
    double *chan;                    /* [2 · n_chan] NViT's saliency of each residual (embedding)
                                        channel, Σ_s (Σ_{w on c} w·∂L_s/∂w)², then the Taylor
                                        |Σ_s Σ_{w on c} w·∂L_s/∂w|; reported, not pruned */
    int64_t n_win;                   /* mp_gscores_compute_windows, rank 0: sequences, and */
    double **win;                    /* [b][s · (nh + ffn) + u] each sequence's ∂L_s/∂m of the
                                        block's heads, then neurons, in sequence order */
    double seconds;                  /* this rank's time in the pass */
} mp_gscores;

/* Called on rank 0's progress: done out of total block passes (forward and backward). */
typedef struct {
    void (*fn)(void *ud, int64_t done, int64_t total);
    void *ud;
} mp_gscore_progress;

/* tokens: this rank's n_loc sequences of T tokens, sequences [s0, s0 + n_loc) of the job's
 * n_total (ranks hold consecutive ranges in rank order). plan may be NULL (nothing masked).
 * mem_bytes bounds the saved block inputs of a chunk (at least one sequence is taken).
 * Every rank receives the scores. */
MP_NODISCARD mp_status mp_gscores_compute(const mp_model_config *cfg, const mp_weight_source *src,
                                          const mp_plan *plan, const uint32_t *tokens,
                                          int64_t n_loc, int64_t T, int64_t mem_bytes,
                                          const mp_comm *comm, const mp_gscore_progress *pg,
                                          mp_gscores *out);
/* The same with MP_GSCORE_* flags: WINDOWS keeps on rank 0 every sequence's mask gradients
 * (n_win, win: the minibatch gradient vectors of Kwon et al.'s mask rearrangement); ELEMENT
 * computes taylor_element. */
MP_NODISCARD mp_status mp_gscores_compute_ex(const mp_model_config *cfg,
                                             const mp_weight_source *src, const mp_plan *plan,
                                             const uint32_t *tokens, int64_t n_loc, int64_t T,
                                             int64_t mem_bytes, const mp_comm *comm,
                                             const mp_gscore_progress *pg, int flags,
                                             mp_gscores *out);
void mp_gscores_free(mp_gscores *s);
/* Bytes mp_gscores_compute holds on a rank at most (float64 head and block, saved inputs,
 * gradients, activations, the per-window numbers): for the memory plan. */
double mp_gscores_memory(const mp_model_config *cfg, int64_t n_loc, int64_t T,
                         int64_t mem_bytes, int flags);

/* The masks a plan gives block b (as read at shape s): head_mask[nh], ffn_mask[ffn], 1 kept. */
void mp_gscore_masks(const mp_block_plan *bp, const mp_block_shape *s, double *head_mask,
                     double *ffn_mask);

#endif
