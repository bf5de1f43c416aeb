/* mp_layers: the kernels of a decoder block, exposed for the block forward and for tests that
 * compare each against a naive float64 reference. All float32, row-major. Not collective. */
#ifndef MP_LAYERS_H
#define MP_LAYERS_H

#include <stdint.h>

#include "mp_model.h"
#include "mp_status.h"

/* y[rows, l->out] = x[rows, l->in] · l->wᵀ (+ l->b); with bf16 weights (l->wbf) the product
 * has bf16 inputs (x rounded) and float32 accumulation, the bias added after it. */
MP_NODISCARD mp_status mp_linear_forward(const mp_linear *l, const float *x, int64_t rows,
                                         float *y);
/* The same from an input already rounded to bf16, xb[rows, l->in]; l->wbf must be set (layers
 * that read one input round it once). */
MP_NODISCARD mp_status mp_linear_forward_bf16(const mp_linear *l, const uint16_t *xb,
                                              int64_t rows, float *y);

/* y = w ⊙ x / sqrt(mean(x²) + eps), per row of d. y may alias x. */
void mp_rmsnorm(const float *x, const float *w, int64_t rows, int64_t d, double eps, float *y);
/* y = (x − mean) / sqrt(var + eps) ⊙ w + b (biased variance), per row. y may alias x. */
void mp_layernorm(const float *x, const float *w, const float *b, int64_t rows, int64_t d,
                  double eps, float *y);

/* Rotary embedding in place, Hugging Face rotate_half convention, on x[T, n_heads*head_dim]
 * holding positions 0..T-1: for i < head_dim/2, with a = pos · theta^(−2i/head_dim),
 * x'[i] = x[i] cos a − x[i+h/2] sin a and x'[i+h/2] = x[i+h/2] cos a + x[i] sin a. */
MP_NODISCARD mp_status mp_rope(float *x, int64_t T, int64_t n_heads, int64_t head_dim,
                               double theta);
/* The same in two steps, the table once for every sequence and head of a block: cs[T·head_dim]
 * holds, per position, the head_dim/2 cosines then the head_dim/2 sines. */
void mp_rope_table(int64_t T, int64_t head_dim, double theta, float *cs);
void mp_rope_apply(float *x, int64_t T, int64_t n_heads, int64_t head_dim, const float *cs);

/* Causal attention of one sequence: q[T, nh*hd], k and v [T, nkv*hd], query head h reads kv
 * head h / (nh / nkv); out[T, nh*hd] = softmax(scale · q kᵀ + causal mask) v. */
MP_NODISCARD mp_status mp_attention(const float *q, const float *k, const float *v, int64_t T,
                                    int64_t nh, int64_t nkv, int64_t hd, double scale,
                                    float *out);

/* gate[i] = silu(gate[i]) · up[i]. */
void mp_swiglu(float *gate, const float *up, int64_t n);
/* x[i] = max(x[i], 0). */
void mp_relu(float *x, int64_t n);

#endif
