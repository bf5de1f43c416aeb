#include "mp_grad.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

static double *dup_f32(const float *x, int64_t n, bool *ok)
{
    if (!x)
        return NULL;
    double *y = mp_malloc((size_t)n * sizeof *y);
    if (!y) {
        *ok = false;
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        y[i] = (double)x[i];
    return y;
}

static double *mask_copy(const double *m, int64_t n, bool *ok)
{
    double *y = mp_malloc((size_t)(n > 0 ? n : 1) * sizeof *y);
    if (!y) {
        *ok = false;
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        y[i] = m ? m[i] : 1.0;
    return y;
}

mp_status mp_gblock_make(const mp_model_config *c, const mp_block *blk, const double *hm,
                         const double *fm, mp_gblock *g)
{
    memset(g, 0, sizeof *g);
    g->cfg = c;
    g->index = blk->index;
    g->shape = blk->shape;
    bool ok = true;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        const mp_linear *l = &blk->lin[id];
        if (!l->present)
            continue;
        if (!fits_int(l->out) || !fits_int(l->in))
            return mp_error(MP_ERR_RANGE, "block %lld: a layer exceeds BLAS int",
                            (long long)blk->index);
        g->out[id] = l->out;
        g->in[id] = l->in;
        g->w[id] = dup_f32(l->w, l->out * l->in, &ok);
        g->b[id] = dup_f32(l->b, l->out, &ok);
    }
    g->n1w = dup_f32(blk->norm1_w, c->d, &ok);
    g->n1b = dup_f32(blk->norm1_b, c->d, &ok);
    g->n2w = dup_f32(blk->norm2_w, c->d, &ok);
    g->n2b = dup_f32(blk->norm2_b, c->d, &ok);
    g->head_mask = mask_copy(hm, blk->shape.n_heads, &ok);
    g->ffn_mask = mask_copy(fm, blk->shape.ffn, &ok);
    if (!ok) {
        mp_gblock_free(g);
        return mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate its float64 copy",
                        (long long)blk->index);
    }
    return MP_OK;
}

void mp_gblock_free(mp_gblock *g)
{
    if (!g)
        return;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        free(g->w[id]);
        free(g->b[id]);
    }
    free(g->n1w);
    free(g->n1b);
    free(g->n2w);
    free(g->n2b);
    free(g->head_mask);
    free(g->ffn_mask);
    memset(g, 0, sizeof *g);
}

mp_status mp_ghead_make(const mp_model_config *c, const mp_head *h, mp_ghead *g)
{
    memset(g, 0, sizeof *g);
    g->cfg = c;
    bool ok = true;
    int64_t wd = c->word_embed_proj_dim;
    g->embed = dup_f32(h->embed, c->vocab * wd, &ok);
    g->pos = dup_f32(h->pos, (c->max_pos + 2) * c->d, &ok);
    g->project_in = dup_f32(h->project_in, c->d * wd, &ok);
    g->project_out = dup_f32(h->project_out, wd * c->d, &ok);
    g->norm_w = dup_f32(h->norm_w, c->d, &ok);
    g->norm_b = dup_f32(h->norm_b, c->d, &ok);
    g->lm_head = h->lm_head == h->embed ? g->embed : dup_f32(h->lm_head, c->vocab * wd, &ok);
    if (!ok) {
        mp_ghead_free(g);
        return mp_error(MP_ERR_NOMEM, "cannot allocate the float64 model head");
    }
    return MP_OK;
}

void mp_ghead_free(mp_ghead *g)
{
    if (!g)
        return;
    if (g->lm_head != g->embed)
        free(g->lm_head);
    free(g->embed);
    free(g->pos);
    free(g->project_in);
    free(g->project_out);
    free(g->norm_w);
    free(g->norm_b);
    memset(g, 0, sizeof *g);
}

mp_status mp_grad_stats_alloc(const mp_block_shape *s, mp_grad_stats *st)
{
    memset(st, 0, sizeof *st);
    st->nh = s->n_heads;
    st->nkv = s->n_kv_heads;
    st->ffn = s->ffn;
    st->gm_head = mp_calloc((size_t)(st->nh + 1), sizeof(double));
    st->wg_q = mp_calloc((size_t)(st->nh + 1), sizeof(double));
    st->wg_kv = mp_calloc((size_t)(st->nkv + 1), sizeof(double));
    st->gm_ffn = mp_calloc((size_t)(st->ffn + 1), sizeof(double));
    st->wg_in = mp_calloc((size_t)(st->ffn + 1), sizeof(double));
    if (!st->gm_head || !st->wg_q || !st->wg_kv || !st->gm_ffn || !st->wg_in) {
        mp_grad_stats_free(st);
        return mp_error(MP_ERR_NOMEM, "cannot allocate gradient statistics");
    }
    return MP_OK;
}

void mp_grad_stats_zero(mp_grad_stats *st)
{
    memset(st->gm_head, 0, (size_t)st->nh * sizeof(double));
    memset(st->wg_q, 0, (size_t)st->nh * sizeof(double));
    memset(st->wg_kv, 0, (size_t)st->nkv * sizeof(double));
    memset(st->gm_ffn, 0, (size_t)st->ffn * sizeof(double));
    memset(st->wg_in, 0, (size_t)st->ffn * sizeof(double));
}

void mp_grad_stats_free(mp_grad_stats *st)
{
    if (!st)
        return;
    free(st->gm_head);
    free(st->wg_q);
    free(st->wg_kv);
    free(st->gm_ffn);
    free(st->wg_in);
    memset(st, 0, sizeof *st);
}

/* ---- kernels ---- */

void mp_grad_rmsnorm(const double *x, const double *w, int64_t rows, int64_t d, double eps,
                     double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * d;
        double ss = 0.0;
        for (int64_t i = 0; i < d; i++)
            ss += xr[i] * xr[i];
        double inv = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t i = 0; i < d; i++)
            y[r * d + i] = w[i] * xr[i] * inv;
    }
}

void mp_grad_rmsnorm_bwd(const double *x, const double *w, int64_t rows, int64_t d, double eps,
                         const double *dy, double *dx)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * d, *gr = dy + r * d;
        double ss = 0.0, dot = 0.0;
        for (int64_t i = 0; i < d; i++) {
            ss += xr[i] * xr[i];
            dot += w[i] * gr[i] * xr[i];
        }
        double inv = 1.0 / sqrt(ss / (double)d + eps);
        double k = dot * inv * inv * inv / (double)d;
        for (int64_t i = 0; i < d; i++)
            dx[r * d + i] = w[i] * gr[i] * inv - xr[i] * k;
    }
}

void mp_grad_layernorm(const double *x, const double *w, const double *b, int64_t rows,
                       int64_t d, double eps, double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * d;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < d; i++)
            mean += xr[i];
        mean /= (double)d;
        for (int64_t i = 0; i < d; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        double inv = 1.0 / sqrt(var / (double)d + eps);
        for (int64_t i = 0; i < d; i++)
            y[r * d + i] = (xr[i] - mean) * inv * (w ? w[i] : 1.0) + (b ? b[i] : 0.0);
    }
}

void mp_grad_layernorm_bwd(const double *x, const double *w, int64_t rows, int64_t d,
                           double eps, const double *dy, double *dx)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * d, *gr = dy + r * d;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < d; i++)
            mean += xr[i];
        mean /= (double)d;
        for (int64_t i = 0; i < d; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        double inv = 1.0 / sqrt(var / (double)d + eps);
        double m1 = 0.0, m2 = 0.0; /* means of ĝ and ĝ·x̂ */
        for (int64_t i = 0; i < d; i++) {
            double gh = gr[i] * (w ? w[i] : 1.0), xh = (xr[i] - mean) * inv;
            m1 += gh;
            m2 += gh * xh;
        }
        m1 /= (double)d;
        m2 /= (double)d;
        for (int64_t i = 0; i < d; i++) {
            double gh = gr[i] * (w ? w[i] : 1.0), xh = (xr[i] - mean) * inv;
            dx[r * d + i] = inv * (gh - m1 - xh * m2);
        }
    }
}

void mp_grad_rope(double *x, int64_t T, int64_t nh, int64_t hd, double theta, int sign)
{
    int64_t half = hd / 2, width = nh * hd;
    for (int64_t p = 0; p < T; p++) {
        for (int64_t i = 0; i < half; i++) {
            /* The angles and their cosines are float32 in Hugging Face, also in float64
             * models (its rotary embedding runs in float32 and casts cos/sin). */
            float inv_freq = (float)(1.0 / pow(theta, (double)(2 * i) / (double)hd));
            float ang = (float)p * inv_freq;
            double c = (double)(float)cos((double)ang);
            double s = (double)sign * (double)(float)sin((double)ang);
            for (int64_t h = 0; h < nh; h++) {
                double *xh = x + p * width + h * hd;
                double a = xh[i], bb = xh[i + half];
                xh[i] = a * c - bb * s;
                xh[i + half] = bb * c + a * s;
            }
        }
    }
}

/* P[T, T] = causal softmax(scale · q_h k_hᵀ) of one head. */
static void attn_probs(const double *q, const double *k, int64_t T, int64_t qw, int64_t kw,
                       int64_t hd, double scale, double *P)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, scale, q,
                (int)qw, k, (int)kw, 0.0, P, (int)T);
    for (int64_t i = 0; i < T; i++) {
        double *s = P + i * T, mx = s[0], sum = 0.0;
        for (int64_t j = 1; j <= i; j++)
            mx = s[j] > mx ? s[j] : mx;
        for (int64_t j = 0; j <= i; j++) {
            s[j] = exp(s[j] - mx);
            sum += s[j];
        }
        for (int64_t j = 0; j <= i; j++)
            s[j] /= sum;
        for (int64_t j = i + 1; j < T; j++)
            s[j] = 0.0;
    }
}

static mp_status attn_check(int64_t T, int64_t nh, int64_t nkv, int64_t hd)
{
    if (nkv <= 0 || nh % nkv != 0)
        return mp_error(MP_ERR_INTERNAL, "attention: %lld heads not a multiple of %lld kv heads",
                        (long long)nh, (long long)nkv);
    if (!fits_int(T * T) || !fits_int(nh * hd))
        return mp_error(MP_ERR_RANGE, "attention: sequence length %lld too large for the "
                        "gradient", (long long)T);
    return MP_OK;
}

mp_status mp_grad_attention(const double *q, const double *k, const double *v, int64_t T,
                            int64_t nh, int64_t nkv, int64_t hd, double scale, double *out)
{
    mp_status st = attn_check(T, nh, nkv, hd);
    if (st != MP_OK)
        return st;
    int64_t qw = nh * hd, kw = nkv * hd, G = nh / nkv;
    double *P = mp_malloc((size_t)(T * T) * sizeof *P);
    if (!P)
        return mp_error(MP_ERR_NOMEM, "attention: cannot allocate %lld x %lld probabilities",
                        (long long)T, (long long)T);
    for (int64_t h = 0; h < nh; h++) {
        int64_t g = h / G;
        attn_probs(q + h * hd, k + g * hd, T, qw, kw, hd, scale, P);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0, P,
                    (int)T, v + g * hd, (int)kw, 0.0, out + h * hd, (int)qw);
    }
    free(P);
    return MP_OK;
}

mp_status mp_grad_attention_bwd(const double *q, const double *k, const double *v, int64_t T,
                                int64_t nh, int64_t nkv, int64_t hd, double scale,
                                const double *dout, double *dq, double *dk, double *dv)
{
    mp_status st = attn_check(T, nh, nkv, hd);
    if (st != MP_OK)
        return st;
    int64_t qw = nh * hd, kw = nkv * hd, G = nh / nkv;
    double *P = mp_malloc((size_t)(T * T) * sizeof *P);
    double *dP = mp_malloc((size_t)(T * T) * sizeof *dP);
    if (!P || !dP) {
        free(P);
        free(dP);
        return mp_error(MP_ERR_NOMEM, "attention: cannot allocate %lld x %lld probabilities",
                        (long long)T, (long long)T);
    }
    for (int64_t h = 0; h < nh; h++) {
        int64_t g = h / G;
        const double *qh = q + h * hd, *kh = k + g * hd, *vh = v + g * hd, *go = dout + h * hd;
        attn_probs(qh, kh, T, qw, kw, hd, scale, P);
        /* dV += Pᵀ dO; dP = dO Vᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP)). */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0, P,
                    (int)T, go, (int)qw, 1.0, dv + g * hd, (int)kw);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, 1.0, go,
                    (int)qw, vh, (int)kw, 0.0, dP, (int)T);
        for (int64_t i = 0; i < T; i++) {
            double *p = P + i * T, *gp = dP + i * T, dot = 0.0;
            for (int64_t j = 0; j <= i; j++)
                dot += p[j] * gp[j];
            for (int64_t j = 0; j <= i; j++)
                gp[j] = p[j] * (gp[j] - dot);
            for (int64_t j = i + 1; j < T; j++)
                gp[j] = 0.0;
        }
        /* dQ_h += scale dS K; dK += scale dSᵀ Q_h. */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)T, scale,
                    dP, (int)T, kh, (int)kw, 1.0, dq + h * hd, (int)qw);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hd, (int)T, scale,
                    dP, (int)T, qh, (int)qw, 1.0, dk + g * hd, (int)kw);
    }
    free(P);
    free(dP);
    return MP_OK;
}

/* ---- block ---- */

/* y[T, out] = x W_idᵀ + b. */
static void lin(const mp_gblock *g, int id, const double *x, int64_t T, double *y)
{
    int64_t o = g->out[id], in = g->in[id];
    for (int64_t r = 0; g->b[id] && r < T; r++)
        memcpy(y + r * o, g->b[id], (size_t)o * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)o, (int)in, 1.0, x,
                (int)in, g->w[id], (int)in, g->b[id] ? 1.0 : 0.0, y, (int)o);
}

/* g->gw[id] += dyᵀ (x ∘ mask) and g->gb[id] += Σ_t dy (when accumulated): the weight gradient
 * of y = (x ∘ mask) Wᵀ + b, mask (may be NULL) over groups of `unit` input columns. */
static mp_status lin_wgrad(const mp_gblock *g, int id, const double *dy, const double *x,
                           const double *mask, int64_t unit, int64_t T)
{
    int64_t o = g->out[id], in = g->in[id];
    if (!g->gw[id])
        return MP_OK;
    double *xm = NULL;
    if (mask) {
        if (!(xm = mp_malloc((size_t)(T * in) * sizeof *xm)))
            return mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate a weight gradient's "
                            "inputs", (long long)g->index);
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < in; j++)
                xm[t * in + j] = x[t * in + j] * mask[j / unit];
        x = xm;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)o, (int)in, (int)T, 1.0, dy,
                (int)o, x, (int)in, 1.0, g->gw[id], (int)in);
    for (int64_t t = 0; g->gb[id] && g->b[id] && t < T; t++)
        for (int64_t r = 0; r < o; r++)
            g->gb[id][r] += dy[t * o + r];
    free(xm);
    return MP_OK;
}

/* dx[T, in] (+)= dy[T, out] W_id. */
static void lin_bwd(const mp_gblock *g, int id, const double *dy, int64_t T, double *dx,
                    bool add)
{
    int64_t o = g->out[id], in = g->in[id];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)in, (int)o, 1.0, dy,
                (int)o, g->w[id], (int)in, add ? 1.0 : 0.0, dx, (int)in);
}

static void norm_fwd(const mp_model_config *c, const double *w, const double *b,
                     const double *x, int64_t T, double *y)
{
    if (c->arch == MP_ARCH_LLAMA)
        mp_grad_rmsnorm(x, w, T, c->d, c->norm_eps, y);
    else
        mp_grad_layernorm(x, w, b, T, c->d, c->norm_eps, y);
}

static void norm_bwd(const mp_model_config *c, const double *w, const double *x, int64_t T,
                     const double *dy, double *dx)
{
    if (c->arch == MP_ARCH_LLAMA)
        mp_grad_rmsnorm_bwd(x, w, T, c->d, c->norm_eps, dy, dx);
    else
        mp_grad_layernorm_bwd(x, w, T, c->d, c->norm_eps, dy, dx);
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The activations of one sub-block that its backward needs. */
typedef struct {
    double *xin;      /* [T, d] the sub-block's input (h before it) */
    double *xn;       /* [T, d] the normalised input (pre-LN), else == xin */
    double *q, *k, *v; /* pre-RoPE projections (with biases) */
    double *qr, *kr;  /* after RoPE */
    double *ao;       /* [T, nh·hd] attention output, unmasked */
    double *a, *b2;   /* FFN: gate and up pre-activations (OPT: fc1's in a) */
    double *act;      /* [T, F] the activation, unmasked */
    double *sum;      /* [T, d] post-LN: the residual sum before the norm */
    double *o;        /* [T, d] the output projection's output (with its bias) */
    double *out;      /* [T, d] post-LN: the sub-block's output (after the norm) */
} sub_acts;

static void sub_free(sub_acts *s)
{
    free(s->xin);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->qr);
    free(s->kr);
    free(s->ao);
    free(s->a);
    free(s->b2);
    free(s->act);
    free(s->sum);
    free(s->o);
    free(s->out);
    memset(s, 0, sizeof *s);
}

static double *dalloc(int64_t n, bool *ok)
{
    double *p = mp_malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (!p)
        *ok = false;
    return p;
}

/* Attention sub-block forward on h[T, d] in place; with acts, keeps what the backward needs. */
static mp_status attn_fwd(const mp_gblock *g, double *h, int64_t T, sub_acts *A)
{
    const mp_model_config *c = g->cfg;
    int64_t d = c->d, nh = g->shape.n_heads, nkv = g->shape.n_kv_heads, hd = c->head_dim;
    int64_t qd = nh * hd, kd = nkv * hd;
    bool ok = true, pre = c->norm_before;
    mp_status st = MP_OK;
    sub_acts loc = {0}, *s = A ? A : &loc;
    s->xin = dalloc(T * d, &ok);
    s->xn = dalloc(T * d, &ok);
    s->q = dalloc(T * qd, &ok);
    s->k = dalloc(T * kd, &ok);
    s->v = dalloc(T * kd, &ok);
    s->qr = dalloc(T * qd, &ok);
    s->kr = dalloc(T * kd, &ok);
    s->ao = dalloc(T * qd, &ok);
    s->sum = dalloc(T * d, &ok);
    s->o = dalloc(T * d, &ok);
    s->out = pre ? NULL : dalloc(T * d, &ok);
    double *tmp = dalloc(T * qd, &ok), *o = s->o;
    if (!ok) {
        st = mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate the attention's float64 "
                      "activations", (long long)g->index);
        goto done;
    }
    memcpy(s->xin, h, (size_t)(T * d) * sizeof(double));
    if (pre)
        norm_fwd(c, g->n1w, g->n1b, h, T, s->xn);
    else
        memcpy(s->xn, h, (size_t)(T * d) * sizeof(double));
    lin(g, MP_LIN_Q, s->xn, T, s->q);
    lin(g, MP_LIN_K, s->xn, T, s->k);
    lin(g, MP_LIN_V, s->xn, T, s->v);
    memcpy(s->qr, s->q, (size_t)(T * qd) * sizeof(double));
    memcpy(s->kr, s->k, (size_t)(T * kd) * sizeof(double));
    if (c->arch == MP_ARCH_LLAMA) {
        mp_grad_rope(s->qr, T, nh, hd, c->rope_theta, 1);
        mp_grad_rope(s->kr, T, nkv, hd, c->rope_theta, 1);
    }
    st = mp_grad_attention(s->qr, s->kr, s->v, T, nh, nkv, hd, 1.0 / sqrt((double)hd), s->ao);
    if (st != MP_OK)
        goto done;
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < qd; j++)
            tmp[t * qd + j] = s->ao[t * qd + j] * g->head_mask[j / hd];
    lin(g, MP_LIN_O, tmp, T, o);
    for (int64_t i = 0; i < T * d; i++)
        h[i] += o[i];
    memcpy(s->sum, h, (size_t)(T * d) * sizeof(double));
    if (!pre) {
        norm_fwd(c, g->n1w, g->n1b, s->sum, T, h);
        memcpy(s->out, h, (size_t)(T * d) * sizeof(double));
    }
done:
    free(tmp);
    if (!A || st != MP_OK)
        sub_free(s);
    return st;
}

static mp_status ffn_fwd(const mp_gblock *g, double *h, int64_t T, sub_acts *A)
{
    const mp_model_config *c = g->cfg;
    int64_t d = c->d, F = g->shape.ffn;
    bool ok = true, pre = c->norm_before, llama = c->arch == MP_ARCH_LLAMA;
    mp_status st = MP_OK;
    sub_acts loc = {0}, *s = A ? A : &loc;
    s->xin = dalloc(T * d, &ok);
    s->xn = dalloc(T * d, &ok);
    s->a = dalloc(T * F, &ok);
    s->b2 = llama ? dalloc(T * F, &ok) : NULL;
    s->act = dalloc(T * F, &ok);
    s->sum = dalloc(T * d, &ok);
    s->o = dalloc(T * d, &ok);
    s->out = pre ? NULL : dalloc(T * d, &ok);
    double *tmp = dalloc(T * F, &ok), *o = s->o;
    if (!ok) {
        st = mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate the FFN's float64 activations",
                      (long long)g->index);
        goto done;
    }
    memcpy(s->xin, h, (size_t)(T * d) * sizeof(double));
    if (pre)
        norm_fwd(c, g->n2w, g->n2b, h, T, s->xn);
    else
        memcpy(s->xn, h, (size_t)(T * d) * sizeof(double));
    if (llama) {
        lin(g, MP_LIN_GATE, s->xn, T, s->a);
        lin(g, MP_LIN_UP, s->xn, T, s->b2);
        for (int64_t i = 0; i < T * F; i++)
            s->act[i] = s->a[i] * sigm(s->a[i]) * s->b2[i];
    } else {
        lin(g, MP_LIN_UP, s->xn, T, s->a);
        for (int64_t i = 0; i < T * F; i++)
            s->act[i] = s->a[i] > 0.0 ? s->a[i] : 0.0;
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < F; j++)
            tmp[t * F + j] = s->act[t * F + j] * g->ffn_mask[j];
    lin(g, MP_LIN_DOWN, tmp, T, o);
    for (int64_t i = 0; i < T * d; i++)
        h[i] += o[i];
    memcpy(s->sum, h, (size_t)(T * d) * sizeof(double));
    if (!pre) {
        norm_fwd(c, g->n2w, g->n2b, s->sum, T, h);
        memcpy(s->out, h, (size_t)(T * d) * sizeof(double));
    }
done:
    free(tmp);
    if (!A || st != MP_OK)
        sub_free(s);
    return st;
}

mp_status mp_gblock_forward(const mp_gblock *g, double *h, int64_t T)
{
    mp_status st = MP_OK;
    if (g->shape.n_heads > 0)
        st = attn_fwd(g, h, T, NULL);
    if (st == MP_OK && g->shape.ffn > 0)
        st = ffn_fwd(g, h, T, NULL);
    return st;
}

/* emb[c] += f · Σ_t a[t, c] b[t, c] (NULL emb: nothing). */
static void chan_add(double *emb, const double *a, const double *b, int64_t T, int64_t d,
                     double f)
{
    for (int64_t t = 0; emb && t < T; t++)
        for (int64_t c = 0; c < d; c++)
            emb[c] += f * a[t * d + c] * b[t * d + c];
}

/* A sub-block's part of the channel saliency (mp_grad_stats.emb): with dh the gradient at its
 * output (before the post-LN norm's backward), dsum at its residual sum, dxn at the normalised
 * input (all of q/k/v's or gate/up's paths):
 *   the output projection's row c and bias: Σ_t o·dsum;
 *   the input columns c: Σ_t xn·dxn, and a pre-LN norm's weight and bias the same again;
 *   a post-LN norm's weight and bias: Σ_t out·dh. */
static void chan_sub(const mp_gblock *g, const sub_acts *s, const double *dh_out,
                     const double *dsum, const double *dxn, int64_t T, mp_grad_stats *stt)
{
    int64_t d = g->cfg->d;
    if (!stt || !stt->emb)
        return;
    chan_add(stt->emb, s->o, dsum, T, d, 1.0);
    chan_add(stt->emb, s->xn, dxn, T, d, g->cfg->norm_before ? 2.0 : 1.0);
    if (!g->cfg->norm_before)
        chan_add(stt->emb, s->out, dh_out, T, d, 1.0);
}

/* dh: ∂L/∂(sub-block output) in, ∂L/∂(sub-block input) out. */
static mp_status attn_bwd(const mp_gblock *g, const sub_acts *s, double *dh, int64_t T,
                          mp_grad_stats *stt)
{
    const mp_model_config *c = g->cfg;
    int64_t d = c->d, nh = g->shape.n_heads, nkv = g->shape.n_kv_heads, hd = c->head_dim;
    int64_t qd = nh * hd, kd = nkv * hd;
    bool ok = true, pre = c->norm_before;
    mp_status st = MP_OK;
    double *dsum = dalloc(T * d, &ok), *dao = dalloc(T * qd, &ok), *dq = dalloc(T * qd, &ok);
    double *dk = dalloc(T * kd, &ok), *dv = dalloc(T * kd, &ok), *dxn = dalloc(T * d, &ok);
    double *dn = dalloc(T * d, &ok);
    if (!ok) {
        st = mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate the attention's gradients",
                      (long long)g->index);
        goto done;
    }
    /* Post-LN: through the norm first; the residual then carries dsum to the input. */
    if (!pre)
        norm_bwd(c, g->n1w, s->sum, T, dh, dsum);
    else
        memcpy(dsum, dh, (size_t)(T * d) * sizeof(double));
    lin_bwd(g, MP_LIN_O, dsum, T, dao, false); /* ∂L/∂(masked output) */
    st = lin_wgrad(g, MP_LIN_O, dsum, s->ao, g->head_mask, hd, T);
    if (st != MP_OK)
        goto done;
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < qd; j++) {
            double gm = s->ao[t * qd + j] * dao[t * qd + j];
            if (stt)
                stt->gm_head[j / hd] += gm;
            dao[t * qd + j] *= g->head_mask[j / hd];
        }
    memset(dq, 0, (size_t)(T * qd) * sizeof(double));
    memset(dk, 0, (size_t)(T * kd) * sizeof(double));
    memset(dv, 0, (size_t)(T * kd) * sizeof(double));
    st = mp_grad_attention_bwd(s->qr, s->kr, s->v, T, nh, nkv, hd, 1.0 / sqrt((double)hd), dao,
                               dq, dk, dv);
    if (st != MP_OK)
        goto done;
    if (c->arch == MP_ARCH_LLAMA) {
        mp_grad_rope(dq, T, nh, hd, c->rope_theta, -1);
        mp_grad_rope(dk, T, nkv, hd, c->rope_theta, -1);
    }
    if (stt) {
        for (int64_t t = 0; t < T; t++) {
            for (int64_t j = 0; j < qd; j++)
                stt->wg_q[j / hd] += s->q[t * qd + j] * dq[t * qd + j];
            for (int64_t j = 0; j < kd; j++)
                stt->wg_kv[j / hd] += s->k[t * kd + j] * dk[t * kd + j] +
                                      s->v[t * kd + j] * dv[t * kd + j];
        }
    }
    if ((st = lin_wgrad(g, MP_LIN_Q, dq, s->xn, NULL, 1, T)) != MP_OK ||
        (st = lin_wgrad(g, MP_LIN_K, dk, s->xn, NULL, 1, T)) != MP_OK ||
        (st = lin_wgrad(g, MP_LIN_V, dv, s->xn, NULL, 1, T)) != MP_OK)
        goto done;
    lin_bwd(g, MP_LIN_Q, dq, T, dxn, false);
    lin_bwd(g, MP_LIN_K, dk, T, dxn, true);
    lin_bwd(g, MP_LIN_V, dv, T, dxn, true);
    chan_sub(g, s, dh, dsum, dxn, T, stt);
    if (pre) {
        norm_bwd(c, g->n1w, s->xin, T, dxn, dn);
        for (int64_t i = 0; i < T * d; i++)
            dh[i] = dsum[i] + dn[i];
    } else {
        for (int64_t i = 0; i < T * d; i++)
            dh[i] = dsum[i] + dxn[i];
    }
done:
    free(dsum);
    free(dao);
    free(dq);
    free(dk);
    free(dv);
    free(dxn);
    free(dn);
    return st;
}

static mp_status ffn_bwd(const mp_gblock *g, const sub_acts *s, double *dh, int64_t T,
                         mp_grad_stats *stt)
{
    const mp_model_config *c = g->cfg;
    int64_t d = c->d, F = g->shape.ffn;
    bool ok = true, pre = c->norm_before, llama = c->arch == MP_ARCH_LLAMA;
    mp_status st = MP_OK;
    double *dsum = dalloc(T * d, &ok), *dact = dalloc(T * F, &ok), *db = dalloc(T * F, &ok);
    double *dxn = dalloc(T * d, &ok), *dn = dalloc(T * d, &ok);
    if (!ok) {
        st = mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate the FFN's gradients",
                      (long long)g->index);
        goto done;
    }
    if (!pre)
        norm_bwd(c, g->n2w, s->sum, T, dh, dsum);
    else
        memcpy(dsum, dh, (size_t)(T * d) * sizeof(double));
    lin_bwd(g, MP_LIN_DOWN, dsum, T, dact, false);
    st = lin_wgrad(g, MP_LIN_DOWN, dsum, s->act, g->ffn_mask, 1, T);
    if (st != MP_OK)
        goto done;
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < F; j++) {
            int64_t i = t * F + j;
            if (stt)
                stt->gm_ffn[j] += s->act[i] * dact[i];
            dact[i] *= g->ffn_mask[j];
            /* dact becomes ∂L/∂(gate pre-activation), db ∂L/∂(up) */
            if (llama) {
                double a = s->a[i], sg = sigm(a), silu = a * sg;
                db[i] = dact[i] * silu;
                dact[i] = dact[i] * s->b2[i] * (sg + a * sg * (1.0 - sg));
                if (stt)
                    stt->wg_in[j] += a * dact[i] + s->b2[i] * db[i];
            } else {
                dact[i] = s->a[i] > 0.0 ? dact[i] : 0.0;
                if (stt)
                    stt->wg_in[j] += s->a[i] * dact[i];
            }
        }
    if (llama && ((st = lin_wgrad(g, MP_LIN_GATE, dact, s->xn, NULL, 1, T)) != MP_OK ||
                  (st = lin_wgrad(g, MP_LIN_UP, db, s->xn, NULL, 1, T)) != MP_OK))
        goto done;
    if (!llama && (st = lin_wgrad(g, MP_LIN_UP, dact, s->xn, NULL, 1, T)) != MP_OK)
        goto done;
    if (llama) {
        lin_bwd(g, MP_LIN_GATE, dact, T, dxn, false);
        lin_bwd(g, MP_LIN_UP, db, T, dxn, true);
    } else {
        lin_bwd(g, MP_LIN_UP, dact, T, dxn, false);
    }
    chan_sub(g, s, dh, dsum, dxn, T, stt);
    if (pre) {
        norm_bwd(c, g->n2w, s->xin, T, dxn, dn);
        for (int64_t i = 0; i < T * d; i++)
            dh[i] = dsum[i] + dn[i];
    } else {
        for (int64_t i = 0; i < T * d; i++)
            dh[i] = dsum[i] + dxn[i];
    }
done:
    free(dsum);
    free(dact);
    free(db);
    free(dxn);
    free(dn);
    return st;
}

mp_status mp_gblock_backward(const mp_gblock *g, const double *x, double *dh, int64_t T,
                             mp_grad_stats *stt)
{
    mp_status st = MP_OK;
    int64_t d = g->cfg->d;
    bool attn = g->shape.n_heads > 0, ffn = g->shape.ffn > 0;
    sub_acts A = {0}, Fa = {0};
    double *h = mp_malloc((size_t)(T * d) * sizeof *h);
    if (!h)
        return mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate hidden states",
                        (long long)g->index);
    memcpy(h, x, (size_t)(T * d) * sizeof *h);
    /* Recompute the block from its input, keeping each sub-block's activations. */
    if (attn)
        st = attn_fwd(g, h, T, &A);
    if (st == MP_OK && ffn)
        st = ffn_fwd(g, h, T, &Fa);
    if (st == MP_OK && ffn)
        st = ffn_bwd(g, &Fa, dh, T, stt);
    sub_free(&Fa);
    if (st == MP_OK && attn)
        st = attn_bwd(g, &A, dh, T, stt);
    sub_free(&A);
    free(h);
    return st;
}

/* ---- embeddings and head ---- */

mp_status mp_ghead_embed(const mp_ghead *g, const uint32_t *tokens, int64_t T, double *h)
{
    const mp_model_config *c = g->cfg;
    int64_t wd = c->word_embed_proj_dim, d = c->d;
    if (c->arch == MP_ARCH_OPT && T > c->max_pos)
        return mp_error(MP_ERR_RANGE, "sequence length %lld exceeds max_position_embeddings %lld",
                        (long long)T, (long long)c->max_pos);
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] >= (uint64_t)c->vocab)
            return mp_error(MP_ERR_RANGE, "token id %u at position %lld is >= vocab_size %lld",
                            tokens[t], (long long)t, (long long)c->vocab);
    if (g->project_in) {
        double *e = mp_malloc((size_t)(T * wd) * sizeof *e);
        if (!e)
            return mp_error(MP_ERR_NOMEM, "cannot allocate embeddings for %lld tokens",
                            (long long)T);
        for (int64_t t = 0; t < T; t++)
            memcpy(e + t * wd, g->embed + (int64_t)tokens[t] * wd, (size_t)wd * sizeof(double));
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)d, (int)wd, 1.0, e,
                    (int)wd, g->project_in, (int)wd, 0.0, h, (int)d);
        free(e);
    } else {
        for (int64_t t = 0; t < T; t++)
            memcpy(h + t * d, g->embed + (int64_t)tokens[t] * d, (size_t)d * sizeof(double));
    }
    for (int64_t t = 0; g->pos && t < T; t++)
        for (int64_t i = 0; i < d; i++)
            h[t * d + i] += g->pos[(t + 2) * d + i];
    return MP_OK;
}

#define GRAD_CHUNK 64

mp_status mp_ghead_loss(const mp_ghead *g, const double *h, const uint32_t *tokens, int64_t T,
                        double *loss, double *dh)
{
    return mp_ghead_loss_chan(g, h, tokens, T, loss, dh, NULL);
}

mp_status mp_ghead_loss_chan(const mp_ghead *g, const double *h, const uint32_t *tokens,
                             int64_t T, double *loss, double *dh, double *chan)
{
    const mp_model_config *c = g->cfg;
    int64_t d = c->d, wd = c->word_embed_proj_dim, V = c->vocab;
    mp_status st = MP_OK;
    bool ok = true;
    double *xn = dalloc(T * d, &ok), *x = g->project_out ? dalloc(T * wd, &ok) : NULL;
    double *dx = dh ? dalloc(T * wd, &ok) : NULL, *dxn = dh && g->project_out ? dalloc(T * d, &ok)
                                                                             : NULL;
    double *lg = dalloc(GRAD_CHUNK * V, &ok);
    if (!ok || !fits_int(V) || !fits_int(wd)) {
        st = ok ? mp_error(MP_ERR_RANGE, "vocabulary %lld exceeds BLAS int", (long long)V)
                : mp_error(MP_ERR_NOMEM, "cannot allocate the float64 head for %lld tokens",
                           (long long)T);
        goto done;
    }
    if (g->norm_w)
        norm_fwd(c, g->norm_w, g->norm_b, h, T, xn);
    else
        memcpy(xn, h, (size_t)(T * d) * sizeof(double));
    if (g->project_out)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)wd, (int)d, 1.0, xn,
                    (int)d, g->project_out, (int)d, 0.0, x, (int)wd);
    else
        x = xn;
    double sum = 0.0, inv = T > 1 ? 1.0 / (double)(T - 1) : 0.0;
    if (dx)
        memset(dx, 0, (size_t)(T * wd) * sizeof(double));
    for (int64_t t0 = 0; t0 < T - 1; t0 += GRAD_CHUNK) {
        int64_t nr = T - 1 - t0 < GRAD_CHUNK ? T - 1 - t0 : GRAD_CHUNK;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)V, (int)wd, 1.0,
                    x + t0 * wd, (int)wd, g->lm_head, (int)wd, 0.0, lg, (int)V);
        for (int64_t r = 0; r < nr; r++) {
            double *l = lg + r * V;
            uint32_t y = tokens[t0 + r + 1];
            if (y >= (uint64_t)V) {
                st = mp_error(MP_ERR_RANGE, "token id %u is >= vocab_size %lld", y, (long long)V);
                goto done;
            }
            double mx = l[0], se = 0.0;
            for (int64_t j = 1; j < V; j++)
                mx = l[j] > mx ? l[j] : mx;
            for (int64_t j = 0; j < V; j++)
                se += exp(l[j] - mx);
            sum += mx + log(se) - l[y];
            for (int64_t j = 0; dx && j < V; j++)
                l[j] = exp(l[j] - mx) / se * inv;
            if (dx)
                l[y] -= inv;
        }
        if (dx)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)wd, (int)V, 1.0,
                        lg, (int)V, g->lm_head, (int)wd, 0.0, dx + t0 * wd, (int)wd);
    }
    *loss = sum * inv;
    if (!isfinite(*loss)) {
        st = mp_error(MP_ERR_NUMERIC, "non-finite loss in the float64 forward");
        goto done;
    }
    /* The lm_head columns read xn (and the norm's weight and bias write it): Σ_t xn·dx each. */
    if (dh && chan && !g->project_out)
        chan_add(chan, xn, dx, T, d, g->norm_w ? 2.0 : 1.0);
    if (dh) {
        const double *dnorm = dx;
        if (g->project_out) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d, (int)wd, 1.0,
                        dx, (int)wd, g->project_out, (int)d, 0.0, dxn, (int)d);
            dnorm = dxn;
        }
        if (g->norm_w)
            norm_bwd(c, g->norm_w, h, T, dnorm, dh);
        else
            memcpy(dh, dnorm, (size_t)(T * d) * sizeof(double));
    }
done:
    if (x != xn)
        free(x);
    free(xn);
    free(dx);
    free(dxn);
    free(lg);
    return st;
}
