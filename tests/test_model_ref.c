/* test_model_ref: whole small models (random weights, seeded) through the library's forward
 * (mp_embed_forward, mp_block_load + mp_block_forward per block, mp_head_logits / mp_head_nll)
 * against a float64 reference forward written here from the Hugging Face semantics
 * (LlamaForCausalLM, OPTForCausalLM), independent of the library code.
 *
 * Weights live in an in-memory name -> float64 map served through mp_weight_source. Every value
 * is a float32 number stored in double, so the library and the reference see the same weights
 * and the comparison measures arithmetic only.
 *
 * Tolerances (float32 forward vs float64 reference):
 *   logits: max|logit - ref| / max|ref logit| <= 1e-4 (two blocks of float32 products of
 *           length <= 80 plus softmax and norms: errors of order 1e-6 are expected);
 *   NLL:    |nll - ref| / |ref| <= 1e-5 per sequence;
 *   hook inputs: max|x - ref| / max|ref| <= 1e-4 per input group.
 * Every check is written `!(err <= tol)` so that NaN fails. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#include "mp_model.h"
#include "mp_plan.h"
#include "mp_status.h"

#define TOL_LOGITS 1e-4
#define TOL_NLL 1e-5
#define TOL_HOOK 1e-4

static void fail_st(const char *what, mp_status st)
{
    if (st != MP_OK) fail_msg("%s: %s: %s", what, mp_status_str(st), mp_error_message());
}

/* ---------- the in-memory weight store ---------- */
typedef struct {
    char name[128];
    int ndim;
    int64_t shape[2];
    int64_t n;
    double *v;
    int loads;
} wentry;

typedef struct {
    wentry *e;
    int n, cap;
} wstore;

static wentry *ws_find(const wstore *ws, const char *name)
{
    for (int i = 0; i < ws->n; i++)
        if (strcmp(ws->e[i].name, name) == 0) return &ws->e[i];
    return NULL;
}

/* Adds a tensor of uniform values in [lo, hi), each rounded to float32. */
static void ws_add(wstore *ws, prng *r, const char *name, int ndim, int64_t s0, int64_t s1,
                   double lo, double hi)
{
    assert_null(ws_find(ws, name));
    if (ws->n == ws->cap) {
        ws->cap = ws->cap ? 2 * ws->cap : 64;
        ws->e = realloc(ws->e, (size_t)ws->cap * sizeof *ws->e);
        assert_non_null(ws->e);
    }
    wentry *e = &ws->e[ws->n++];
    memset(e, 0, sizeof *e);
    assert_true(strlen(name) < sizeof e->name);
    strcpy(e->name, name);
    e->ndim = ndim;
    e->shape[0] = s0;
    e->shape[1] = ndim == 2 ? s1 : 1;
    e->n = s0 * e->shape[1];
    e->v = dalloc(e->n);
    for (int64_t i = 0; i < e->n; i++) e->v[i] = (double)(float)prng_uniform(r, lo, hi);
}

static void ws_free(wstore *ws)
{
    for (int i = 0; i < ws->n; i++) free(ws->e[i].v);
    free(ws->e);
    memset(ws, 0, sizeof *ws);
}

static mp_status ws_load(void *ctx, const char *name, int ndim, const int64_t *shape, float *out)
{
    wstore *ws = ctx;
    wentry *e = ws_find(ws, name);
    if (!e) return mp_error(MP_ERR_NOT_FOUND, "memory: tensor %s not found", name);
    bool ok = ndim == e->ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] == e->shape[i];
    if (!ok) {
        return mp_error(MP_ERR_FORMAT,
                        "memory: tensor %s has shape [%lld, %lld] (ndim %d), asked ndim %d "
                        "[%lld, %lld]",
                        name, (long long)e->shape[0], (long long)e->shape[1], e->ndim, ndim,
                        (long long)(ndim > 0 ? shape[0] : -1),
                        (long long)(ndim > 1 ? shape[1] : -1));
    }
    for (int64_t i = 0; i < e->n; i++) {
        if (!isfinite(e->v[i]))
            return mp_error(MP_ERR_NUMERIC, "memory: tensor %s: non-finite value", name);
        out[i] = (float)e->v[i];
    }
    e->loads++;
    return MP_OK;
}

static bool ws_has(void *ctx, const char *name)
{
    return ws_find(ctx, name) != NULL;
}

static const double *ws_get(const wstore *ws, const char *name)
{
    wentry *e = ws_find(ws, name);
    if (!e) fail_msg("reference: tensor %s missing from the store", name);
    return e->v;
}

static const double *ws_getf(const wstore *ws, const char *fmt, ...) MP_PRINTF(2, 3);
static const double *ws_getf(const wstore *ws, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return ws_get(ws, name);
}

/* ---------- model configs and random models ---------- */
static mp_model_config llama_cfg(void)
{
    mp_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = MP_ARCH_LLAMA;
    strcpy(c.model_type, "llama");
    c.vocab = 97;
    c.d = 48;
    c.n_layers = 2;
    c.n_heads = 6;
    c.n_kv_heads = 2;
    c.head_dim = 8;
    c.ffn = 80;
    c.max_pos = 256;
    c.norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.tie_embeddings = false;
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    c.norm_before = true;
    c.final_norm = true;
    c.word_embed_proj_dim = c.d;
    return c;
}

static mp_model_config opt_cfg(void)
{
    mp_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = MP_ARCH_OPT;
    strcpy(c.model_type, "opt");
    c.vocab = 101;
    c.d = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    c.head_dim = 8;
    c.ffn = 64;
    c.max_pos = 64;
    c.norm_eps = 1e-5;
    c.rope_theta = 0.0;
    c.tie_embeddings = true;
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    c.norm_before = true;
    c.final_norm = true;
    c.word_embed_proj_dim = c.d;
    return c;
}

/* Block l's widths, read from the config's fields (not through the library's accessor). */
static mp_block_shape ref_shape(const mp_model_config *c, int64_t l)
{
    if (c->per_layer) return c->layer[l];
    mp_block_shape s = {c->n_heads, c->n_kv_heads, c->ffn};
    return s;
}

static void add_linear(wstore *ws, prng *r, const char *prefix, int64_t out, int64_t in, bool bias)
{
    char name[160];
    double a = 1.0 / sqrt((double)in);
    snprintf(name, sizeof name, "%s.weight", prefix);
    ws_add(ws, r, name, 2, out, in, -a * 1.5, a * 1.5);
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        ws_add(ws, r, name, 1, out, 0, -0.2, 0.2);
    }
}

static void build_llama(wstore *ws, const mp_model_config *c, uint64_t seed)
{
    prng r = {seed};
    int64_t d = c->d;
    char p[160];
    ws_add(ws, &r, "model.embed_tokens.weight", 2, c->vocab, d, -1.0, 1.0);
    for (int64_t l = 0; l < c->n_layers; l++) {
        mp_block_shape bs = ref_shape(c, l);
        int64_t qd = bs.n_heads * c->head_dim, kd = bs.n_kv_heads * c->head_dim;
        if (bs.n_heads > 0) {
            snprintf(p, sizeof p, "model.layers.%lld.input_layernorm.weight", (long long)l);
            ws_add(ws, &r, p, 1, d, 0, 0.7, 1.3);
            const char *qkv[3] = {"q", "k", "v"};
            for (int i = 0; i < 3; i++) {
                snprintf(p, sizeof p, "model.layers.%lld.self_attn.%s_proj", (long long)l,
                         qkv[i]);
                add_linear(ws, &r, p, i == 0 ? qd : kd, d, c->qkv_bias);
            }
            snprintf(p, sizeof p, "model.layers.%lld.self_attn.o_proj", (long long)l);
            add_linear(ws, &r, p, d, qd, c->o_bias);
        }
        if (bs.ffn > 0) {
            snprintf(p, sizeof p, "model.layers.%lld.post_attention_layernorm.weight",
                     (long long)l);
            ws_add(ws, &r, p, 1, d, 0, 0.7, 1.3);
            snprintf(p, sizeof p, "model.layers.%lld.mlp.gate_proj", (long long)l);
            add_linear(ws, &r, p, bs.ffn, d, c->mlp_bias);
            snprintf(p, sizeof p, "model.layers.%lld.mlp.up_proj", (long long)l);
            add_linear(ws, &r, p, bs.ffn, d, c->mlp_bias);
            snprintf(p, sizeof p, "model.layers.%lld.mlp.down_proj", (long long)l);
            add_linear(ws, &r, p, d, bs.ffn, c->mlp_bias);
        }
    }
    ws_add(ws, &r, "model.norm.weight", 1, d, 0, 0.7, 1.3);
    if (!c->tie_embeddings) {
        double a = 3.0 / sqrt((double)d);
        ws_add(ws, &r, "lm_head.weight", 2, c->vocab, d, -a, a);
    }
}

static void build_opt(wstore *ws, const mp_model_config *c, uint64_t seed)
{
    prng r = {seed};
    int64_t d = c->d, wd = c->word_embed_proj_dim;
    char p[160];
    ws_add(ws, &r, "model.decoder.embed_tokens.weight", 2, c->vocab, wd, -1.0, 1.0);
    ws_add(ws, &r, "model.decoder.embed_positions.weight", 2, c->max_pos + 2, d, -0.5, 0.5);
    if (wd != d) {
        add_linear(ws, &r, "model.decoder.project_in", d, wd, false);
        add_linear(ws, &r, "model.decoder.project_out", wd, d, false);
    }
    for (int64_t l = 0; l < c->n_layers; l++) {
        mp_block_shape bs = ref_shape(c, l);
        int64_t qd = bs.n_heads * c->head_dim;
        if (bs.n_heads > 0) {
            const char *attn[4] = {"q", "k", "v", "out"};
            for (int i = 0; i < 4; i++) {
                snprintf(p, sizeof p, "model.decoder.layers.%lld.self_attn.%s_proj",
                         (long long)l, attn[i]);
                add_linear(ws, &r, p, i < 3 ? qd : d, i < 3 ? d : qd,
                           i < 3 ? c->qkv_bias : c->o_bias);
            }
            snprintf(p, sizeof p, "model.decoder.layers.%lld.self_attn_layer_norm.weight",
                     (long long)l);
            ws_add(ws, &r, p, 1, d, 0, 0.7, 1.3);
            snprintf(p, sizeof p, "model.decoder.layers.%lld.self_attn_layer_norm.bias",
                     (long long)l);
            ws_add(ws, &r, p, 1, d, 0, -0.2, 0.2);
        }
        if (bs.ffn > 0) {
            snprintf(p, sizeof p, "model.decoder.layers.%lld.fc1", (long long)l);
            add_linear(ws, &r, p, bs.ffn, d, c->mlp_bias);
            snprintf(p, sizeof p, "model.decoder.layers.%lld.fc2", (long long)l);
            add_linear(ws, &r, p, d, bs.ffn, c->mlp_bias);
            snprintf(p, sizeof p, "model.decoder.layers.%lld.final_layer_norm.weight",
                     (long long)l);
            ws_add(ws, &r, p, 1, d, 0, 0.7, 1.3);
            snprintf(p, sizeof p, "model.decoder.layers.%lld.final_layer_norm.bias",
                     (long long)l);
            ws_add(ws, &r, p, 1, d, 0, -0.2, 0.2);
        }
    }
    if (c->final_norm) {
        ws_add(ws, &r, "model.decoder.final_layer_norm.weight", 1, d, 0, 0.7, 1.3);
        ws_add(ws, &r, "model.decoder.final_layer_norm.bias", 1, d, 0, -0.2, 0.2);
    }
    if (!c->tie_embeddings) {
        double a = 3.0 / sqrt((double)wd);
        ws_add(ws, &r, "lm_head.weight", 2, c->vocab, wd, -a, a);
    }
}

/* ---------- float64 reference forward (Hugging Face semantics) ---------- */

/* y[T, out] = x[T, in] Wᵀ (+ b). */
static void rlin(const double *x, int64_t T, int64_t in, int64_t out, const double *w,
                 const double *b, double *y)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) acc += x[t * in + i] * w[o * in + i];
            y[t * out + o] = acc;
        }
}

static void rrms(const double *x, int64_t T, int64_t d, const double *w, double eps, double *y)
{
    for (int64_t t = 0; t < T; t++) {
        double ss = 0.0;
        for (int64_t j = 0; j < d; j++) ss += x[t * d + j] * x[t * d + j];
        double inv = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t j = 0; j < d; j++) y[t * d + j] = w[j] * (x[t * d + j] * inv);
    }
}

static void rln(const double *x, int64_t T, int64_t d, const double *w, const double *b, double eps,
                double *y)
{
    for (int64_t t = 0; t < T; t++) {
        double m = 0.0, v = 0.0;
        for (int64_t j = 0; j < d; j++) m += x[t * d + j];
        m /= (double)d;
        for (int64_t j = 0; j < d; j++) v += (x[t * d + j] - m) * (x[t * d + j] - m);
        v /= (double)d;
        double inv = 1.0 / sqrt(v + eps);
        for (int64_t j = 0; j < d; j++) y[t * d + j] = (x[t * d + j] - m) * inv * w[j] + b[j];
    }
}

/* HF rotate_half: per head, pairs (i, i + hd/2), angle t * theta^(-2i/hd). */
static void rrope(double *x, int64_t T, int64_t nh, int64_t hd, double theta)
{
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            double *xh = x + (t * nh + h) * hd;
            for (int64_t i = 0; i < half; i++) {
                double a = (double)t * pow(theta, -2.0 * (double)i / (double)hd);
                double c = cos(a), s = sin(a), x0 = xh[i], x1 = xh[i + half];
                xh[i] = x0 * c - x1 * s;
                xh[i + half] = x1 * c + x0 * s;
            }
        }
}

static void rattn(const double *q, const double *k, const double *v, int64_t T, int64_t nh,
                  int64_t nkv, int64_t hd, double scale, double *out)
{
    double *p = dalloc(T);
    for (int64_t h = 0; h < nh; h++) {
        int64_t kh = h / (nh / nkv);
        for (int64_t t = 0; t < T; t++) {
            double mx = -INFINITY, z = 0.0;
            for (int64_t j = 0; j <= t; j++) {
                double s = 0.0;
                for (int64_t e = 0; e < hd; e++)
                    s += q[(t * nh + h) * hd + e] * k[(j * nkv + kh) * hd + e];
                p[j] = s * scale;
                if (p[j] > mx) mx = p[j];
            }
            for (int64_t j = 0; j <= t; j++) {
                p[j] = exp(p[j] - mx);
                z += p[j];
            }
            for (int64_t e = 0; e < hd; e++) {
                double acc = 0.0;
                for (int64_t j = 0; j <= t; j++) acc += p[j] * v[(j * nkv + kh) * hd + e];
                out[(t * nh + h) * hd + e] = acc / z;
            }
        }
    }
    free(p);
}

/* Captured inputs of the input groups: cap[layer * MP_IN_COUNT + g] is [n_seq * T, dim]. */
static void capture(double **cap, const mp_model_config *c, int64_t l, mp_in_group g, int64_t s,
                    int64_t T, int64_t dim, const double *x)
{
    if (!cap) return;
    memcpy(cap[l * MP_IN_COUNT + g] + s * T * dim, x, (size_t)(T * dim) * sizeof *x);
    (void)c;
}

/* Width of input group g in block l; 0 when its sub-block is absent. */
static int64_t ref_group_dim(const mp_model_config *c, int64_t l, mp_in_group g)
{
    mp_block_shape bs = ref_shape(c, l);
    switch (g) {
    case MP_IN_ATTN:
        return bs.n_heads > 0 ? c->d : 0;
    case MP_IN_O:
        return bs.n_heads * c->head_dim;
    case MP_IN_MLP:
        return bs.ffn > 0 ? c->d : 0;
    default:
        return bs.ffn;
    }
}

/* logits[n_seq, T, vocab] and nll[n_seq] of the model in ws; cap (optional) receives the input
 * of every input group of every layer. */
static void ref_forward(const mp_model_config *c, const wstore *ws, const uint32_t *tok,
                        int64_t n_seq, int64_t T, double *logits, double *nll, double **cap)
{
    bool opt = c->arch == MP_ARCH_OPT;
    int64_t d = c->d, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim, F = c->ffn;
    int64_t V = c->vocab, qd = nh * hd, kd = nkv * hd, wd = opt ? c->word_embed_proj_dim : d;
    double *x = dalloc(T * d), *hn = dalloc(T * d), *q = dalloc(T * qd), *k = dalloc(T * kd);
    double *v = dalloc(T * kd), *att = dalloc(T * qd), *o = dalloc(T * d), *g = dalloc(T * F);
    double *u = dalloc(T * F), *e = dalloc(T * wd);
    const char *lp = opt ? "model.decoder.layers" : "model.layers";
    for (int64_t s = 0; s < n_seq; s++) {
        const uint32_t *ts = tok + s * T;
        if (!opt) {
            const double *E = ws_get(ws, "model.embed_tokens.weight");
            for (int64_t t = 0; t < T; t++)
                memcpy(x + t * d, E + (int64_t)ts[t] * d, (size_t)d * sizeof *x);
        } else {
            const double *E = ws_get(ws, "model.decoder.embed_tokens.weight");
            const double *P = ws_get(ws, "model.decoder.embed_positions.weight");
            for (int64_t t = 0; t < T; t++)
                memcpy(e + t * wd, E + (int64_t)ts[t] * wd, (size_t)wd * sizeof *e);
            if (wd != d)
                rlin(e, T, wd, d, ws_get(ws, "model.decoder.project_in.weight"), NULL, x);
            else
                memcpy(x, e, (size_t)(T * d) * sizeof *x);
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < d; j++) x[t * d + j] += P[(t + 2) * d + j];
        }
        for (int64_t l = 0; l < c->n_layers; l++) {
            long long L = (long long)l;
            mp_block_shape bs = ref_shape(c, l);
            nh = bs.n_heads, nkv = bs.n_kv_heads, F = bs.ffn, qd = nh * hd, kd = nkv * hd;
            bool has_attn = nh > 0, has_mlp = F > 0;
            if (!opt) {
                if (has_attn) {
                rrms(x, T, d, ws_getf(ws, "%s.%lld.input_layernorm.weight", lp, L), c->norm_eps,
                     hn);
                capture(cap, c, l, MP_IN_ATTN, s, T, d, hn);
                const char *nm[3] = {"q", "k", "v"};
                double *dst[3] = {q, k, v};
                for (int i = 0; i < 3; i++) {
                    const double *b =
                        c->qkv_bias ? ws_getf(ws, "%s.%lld.self_attn.%s_proj.bias", lp, L, nm[i])
                                    : NULL;
                    rlin(hn, T, d, i == 0 ? qd : kd,
                         ws_getf(ws, "%s.%lld.self_attn.%s_proj.weight", lp, L, nm[i]), b, dst[i]);
                }
                rrope(q, T, nh, hd, c->rope_theta);
                rrope(k, T, nkv, hd, c->rope_theta);
                rattn(q, k, v, T, nh, nkv, hd, 1.0 / sqrt((double)hd), att);
                capture(cap, c, l, MP_IN_O, s, T, qd, att);
                rlin(att, T, qd, d, ws_getf(ws, "%s.%lld.self_attn.o_proj.weight", lp, L),
                     c->o_bias ? ws_getf(ws, "%s.%lld.self_attn.o_proj.bias", lp, L) : NULL, o);
                for (int64_t i = 0; i < T * d; i++) x[i] += o[i];
                }
                if (!has_mlp) continue;
                rrms(x, T, d, ws_getf(ws, "%s.%lld.post_attention_layernorm.weight", lp, L),
                     c->norm_eps, hn);
                capture(cap, c, l, MP_IN_MLP, s, T, d, hn);
                rlin(hn, T, d, F, ws_getf(ws, "%s.%lld.mlp.gate_proj.weight", lp, L),
                     c->mlp_bias ? ws_getf(ws, "%s.%lld.mlp.gate_proj.bias", lp, L) : NULL, g);
                rlin(hn, T, d, F, ws_getf(ws, "%s.%lld.mlp.up_proj.weight", lp, L),
                     c->mlp_bias ? ws_getf(ws, "%s.%lld.mlp.up_proj.bias", lp, L) : NULL, u);
                for (int64_t i = 0; i < T * F; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
                capture(cap, c, l, MP_IN_DOWN, s, T, F, g);
                rlin(g, T, F, d, ws_getf(ws, "%s.%lld.mlp.down_proj.weight", lp, L),
                     c->mlp_bias ? ws_getf(ws, "%s.%lld.mlp.down_proj.bias", lp, L) : NULL, o);
                for (int64_t i = 0; i < T * d; i++) x[i] += o[i];
            } else {
                if (has_attn) {
                const double *ln1w = ws_getf(ws, "%s.%lld.self_attn_layer_norm.weight", lp, L);
                const double *ln1b = ws_getf(ws, "%s.%lld.self_attn_layer_norm.bias", lp, L);
                if (c->norm_before)
                    rln(x, T, d, ln1w, ln1b, c->norm_eps, hn);
                else
                    memcpy(hn, x, (size_t)(T * d) * sizeof *hn);
                capture(cap, c, l, MP_IN_ATTN, s, T, d, hn);
                const char *nm[3] = {"q", "k", "v"};
                double *dst[3] = {q, k, v};
                for (int i = 0; i < 3; i++) {
                    const double *b =
                        c->qkv_bias ? ws_getf(ws, "%s.%lld.self_attn.%s_proj.bias", lp, L, nm[i])
                                    : NULL;
                    rlin(hn, T, d, qd,
                         ws_getf(ws, "%s.%lld.self_attn.%s_proj.weight", lp, L, nm[i]), b,
                         dst[i]);
                }
                /* OPTAttention: q_proj(h) * scaling, scaling = head_dim^-0.5, after the bias. */
                for (int64_t i = 0; i < T * qd; i++) q[i] *= 1.0 / sqrt((double)hd);
                rattn(q, k, v, T, nh, nkv, hd, 1.0, att);
                capture(cap, c, l, MP_IN_O, s, T, qd, att);
                rlin(att, T, qd, d, ws_getf(ws, "%s.%lld.self_attn.out_proj.weight", lp, L),
                     c->o_bias ? ws_getf(ws, "%s.%lld.self_attn.out_proj.bias", lp, L) : NULL, o);
                for (int64_t i = 0; i < T * d; i++) x[i] += o[i];
                if (!c->norm_before) rln(x, T, d, ln1w, ln1b, c->norm_eps, x);
                }
                if (!has_mlp) continue;
                const double *ln2w = ws_getf(ws, "%s.%lld.final_layer_norm.weight", lp, L);
                const double *ln2b = ws_getf(ws, "%s.%lld.final_layer_norm.bias", lp, L);
                if (c->norm_before)
                    rln(x, T, d, ln2w, ln2b, c->norm_eps, hn);
                else
                    memcpy(hn, x, (size_t)(T * d) * sizeof *hn);
                capture(cap, c, l, MP_IN_MLP, s, T, d, hn);
                rlin(hn, T, d, F, ws_getf(ws, "%s.%lld.fc1.weight", lp, L),
                     c->mlp_bias ? ws_getf(ws, "%s.%lld.fc1.bias", lp, L) : NULL, g);
                for (int64_t i = 0; i < T * F; i++) g[i] = g[i] > 0.0 ? g[i] : 0.0;
                capture(cap, c, l, MP_IN_DOWN, s, T, F, g);
                rlin(g, T, F, d, ws_getf(ws, "%s.%lld.fc2.weight", lp, L),
                     c->mlp_bias ? ws_getf(ws, "%s.%lld.fc2.bias", lp, L) : NULL, o);
                for (int64_t i = 0; i < T * d; i++) x[i] += o[i];
                if (!c->norm_before) rln(x, T, d, ln2w, ln2b, c->norm_eps, x);
            }
        }
        /* Final norm, projection, head. */
        const double *head;
        if (!opt) {
            rrms(x, T, d, ws_get(ws, "model.norm.weight"), c->norm_eps, hn);
            memcpy(e, hn, (size_t)(T * d) * sizeof *e);
            head = c->tie_embeddings ? ws_get(ws, "model.embed_tokens.weight")
                                     : ws_get(ws, "lm_head.weight");
        } else {
            if (c->final_norm)
                rln(x, T, d, ws_get(ws, "model.decoder.final_layer_norm.weight"),
                    ws_get(ws, "model.decoder.final_layer_norm.bias"), c->norm_eps, hn);
            else
                memcpy(hn, x, (size_t)(T * d) * sizeof *hn);
            if (wd != d)
                rlin(hn, T, d, wd, ws_get(ws, "model.decoder.project_out.weight"), NULL, e);
            else
                memcpy(e, hn, (size_t)(T * d) * sizeof *e);
            head = c->tie_embeddings ? ws_get(ws, "model.decoder.embed_tokens.weight")
                                     : ws_get(ws, "lm_head.weight");
        }
        double *lg = logits + s * T * V;
        rlin(e, T, wd, V, head, NULL, lg);
        double sum = 0.0;
        for (int64_t t = 0; t + 1 < T; t++) {
            double mx = -INFINITY, z = 0.0;
            for (int64_t i = 0; i < V; i++)
                if (lg[t * V + i] > mx) mx = lg[t * V + i];
            for (int64_t i = 0; i < V; i++) z += exp(lg[t * V + i] - mx);
            sum += mx + log(z) - lg[t * V + ts[t + 1]];
        }
        nll[s] = sum / (double)(T - 1);
    }
    free(x), free(hn), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(e);
}

/* ---------- the hook: collects each input group's rows in call order ---------- */
typedef struct {
    const mp_model_config *cfg;
    int64_t layer;             /* the block being run */
    double *buf[MP_IN_COUNT];  /* [n_seq * T, dim] */
    int64_t rows[MP_IN_COUNT]; /* rows received so far */
    int64_t cap_rows;
    int calls[MP_IN_COUNT];
    bool bad_dim;
    const mp_block *blk;           /* for the output hook: the biases */
    double ysq[MP_LIN_COUNT];      /* Σ (y − b)² of each linear layer's outputs */
    int64_t yrows[MP_LIN_COUNT];
} hook_rec;

static mp_status hook_fn(void *ud, mp_in_group g, const float *x, int64_t rows, int64_t dim)
{
    hook_rec *h = ud;
    if ((int)g < 0 || (int)g >= MP_IN_COUNT || dim != ref_group_dim(h->cfg, h->layer, g) ||
        h->rows[g] + rows > h->cap_rows) {
        h->bad_dim = true;
        return MP_OK;
    }
    for (int64_t i = 0; i < rows * dim; i++) h->buf[g][h->rows[g] * dim + i] = x[i];
    h->rows[g] += rows;
    h->calls[g]++;
    return MP_OK;
}

static mp_status out_fn(void *ud, mp_lin_id id, const float *y, int64_t rows, int64_t dim)
{
    hook_rec *h = ud;
    const mp_linear *l = &h->blk->lin[id];
    if (!l->present || dim != l->out) {
        h->bad_dim = true;
        return MP_OK;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < dim; j++) {
            double v = (double)y[r * dim + j] - (l->b ? (double)l->b[j] : 0.0);
            h->ysq[id] += v * v;
        }
    h->yrows[id] += rows;
    return MP_OK;
}

/* max|a - b| / (max|b| + tiny); NaN -> NaN. */
static double rel_err_dd(const double *a, const double *b, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (isnan(e)) return NAN;
        if (e > num) num = e;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / (den + 1e-300);
}

static double rel_err_fd(const float *a, const double *b, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (isnan(e)) return NAN;
        if (e > num) num = e;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / (den + 1e-300);
}

static void random_tokens(prng *r, uint32_t *tok, int64_t n, int64_t vocab)
{
    for (int64_t i = 0; i < n; i++) tok[i] = (uint32_t)(prng_next(r) % (uint64_t)vocab);
    tok[n / 2] = (uint32_t)(vocab - 1);
    tok[n - 1] = 0;
}

/* Runs the library forward and the reference on a model; checks logits, NLL, hook inputs and
 * that every tensor in the store was loaded. */
static void run_case(const char *name, const mp_model_config *c, wstore *ws, int64_t n_seq,
                     int64_t T, uint64_t seed)
{
    fail_st("mp_model_config_check", mp_model_config_check(c, name));
    mp_weight_source src = {.ctx = ws, .load = ws_load, .has = ws_has};
    prng r = {seed};
    int64_t d = c->d, V = c->vocab, N = n_seq * T;
    uint32_t *tok = calloc((size_t)N, sizeof *tok);
    assert_non_null(tok);
    random_tokens(&r, tok, N, V);

    /* Reference, with the inputs of every input group captured. */
    double *ref_logits = dalloc(N * V), ref_nll[8];
    assert_true(n_seq <= 8);
    int64_t ncap = c->n_layers * MP_IN_COUNT;
    double **cap = calloc((size_t)ncap, sizeof *cap);
    assert_non_null(cap);
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int g = 0; g < MP_IN_COUNT; g++)
            cap[l * MP_IN_COUNT + g] = dalloc(N * ref_group_dim(c, l, (mp_in_group)g) + 1);
    ref_forward(c, ws, tok, n_seq, T, ref_logits, ref_nll, cap);

    /* Library. */
    mp_head *head = NULL;
    fail_st("mp_head_load", mp_head_load(c, &src, &head));
    float *h = falloc(N * d), *h2 = falloc(N * d), *logits = falloc(N * V);
    fail_st("mp_embed_forward", mp_embed_forward(c, head, tok, n_seq, T, h));
    hook_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.cfg = c;
    rec.cap_rows = N;
    int64_t maxdim = c->d > c->ffn ? c->d : c->ffn;
    if (c->n_heads * c->head_dim > maxdim) maxdim = c->n_heads * c->head_dim;
    for (int g = 0; g < MP_IN_COUNT; g++) rec.buf[g] = dalloc(N * maxdim);
    mp_hook hook = {.fn = hook_fn, .ud = &rec, .out = out_fn};
    for (int64_t l = 0; l < c->n_layers; l++) {
        mp_block *blk = NULL;
        fail_st("mp_block_load", mp_block_load(c, &src, l, &blk));
        assert_non_null(blk);
        rec.layer = l;
        rec.blk = blk;
        for (int g = 0; g < MP_IN_COUNT; g++) rec.rows[g] = 0, rec.calls[g] = 0;
        for (int id = 0; id < MP_LIN_COUNT; id++) rec.ysq[id] = 0.0, rec.yrows[id] = 0;
        fail_st("mp_block_forward", mp_block_forward(c, blk, h, n_seq, T, &hook));
        /* The output hook: Σ ‖W x‖² of every layer against the reference's inputs. */
        for (int id = 0; id < MP_LIN_COUNT; id++) {
            const mp_linear *lin = &blk->lin[id];
            if (!lin->present) {
                if (rec.yrows[id] != 0)
                    fail_msg("%s layer %lld: output hook for absent layer %d", name,
                             (long long)l, id);
                continue;
            }
            const double *x = cap[l * MP_IN_COUNT + (int)mp_lin_group((mp_lin_id)id)];
            double ref = 0.0;
            for (int64_t t = 0; t < N; t++)
                for (int64_t o = 0; o < lin->out; o++) {
                    double y = 0.0;
                    for (int64_t j = 0; j < lin->in; j++)
                        y += (double)lin->w[o * lin->in + j] * x[t * lin->in + j];
                    ref += y * y;
                }
            double e = fabs(rec.ysq[id] - ref) / ref;
            if (rec.yrows[id] != N || !(e <= TOL_HOOK))
                fail_msg("%s layer %lld: output hook of layer %d: %lld rows (want %lld), "
                         "sum of squares %.10g against %.10g (rel %.3e > %.0e)", name,
                         (long long)l, id, (long long)rec.yrows[id], (long long)N, rec.ysq[id],
                         ref, e, TOL_HOOK);
        }
        mp_block_free(&blk);
        assert_null(blk);
        if (rec.bad_dim)
            fail_msg("%s layer %lld: hook called with a bad group or dim", name, (long long)l);
        for (int g = 0; g < MP_IN_COUNT; g++) {
            int64_t gd = ref_group_dim(c, l, (mp_in_group)g), want = gd > 0 ? N : 0;
            if (rec.rows[g] != want)
                fail_msg("%s layer %lld: hook group %d got %lld rows, want %lld", name,
                         (long long)l, g, (long long)rec.rows[g], (long long)want);
            if (gd == 0) continue;
            double err = rel_err_dd(rec.buf[g], cap[l * MP_IN_COUNT + g], N * gd);
            if (!(err <= TOL_HOOK))
                fail_msg("%s layer %lld: hook input of group %d: rel err %.3e > %.0e", name,
                         (long long)l, g, err, TOL_HOOK);
        }
    }
    memcpy(h2, h, (size_t)(N * d) * sizeof *h);
    fail_st("mp_head_logits", mp_head_logits(c, head, h, n_seq, T, logits));
    double err = rel_err_fd(logits, ref_logits, N * V);
    print_message("%s: logits rel err %.3e (tol %.0e)\n", name, err, TOL_LOGITS);
    if (!(err <= TOL_LOGITS)) fail_msg("%s: logits rel err %.3e > %.0e", name, err, TOL_LOGITS);

    double nll[8];
    fail_st("mp_head_nll", mp_head_nll(c, head, h2, tok, n_seq, T, nll));
    for (int64_t s = 0; s < n_seq; s++) {
        double e = fabs(nll[s] - ref_nll[s]) / fabs(ref_nll[s]);
        print_message("%s: seq %lld nll %.9f ref %.9f rel err %.3e (tol %.0e)\n", name,
                      (long long)s, nll[s], ref_nll[s], e, TOL_NLL);
        if (!(e <= TOL_NLL))
            fail_msg("%s seq %lld: nll %.9f vs ref %.9f (rel %.3e)", name, (long long)s, nll[s],
                     ref_nll[s], e);
    }
    /* Every tensor this config implies must have been read. */
    for (int i = 0; i < ws->n; i++)
        if (ws->e[i].loads == 0) fail_msg("%s: tensor %s never loaded", name, ws->e[i].name);

    mp_head_free(&head);
    assert_null(head);
    for (int g = 0; g < MP_IN_COUNT; g++) free(rec.buf[g]);
    for (int64_t i = 0; i < ncap; i++) free(cap[i]);
    free(cap), free(tok), free(ref_logits), free(h), free(h2), free(logits);
}

/* ---------- cases ---------- */

static void test_llama_gqa_bias_untied(void **state)
{
    (void)state;
    mp_model_config c = llama_cfg();
    wstore ws = {0};
    build_llama(&ws, &c, 1001);
    run_case("llama gqa+bias untied", &c, &ws, 2, 19, 7);
    ws_free(&ws);
}

static void test_llama_tied(void **state)
{
    (void)state;
    mp_model_config c = llama_cfg();
    c.tie_embeddings = true;
    wstore ws = {0};
    build_llama(&ws, &c, 1002);
    assert_false(ws_has(&ws, "lm_head.weight"));
    run_case("llama tied", &c, &ws, 2, 19, 8);
    ws_free(&ws);
}

static void test_llama_head_dim(void **state)
{
    (void)state;
    mp_model_config c = llama_cfg();
    c.head_dim = 12; /* != d / n_heads = 8: q_proj [72, 48], o_proj [48, 72] */
    wstore ws = {0};
    build_llama(&ws, &c, 1003);
    assert_true(ws_find(&ws, "model.layers.0.self_attn.q_proj.weight")->shape[0] == 72);
    assert_true(ws_find(&ws, "model.layers.0.self_attn.o_proj.weight")->shape[1] == 72);
    run_case("llama head_dim 12", &c, &ws, 2, 19, 9);
    ws_free(&ws);
}

/* Qwen2-like: biases on q, k, v only; tied; MHA. */
static void test_qwen2_qkv_bias(void **state)
{
    (void)state;
    mp_model_config c = llama_cfg();
    strcpy(c.model_type, "qwen2");
    c.n_kv_heads = 6;
    c.o_bias = c.mlp_bias = false;
    c.tie_embeddings = true;
    c.rope_theta = 1000000.0;
    c.norm_eps = 1e-6;
    wstore ws = {0};
    build_llama(&ws, &c, 1004);
    run_case("qwen2 qkv bias", &c, &ws, 2, 19, 10);
    ws_free(&ws);
}

static void test_opt_pre_ln(void **state)
{
    (void)state;
    mp_model_config c = opt_cfg();
    wstore ws = {0};
    build_opt(&ws, &c, 2001);
    run_case("opt pre-LN", &c, &ws, 2, 19, 11);
    ws_free(&ws);
}

static void test_opt_post_ln_proj(void **state)
{
    (void)state;
    mp_model_config c = opt_cfg();
    c.norm_before = false;
    c.final_norm = false;
    c.word_embed_proj_dim = 16;
    wstore ws = {0};
    build_opt(&ws, &c, 2002);
    assert_false(ws_has(&ws, "model.decoder.final_layer_norm.weight"));
    run_case("opt post-LN project_in/out", &c, &ws, 2, 19, 12);
    ws_free(&ws);
}

/* The header promises sequences are independent: the block output for sequence 0 must be
 * bitwise the same whether run alone or with another sequence. */
static int64_t first_seq_difference(const mp_model_config *c, wstore *ws, int64_t T, float *alone,
                                    float *batched)
{
    fail_st("mp_model_config_check", mp_model_config_check(c, "independence"));
    mp_weight_source src = {.ctx = ws, .load = ws_load, .has = ws_has};
    int64_t d = c->d;
    mp_block *blk = NULL;
    fail_st("mp_block_load", mp_block_load(c, &src, 0, &blk));
    mp_status st2 = mp_block_forward(c, blk, batched, 2, T, NULL);
    mp_status st1 = mp_block_forward(c, blk, alone, 1, T, NULL);
    mp_block_free(&blk);
    fail_st("mp_block_forward n_seq=2", st2);
    fail_st("mp_block_forward n_seq=1", st1);
    for (int64_t i = 0; i < T * d; i++)
        if (memcmp(&alone[i], &batched[i], sizeof(float)) != 0) return i;
    return -1;
}

/* Frees everything before failing, so that a failure is not also reported as a leak. */
static void check_seq_independent(const mp_model_config *c, wstore *ws, int64_t T)
{
    int64_t d = c->d;
    prng r = {4242};
    float *h2 = falloc(2 * T * d), *h1 = falloc(T * d);
    for (int64_t i = 0; i < 2 * T * d; i++) h2[i] = (float)prng_uniform(&r, -2.0, 2.0);
    memcpy(h1, h2, (size_t)(T * d) * sizeof *h1);
    int64_t first = first_seq_difference(c, ws, T, h1, h2);
    char msg[256] = "";
    if (first >= 0)
        snprintf(msg, sizeof msg,
                 "%s T=%lld: sequence 0 differs alone vs batched at t=%lld j=%lld: %.9g vs %.9g",
                 c->model_type, (long long)T, (long long)(first / d), (long long)(first % d),
                 (double)h1[first], (double)h2[first]);
    free(h1), free(h2);
    if (first >= 0) {
        ws_free(ws);
        fail_msg("%s", msg);
    }
}

static void test_seq_independent(void **state)
{
    (void)state;
    mp_model_config o = opt_cfg();
    wstore wo = {0};
    build_opt(&wo, &o, 3002);
    check_seq_independent(&o, &wo, 64);
    check_seq_independent(&o, &wo, 19);
    ws_free(&wo);
    mp_model_config c = llama_cfg();
    wstore ws = {0};
    build_llama(&ws, &c, 3001);
    check_seq_independent(&c, &ws, 64);
    check_seq_independent(&c, &ws, 19);
    ws_free(&ws);
}

/* Out-of-range tokens, wrong shapes and missing tensors are refused, with no leak. */
static void test_errors(void **state)
{
    (void)state;
    mp_model_config c = llama_cfg();
    wstore ws = {0};
    build_llama(&ws, &c, 4001);
    mp_weight_source src = {.ctx = &ws, .load = ws_load, .has = ws_has};
    mp_head *head = NULL;
    fail_st("mp_head_load", mp_head_load(&c, &src, &head));
    uint32_t tok[4] = {1, 2, (uint32_t)c.vocab, 3};
    float *h = falloc(4 * c.d);
    assert_int_equal(mp_embed_forward(&c, head, tok, 1, 4, h), MP_ERR_RANGE);
    mp_head_free(&head);
    mp_head_free(&head); /* NULL is accepted */

    /* A k_proj of the wrong shape: the source's MP_ERR_FORMAT comes back. */
    wentry *k = ws_find(&ws, "model.layers.1.self_attn.k_proj.weight");
    k->shape[0] += 1;
    mp_block *blk = NULL;
    assert_int_equal(mp_block_load(&c, &src, 1, &blk), MP_ERR_FORMAT);
    assert_null(blk);
    k->shape[0] -= 1;
    /* A NaN in a weight: MP_ERR_NUMERIC. */
    wentry *dn = ws_find(&ws, "model.layers.1.mlp.down_proj.weight");
    dn->v[5] = NAN;
    assert_int_equal(mp_block_load(&c, &src, 1, &blk), MP_ERR_NUMERIC);
    assert_null(blk);
    dn->v[5] = 0.0;
    /* A missing (required) tensor. */
    strcpy(ws_find(&ws, "model.layers.1.mlp.up_proj.weight")->name, "renamed");
    assert_int_not_equal(mp_block_load(&c, &src, 1, &blk), MP_OK);
    assert_null(blk);
    mp_block_free(&blk);
    free(h);
    ws_free(&ws);
}

/* mp_block_flops counts at least the linear layers (2 flops per multiply-add) and at most
 * those plus full (non-causal) attention products. mp_block_bytes is "bytes of float32 weights
 * a loaded block holds": exactly 4 bytes per value of every tensor mp_block_load reads for the
 * block, counted here from the store. */
static void check_bytes(const mp_model_config *c, wstore *ws)
{
    mp_weight_source src = {.ctx = ws, .load = ws_load, .has = ws_has};
    for (int i = 0; i < ws->n; i++) ws->e[i].loads = 0;
    mp_block *blk = NULL;
    fail_st("mp_block_load", mp_block_load(c, &src, 1, &blk));
    mp_block_free(&blk);
    int64_t want = 0;
    for (int i = 0; i < ws->n; i++)
        if (ws->e[i].loads > 0) want += 4 * ws->e[i].n;
    int64_t got = mp_block_bytes(c, 1);
    if (got != want) {
        ws_free(ws);
        fail_msg("%s: mp_block_bytes %lld, but the block loads %lld bytes of weights",
                 c->model_type, (long long)got, (long long)want);
    }
}

static void test_flops_bytes(void **state)
{
    (void)state;
    mp_model_config c = llama_cfg();
    int64_t d = c.d, qd = c.n_heads * c.head_dim, kd = c.n_kv_heads * c.head_dim;
    double lin = (double)(d * qd + 2 * d * kd + qd * d + 3 * d * c.ffn);
    /* T a multiple of 64, so that a tiled causal count stays under the full T² one. */
    int64_t n_seq = 2, T = 256;
    double fl = mp_block_flops(&c, 0, n_seq, T);
    double lo = 2.0 * (double)(n_seq * T) * lin;
    double hi = lo + 4.0 * (double)n_seq * (double)T * (double)T * (double)qd;
    if (!(fl >= lo && fl <= hi)) fail_msg("mp_block_flops %.6g not in [%.6g, %.6g]", fl, lo, hi);

    wstore ws = {0};
    build_llama(&ws, &c, 5001);
    check_bytes(&c, &ws);
    ws_free(&ws);
    mp_model_config o = opt_cfg();
    build_opt(&ws, &o, 5002);
    check_bytes(&o, &ws);
    ws_free(&ws);
}

/* Per-block widths: fewer query and KV heads, an absent attention, an absent FFN. */
static mp_model_config llama_per_layer_cfg(void)
{
    mp_model_config c = llama_cfg();
    c.n_layers = 4;
    mp_block_shape sh[4] = {{4, 2, 40}, {0, 0, 80}, {6, 2, 0}, {2, 1, 24}};
    mp_model_config_set_shapes(&c, sh);
    return c;
}

static void test_llama_per_layer(void **state)
{
    (void)state;
    mp_model_config c = llama_per_layer_cfg();
    assert_true(c.per_layer);
    assert_int_equal(c.n_heads, 6);
    assert_int_equal(c.ffn, 80);
    wstore ws = {0};
    build_llama(&ws, &c, 1101);
    assert_null(ws_find(&ws, "model.layers.1.input_layernorm.weight"));
    assert_null(ws_find(&ws, "model.layers.2.mlp.down_proj.weight"));
    run_case("llama per-layer widths", &c, &ws, 2, 19, 13);
    check_bytes(&c, &ws);
    ws_free(&ws);
}

static void test_opt_per_layer(void **state)
{
    (void)state;
    mp_model_config c = opt_cfg();
    c.n_layers = 3;
    /* 2 heads of 8: q/k/v [16, 32], out_proj [32, 16], no longer n_heads * head_dim == d. */
    mp_block_shape sh[3] = {{2, 2, 64}, {4, 4, 0}, {0, 0, 24}};
    mp_model_config_set_shapes(&c, sh);
    wstore ws = {0};
    build_opt(&ws, &c, 2101);
    run_case("opt per-layer widths", &c, &ws, 2, 19, 14);
    ws_free(&ws);
}

/* Widths that set_shapes finds uniform make a stock config again. */
static void test_set_shapes_uniform(void **state)
{
    (void)state;
    mp_model_config c = llama_cfg();
    mp_block_shape sh[2] = {{4, 2, 40}, {4, 2, 40}};
    mp_model_config_set_shapes(&c, sh);
    assert_false(c.per_layer);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.ffn, 40);
    mp_block_shape z[2] = {{4, 2, 40}, {0, 0, 40}};
    mp_model_config_set_shapes(&c, z);
    assert_true(c.per_layer);
    /* Inconsistent per-block widths are refused. */
    c.layer[0].n_kv_heads = 3; /* 4 heads in 3 groups */
    assert_int_equal(mp_model_config_check(&c, "cfg"), MP_ERR_FORMAT);
    c.layer[0].n_kv_heads = 0; /* heads without KV heads */
    assert_int_equal(mp_model_config_check(&c, "cfg"), MP_ERR_FORMAT);
    c.layer[0].n_kv_heads = 2;
    c.layer[0].ffn = c.ffn + 1; /* wider than the model */
    assert_int_equal(mp_model_config_check(&c, "cfg"), MP_ERR_FORMAT);
    c.layer[0].ffn = 40;
    fail_st("mp_model_config_check", mp_model_config_check(&c, "cfg"));
}

/* Copies rows rows[0..n) (and, when cols_idx, only columns cols_idx[0..nc)) of tensor `name` of
 * src into dst under the same name: the reference's own slicing, independent of the library. */
static void ws_slice(wstore *dst, const wstore *src, const char *name, const int64_t *rows,
                     int64_t nr, const int64_t *cols_idx, int64_t nc)
{
    const wentry *e = ws_find(src, name);
    assert_non_null(e);
    int64_t R = nr >= 0 ? nr : e->shape[0], C = e->ndim == 2 ? (nc >= 0 ? nc : e->shape[1]) : 1;
    prng r = {1};
    ws_add(dst, &r, name, e->ndim, R, C, 0.0, 1.0);
    wentry *o = ws_find(dst, name);
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            int64_t si = nr >= 0 ? rows[i] : i, sj = e->ndim == 2 && nc >= 0 ? cols_idx[j] : j;
            o->v[i * C + j] = e->v[si * (e->ndim == 2 ? e->shape[1] : 1) + sj];
        }
}

/* A plan that drops a KV group, query heads inside the kept groups, FFN neurons, a whole FFN and
 * a whole attention, applied with mp_block_apply_plan, gives the forward of the model whose
 * tensors are sliced by hand here (float64 reference). */
static void test_plan_apply(void **state)
{
    (void)state;
    mp_model_config c = llama_cfg(); /* 6 heads in 2 KV groups of 3, head_dim 8, ffn 80 */
    c.n_layers = 3;
    wstore full = {0}, cut = {0};
    build_llama(&full, &c, 6001);
    mp_plan plan;
    fail_st("mp_plan_identity", mp_plan_identity(&c, &plan));
    fail_st("mp_plan_check identity", mp_plan_check(&c, &plan, "plan"));
    int64_t kv0[1] = {1}, q0[2] = {0, 2}, f0[5] = {1, 5, 7, 40, 79};
    fail_st("set 0", mp_plan_set_block(&plan, 0, 1, kv0, 2, q0, 5, f0));
    int64_t kv1[2] = {0, 1}, q1[2] = {1, 2};
    fail_st("set 1", mp_plan_set_block(&plan, 1, 2, kv1, 1, q1, 0, NULL));
    int64_t f2[3] = {0, 2, 4};
    fail_st("set 2", mp_plan_set_block(&plan, 2, 0, NULL, 0, NULL, 3, f2));
    fail_st("mp_plan_check", mp_plan_check(&c, &plan, "plan"));
    mp_model_config pc;
    mp_plan_apply_config(&c, &plan, &pc);
    assert_true(pc.per_layer);
    assert_int_equal(pc.layer[0].n_heads, 2);
    assert_int_equal(pc.layer[0].n_kv_heads, 1);
    assert_int_equal(pc.layer[1].ffn, 0);
    assert_int_equal(pc.layer[2].n_heads, 0);

    /* The hand-sliced model. */
    int64_t hd = c.head_dim, rows[64], krows[64];
    char nm[160];
    ws_slice(&cut, &full, "model.embed_tokens.weight", NULL, -1, NULL, -1);
    ws_slice(&cut, &full, "model.norm.weight", NULL, -1, NULL, -1);
    ws_slice(&cut, &full, "lm_head.weight", NULL, -1, NULL, -1);
    for (int64_t l = 0; l < 3; l++) {
        const mp_block_plan *bp = &plan.b[l];
        int64_t nq = 0, nk = 0;
        for (int64_t i = 0; i < bp->n_kv; i++) {
            for (int64_t t = 0; t < hd; t++) krows[nk++] = bp->kv[i] * hd + t;
            for (int64_t j = 0; j < bp->q_per_kv; j++)
                for (int64_t t = 0; t < hd; t++)
                    rows[nq++] = (bp->kv[i] * 3 + bp->q[i * bp->q_per_kv + j]) * hd + t;
        }
        if (bp->n_kv > 0) {
            snprintf(nm, sizeof nm, "model.layers.%lld.input_layernorm.weight", (long long)l);
            ws_slice(&cut, &full, nm, NULL, -1, NULL, -1);
            const char *p3[3] = {"q", "k", "v"};
            for (int i = 0; i < 3; i++) {
                const int64_t *ri = i == 0 ? rows : krows;
                int64_t n = i == 0 ? nq : nk;
                snprintf(nm, sizeof nm, "model.layers.%lld.self_attn.%s_proj.weight",
                         (long long)l, p3[i]);
                ws_slice(&cut, &full, nm, ri, n, NULL, -1);
                snprintf(nm, sizeof nm, "model.layers.%lld.self_attn.%s_proj.bias",
                         (long long)l, p3[i]);
                ws_slice(&cut, &full, nm, ri, n, NULL, -1);
            }
            snprintf(nm, sizeof nm, "model.layers.%lld.self_attn.o_proj.weight", (long long)l);
            ws_slice(&cut, &full, nm, NULL, -1, rows, nq);
            snprintf(nm, sizeof nm, "model.layers.%lld.self_attn.o_proj.bias", (long long)l);
            ws_slice(&cut, &full, nm, NULL, -1, NULL, -1);
        }
        if (bp->n_ffn > 0) {
            snprintf(nm, sizeof nm, "model.layers.%lld.post_attention_layernorm.weight",
                     (long long)l);
            ws_slice(&cut, &full, nm, NULL, -1, NULL, -1);
            const char *p2[2] = {"gate", "up"};
            for (int i = 0; i < 2; i++) {
                snprintf(nm, sizeof nm, "model.layers.%lld.mlp.%s_proj.weight", (long long)l,
                         p2[i]);
                ws_slice(&cut, &full, nm, bp->ffn, bp->n_ffn, NULL, -1);
                snprintf(nm, sizeof nm, "model.layers.%lld.mlp.%s_proj.bias", (long long)l,
                         p2[i]);
                ws_slice(&cut, &full, nm, bp->ffn, bp->n_ffn, NULL, -1);
            }
            snprintf(nm, sizeof nm, "model.layers.%lld.mlp.down_proj.weight", (long long)l);
            ws_slice(&cut, &full, nm, NULL, -1, bp->ffn, bp->n_ffn);
            snprintf(nm, sizeof nm, "model.layers.%lld.mlp.down_proj.bias", (long long)l);
            ws_slice(&cut, &full, nm, NULL, -1, NULL, -1);
        }
    }
    /* The sliced model through the library at the planned config passes against the
     * reference; then the full model cut by the plan must give the same hidden states. */
    run_case("llama planned (sliced by hand)", &pc, &cut, 2, 19, 15);

    int64_t n_seq = 2, T = 19, N = n_seq * T;
    float *ha = falloc(N * c.d), *hb = falloc(N * c.d);
    prng r = {77};
    for (int64_t i = 0; i < N * c.d; i++) ha[i] = hb[i] = (float)prng_uniform(&r, -1.0, 1.0);
    mp_weight_source sf = {.ctx = &full, .load = ws_load, .has = ws_has};
    mp_weight_source sc = {.ctx = &cut, .load = ws_load, .has = ws_has};
    for (int64_t l = 0; l < 3; l++) {
        mp_block *a = NULL, *b = NULL;
        fail_st("load full", mp_block_load(&c, &sf, l, &a));
        fail_st("mp_block_apply_plan", mp_block_apply_plan(&c, &plan.b[l], a));
        fail_st("load cut", mp_block_load(&pc, &sc, l, &b));
        assert_memory_equal(&a->shape, &b->shape, sizeof a->shape);
        for (int id = 0; id < MP_LIN_COUNT; id++) {
            assert_int_equal(a->lin[id].out, b->lin[id].out);
            assert_int_equal(a->lin[id].in, b->lin[id].in);
        }
        fail_st("forward planned", mp_block_forward(&c, a, ha, n_seq, T, NULL));
        fail_st("forward sliced", mp_block_forward(&pc, b, hb, n_seq, T, NULL));
        mp_block_free(&a);
        mp_block_free(&b);
        /* The same floats in the same order: bitwise equal. */
        assert_memory_equal(ha, hb, (size_t)(N * c.d) * sizeof *ha);
    }
    free(ha), free(hb);

    /* Bad plans are refused. */
    int64_t bad_kv[2] = {1, 1}, bad_q[2] = {0, 1};
    fail_st("set bad", mp_plan_set_block(&plan, 0, 2, bad_kv, 1, bad_q, 0, NULL));
    assert_int_equal(mp_plan_check(&c, &plan, "plan"), MP_ERR_FORMAT);
    int64_t q_out[1] = {3}; /* group size is 3 */
    fail_st("set bad q", mp_plan_set_block(&plan, 0, 1, kv0, 1, q_out, 0, NULL));
    assert_int_equal(mp_plan_check(&c, &plan, "plan"), MP_ERR_FORMAT);
    int64_t f_out[1] = {80};
    fail_st("set bad ffn", mp_plan_set_block(&plan, 0, 1, kv0, 1, q0, 1, f_out));
    assert_int_equal(mp_plan_check(&c, &plan, "plan"), MP_ERR_FORMAT);
    mp_plan_free(&plan);
    ws_free(&full);
    ws_free(&cut);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_gqa_bias_untied),
        cmocka_unit_test(test_llama_tied),
        cmocka_unit_test(test_llama_head_dim),
        cmocka_unit_test(test_qwen2_qkv_bias),
        cmocka_unit_test(test_opt_pre_ln),
        cmocka_unit_test(test_opt_post_ln_proj),
        cmocka_unit_test(test_seq_independent),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_flops_bytes),
        cmocka_unit_test(test_llama_per_layer),
        cmocka_unit_test(test_opt_per_layer),
        cmocka_unit_test(test_set_shapes_uniform),
        cmocka_unit_test(test_plan_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
