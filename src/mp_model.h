/* mp_model: the decoder-only transformer, block by block, every matrix product through BLAS.
 *
 * Supported families (the config is filled by io/mp_hfconfig from a Hugging Face config.json):
 *   LLaMA family (llama, mistral, qwen2): RMSNorm before attention and MLP, RoPE in the
 *     Hugging Face rotate_half convention, grouped KV heads, SwiGLU MLP, optional biases.
 *   OPT: learned positions (offset 2), LayerNorm before or after each sub-layer, ReLU MLP,
 *     biases, optional project_in/project_out when word_embed_proj_dim != hidden_size.
 *
 * The model knows no file format: weights come through mp_weight_source, which names tensors
 * by their Hugging Face names and hands back float32. A rank loads one block at a time
 * (mp_block_load) plus, when it needs them, the embeddings and the head (mp_head_load).
 *
 * Shapes: hidden states h are [n_seq, T, d] row-major; a linear layer's weight W is
 * [out, in] row-major as in nn.Linear, y = x Wᵀ + b.
 */
#ifndef MP_MODEL_H
#define MP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_status.h"

typedef enum { MP_ARCH_LLAMA, MP_ARCH_OPT } mp_arch;

/* The most blocks a model may have: the per-block shape table lives inside mp_model_config, so
 * that the config stays a plain value (copied, broadcast, compared) with no owner. The deepest
 * published decoders have under 200 blocks. */
#define MP_MAX_LAYERS 1024

/* The widths of one block. n_heads == 0 (with n_kv_heads == 0) means the attention sub-block is
 * absent: no q/k/v/o tensors and no norm before it, the residual passes through unchanged.
 * ffn == 0 means the FFN sub-block is absent in the same way. Otherwise n_heads is a multiple
 * of n_kv_heads (the query heads of a KV group are contiguous, as in Hugging Face GQA). */
typedef struct {
    int64_t n_heads;
    int64_t n_kv_heads;
    int64_t ffn;
} mp_block_shape;

typedef struct {
    mp_arch arch;
    char model_type[32];        /* as in config.json: llama, mistral, qwen2, opt */
    int64_t vocab;              /* vocab_size */
    int64_t d;                  /* hidden_size */
    int64_t n_layers;           /* num_hidden_layers */
    int64_t n_heads;            /* num_attention_heads */
    int64_t n_kv_heads;         /* num_key_value_heads (= n_heads for OPT) */
    int64_t head_dim;           /* head_dim, default d / n_heads */
    int64_t ffn;                /* intermediate_size (LLaMA) or ffn_dim (OPT) */
    int64_t max_pos;            /* max_position_embeddings */
    int64_t sliding_window;     /* 0 = none; a window shorter than seqlen is refused */
    double norm_eps;            /* rms_norm_eps (LLaMA), 1e-5 (OPT) */
    double rope_theta;          /* LLaMA only */
    bool tie_embeddings;        /* no lm_head.weight: logits use the embedding matrix */
    bool qkv_bias;              /* biases on q_proj, k_proj, v_proj */
    bool o_bias;                /* bias on o_proj / out_proj */
    bool mlp_bias;              /* biases on the MLP projections */
    bool down_bias;             /* a bias on down_proj alone (FLAP's bias compensation writes
                                   it with o_bias); mlp_bias implies it */
    bool norm_before;           /* OPT do_layer_norm_before (always true for LLaMA) */
    bool final_norm;            /* model.norm / model.decoder.final_layer_norm present */
    int64_t word_embed_proj_dim;/* OPT: embedding width; == d when no projection */
    /* Per-block widths. When per_layer is false every block has the widths above (n_heads,
     * n_kv_heads, ffn) and layer[] is unused; when true, layer[0..n_layers) holds each block's
     * widths and the scalars hold the largest of each (what stock config keys carry). */
    bool per_layer;
    mp_block_shape layer[MP_MAX_LAYERS];
} mp_model_config;

/* The widths of block `layer` (0 <= layer < n_layers). */
mp_block_shape mp_layer_shape(const mp_model_config *cfg, int64_t layer);
/* Sets per-block widths from shapes[0..n_layers): per_layer becomes false when they are all
 * equal and nonzero (a stock model), and the scalars are the largest widths. */
void mp_model_config_set_shapes(mp_model_config *cfg, const mp_block_shape *shapes);

/* Largest sizes a config may give (mp_model_config_check refuses more, naming the field).
 * They are 16-128x beyond the largest published models (Llama 3.1 405B: hidden 16384,
 * intermediate 53248, 128 heads, 126 layers, vocab 128256) and keep every product of sizes
 * that the model and the memory plan form (out x in, vocab x d, n_seq x T x d with
 * T <= max_position_embeddings) far inside int64. WIDTH bounds hidden_size,
 * intermediate_size/ffn_dim, head_dim, word_embed_proj_dim and num_attention_heads x head_dim. */
#define MP_CFG_MAX_WIDTH ((int64_t)1 << 20)
#define MP_CFG_MAX_HEADS ((int64_t)1 << 14)  /* num_attention_heads, num_key_value_heads */
#define MP_CFG_MAX_LAYERS ((int64_t)1 << 16) /* num_hidden_layers */
#define MP_CFG_MAX_VOCAB ((int64_t)1 << 24)  /* vocab_size */
#define MP_CFG_MAX_POS ((int64_t)1 << 24)    /* max_position_embeddings */

/* Checks the config's internal consistency (positive sizes within the limits above, heads
 * divide, ...), also of every block's widths. `what` names the source for the message (the
 * config.json path). */
MP_NODISCARD mp_status mp_model_config_check(const mp_model_config *cfg, const char *what);

/* Where weights come from. load() must fill out[numel] with the float32 values of tensor
 * `name`, whose shape must equal shape[0..ndim) (else MP_ERR_FORMAT naming file and tensor),
 * and must refuse non-finite values (MP_ERR_NUMERIC). has() says whether `name` exists. */
typedef struct {
    void *ctx;
    mp_status (*load)(void *ctx, const char *name, int ndim, const int64_t *shape, float *out);
    bool (*has)(void *ctx, const char *name);
} mp_weight_source;

/* The linear layers of a block, in forward order. OPT's names: q,k,v,out_proj, fc1, fc2. */
typedef enum {
    MP_LIN_Q,
    MP_LIN_K,
    MP_LIN_V,
    MP_LIN_O,
    MP_LIN_GATE, /* LLaMA only */
    MP_LIN_UP,   /* LLaMA up_proj, OPT fc1 */
    MP_LIN_DOWN, /* LLaMA down_proj, OPT fc2 */
    MP_LIN_COUNT
} mp_lin_id;

/* Layers that read the same input share one Hessian: the input groups. */
typedef enum {
    MP_IN_ATTN,  /* input of q, k, v */
    MP_IN_O,     /* input of o_proj */
    MP_IN_MLP,   /* input of gate, up (fc1) */
    MP_IN_DOWN,  /* input of down (fc2) */
    MP_IN_COUNT
} mp_in_group;

typedef struct {
    int64_t out, in;
    float *w;   /* [out, in] */
    float *b;   /* [out] or NULL */
    bool present;
    /* w rounded to bf16, or NULL: when set, the layer's product has bf16 inputs and float32
     * accumulation (mp_bf16). Set only in a view (mp_block_bf16_view), which owns it. */
    const uint16_t *wbf;
} mp_linear;

typedef struct {
    int64_t index;
    mp_block_shape shape;     /* the widths it was loaded with */
    mp_linear lin[MP_LIN_COUNT];
    float *norm1_w, *norm1_b; /* before attention (OPT: self_attn_layer_norm) */
    float *norm2_w, *norm2_b; /* before MLP (OPT: final_layer_norm of the layer) */
} mp_block;

/* Short and full names of a linear layer: "q_proj" and "model.layers.3.self_attn.q_proj". */
const char *mp_lin_short_name(const mp_model_config *cfg, mp_lin_id id);
/* Writes the Hugging Face tensor prefix (without ".weight") of a linear layer of block `layer`
 * into buf; returns buf. */
char *mp_lin_full_name(const mp_model_config *cfg, int64_t layer, mp_lin_id id, char *buf,
                       size_t len);
/* The input group a linear layer reads. */
mp_in_group mp_lin_group(mp_lin_id id);
/* Width of an input group's vectors in block `layer` (d for the attention and MLP inputs,
 * n_heads*head_dim for O, ffn for down); 0 when the sub-block is absent. */
int64_t mp_in_group_dim(const mp_model_config *cfg, int64_t layer, mp_in_group g);
/* Whether block `layer` has linear layer `id` (absent sub-blocks and OPT's gate have none). */
bool mp_lin_present(const mp_model_config *cfg, int64_t layer, mp_lin_id id);
/* Whether linear layer `id` has a bias in cfg's blocks (where it is present). */
bool mp_lin_has_bias(const mp_model_config *cfg, mp_lin_id id);
/* out × in of linear layer `id` of block `layer` (0 × 0 when absent). */
void mp_lin_dims(const mp_model_config *cfg, int64_t layer, mp_lin_id id, int64_t *out,
                 int64_t *in);

/* Loads block `layer` at the widths the config gives it. Not collective. */
MP_NODISCARD mp_status mp_block_load(const mp_model_config *cfg, const mp_weight_source *src,
                                     int64_t layer, mp_block **out);
void mp_block_free(mp_block **blk);
/* *view = blk, its linear layers with bf16 copies of their weights (wbf), so that
 * mp_block_forward runs their products in bf16 (attention scores and norms stay float32). The
 * view owns only the copies (mp_block_bf16_release frees them); blk must outlive it and keep
 * its weights meanwhile. Not collective. */
MP_NODISCARD mp_status mp_block_bf16_view(const mp_block *blk, mp_block *view);
void mp_block_bf16_release(mp_block *view);
/* Bytes of float32 weights a loaded block `layer` holds. */
int64_t mp_block_bytes(const mp_model_config *cfg, int64_t layer);
/* Parameters of block `layer`'s linear layers (weights and biases; norms not counted): the
 * cost model of a parameter budget. */
int64_t mp_block_params(const mp_model_config *cfg, int64_t layer);

/* Called with the input x[rows, dim] of each input group as the forward pass reaches it; out
 * (may be NULL) with the output y[rows, dim] of each linear layer right after its product
 * (bias added; before RoPE, activations and residuals). */
typedef struct {
    mp_status (*fn)(void *ud, mp_in_group g, const float *x, int64_t rows, int64_t dim);
    void *ud;
    mp_status (*out)(void *ud, mp_lin_id id, const float *y, int64_t rows, int64_t dim);
} mp_hook;

/* Runs one block in place on h[n_seq, T, d] (positions 0..T-1 in every sequence). hook may be
 * NULL. Sequences are independent: the result for one sequence does not depend on the others
 * in the call. Not collective. */
MP_NODISCARD mp_status mp_block_forward(const mp_model_config *cfg, const mp_block *blk,
                                        float *h, int64_t n_seq, int64_t T, const mp_hook *hook);

/* Embeddings, final norm and LM head. */
typedef struct {
    float *embed;        /* [vocab, wd] */
    float *pos;          /* OPT: [max_pos + 2, d] */
    float *project_in;   /* OPT: [d, wd] or NULL */
    float *project_out;  /* OPT: [wd, d] or NULL */
    float *norm_w, *norm_b;
    float *lm_head;      /* [vocab, wd]; == embed when tied (not separately owned) */
} mp_head;

MP_NODISCARD mp_status mp_head_load(const mp_model_config *cfg, const mp_weight_source *src,
                                    mp_head **out);
void mp_head_free(mp_head **head);

/* h[n_seq, T, d] = embedding of tokens[n_seq, T] (plus positions for OPT). Token ids must be
 * < vocab (checked: MP_ERR_RANGE). */
MP_NODISCARD mp_status mp_embed_forward(const mp_model_config *cfg, const mp_head *head,
                                        const uint32_t *tokens, int64_t n_seq, int64_t T,
                                        float *h);

/* Final norm and head on h[n_seq, T, d] (h is overwritten), then for each sequence s the
 * mean negative log-likelihood, in float64, of tokens[s, 1..T-1] predicted from positions
 * 0..T-2: nll[s]. */
MP_NODISCARD mp_status mp_head_nll(const mp_model_config *cfg, const mp_head *head, float *h,
                                   const uint32_t *tokens, int64_t n_seq, int64_t T,
                                   double *nll);

/* Logits [n_seq, T, vocab] (final norm and head; h is overwritten). For tests and tools. */
MP_NODISCARD mp_status mp_head_logits(const mp_model_config *cfg, const mp_head *head, float *h,
                                      int64_t n_seq, int64_t T, float *logits);

/* Floating-point operations of block `layer`'s forward on n_seq × T tokens (matrix products
 * and attention scores): the cost model of a FLOPs budget. */
double mp_block_flops(const mp_model_config *cfg, int64_t layer, int64_t n_seq, int64_t T);
/* Query-key pairs one head scores in a sequence of T tokens (causal, in the tiles of
 * mp_block_forward's attention): 4·head_dim FLOPs each. */
double mp_attn_score_pairs(int64_t T);

#endif
