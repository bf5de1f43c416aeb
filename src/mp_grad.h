/* mp_grad: the next-token loss of one sequence and its gradient, in float64, block by block.
 *
 * The scorers of NViT, Kwon et al. and LLM-Pruner need ∂L/∂w summed over a structure's
 * weights, or ∂L/∂m of a mask variable on a head's or a neuron's output. Both reduce to inner
 * products of activations and their gradients, token by token:
 *   a mask m_h on query head h's attention output y_h (the o_proj input columns of the head):
 *     ∂L/∂m_h = Σ_t ⟨y_h[t], ∂L/∂(m_h y_h)[t]⟩, which also equals Σ w·∂L/∂w over those
 *     o_proj columns;
 *   the rows of a projection z = x Wᵀ + b that belong to a unit (q rows of a head, k/v rows of
 *     a KV group, gate/up rows of a neuron): Σ_rows (w·∂L/∂w + b·∂L/∂b) = Σ_t ⟨z[t], ∂L/∂z[t]⟩.
 * So no weight gradient need be formed: a block's backward leaves, per sequence, one number
 * per unit and kind (mp_grad_stats), and the caller sums them in a fixed order. Only
 * LLM-Pruner's element-wise variant needs every weight's gradient (mp_gblock.gw/gb, optional).
 *
 * Everything here is float64 (the block's float32 weights converted), so that the gradient
 * matches a float64 reference to ~1e-10 rather than float32's ~1e-4; the forward is recomputed
 * from each block's saved input (checkpointing at block boundaries). Masks multiply the head
 * outputs and neuron activations: 0 for units the current plan removed, 1 otherwise.
 * Families as mp_model: LLaMA (RMSNorm, RoPE, GQA, SwiGLU) and OPT (LayerNorm before or after,
 * ReLU, biases, learned positions, project_in/out). Not collective.
 */
#ifndef MP_GRAD_H
#define MP_GRAD_H

#include <stdint.h>

#include "mp_model.h"
#include "mp_status.h"

/* A block in float64 with its masks. */
typedef struct {
    const mp_model_config *cfg;
    int64_t index;
    mp_block_shape shape;
    int64_t out[MP_LIN_COUNT], in[MP_LIN_COUNT];
    double *w[MP_LIN_COUNT], *b[MP_LIN_COUNT]; /* NULL where absent / no bias */
    double *n1w, *n1b, *n2w, *n2b;
    double *head_mask; /* [n_heads] */
    double *ffn_mask;  /* [ffn] */
    /* Weight gradients added into by mp_gblock_backward where not NULL ([out, in] and [out],
     * as w and b; not owned, not freed by mp_gblock_free): LLM-Pruner's element-wise Taylor
     * importance needs Σ over the calibration loss of ∂L/∂w for every weight. */
    double *gw[MP_LIN_COUNT], *gb[MP_LIN_COUNT];
} mp_gblock;

/* Embeddings, final norm and head in float64. */
typedef struct {
    const mp_model_config *cfg;
    double *embed, *pos, *project_in, *project_out, *norm_w, *norm_b, *lm_head;
} mp_ghead;

/* One block's per-unit numbers for one sequence (added into by mp_gblock_backward). */
typedef struct {
    int64_t nh, nkv, ffn;
    double *gm_head; /* [nh] ∂L/∂m_h: o_proj columns of the head */
    double *wg_q;    /* [nh] Σ_t ⟨q_h, ∂L/∂q_h⟩: the head's q rows (and bias) */
    double *wg_kv;   /* [nkv] the group's k and v rows (and biases) */
    double *gm_ffn;  /* [ffn] ∂L/∂m_j: the down_proj column of neuron j */
    double *wg_in;   /* [ffn] the neuron's gate and up rows (OPT: fc1 row), with biases */
    /* [d] or NULL (set by the caller, not owned, not zeroed by mp_grad_stats_zero): Σ w·∂L/∂w
     * over the block's weights on residual channel c (norm weights and biases, the q/k/v and
     * gate/up columns that read it, the o_proj and down_proj rows and biases that write it):
     * the block's part of NViT's embedding-channel saliency. */
    double *emb;
} mp_grad_stats;

/* The block as float64; head_mask/ffn_mask (NULL: all ones) are copied. */
MP_NODISCARD mp_status mp_gblock_make(const mp_model_config *cfg, const mp_block *blk,
                                      const double *head_mask, const double *ffn_mask,
                                      mp_gblock *out);
void mp_gblock_free(mp_gblock *g);
MP_NODISCARD mp_status mp_ghead_make(const mp_model_config *cfg, const mp_head *head,
                                     mp_ghead *out);
void mp_ghead_free(mp_ghead *g);

MP_NODISCARD mp_status mp_grad_stats_alloc(const mp_block_shape *s, mp_grad_stats *st);
void mp_grad_stats_zero(mp_grad_stats *st);
void mp_grad_stats_free(mp_grad_stats *st);

/* h[T, d] = embedding of tokens[0..T) (ids checked against vocab: MP_ERR_RANGE). */
MP_NODISCARD mp_status mp_ghead_embed(const mp_ghead *g, const uint32_t *tokens, int64_t T,
                                      double *h);
/* The block in place on one sequence h[T, d]. */
MP_NODISCARD mp_status mp_gblock_forward(const mp_gblock *g, double *h, int64_t T);
/* *loss = mean NLL of tokens[1..T) from h[T, d] (the final hidden states; not modified), and
 * dh[T, d] = ∂loss/∂h (dh may be NULL). With chan (and dh; models without project_out), chan[d]
 * += Σ w·∂L/∂w over the final norm's weight and bias and the lm_head column of each channel. */
MP_NODISCARD mp_status mp_ghead_loss_chan(const mp_ghead *g, const double *h,
                                          const uint32_t *tokens, int64_t T, double *loss,
                                          double *dh, double *chan);
MP_NODISCARD mp_status mp_ghead_loss(const mp_ghead *g, const double *h, const uint32_t *tokens,
                                     int64_t T, double *loss, double *dh);
/* Backward through the block: x[T, d] is the block's input, dh[T, d] holds ∂L/∂(output) on
 * entry and ∂L/∂x on return; st (may be NULL) is added into. */
MP_NODISCARD mp_status mp_gblock_backward(const mp_gblock *g, const double *x, double *dh,
                                          int64_t T, mp_grad_stats *st);

/* The kernels' backward passes, exposed for the finite-difference tests. Row-major, float64;
 * dy is the gradient of the output, dx receives that of the input (dx may alias dy only
 * where stated). */
void mp_grad_rmsnorm(const double *x, const double *w, int64_t rows, int64_t d, double eps,
                     double *y);
void mp_grad_rmsnorm_bwd(const double *x, const double *w, int64_t rows, int64_t d, double eps,
                         const double *dy, double *dx);
void mp_grad_layernorm(const double *x, const double *w, const double *b, int64_t rows,
                       int64_t d, double eps, double *y);
void mp_grad_layernorm_bwd(const double *x, const double *w, int64_t rows, int64_t d,
                           double eps, const double *dy, double *dx);
/* RoPE on x[T, nh·hd] in place; sign −1 rotates back (the backward of a rotation). */
void mp_grad_rope(double *x, int64_t T, int64_t nh, int64_t hd, double theta, int sign);
/* Causal GQA attention of one sequence, as mp_attention; the backward adds into dq, dk, dv. */
MP_NODISCARD mp_status mp_grad_attention(const double *q, const double *k, const double *v,
                                         int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                                         double scale, double *out);
MP_NODISCARD mp_status mp_grad_attention_bwd(const double *q, const double *k, const double *v,
                                             int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                                             double scale, const double *dout, double *dq,
                                             double *dk, double *dv);

#endif
