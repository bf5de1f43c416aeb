#include "mp_alloc.h"
#include "mp_bf16.h"
#include "mp_layers.h"

#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* BLAS takes int: every dimension is checked before it narrows. */
static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

mp_status mp_linear_forward_bf16(const mp_linear *l, const uint16_t *xb, int64_t rows, float *y)
{
    if (!fits_int(rows) || !fits_int(l->out) || !fits_int(l->in))
        return mp_error(MP_ERR_RANGE, "linear layer [%lld x %lld] on %lld rows exceeds BLAS int",
                        (long long)l->out, (long long)l->in, (long long)rows);
    if (!l->wbf)
        return mp_error(MP_ERR_INTERNAL, "linear layer [%lld x %lld] has no bf16 weights",
                        (long long)l->out, (long long)l->in);
    mp_status st = mp_bf16_gemm_nt(rows, l->out, l->in, xb, l->in, l->wbf, l->in, y, l->out);
    if (st == MP_OK && l->b)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < l->out; j++)
                y[r * l->out + j] += l->b[j];
    return st;
}

/* Rounds x, then the product in bf16. */
static mp_status linear_bf16(const mp_linear *l, const float *x, int64_t rows, float *y)
{
    uint16_t *xb = mp_malloc((size_t)(rows * l->in) * sizeof(uint16_t));
    if (!xb)
        return mp_error(MP_ERR_NOMEM, "cannot allocate bf16 inputs for %lld rows",
                        (long long)rows);
    mp_bf16_from_f32(x, rows * l->in, xb);
    mp_status st = mp_linear_forward_bf16(l, xb, rows, y);
    free(xb);
    return st;
}

mp_status mp_linear_forward(const mp_linear *l, const float *x, int64_t rows, float *y)
{
    if (!fits_int(rows) || !fits_int(l->out) || !fits_int(l->in))
        return mp_error(MP_ERR_RANGE, "linear layer [%lld x %lld] on %lld rows exceeds BLAS int",
                        (long long)l->out, (long long)l->in, (long long)rows);
    if (rows == 0)
        return MP_OK;
    if (l->wbf)
        return linear_bf16(l, x, rows, y);
    if (l->b) {
        for (int64_t r = 0; r < rows; r++)
            memcpy(y + r * l->out, l->b, (size_t)l->out * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)l->out, (int)l->in,
                1.0f, x, (int)l->in, l->w, (int)l->in, l->b ? 1.0f : 0.0f, y, (int)l->out);
    return MP_OK;
}

void mp_rmsnorm(const float *x, const float *w, int64_t rows, int64_t d, double eps, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double ss = 0.0;
        for (int64_t i = 0; i < d; i++)
            ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)d + eps));
        for (int64_t i = 0; i < d; i++)
            yr[i] = w[i] * (xr[i] * inv);
    }
}

void mp_layernorm(const float *x, const float *w, const float *b, int64_t rows, int64_t d,
                  double eps, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < d; i++)
            mean += xr[i];
        mean /= (double)d;
        for (int64_t i = 0; i < d; i++) {
            double c = xr[i] - mean;
            var += c * c;
        }
        var /= (double)d;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t i = 0; i < d; i++) {
            float v = (float)((xr[i] - mean) * inv);
            yr[i] = v * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
        }
    }
}

void mp_rope_table(int64_t T, int64_t head_dim, double theta, float *cs)
{
    int64_t half = head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        /* Hugging Face computes inv_freq in float32, then pos * inv_freq in float32. */
        float inv_freq = (float)(1.0 / pow(theta, (double)(2 * i) / (double)head_dim));
        for (int64_t p = 0; p < T; p++) {
            float ang = (float)p * inv_freq;
            cs[2 * (p * half) + i] = (float)cos((double)ang);
            cs[2 * (p * half) + half + i] = (float)sin((double)ang);
        }
    }
}

void mp_rope_apply(float *x, int64_t T, int64_t n_heads, int64_t head_dim, const float *cs)
{
    int64_t half = head_dim / 2;
    int64_t width = n_heads * head_dim;
    for (int64_t p = 0; p < T; p++) {
        const float *c = cs + 2 * p * half, *s = c + half;
        for (int64_t h = 0; h < n_heads; h++) {
            float *xh = x + p * width + h * head_dim;
            for (int64_t i = 0; i < half; i++) {
                float a = xh[i], bb = xh[i + half];
                xh[i] = a * c[i] - bb * s[i];
                xh[i + half] = bb * c[i] + a * s[i];
            }
        }
    }
}

mp_status mp_rope(float *x, int64_t T, int64_t n_heads, int64_t head_dim, double theta)
{
    float *cs = mp_malloc((size_t)(T * head_dim) * sizeof(float));
    if (!cs)
        return mp_error(MP_ERR_NOMEM, "cannot allocate the rotary table for %lld positions",
                        (long long)T);
    mp_rope_table(T, head_dim, theta, cs);
    mp_rope_apply(x, T, n_heads, head_dim, cs);
    free(cs);
    return MP_OK;
}

/* Query rows per tile: keys after a tile's last row are never computed (causal). */
#define MP_ATTN_TILE 64

mp_status mp_attention(const float *q, const float *k, const float *v, int64_t T, int64_t nh,
                       int64_t nkv, int64_t hd, double scale, float *out)
{
    if (nkv <= 0 || nh % nkv != 0)
        return mp_error(MP_ERR_INTERNAL, "attention: %lld heads not a multiple of %lld kv heads",
                        (long long)nh, (long long)nkv);
    if (!fits_int(T) || !fits_int(nh * hd) || !fits_int(T * MP_ATTN_TILE))
        return mp_error(MP_ERR_RANGE, "attention: sequence length %lld too large", (long long)T);
    int64_t qw = nh * hd, kw = nkv * hd, group = nh / nkv;
    float *scores = mp_malloc((size_t)(T * MP_ATTN_TILE) * sizeof(float));
    if (!scores)
        return mp_error(MP_ERR_NOMEM, "attention: cannot allocate %lld x %d scores",
                        (long long)T, MP_ATTN_TILE);
    for (int64_t h = 0; h < nh; h++) {
        int64_t kvh = h / group;
        const float *kh = k + kvh * hd, *vh = v + kvh * hd;
        for (int64_t i0 = 0; i0 < T; i0 += MP_ATTN_TILE) {
            int64_t m = T - i0 < MP_ATTN_TILE ? T - i0 : MP_ATTN_TILE;
            int64_t nk = i0 + m; /* keys 0..nk-1 are visible to some row of the tile */
            /* scores[m, nk] = scale · q_tile k_hᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nk, (int)hd,
                        (float)scale, q + i0 * qw + h * hd, (int)qw, kh, (int)kw, 0.0f, scores,
                        (int)nk);
            for (int64_t r = 0; r < m; r++) {
                int64_t i = i0 + r;
                float *s = scores + r * nk;
                float mx = -FLT_MAX;
                for (int64_t j = 0; j <= i; j++)
                    mx = s[j] > mx ? s[j] : mx;
                double sum = 0.0;
                for (int64_t j = 0; j <= i; j++) {
                    s[j] = expf(s[j] - mx);
                    sum += s[j];
                }
                float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j <= i; j++)
                    s[j] *= inv;
                for (int64_t j = i + 1; j < nk; j++)
                    s[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)hd, (int)nk,
                        1.0f, scores, (int)nk, vh, (int)kw, 0.0f, out + i0 * qw + h * hd,
                        (int)qw);
        }
    }
    free(scores);
    return MP_OK;
}

void mp_swiglu(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void mp_relu(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
