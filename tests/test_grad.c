/* The float64 backward pass (src/mp_grad) against central finite differences of its own
 * float64 forward, kernel by kernel and through whole blocks and a small model, on random
 * shapes; and the float64 forward against the float32 one (mp_model). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mp_grad.h"
#include "mp_layers.h"
#include "mp_model.h"

/* Central differences in float64: truncation ~ε², rounding ~1e-16/ε. */
#define FD_EPS 1e-5
#define FD_TOL 1e-6 /* relative (to the larger of |fd| and the row's scale) */

static uint64_t rng_state;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
static void fill(double *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * urand();
}
static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}
static void close_rel(double got, double want, double scale, const char *what, int64_t i)
{
    double err = fabs(got - want), ref = fmax(fabs(want), scale);
    if (err > FD_TOL * ref)
        fail_msg("%s[%lld]: analytic %.12g, finite difference %.12g (rel %.3g)", what,
                 (long long)i, got, want, err / ref);
}

/* ---- kernels ---- */

static void test_norms(void **state)
{
    (void)state;
    rng_state = 1;
    enum { R = 3, D = 7 };
    double x[R * D], w[D], b[D], dy[R * D], dx[R * D], y[R * D];
    fill(x, R * D, 1.0);
    fill(w, D, 1.0);
    fill(b, D, 0.5);
    fill(dy, R * D, 1.0);
    for (int ln = 0; ln < 2; ln++) {
        if (ln)
            mp_grad_layernorm_bwd(x, w, R, D, 1e-5, dy, dx);
        else
            mp_grad_rmsnorm_bwd(x, w, R, D, 1e-5, dy, dx);
        for (int64_t i = 0; i < R * D; i++) {
            double f[2], o = x[i];
            for (int s = 0; s < 2; s++) {
                x[i] = o + (s ? -FD_EPS : FD_EPS);
                if (ln)
                    mp_grad_layernorm(x, w, b, R, D, 1e-5, y);
                else
                    mp_grad_rmsnorm(x, w, R, D, 1e-5, y);
                f[s] = dot(y, dy, R * D);
            }
            x[i] = o;
            close_rel(dx[i], (f[0] - f[1]) / (2 * FD_EPS), 1.0, ln ? "layernorm" : "rmsnorm",
                      i);
        }
    }
}

static void test_rope(void **state)
{
    (void)state;
    rng_state = 2;
    enum { T = 5, NH = 2, HD = 6 };
    double x[T * NH * HD], y[T * NH * HD], dy[T * NH * HD], dx[T * NH * HD];
    fill(x, T * NH * HD, 1.0);
    fill(dy, T * NH * HD, 1.0);
    memcpy(dx, dy, sizeof dx);
    mp_grad_rope(dx, T, NH, HD, 10000.0, -1); /* the backward of a rotation */
    for (int64_t i = 0; i < T * NH * HD; i++) {
        double f[2], o = x[i];
        for (int s = 0; s < 2; s++) {
            x[i] = o + (s ? -FD_EPS : FD_EPS);
            memcpy(y, x, sizeof y);
            mp_grad_rope(y, T, NH, HD, 10000.0, 1);
            f[s] = dot(y, dy, T * NH * HD);
        }
        x[i] = o;
        close_rel(dx[i], (f[0] - f[1]) / (2 * FD_EPS), 1.0, "rope", i);
    }
}

static void test_attention(void **state)
{
    (void)state;
    rng_state = 3;
    enum { T = 6, NH = 4, NKV = 2, HD = 3, QW = NH * HD, KW = NKV * HD };
    double q[T * QW], k[T * KW], v[T * KW], go[T * QW], out[T * QW];
    double dq[T * QW] = {0}, dk[T * KW] = {0}, dv[T * KW] = {0};
    fill(q, T * QW, 1.0);
    fill(k, T * KW, 1.0);
    fill(v, T * KW, 1.0);
    fill(go, T * QW, 1.0);
    double sc = 1.0 / sqrt((double)HD);
    assert_int_equal(mp_grad_attention_bwd(q, k, v, T, NH, NKV, HD, sc, go, dq, dk, dv), MP_OK);
    double *in[3] = {q, k, v}, *g[3] = {dq, dk, dv};
    int64_t n[3] = {T * QW, T * KW, T * KW};
    const char *name[3] = {"attention dq", "attention dk", "attention dv"};
    for (int a = 0; a < 3; a++)
        for (int64_t i = 0; i < n[a]; i++) {
            double f[2], o = in[a][i];
            for (int s = 0; s < 2; s++) {
                in[a][i] = o + (s ? -FD_EPS : FD_EPS);
                assert_int_equal(mp_grad_attention(q, k, v, T, NH, NKV, HD, sc, out), MP_OK);
                f[s] = dot(out, go, T * QW);
            }
            in[a][i] = o;
            close_rel(g[a][i], (f[0] - f[1]) / (2 * FD_EPS), 1.0, name[a], i);
        }
}

/* ---- blocks and models from a random weight source ---- */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static mp_status rnd_load(void *ctx, const char *name, int ndim, const int64_t *shape, float *out)
{
    (void)ctx;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    uint64_t save = rng_state;
    rng_state = name_hash(name);
    bool norm = strstr(name, "norm") != NULL, bias = strstr(name, ".bias") != NULL;
    double scale = ndim == 2 ? 1.0 / sqrt((double)shape[1]) : 0.2;
    for (int64_t i = 0; i < n; i++) {
        double r = urand();
        out[i] = (float)(norm && !bias ? 1.0 + 0.2 * r : (ndim == 2 ? 1.5 : 1.0) * scale * r);
    }
    rng_state = save;
    return MP_OK;
}
static bool rnd_has(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return true;
}
static const mp_weight_source rnd_src = {.ctx = NULL, .load = rnd_load, .has = rnd_has};

static mp_model_config small_cfg(mp_arch arch, bool pre)
{
    mp_model_config c = {0};
    c.arch = arch;
    snprintf(c.model_type, sizeof c.model_type, "%s", arch == MP_ARCH_LLAMA ? "llama" : "opt");
    c.vocab = 23;
    c.d = 12;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = arch == MP_ARCH_LLAMA ? 2 : 4;
    c.head_dim = arch == MP_ARCH_LLAMA ? 4 : 3;
    c.ffn = 10;
    c.max_pos = 32;
    c.norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.tie_embeddings = arch == MP_ARCH_LLAMA;
    c.qkv_bias = c.o_bias = c.mlp_bias = c.down_bias = arch == MP_ARCH_OPT;
    c.norm_before = pre;
    c.final_norm = true;
    c.word_embed_proj_dim = arch == MP_ARCH_OPT && pre ? 8 : c.d;
    return c;
}

/* f(h) = ⟨R, block(h)⟩ with the block's masks as given. */
static double block_f(const mp_gblock *g, const double *x, const double *R, int64_t T)
{
    int64_t n = T * g->cfg->d;
    double *h = malloc((size_t)n * sizeof *h);
    assert_non_null(h);
    memcpy(h, x, (size_t)n * sizeof *h);
    assert_int_equal(mp_gblock_forward(g, h, T), MP_OK);
    double f = dot(h, R, n);
    free(h);
    return f;
}

/* Scales rows [r0, r1) of layer id (and their biases) or, with cols, columns [r0, r1). */
static void scale_part(mp_gblock *g, int id, int64_t r0, int64_t r1, bool cols, double a)
{
    int64_t in = g->in[id];
    if (cols) {
        for (int64_t r = 0; r < g->out[id]; r++)
            for (int64_t j = r0; j < r1; j++)
                g->w[id][r * in + j] *= a;
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t j = 0; j < in; j++)
            g->w[id][r * in + j] *= a;
        if (g->b[id])
            g->b[id][r] *= a;
    }
}

typedef struct {
    int id;
    int64_t per;  /* rows or columns per unit */
    bool cols;
} part;

/* d f / d a at a = 1, scaling the parts of unit u by a. */
static double fd_scale(mp_gblock *g, const part *p, int np, int64_t u, const double *x,
                       const double *R, int64_t T)
{
    double f[2];
    for (int s = 0; s < 2; s++) {
        double a = 1.0 + (s ? -FD_EPS : FD_EPS);
        for (int k = 0; k < np; k++)
            scale_part(g, p[k].id, u * p[k].per, (u + 1) * p[k].per, p[k].cols, a);
        f[s] = block_f(g, x, R, T);
        for (int k = 0; k < np; k++)
            scale_part(g, p[k].id, u * p[k].per, (u + 1) * p[k].per, p[k].cols, 1.0 / a);
    }
    return (f[0] - f[1]) / (2 * FD_EPS);
}

static double fd_mask(mp_gblock *g, double *m, int64_t i, const double *x, const double *R,
                      int64_t T)
{
    double f[2], o = m[i];
    for (int s = 0; s < 2; s++) {
        m[i] = o + (s ? -FD_EPS : FD_EPS);
        f[s] = block_f(g, x, R, T);
    }
    m[i] = o;
    return (f[0] - f[1]) / (2 * FD_EPS);
}

/* Scales every weight of the block on residual channel ch by a: the norms' weight and bias
 * entries, the q/k/v and gate/up columns, the o_proj and down_proj rows with their biases. */
static void scale_chan(mp_gblock *g, int64_t ch, double a)
{
    double *nv[4] = {g->n1w, g->n1b, g->n2w, g->n2b};
    for (int k = 0; k < 4; k++)
        if (nv[k]) nv[k][ch] *= a;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        if (!g->w[id]) continue;
        bool writes = id == MP_LIN_O || id == MP_LIN_DOWN;
        scale_part(g, id, ch, ch + 1, !writes, a);
    }
}

static double fd_chan(mp_gblock *g, int64_t ch, const double *x, const double *R, int64_t T)
{
    double f[2];
    for (int s = 0; s < 2; s++) {
        double a = 1.0 + (s ? -FD_EPS : FD_EPS);
        scale_chan(g, ch, a);
        f[s] = block_f(g, x, R, T);
        scale_chan(g, ch, 1.0 / a);
    }
    return (f[0] - f[1]) / (2 * FD_EPS);
}

static void check_block(mp_arch arch, bool pre)
{
    mp_model_config c = small_cfg(arch, pre);
    assert_int_equal(mp_model_config_check(&c, "test"), MP_OK);
    enum { T = 7 };
    int64_t d = c.d, hd = c.head_dim;
    mp_block *blk = NULL;
    assert_int_equal(mp_block_load(&c, &rnd_src, 1, &blk), MP_OK);
    /* One head and one neuron masked off: the gradient at a pruned unit is still defined. */
    double hm[4] = {1, 0, 1, 1}, fm[10] = {1, 1, 1, 0, 1, 1, 1, 1, 1, 1};
    mp_gblock g;
    assert_int_equal(mp_gblock_make(&c, blk, hm, fm, &g), MP_OK);
    double x[T * 12] = {0}, R[T * 12] = {0}, dh[T * 12] = {0};
    rng_state = 7 + (uint64_t)arch * 2 + pre;
    fill(x, T * d, 1.0);
    fill(R, T * d, 1.0);
    memcpy(dh, R, sizeof dh);
    mp_grad_stats st;
    assert_int_equal(mp_grad_stats_alloc(&blk->shape, &st), MP_OK);
    for (int id = 0; id < MP_LIN_COUNT; id++)
        if (g.w[id]) {
            g.gw[id] = calloc((size_t)(g.out[id] * g.in[id]), sizeof(double));
            g.gb[id] = g.b[id] ? calloc((size_t)g.out[id], sizeof(double)) : NULL;
            assert_non_null(g.gw[id]);
        }
    double emb[12] = {0};
    st.emb = emb;
    assert_int_equal(mp_gblock_backward(&g, x, dh, T, &st), MP_OK);
    /* Each residual channel's Σ w·∂f/∂w over the block's weights on it (NViT's embedding
     * saliency), against scaling all of them at once. */
    for (int64_t ch = 0; ch < d; ch++)
        close_rel(emb[ch], fd_chan(&g, ch, x, R, T), 1.0, "channel", ch);
    /* Every weight's and bias's gradient (the element-wise Taylor scores' input). */
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        if (!g.w[id])
            continue;
        for (int64_t i = 0; i < g.out[id] * (g.in[id] + 1); i++) {
            bool bias = i >= g.out[id] * g.in[id];
            if (bias && !g.b[id])
                break;
            double *w = bias ? &g.b[id][i - g.out[id] * g.in[id]] : &g.w[id][i], o = *w, f[2];
            for (int s = 0; s < 2; s++) {
                *w = o + (s ? -FD_EPS : FD_EPS);
                f[s] = block_f(&g, x, R, T);
            }
            *w = o;
            double got = bias ? g.gb[id][i - g.out[id] * g.in[id]] : g.gw[id][i];
            close_rel(got, (f[0] - f[1]) / (2 * FD_EPS), 1.0, bias ? "bias gradient"
                                                                    : "weight gradient", i);
        }
        free(g.gw[id]);
        free(g.gb[id]);
        g.gw[id] = g.gb[id] = NULL;
    }
    for (int64_t i = 0; i < T * d; i++) {
        double f[2], o = x[i];
        for (int s = 0; s < 2; s++) {
            x[i] = o + (s ? -FD_EPS : FD_EPS);
            f[s] = block_f(&g, x, R, T);
        }
        x[i] = o;
        close_rel(dh[i], (f[0] - f[1]) / (2 * FD_EPS), 1.0, "block dx", i);
    }
    for (int64_t h = 0; h < c.n_heads; h++) {
        close_rel(st.gm_head[h], fd_mask(&g, g.head_mask, h, x, R, T), 1.0, "head mask", h);
        if (hm[h] == 0.0)
            continue; /* Σ w·g of a masked head's weights is 0: nothing to compare */
        part o = {MP_LIN_O, hd, true}, q = {MP_LIN_Q, hd, false};
        close_rel(st.gm_head[h], fd_scale(&g, &o, 1, h, x, R, T), 1.0, "o columns", h);
        close_rel(st.wg_q[h], fd_scale(&g, &q, 1, h, x, R, T), 1.0, "q rows", h);
    }
    for (int64_t k = 0; k < c.n_kv_heads; k++) {
        part kv[2] = {{MP_LIN_K, hd, false}, {MP_LIN_V, hd, false}};
        close_rel(st.wg_kv[k], fd_scale(&g, kv, 2, k, x, R, T), 1.0, "k/v rows", k);
    }
    for (int64_t j = 0; j < c.ffn; j++) {
        close_rel(st.gm_ffn[j], fd_mask(&g, g.ffn_mask, j, x, R, T), 1.0, "neuron mask", j);
        if (fm[j] == 0.0)
            continue;
        part dn = {MP_LIN_DOWN, 1, true};
        close_rel(st.gm_ffn[j], fd_scale(&g, &dn, 1, j, x, R, T), 1.0, "down column", j);
        part in[2] = {{MP_LIN_GATE, 1, false}, {MP_LIN_UP, 1, false}};
        if (arch == MP_ARCH_LLAMA)
            close_rel(st.wg_in[j], fd_scale(&g, in, 2, j, x, R, T), 1.0, "gate/up rows", j);
        else
            close_rel(st.wg_in[j], fd_scale(&g, &in[1], 1, j, x, R, T), 1.0, "fc1 row", j);
    }
    mp_grad_stats_free(&st);
    mp_gblock_free(&g);

    /* The float64 forward is the float32 one (all masks 1). */
    assert_int_equal(mp_gblock_make(&c, blk, NULL, NULL, &g), MP_OK);
    float xf[T * 12];
    double h64[T * 12];
    for (int64_t i = 0; i < T * d; i++)
        xf[i] = (float)(h64[i] = (double)(float)x[i]);
    assert_int_equal(mp_block_forward(&c, blk, xf, 1, T, NULL), MP_OK);
    assert_int_equal(mp_gblock_forward(&g, h64, T), MP_OK);
    for (int64_t i = 0; i < T * d; i++)
        if (fabs((double)xf[i] - h64[i]) > 1e-4 * fmax(1.0, fabs(h64[i])))
            fail_msg("float32 forward %.9g vs float64 %.9g at %lld", (double)xf[i], h64[i],
                     (long long)i);
    mp_gblock_free(&g);
    mp_block_free(&blk);
}

static void test_block_llama(void **state)
{
    (void)state;
    check_block(MP_ARCH_LLAMA, true);
}
static void test_block_opt_pre(void **state)
{
    (void)state;
    check_block(MP_ARCH_OPT, true);
}
static void test_block_opt_post(void **state)
{
    (void)state;
    check_block(MP_ARCH_OPT, false);
}

/* The whole model: loss(h) through the head, and dh, against differences; then the loss of a
 * two-block model against mp_head_nll's float32 one. */
static void check_model(mp_arch arch, bool pre)
{
    mp_model_config c = small_cfg(arch, pre);
    enum { T = 9 };
    int64_t d = c.d;
    uint32_t tok[T];
    rng_state = 11;
    for (int t = 0; t < T; t++)
        tok[t] = (uint32_t)((urand() + 1.0) * 0.5 * (double)(c.vocab - 1));
    mp_head *head = NULL;
    assert_int_equal(mp_head_load(&c, &rnd_src, &head), MP_OK);
    mp_ghead gh;
    assert_int_equal(mp_ghead_make(&c, head, &gh), MP_OK);
    double h[T * 12], dh[T * 12], loss = 0.0;
    assert_int_equal(mp_ghead_embed(&gh, tok, T, h), MP_OK);
    mp_block *blk[2] = {NULL, NULL};
    mp_gblock g[2];
    for (int b = 0; b < 2; b++) {
        assert_int_equal(mp_block_load(&c, &rnd_src, b, &blk[b]), MP_OK);
        assert_int_equal(mp_gblock_make(&c, blk[b], NULL, NULL, &g[b]), MP_OK);
        assert_int_equal(mp_gblock_forward(&g[b], h, T), MP_OK);
    }
    assert_int_equal(mp_ghead_loss(&gh, h, tok, T, &loss, dh), MP_OK);
    for (int64_t i = 0; i < T * d; i++) {
        double f[2], o = h[i];
        for (int s = 0; s < 2; s++) {
            h[i] = o + (s ? -FD_EPS : FD_EPS);
            assert_int_equal(mp_ghead_loss(&gh, h, tok, T, &f[s], NULL), MP_OK);
        }
        h[i] = o;
        close_rel(dh[i], (f[0] - f[1]) / (2 * FD_EPS), 1e-2, "head dh", i);
    }
    /* NViT's channel saliency of the whole model: the head's part, the blocks' (backward from
     * the loss) and the embeddings', against scaling every weight on the channel at once. */
    if (c.word_embed_proj_dim == d) {
        double x0[T * 12], x1[T * 12], chan[12] = {0}, g0[T * 12];
        assert_int_equal(mp_ghead_embed(&gh, tok, T, x0), MP_OK);
        memcpy(x1, x0, sizeof x1);
        assert_int_equal(mp_gblock_forward(&g[0], x1, T), MP_OK);
        assert_int_equal(mp_ghead_loss_chan(&gh, h, tok, T, &loss, g0, chan), MP_OK);
        for (int b = 1; b >= 0; b--) {
            mp_grad_stats st;
            assert_int_equal(mp_grad_stats_alloc(&g[b].shape, &st), MP_OK);
            st.emb = chan;
            assert_int_equal(mp_gblock_backward(&g[b], b ? x1 : x0, g0, T, &st), MP_OK);
            mp_grad_stats_free(&st);
        }
        for (int64_t t = 0; t < T * d; t++)
            chan[t % d] += x0[t] * g0[t];
        for (int64_t ch = 0; ch < d; ch++) {
            double f[2];
            for (int s = 0; s < 2; s++) {
                double a = 1.0 + (s ? -FD_EPS : FD_EPS), hh[T * 12];
                for (int b = 0; b < 2; b++) scale_chan(&g[b], ch, a);
                for (int64_t v = 0; v < c.vocab; v++) {
                    gh.embed[v * d + ch] *= a;
                    if (gh.lm_head != gh.embed) gh.lm_head[v * d + ch] *= a;
                }
                if (gh.norm_w) gh.norm_w[ch] *= a;
                if (gh.norm_b) gh.norm_b[ch] *= a;
                if (gh.pos)
                    for (int64_t p = 0; p < c.max_pos + 2; p++) gh.pos[p * d + ch] *= a;
                assert_int_equal(mp_ghead_embed(&gh, tok, T, hh), MP_OK);
                for (int b = 0; b < 2; b++) assert_int_equal(mp_gblock_forward(&g[b], hh, T), MP_OK);
                assert_int_equal(mp_ghead_loss(&gh, hh, tok, T, &f[s], NULL), MP_OK);
                for (int b = 0; b < 2; b++) scale_chan(&g[b], ch, 1.0 / a);
                for (int64_t v = 0; v < c.vocab; v++) {
                    gh.embed[v * d + ch] /= a;
                    if (gh.lm_head != gh.embed) gh.lm_head[v * d + ch] /= a;
                }
                if (gh.norm_w) gh.norm_w[ch] /= a;
                if (gh.norm_b) gh.norm_b[ch] /= a;
                if (gh.pos)
                    for (int64_t p = 0; p < c.max_pos + 2; p++) gh.pos[p * d + ch] /= a;
            }
            close_rel(chan[ch], (f[0] - f[1]) / (2 * FD_EPS), 1e-2, "model channel", ch);
        }
    }
    /* float32 path */
    float hf[T * 12];
    double nll = 0.0;
    assert_int_equal(mp_embed_forward(&c, head, tok, 1, T, hf), MP_OK);
    for (int b = 0; b < 2; b++)
        assert_int_equal(mp_block_forward(&c, blk[b], hf, 1, T, NULL), MP_OK);
    assert_int_equal(mp_head_nll(&c, head, hf, tok, 1, T, &nll), MP_OK);
    if (fabs(nll - loss) > 1e-5 * fabs(loss))
        fail_msg("float32 loss %.9g vs float64 %.9g", nll, loss);
    for (int b = 0; b < 2; b++) {
        mp_gblock_free(&g[b]);
        mp_block_free(&blk[b]);
    }
    mp_ghead_free(&gh);
    mp_head_free(&head);
}

static void test_model_llama(void **state)
{
    (void)state;
    check_model(MP_ARCH_LLAMA, true);
}
static void test_model_opt(void **state)
{
    (void)state;
    check_model(MP_ARCH_OPT, true);
    check_model(MP_ARCH_OPT, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norms),        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),    cmocka_unit_test(test_block_llama),
        cmocka_unit_test(test_block_opt_pre), cmocka_unit_test(test_block_opt_post),
        cmocka_unit_test(test_model_llama),  cmocka_unit_test(test_model_opt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
