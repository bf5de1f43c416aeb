#include "mp_alloc.h"
#include "mp_model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_bf16.h"
#include "mp_layers.h"

/* Every block's widths: heads divide, absent sub-blocks have no heads at all, OPT's attention
 * is not grouped. */
static mp_status model_shapes_check(const mp_model_config *c, const char *what)
{
    if (!c->per_layer)
        return MP_OK;
    if (c->n_layers > MP_MAX_LAYERS)
        return mp_error(MP_ERR_UNSUPPORTED, "%s: %lld blocks with per-layer widths; at most %d",
                        what, (long long)c->n_layers, MP_MAX_LAYERS);
    for (int64_t l = 0; l < c->n_layers; l++) {
        const mp_block_shape *s = &c->layer[l];
        if (s->n_heads < 0 || s->n_kv_heads < 0 || s->ffn < 0)
            return mp_error(MP_ERR_FORMAT, "%s: block %lld has a negative width", what,
                            (long long)l);
        if ((s->n_heads == 0) != (s->n_kv_heads == 0))
            return mp_error(MP_ERR_FORMAT, "%s: block %lld has %lld query heads and %lld KV heads; "
                            "both or neither must be 0", what, (long long)l,
                            (long long)s->n_heads, (long long)s->n_kv_heads);
        if (s->n_heads > 0 && s->n_heads % s->n_kv_heads != 0)
            return mp_error(MP_ERR_FORMAT, "%s: block %lld: %lld query heads are not a multiple of "
                            "%lld KV heads", what, (long long)l, (long long)s->n_heads,
                            (long long)s->n_kv_heads);
        if (c->arch == MP_ARCH_OPT && s->n_heads != s->n_kv_heads)
            return mp_error(MP_ERR_FORMAT, "%s: block %lld: OPT has no grouped KV heads", what,
                            (long long)l);
        if (s->n_heads > c->n_heads || s->n_kv_heads > c->n_kv_heads || s->ffn > c->ffn)
            return mp_error(MP_ERR_FORMAT, "%s: block %lld is wider than the model's widths",
                            what, (long long)l);
    }
    return MP_OK;
}

mp_status mp_model_config_check(const mp_model_config *c, const char *what)
{
    struct { const char *name; int64_t v, max; } pos[] = {
        {"vocab_size", c->vocab, MP_CFG_MAX_VOCAB}, {"hidden_size", c->d, MP_CFG_MAX_WIDTH},
        {"num_hidden_layers", c->n_layers, MP_CFG_MAX_LAYERS},
        {"num_attention_heads", c->n_heads, MP_CFG_MAX_HEADS},
        {"num_key_value_heads", c->n_kv_heads, MP_CFG_MAX_HEADS},
        {"head_dim", c->head_dim, MP_CFG_MAX_WIDTH},
        {"intermediate_size/ffn_dim", c->ffn, MP_CFG_MAX_WIDTH},
        {"max_position_embeddings", c->max_pos, MP_CFG_MAX_POS},
        {"word_embed_proj_dim", c->word_embed_proj_dim, MP_CFG_MAX_WIDTH},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        if (pos[i].v <= 0)
            return mp_error(MP_ERR_FORMAT, "%s: %s must be positive (is %lld)", what,
                            pos[i].name, (long long)pos[i].v);
        if (pos[i].v > pos[i].max)
            return mp_error(MP_ERR_RANGE, "%s: %s %lld exceeds the limit %lld", what,
                            pos[i].name, (long long)pos[i].v, (long long)pos[i].max);
    }
    if (c->n_heads * c->head_dim > MP_CFG_MAX_WIDTH) /* <= 2^14 x 2^20: no overflow */
        return mp_error(MP_ERR_RANGE, "%s: num_attention_heads x head_dim (%lld x %lld) exceeds "
                        "the limit %lld", what, (long long)c->n_heads, (long long)c->head_dim,
                        (long long)MP_CFG_MAX_WIDTH);
    /* With per-block widths the scalars are maxima of different blocks; each block's own
     * widths are checked below. */
    if (!c->per_layer && c->n_heads % c->n_kv_heads != 0)
        return mp_error(MP_ERR_FORMAT,
                        "%s: num_attention_heads (%lld) is not a multiple of num_key_value_heads "
                        "(%lld)", what, (long long)c->n_heads, (long long)c->n_kv_heads);
    if (!(c->norm_eps > 0.0))
        return mp_error(MP_ERR_FORMAT, "%s: the norm epsilon must be positive", what);
    if (c->arch == MP_ARCH_LLAMA) {
        if (c->head_dim % 2 != 0)
            return mp_error(MP_ERR_FORMAT, "%s: head_dim %lld is odd; RoPE needs it even", what,
                            (long long)c->head_dim);
        if (!(c->rope_theta > 0.0))
            return mp_error(MP_ERR_FORMAT, "%s: rope_theta must be positive", what);
        if (c->word_embed_proj_dim != c->d)
            return mp_error(MP_ERR_FORMAT, "%s: word_embed_proj_dim is OPT only", what);
    } else {
        if (!c->per_layer && c->n_heads * c->head_dim != c->d)
            return mp_error(MP_ERR_FORMAT, "%s: hidden_size %lld is not divisible by "
                            "num_attention_heads %lld", what, (long long)c->d,
                            (long long)c->n_heads);
        if (c->n_kv_heads != c->n_heads)
            return mp_error(MP_ERR_FORMAT, "%s: OPT has no grouped KV heads", what);
    }
    return model_shapes_check(c, what);
}

mp_block_shape mp_layer_shape(const mp_model_config *c, int64_t layer)
{
    if (c->per_layer && layer >= 0 && layer < c->n_layers && layer < MP_MAX_LAYERS)
        return c->layer[layer];
    return (mp_block_shape){c->n_heads, c->n_kv_heads, c->ffn};
}

void mp_model_config_set_shapes(mp_model_config *c, const mp_block_shape *shapes)
{
    int64_t n = c->n_layers < MP_MAX_LAYERS ? c->n_layers : MP_MAX_LAYERS;
    bool uniform = n > 0 && shapes[0].n_heads > 0 && shapes[0].ffn > 0;
    int64_t mh = 0, mkv = 0, mf = 0;
    for (int64_t l = 0; l < n; l++) {
        const mp_block_shape *s = &shapes[l];
        uniform = uniform && s->n_heads == shapes[0].n_heads &&
                  s->n_kv_heads == shapes[0].n_kv_heads && s->ffn == shapes[0].ffn;
        mh = s->n_heads > mh ? s->n_heads : mh;
        mkv = s->n_kv_heads > mkv ? s->n_kv_heads : mkv;
        mf = s->ffn > mf ? s->ffn : mf;
        c->layer[l] = *s;
    }
    c->per_layer = !uniform;
    c->n_heads = mh;
    c->n_kv_heads = mkv;
    c->ffn = mf;
}

static const char *const llama_short[MP_LIN_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
static const char *const llama_part[MP_LIN_COUNT] = {
    "self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};
static const char *const opt_short[MP_LIN_COUNT] = {
    "q_proj", "k_proj", "v_proj", "out_proj", NULL, "fc1", "fc2"};

const char *mp_lin_short_name(const mp_model_config *cfg, mp_lin_id id)
{
    return cfg->arch == MP_ARCH_OPT ? opt_short[id] : llama_short[id];
}

char *mp_lin_full_name(const mp_model_config *cfg, int64_t layer, mp_lin_id id, char *buf,
                       size_t len)
{
    if (cfg->arch == MP_ARCH_OPT) {
        if (id <= MP_LIN_O)
            snprintf(buf, len, "model.decoder.layers.%lld.self_attn.%s", (long long)layer,
                     opt_short[id]);
        else
            snprintf(buf, len, "model.decoder.layers.%lld.%s", (long long)layer,
                     opt_short[id] ? opt_short[id] : "?");
    } else {
        snprintf(buf, len, "model.layers.%lld.%s.%s", (long long)layer, llama_part[id],
                 llama_short[id]);
    }
    return buf;
}

mp_in_group mp_lin_group(mp_lin_id id)
{
    switch (id) {
    case MP_LIN_Q:
    case MP_LIN_K:
    case MP_LIN_V: return MP_IN_ATTN;
    case MP_LIN_O: return MP_IN_O;
    case MP_LIN_GATE:
    case MP_LIN_UP: return MP_IN_MLP;
    default: return MP_IN_DOWN;
    }
}

bool mp_lin_has_bias(const mp_model_config *c, mp_lin_id id)
{
    switch (id) {
    case MP_LIN_Q:
    case MP_LIN_K:
    case MP_LIN_V: return c->qkv_bias;
    case MP_LIN_O: return c->o_bias;
    case MP_LIN_GATE:
    case MP_LIN_UP: return c->mlp_bias;
    default: return c->mlp_bias || c->down_bias;
    }
}

/* out × in of each linear layer of block `layer`, and whether it exists. */
static void lin_shape(const mp_model_config *c, int64_t layer, mp_lin_id id, int64_t *out,
                      int64_t *in, bool *present, bool *bias)
{
    mp_block_shape s = mp_layer_shape(c, layer);
    int64_t qd = s.n_heads * c->head_dim, kd = s.n_kv_heads * c->head_dim;
    bool attn = s.n_heads > 0, mlp = s.ffn > 0;
    *bias = mp_lin_has_bias(c, id);
    switch (id) {
    case MP_LIN_Q: *out = qd; *in = c->d; *present = attn; break;
    case MP_LIN_K: *out = kd; *in = c->d; *present = attn; break;
    case MP_LIN_V: *out = kd; *in = c->d; *present = attn; break;
    case MP_LIN_O: *out = c->d; *in = qd; *present = attn; break;
    case MP_LIN_GATE:
        *out = s.ffn; *in = c->d;
        *present = mlp && c->arch == MP_ARCH_LLAMA;
        break;
    case MP_LIN_UP: *out = s.ffn; *in = c->d; *present = mlp; break;
    default: *out = c->d; *in = s.ffn; *present = mlp; break;
    }
    if (!*present)
        *out = *in = 0;
}

int64_t mp_in_group_dim(const mp_model_config *cfg, int64_t layer, mp_in_group g)
{
    mp_block_shape s = mp_layer_shape(cfg, layer);
    switch (g) {
    case MP_IN_ATTN: return s.n_heads > 0 ? cfg->d : 0;
    case MP_IN_O: return s.n_heads * cfg->head_dim;
    case MP_IN_MLP: return s.ffn > 0 ? cfg->d : 0;
    default: return s.ffn;
    }
}

bool mp_lin_present(const mp_model_config *cfg, int64_t layer, mp_lin_id id)
{
    int64_t out, in;
    bool present, bias;
    lin_shape(cfg, layer, id, &out, &in, &present, &bias);
    return present;
}

void mp_lin_dims(const mp_model_config *cfg, int64_t layer, mp_lin_id id, int64_t *out,
                 int64_t *in)
{
    bool present, bias;
    lin_shape(cfg, layer, id, out, in, &present, &bias);
}

/* Allocates n floats and loads tensor `name` of the given shape into it. */
static mp_status load_tensor(const mp_weight_source *src, const char *name, int ndim,
                             const int64_t *shape, float **out)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    float *p = mp_malloc((size_t)n * sizeof(float));
    if (!p)
        return mp_error(MP_ERR_NOMEM, "cannot allocate %lld floats for %s", (long long)n, name);
    mp_status st = src->load(src->ctx, name, ndim, shape, p);
    if (st != MP_OK) {
        free(p);
        return st;
    }
    *out = p;
    return MP_OK;
}

static mp_status load_vec(const mp_weight_source *src, const char *name, int64_t n, float **out)
{
    return load_tensor(src, name, 1, &n, out);
}

int64_t mp_block_params(const mp_model_config *c, int64_t layer)
{
    int64_t total = 0;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        int64_t out, in;
        bool present, bias;
        lin_shape(c, layer, (mp_lin_id)id, &out, &in, &present, &bias);
        if (present)
            total += out * in + (bias ? out : 0);
    }
    return total;
}

int64_t mp_block_bytes(const mp_model_config *c, int64_t layer)
{
    mp_block_shape s = mp_layer_shape(c, layer);
    int64_t per_norm = (c->arch == MP_ARCH_LLAMA ? 1 : 2) * c->d; /* weight (and bias) */
    int64_t norms = (s.n_heads > 0 ? per_norm : 0) + (s.ffn > 0 ? per_norm : 0);
    return (norms + mp_block_params(c, layer)) * (int64_t)sizeof(float);
}

mp_status mp_block_load(const mp_model_config *cfg, const mp_weight_source *src, int64_t layer,
                        mp_block **out)
{
    mp_status st = MP_OK;
    char base[256], name[320];
    mp_block *b = mp_calloc(1, sizeof *b);
    if (!b)
        return mp_error(MP_ERR_NOMEM, "cannot allocate block %lld", (long long)layer);
    b->index = layer;
    b->shape = mp_layer_shape(cfg, layer);
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        mp_linear *l = &b->lin[id];
        bool bias;
        lin_shape(cfg, layer, (mp_lin_id)id, &l->out, &l->in, &l->present, &bias);
        if (!l->present)
            continue;
        mp_lin_full_name(cfg, layer, (mp_lin_id)id, base, sizeof base);
        int64_t shape[2] = {l->out, l->in};
        snprintf(name, sizeof name, "%s.weight", base);
        MP_TRY(load_tensor(src, name, 2, shape, &l->w));
        if (bias) {
            snprintf(name, sizeof name, "%s.bias", base);
            MP_TRY(load_vec(src, name, l->out, &l->b));
        }
    }
    /* An absent sub-block has no norm either. */
    bool has[2] = {b->shape.n_heads > 0, b->shape.ffn > 0};
    if (cfg->arch == MP_ARCH_LLAMA) {
        const char *norms[2] = {"input_layernorm", "post_attention_layernorm"};
        float **ws[2] = {&b->norm1_w, &b->norm2_w};
        for (int i = 0; i < 2; i++) {
            if (!has[i])
                continue;
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)layer,
                     norms[i]);
            MP_TRY(load_vec(src, name, cfg->d, ws[i]));
        }
    } else {
        const char *norms[2] = {"self_attn_layer_norm", "final_layer_norm"};
        float **ws[2] = {&b->norm1_w, &b->norm2_w}, **bs[2] = {&b->norm1_b, &b->norm2_b};
        for (int i = 0; i < 2; i++) {
            if (!has[i])
                continue;
            snprintf(name, sizeof name, "model.decoder.layers.%lld.%s.weight", (long long)layer,
                     norms[i]);
            MP_TRY(load_vec(src, name, cfg->d, ws[i]));
            snprintf(name, sizeof name, "model.decoder.layers.%lld.%s.bias", (long long)layer,
                     norms[i]);
            MP_TRY(load_vec(src, name, cfg->d, bs[i]));
        }
    }
    *out = b;
    b = NULL;
done:
    mp_block_free(&b);
    return st;
}

void mp_block_free(mp_block **blk)
{
    if (!blk || !*blk)
        return;
    mp_block *b = *blk;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        free(b->lin[id].w);
        free(b->lin[id].b);
    }
    free(b->norm1_w);
    free(b->norm1_b);
    free(b->norm2_w);
    free(b->norm2_b);
    free(b);
    *blk = NULL;
}

mp_status mp_block_bf16_view(const mp_block *blk, mp_block *view)
{
    *view = *blk;
    for (int id = 0; id < MP_LIN_COUNT; id++)
        view->lin[id].wbf = NULL;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        const mp_linear *l = &blk->lin[id];
        if (!l->present || l->out * l->in == 0)
            continue;
        uint16_t *w = mp_malloc((size_t)(l->out * l->in) * sizeof(uint16_t));
        if (!w) {
            mp_block_bf16_release(view);
            return mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate bf16 weights",
                            (long long)blk->index);
        }
        mp_bf16_from_f32(l->w, l->out * l->in, w);
        view->lin[id].wbf = w;
    }
    return MP_OK;
}

void mp_block_bf16_release(mp_block *view)
{
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        free((void *)(uintptr_t)view->lin[id].wbf);
        view->lin[id].wbf = NULL;
    }
}

static mp_status call_hook(const mp_hook *hook, mp_in_group g, const float *x, int64_t rows,
                           int64_t dim)
{
    return hook && hook->fn ? hook->fn(hook->ud, g, x, rows, dim) : MP_OK;
}

static mp_status call_out(const mp_hook *hook, mp_lin_id id, const float *y, int64_t rows,
                          int64_t dim)
{
    return hook && hook->out ? hook->out(hook->ud, id, y, rows, dim) : MP_OK;
}

/* One matrix product per sequence: BLAS rounding can depend on a row's place in the product, so
 * this keeps every sequence's result independent of the others in the call. */
static mp_status lin_seq(const mp_linear *l, const float *x, int64_t n_seq, int64_t T, float *y)
{
    for (int64_t s = 0; s < n_seq; s++) {
        mp_status st = mp_linear_forward(l, x + s * T * l->in, T, y + s * T * l->out);
        if (st != MP_OK)
            return st;
    }
    return MP_OK;
}

/* The layers ls[0..n) that read one input x, each into its ys[i]: lin_seq each, except that
 * with bf16 weights every sequence's input is rounded once for all of them (a layer without,
 * an empty one, takes the float32 product). */
static mp_status lin_shared(const mp_linear *const *ls, float *const *ys, int n, const float *x,
                            int64_t n_seq, int64_t T)
{
    bool any = false;
    for (int i = 0; i < n; i++)
        any = any || ls[i]->wbf;
    if (!any) {
        for (int i = 0; i < n; i++) {
            mp_status st = lin_seq(ls[i], x, n_seq, T, ys[i]);
            if (st != MP_OK)
                return st;
        }
        return MP_OK;
    }
    int64_t in = ls[0]->in;
    uint16_t *xb = mp_malloc((size_t)(T * in) * sizeof(uint16_t));
    if (!xb)
        return mp_error(MP_ERR_NOMEM, "cannot allocate bf16 inputs for %lld tokens",
                        (long long)T);
    mp_status st = MP_OK;
    for (int64_t s = 0; s < n_seq && st == MP_OK; s++) {
        mp_bf16_from_f32(x + s * T * in, T * in, xb);
        for (int i = 0; i < n && st == MP_OK; i++)
            st = ls[i]->wbf ? mp_linear_forward_bf16(ls[i], xb, T, ys[i] + s * T * ls[i]->out)
                            : mp_linear_forward(ls[i], x + s * T * in, T,
                                                ys[i] + s * T * ls[i]->out);
    }
    free(xb);
    return st;
}

static void add_into(float *h, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        h[i] += x[i];
}

static void norm_apply(const mp_model_config *c, const float *w, const float *b, const float *x,
                       int64_t rows, float *y)
{
    if (c->arch == MP_ARCH_LLAMA)
        mp_rmsnorm(x, w, rows, c->d, c->norm_eps, y);
    else
        mp_layernorm(x, w, b, rows, c->d, c->norm_eps, y);
}

/* The attention sub-block on h[rows, d] (in place, residual added). */
static mp_status attn_forward(const mp_model_config *c, const mp_block *blk, float *h,
                              int64_t n_seq, int64_t T, const mp_hook *hook, float *xn,
                              float *tmp)
{
    mp_status st = MP_OK;
    int64_t rows = n_seq * T, d = c->d, nh = blk->shape.n_heads, nkv = blk->shape.n_kv_heads;
    int64_t qd = nh * c->head_dim, kd = nkv * c->head_dim;
    bool llama = c->arch == MP_ARCH_LLAMA, pre = c->norm_before;
    float *q = mp_malloc((size_t)(rows * qd) * sizeof(float));
    float *k = mp_malloc((size_t)(rows * kd) * sizeof(float));
    float *v = mp_malloc((size_t)(rows * kd) * sizeof(float));
    float *ao = mp_malloc((size_t)(rows * qd) * sizeof(float));
    /* The rotary angles of positions 0..T-1, once for every sequence and both q and k. */
    float *cs = llama ? mp_malloc((size_t)(T * c->head_dim) * sizeof(float)) : NULL;
    if (!q || !k || !v || !ao || (llama && !cs))
        MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate attention activations for %lld tokens",
                (long long)blk->index, (long long)rows);
    /* Post-LN (OPT-350m) feeds h itself and normalises after the sum. */
    const float *ain = h;
    if (pre) {
        norm_apply(c, blk->norm1_w, blk->norm1_b, h, rows, xn);
        ain = xn;
    }
    MP_TRY(call_hook(hook, MP_IN_ATTN, ain, rows, d));
    {
        const mp_linear *ls[3] = {&blk->lin[MP_LIN_Q], &blk->lin[MP_LIN_K], &blk->lin[MP_LIN_V]};
        float *const ys[3] = {q, k, v};
        MP_TRY(lin_shared(ls, ys, 3, ain, n_seq, T));
    }
    MP_TRY(call_out(hook, MP_LIN_Q, q, rows, qd));
    MP_TRY(call_out(hook, MP_LIN_K, k, rows, kd));
    MP_TRY(call_out(hook, MP_LIN_V, v, rows, kd));
    if (llama)
        mp_rope_table(T, c->head_dim, c->rope_theta, cs);
    for (int64_t s = 0; s < n_seq; s++) {
        float *qs = q + s * T * qd, *ks = k + s * T * kd;
        if (llama) {
            mp_rope_apply(qs, T, nh, c->head_dim, cs);
            mp_rope_apply(ks, T, nkv, c->head_dim, cs);
        }
        MP_TRY(mp_attention(qs, ks, v + s * T * kd, T, nh, nkv, c->head_dim,
                            1.0 / sqrt((double)c->head_dim), ao + s * T * qd));
    }
    MP_TRY(call_hook(hook, MP_IN_O, ao, rows, qd));
    MP_TRY(lin_seq(&blk->lin[MP_LIN_O], ao, n_seq, T, tmp));
    MP_TRY(call_out(hook, MP_LIN_O, tmp, rows, d));
    add_into(h, tmp, rows * d);
    if (!pre)
        norm_apply(c, blk->norm1_w, blk->norm1_b, h, rows, h);
done:
    free(q);
    free(k);
    free(v);
    free(ao);
    free(cs);
    return st;
}

/* The FFN sub-block on h[rows, d] (in place, residual added). */
static mp_status mlp_forward(const mp_model_config *c, const mp_block *blk, float *h,
                             int64_t n_seq, int64_t T, const mp_hook *hook, float *xn,
                             float *tmp)
{
    mp_status st = MP_OK;
    int64_t rows = n_seq * T, d = c->d, F = blk->shape.ffn;
    bool llama = c->arch == MP_ARCH_LLAMA, pre = c->norm_before;
    float *g = mp_malloc((size_t)(rows * F) * sizeof(float));
    float *u = llama ? mp_malloc((size_t)(rows * F) * sizeof(float)) : NULL;
    if (!g || (llama && !u))
        MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate FFN activations for %lld tokens",
                (long long)blk->index, (long long)rows);
    const float *min = h;
    if (pre) {
        norm_apply(c, blk->norm2_w, blk->norm2_b, h, rows, xn);
        min = xn;
    }
    MP_TRY(call_hook(hook, MP_IN_MLP, min, rows, d));
    if (llama) {
        const mp_linear *ls[2] = {&blk->lin[MP_LIN_GATE], &blk->lin[MP_LIN_UP]};
        float *const ys[2] = {g, u};
        MP_TRY(lin_shared(ls, ys, 2, min, n_seq, T));
        MP_TRY(call_out(hook, MP_LIN_GATE, g, rows, F));
        MP_TRY(call_out(hook, MP_LIN_UP, u, rows, F));
        mp_swiglu(g, u, rows * F);
    } else {
        MP_TRY(lin_seq(&blk->lin[MP_LIN_UP], min, n_seq, T, g));
        MP_TRY(call_out(hook, MP_LIN_UP, g, rows, F));
        mp_relu(g, rows * F);
    }
    MP_TRY(call_hook(hook, MP_IN_DOWN, g, rows, F));
    MP_TRY(lin_seq(&blk->lin[MP_LIN_DOWN], g, n_seq, T, tmp));
    MP_TRY(call_out(hook, MP_LIN_DOWN, tmp, rows, d));
    add_into(h, tmp, rows * d);
    if (!pre)
        norm_apply(c, blk->norm2_w, blk->norm2_b, h, rows, h);
done:
    free(g);
    free(u);
    return st;
}

mp_status mp_block_forward(const mp_model_config *c, const mp_block *blk, float *h,
                           int64_t n_seq, int64_t T, const mp_hook *hook)
{
    mp_status st = MP_OK;
    int64_t rows = n_seq * T, d = c->d;
    bool attn = blk->shape.n_heads > 0, mlp = blk->shape.ffn > 0;
    if (!attn && !mlp)
        return MP_OK; /* the whole block is the identity */
    float *xn = mp_malloc((size_t)(rows * d) * sizeof(float));
    float *tmp = mp_malloc((size_t)(rows * d) * sizeof(float));
    if (!xn || !tmp)
        MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate activations for %lld tokens",
                (long long)blk->index, (long long)rows);
    if (attn)
        MP_TRY(attn_forward(c, blk, h, n_seq, T, hook, xn, tmp));
    if (mlp)
        MP_TRY(mlp_forward(c, blk, h, n_seq, T, hook, xn, tmp));
done:
    free(xn);
    free(tmp);
    return st;
}

double mp_attn_score_pairs(int64_t T)
{
    double scores = 0.0;
    for (int64_t i0 = 0; i0 < T; i0 += 64) {
        int64_t m = T - i0 < 64 ? T - i0 : 64;
        scores += (double)m * (double)(i0 + m);
    }
    return scores;
}

double mp_block_flops(const mp_model_config *c, int64_t layer, int64_t n_seq, int64_t T)
{
    double rows = (double)(n_seq * T), lin = 0.0;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        int64_t out, in;
        bool present, bias;
        lin_shape(c, layer, (mp_lin_id)id, &out, &in, &present, &bias);
        if (present)
            lin += (double)out * (double)in;
    }
    /* Causal attention in tiles of 64 query rows (mp_attention): a tile of m rows ending at
     * key nk computes m·nk scores, each 2·head_dim for q·k and 2·head_dim for p·v. */
    double scores = mp_attn_score_pairs(T);
    mp_block_shape s = mp_layer_shape(c, layer);
    double attn = 4.0 * (double)n_seq * scores * (double)(s.n_heads * c->head_dim);
    return 2.0 * rows * lin + attn;
}

mp_status mp_head_load(const mp_model_config *c, const mp_weight_source *src, mp_head **out)
{
    mp_status st = MP_OK;
    bool opt = c->arch == MP_ARCH_OPT;
    int64_t wd = c->word_embed_proj_dim;
    mp_head *hd = mp_calloc(1, sizeof *hd);
    if (!hd)
        return mp_error(MP_ERR_NOMEM, "cannot allocate the model head");
    int64_t es[2] = {c->vocab, wd};
    MP_TRY(load_tensor(src, opt ? "model.decoder.embed_tokens.weight" : "model.embed_tokens.weight",
                       2, es, &hd->embed));
    if (opt) {
        int64_t ps[2] = {c->max_pos + 2, c->d};
        MP_TRY(load_tensor(src, "model.decoder.embed_positions.weight", 2, ps, &hd->pos));
        if (wd != c->d) {
            int64_t pin[2] = {c->d, wd}, pout[2] = {wd, c->d};
            MP_TRY(load_tensor(src, "model.decoder.project_in.weight", 2, pin, &hd->project_in));
            MP_TRY(load_tensor(src, "model.decoder.project_out.weight", 2, pout,
                               &hd->project_out));
        }
        if (c->final_norm) {
            MP_TRY(load_vec(src, "model.decoder.final_layer_norm.weight", c->d, &hd->norm_w));
            MP_TRY(load_vec(src, "model.decoder.final_layer_norm.bias", c->d, &hd->norm_b));
        }
    } else {
        MP_TRY(load_vec(src, "model.norm.weight", c->d, &hd->norm_w));
    }
    if (c->tie_embeddings)
        hd->lm_head = hd->embed;
    else
        MP_TRY(load_tensor(src, "lm_head.weight", 2, es, &hd->lm_head));
    *out = hd;
    hd = NULL;
done:
    mp_head_free(&hd);
    return st;
}

void mp_head_free(mp_head **head)
{
    if (!head || !*head)
        return;
    mp_head *h = *head;
    if (h->lm_head != h->embed)
        free(h->lm_head);
    free(h->embed);
    free(h->pos);
    free(h->project_in);
    free(h->project_out);
    free(h->norm_w);
    free(h->norm_b);
    free(h);
    *head = NULL;
}

mp_status mp_embed_forward(const mp_model_config *c, const mp_head *head, const uint32_t *tokens,
                           int64_t n_seq, int64_t T, float *h)
{
    mp_status st = MP_OK;
    int64_t rows = n_seq * T, wd = c->word_embed_proj_dim;
    float *e = NULL;
    if (c->arch == MP_ARCH_OPT && T > c->max_pos)
        return mp_error(MP_ERR_RANGE, "sequence length %lld exceeds max_position_embeddings %lld",
                        (long long)T, (long long)c->max_pos);
    for (int64_t r = 0; r < rows; r++)
        if (tokens[r] >= (uint64_t)c->vocab)
            return mp_error(MP_ERR_RANGE, "token id %u at position %lld is >= vocab_size %lld",
                            tokens[r], (long long)r, (long long)c->vocab);
    float *dst = h;
    if (head->project_in) {
        e = mp_malloc((size_t)(rows * wd) * sizeof(float));
        if (!e)
            MP_FAIL(MP_ERR_NOMEM, "cannot allocate embeddings for %lld tokens", (long long)rows);
        dst = e;
    }
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * wd, head->embed + (int64_t)tokens[r] * wd, (size_t)wd * sizeof(float));
    if (head->project_in) {
        mp_linear pin = {.out = c->d, .in = wd, .w = head->project_in, .present = true};
        MP_TRY(lin_seq(&pin, e, n_seq, T, h));
    }
    if (head->pos) {
        /* OPT's learned positions are offset by 2 (rows 0 and 1 are padding slots). */
        for (int64_t s = 0; s < n_seq; s++)
            for (int64_t t = 0; t < T; t++)
                add_into(h + (s * T + t) * c->d, head->pos + (t + 2) * c->d, c->d);
    }
done:
    free(e);
    return st;
}

/* Final norm and projection in place: h[rows, d] -> x[rows, wd] (x may be h when wd == d). */
static mp_status head_prepare(const mp_model_config *c, const mp_head *head, float *h,
                              int64_t n_seq, int64_t T, float **x_out, float **owned)
{
    int64_t rows = n_seq * T;
    *owned = NULL;
    if (head->norm_w)
        norm_apply(c, head->norm_w, head->norm_b, h, rows, h);
    if (!head->project_out) {
        *x_out = h;
        return MP_OK;
    }
    int64_t wd = c->word_embed_proj_dim;
    float *x = mp_malloc((size_t)(rows * wd) * sizeof(float));
    if (!x)
        return mp_error(MP_ERR_NOMEM, "cannot allocate head input for %lld tokens",
                        (long long)rows);
    mp_linear pout = {.out = wd, .in = c->d, .w = head->project_out, .present = true};
    mp_status st = lin_seq(&pout, h, n_seq, T, x);
    if (st != MP_OK) {
        free(x);
        return st;
    }
    *x_out = x;
    *owned = x;
    return MP_OK;
}

mp_status mp_head_logits(const mp_model_config *c, const mp_head *head, float *h, int64_t n_seq,
                         int64_t T, float *logits)
{
    float *x = NULL, *owned = NULL;
    mp_status st = head_prepare(c, head, h, n_seq, T, &x, &owned);
    if (st != MP_OK)
        return st;
    mp_linear lm = {.out = c->vocab, .in = c->word_embed_proj_dim, .w = head->lm_head,
                    .present = true};
    st = lin_seq(&lm, x, n_seq, T, logits);
    free(owned);
    return st;
}

/* Rows of logits computed at once: bounds memory at large vocabularies. */
#define MP_NLL_CHUNK 64

mp_status mp_head_nll(const mp_model_config *c, const mp_head *head, float *h,
                      const uint32_t *tokens, int64_t n_seq, int64_t T, double *nll)
{
    mp_status st = MP_OK;
    int64_t wd = c->word_embed_proj_dim, V = c->vocab;
    float *x = NULL, *owned = NULL;
    float *lg = mp_malloc((size_t)(MP_NLL_CHUNK * V) * sizeof(float));
    if (!lg)
        return mp_error(MP_ERR_NOMEM, "cannot allocate logits for vocabulary %lld", (long long)V);
    MP_TRY(head_prepare(c, head, h, n_seq, T, &x, &owned));
    mp_linear lm = {.out = V, .in = wd, .w = head->lm_head, .present = true};
    for (int64_t s = 0; s < n_seq; s++) {
        double sum = 0.0;
        for (int64_t t0 = 0; t0 < T - 1; t0 += MP_NLL_CHUNK) {
            int64_t nr = T - 1 - t0 < MP_NLL_CHUNK ? T - 1 - t0 : MP_NLL_CHUNK;
            MP_TRY(mp_linear_forward(&lm, x + (s * T + t0) * wd, nr, lg));
            for (int64_t r = 0; r < nr; r++) {
                const float *l = lg + r * V;
                uint32_t target = tokens[s * T + t0 + r + 1];
                if (target >= (uint64_t)V)
                    MP_FAIL(MP_ERR_RANGE, "token id %u is >= vocab_size %lld", target,
                            (long long)V);
                float mx = l[0];
                for (int64_t j = 1; j < V; j++)
                    mx = l[j] > mx ? l[j] : mx;
                double se = 0.0;
                for (int64_t j = 0; j < V; j++)
                    se += exp((double)l[j] - (double)mx);
                sum += (double)mx + log(se) - (double)l[target];
            }
        }
        nll[s] = T > 1 ? sum / (double)(T - 1) : 0.0;
        if (!isfinite(nll[s]))
            MP_FAIL(MP_ERR_NUMERIC, "non-finite negative log-likelihood in sequence %lld",
                    (long long)s);
    }
done:
    free(owned);
    free(lg);
    return st;
}
