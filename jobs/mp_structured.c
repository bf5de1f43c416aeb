#define _POSIX_C_SOURCE 200809L

#include "mp_structured.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_chain.h"
#include "mp_gradscore.h"
#include "mp_hessian.h"
#include "mp_json.h"
#include "mp_kwon.h"
#include "mp_prune_ckpt_internal.h"
#include "mp_search.h"
#include "mp_signals.h"
#include "mp_struct.h"
#include "mp_textbuf.h"

/* Returns from the calling function when expr fails (functions with nothing to clean up). */
#define RET_IF(expr)                  \
    do {                              \
        mp_status rc_ = (expr);       \
        if (rc_ != MP_OK)             \
            return rc_;               \
    } while (0)

/* ---- options ---- */

static mp_status parse_choice(const char *opt, const char *text, const char *const *names,
                              int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return MP_OK;
        }
    return mp_error(MP_ERR_ARG, "mpiprune prune: --%s: unknown value '%s'", opt, text);
}

/* "a,b,c": calls fn on each item; an empty item is an error. */
static mp_status parse_list(const char *opt, const char *text,
                            mp_status (*fn)(void *ud, const char *item, size_t len), void *ud)
{
    const char *p = text;
    if (!*p)
        return mp_error(MP_ERR_ARG, "mpiprune prune: --%s: empty list", opt);
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            return mp_error(MP_ERR_ARG, "mpiprune prune: --%s: '%s' has an empty item", opt,
                            text);
        RET_IF(fn(ud, p, len));
        if (!comma)
            return MP_OK;
        p = comma + 1;
    }
}

static mp_status unit_item(void *ud, const char *item, size_t len)
{
    mp_chain_opts *c = ud;
    static const char *const names[] = {"kv-groups", "heads", "ffn", "sublayers"};
    bool *flags[] = {&c->kv_groups, &c->heads, &c->ffn, &c->sublayers};
    for (int i = 0; i < 4; i++)
        if (strlen(names[i]) == len && strncmp(item, names[i], len) == 0) {
            *flags[i] = true;
            return MP_OK;
        }
    return mp_error(MP_ERR_ARG, "mpiprune prune: --units: '%.*s' is not a unit (kv-groups, "
                    "heads, ffn, sublayers)", (int)len, item);
}

static mp_status floor_item(void *ud, const char *item, size_t len)
{
    mp_chain_opts *c = ud;
    static const char *const names[] = {"kv", "heads", "ffn"};
    int64_t *dst[] = {&c->min_kv, &c->min_q_per_kv, &c->min_ffn};
    const char *eq = memchr(item, '=', len);
    for (int i = 0; eq && i < 3; i++)
        if (strlen(names[i]) == (size_t)(eq - item) && strncmp(item, names[i], (size_t)(eq - item)) == 0) {
            char num[32], *end;
            size_t nl = len - (size_t)(eq + 1 - item);
            if (nl == 0 || nl >= sizeof num)
                break;
            memcpy(num, eq + 1, nl);
            num[nl] = '\0';
            long long v = strtoll(num, &end, 10);
            if (*end || v < 0 || v > (1LL << 30))
                break;
            *dst[i] = v;
            return MP_OK;
        }
    return mp_error(MP_ERR_ARG, "mpiprune prune: --min-keep: '%.*s' is not kv=N, heads=N or "
                    "ffn=N", (int)len, item);
}

mp_status mp_structured_parse(mp_prune_opts *o)
{
    mp_struct_opts *s = &o->st;
    mp_chain_opts *c = &s->chain;
    char kind[16];
    double keep = 0.0;
    int n = 0, k = 0;
    if (!s->target_text ||
        sscanf(s->target_text, "%15[a-z]=%lf%n", kind, &keep, &n) != 2 ||
        s->target_text[n] != '\0' || (strcmp(kind, "params") != 0 && strcmp(kind, "flops") != 0))
        return mp_error(MP_ERR_ARG, "mpiprune prune: --target: '%s' is not params=F or flops=F",
                        s->target_text ? s->target_text : "");
    if (!(keep > 0.0 && keep <= 1.0))
        return mp_error(MP_ERR_ARG, "mpiprune prune: --target: the kept fraction %g is not in "
                        "(0, 1]", keep);
    s->keep = keep;
    c->flops = strcmp(kind, "flops") == 0;
    c->kv_groups = c->heads = c->ffn = c->sublayers = false;
    RET_IF(parse_list("units", s->units_text, unit_item, c));
    if (!c->kv_groups && !c->heads && !c->ffn)
        return mp_error(MP_ERR_ARG, "mpiprune prune: --units: name kv-groups, heads or ffn "
                        "(sublayers only lets the last of them go)");
    c->min_kv = c->min_q_per_kv = 1;
    c->min_ffn = c->ffn_multiple;
    if (s->min_keep_text)
        RET_IF(parse_list("min-keep", s->min_keep_text, floor_item, c));
    s->kwon = o->method_name && strcmp(o->method_name, "kwon") == 0;
    if (s->kwon) {
        /* Kwon et al.'s method is defined by the Fisher of mask variables, in one pass. */
        if (strcmp(s->score_name, "obs") != 0 && strcmp(s->score_name, "fisher") != 0)
            return mp_error(MP_ERR_ARG, "mpiprune prune: --method kwon ranks by the Fisher of "
                            "mask variables; --score %s is for --method structured",
                            s->score_name);
        if (strcmp(s->allocation_name, "global") != 0)
            return mp_error(MP_ERR_ARG, "mpiprune prune: --method kwon searches globally; "
                            "--allocation %s is for --method structured", s->allocation_name);
        if (s->bias_comp)
            return mp_error(MP_ERR_ARG, "mpiprune prune: --method kwon compensates by its mask "
                            "tuning; --bias-compensation is for --method structured");
        if (c->sublayers)
            return mp_error(MP_ERR_ARG, "mpiprune prune: --method kwon removes KV groups and "
                            "neurons down to the floors of --min-keep; --units sublayers is for "
                            "--method structured");
        s->score_name = "fisher";
        s->normalize_name = "none";
        s->rounds = 1;
    }
    static const char *const scores[] = {"obs",    "flap", "wanda-sp", "magnitude",
                                         "fisher", "nvit", "taylor", "taylor-element"};
    RET_IF(parse_choice("score", s->score_name, scores, 8, &k));
    c->scorer = (mp_scorer)k;
    /* Gradient scores are comparable across layers by construction (each is a change of the
     * same loss); the Hessian-based ones need a scale, and so does taylor-element, a sum of
     * magnitudes that no longer cancel (measured: README, "Structured pruning"). */
    if (strcmp(s->normalize_name, "auto") == 0)
        s->normalize_name = c->scorer == MP_SCORE_TAYLOR_ELEM ? "zscore"
                            : mp_structured_gradient(c->scorer) ? "none" : "residual";
    RET_IF(mp_search_norm_parse(s->normalize_name, &s->norm));
    if (!(s->max_remove > 0.0 && s->max_remove <= 1.0))
        return mp_error(MP_ERR_ARG, "mpiprune prune: --max-remove %g is not in (0, 1]",
                        s->max_remove);
    if (s->score_ema != 0.0 && !mp_structured_gradient(c->scorer))
        return mp_error(MP_ERR_ARG, "mpiprune prune: --score-ema averages gradient scores "
                        "across rounds; --score %s is recomputed on the compensated model",
                        s->score_name);
    if (s->norm == MP_NORM_PROBE && s->loss_samples < 1)
        return mp_error(MP_ERR_ARG, "mpiprune prune: --normalize probe measures the loss of "
                        "--loss-samples sequences: give at least 1");
    if (s->norm == MP_NORM_PROBE && !(s->probe_fraction > 0.0 && s->probe_fraction <= 1.0))
        return mp_error(MP_ERR_ARG, "mpiprune prune: --probe-fraction %g is not in (0, 1]",
                        s->probe_fraction);
    static const char *const allocs[] = {"global", "uniform"};
    RET_IF(parse_choice("allocation", s->allocation_name, allocs, 2, &k));
    s->uniform = k == 1;
    if (strcmp(s->compensation_name, "auto") == 0)
        s->compensation_name = s->kwon ? "scale" : "ls";
    static const char *const comps[] = {"ls", "none", "scale"};
    RET_IF(parse_choice("compensation", s->compensation_name, comps, 3, &k));
    s->compensate = k == 0;
    s->tune = k == 2;
    if (s->tune && !s->kwon)
        return mp_error(MP_ERR_ARG, "mpiprune prune: --compensation scale (mask tuning) is "
                        "part of --method kwon; --method structured refits (ls) or not (none)");
    s->then_sparsegpt = false;
    if (s->then_name) {
        static const char *const thens[] = {"sparsegpt"};
        RET_IF(parse_choice("then", s->then_name, thens, 1, &k));
        s->then_sparsegpt = true;
    }
    c->damp = o->damp;
    return MP_OK;
}

bool mp_structured_options_json(const mp_prune_opts *o, cJSON *obj)
{
    const mp_struct_opts *s = &o->st;
    const mp_chain_opts *c = &s->chain;
    char units[64];
    snprintf(units, sizeof units, "%s%s%s%s", c->kv_groups ? "kv-groups," : "",
             c->heads ? "heads," : "", c->ffn ? "ffn," : "", c->sublayers ? "sublayers," : "");
    units[strlen(units) - 1] = '\0';
    cJSON *x = cJSON_AddObjectToObject(obj, "structured");
    return x && cJSON_AddStringToObject(x, "target", c->flops ? "flops" : "params") &&
           cJSON_AddNumberToObject(x, "keep", s->keep) &&
           cJSON_AddStringToObject(x, "units", units) &&
           cJSON_AddNumberToObject(x, "ffn_multiple", (double)c->ffn_multiple) &&
           cJSON_AddNumberToObject(x, "min_kv", (double)c->min_kv) &&
           cJSON_AddNumberToObject(x, "min_heads_per_group", (double)c->min_q_per_kv) &&
           cJSON_AddNumberToObject(x, "min_ffn", (double)c->min_ffn) &&
           cJSON_AddStringToObject(x, "score", s->score_name) &&
           cJSON_AddStringToObject(x, "normalize", s->normalize_name) &&
           cJSON_AddStringToObject(x, "allocation", s->allocation_name) &&
           cJSON_AddStringToObject(x, "compensation", s->compensation_name) &&
           cJSON_AddBoolToObject(x, "bias_compensation", s->bias_comp) &&
           cJSON_AddNumberToObject(x, "rounds", (double)s->rounds) &&
           cJSON_AddNumberToObject(x, "max_remove", s->max_remove) &&
           cJSON_AddNumberToObject(x, "loss_samples", (double)s->loss_samples) &&
           (s->score_ema == 0.0 || cJSON_AddNumberToObject(x, "score_ema", s->score_ema)) &&
           (s->norm != MP_NORM_PROBE ||
            cJSON_AddNumberToObject(x, "probe_fraction", s->probe_fraction)) &&
           cJSON_AddStringToObject(x, "then", s->then_sparsegpt ? "sparsegpt" : "none");
}

bool mp_structured_gradient(mp_scorer s)
{
    return s == MP_SCORE_FISHER || s == MP_SCORE_NVIT || s == MP_SCORE_TAYLOR ||
           s == MP_SCORE_TAYLOR_ELEM;
}

int mp_structured_grad_flags(mp_scorer s)
{
    return s == MP_SCORE_TAYLOR_ELEM ? MP_GSCORE_ELEMENT : 0;
}

/* ---- gradient scores ---- */

/* The per-column scores of sub-block s (attention: a head's score over its head_dim columns;
 * FFN: a neuron's) from the gradient pass, for the chain of block b. */
static mp_status grad_columns(const job *J, const mp_gscores *gs, int64_t s, double **out)
{
    const mp_model_config *c = &J->md.cfg;
    int64_t b = s / 2, hd = c->head_dim;
    const mp_block_shape *sh = &gs->shape[b];
    mp_scorer sc = J->o->st.chain.scorer;
    mp_gscore kind = sc == MP_SCORE_FISHER ? MP_GSCORE_FISHER
                     : sc == MP_SCORE_NVIT ? MP_GSCORE_NVIT
                     : sc == MP_SCORE_TAYLOR ? MP_GSCORE_TAYLOR
                                             : MP_GSCORE_TAYLOR_ELEM;
    bool attn = s % 2 == 0;
    int64_t n = attn ? sh->n_heads * hd : sh->ffn;
    double *v = mp_malloc((size_t)(n + 1) * sizeof *v);
    if (!v)
        return mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate its column scores",
                        (long long)b);
    for (int64_t j = 0; j < n; j++)
        v[j] = attn ? gs->head[b][kind * sh->n_heads + j / hd] / (double)hd
                    : gs->ffn[b][kind * sh->ffn + j];
    *out = v;
    return MP_OK;
}

/* NViT's EMA across rounds (--score-ema B): on rank 0 each block's head and neuron scores
 * become B x the previous round's (kept in the search trace's "ema", so a resumed search has
 * them) + (1 - B) x this round's, and every rank gets the result. The first round keeps its
 * own. Collective. */
static mp_status grad_ema(job *J, mp_gscores *gs)
{
    mp_status st = MP_OK, local = MP_OK;
    double B = J->o->st.score_ema;
    int64_t L = gs->n_blocks;
    if (B == 0.0)
        return MP_OK;
    if (J->rank == 0) {
        cJSON *ema = cJSON_GetObjectItemCaseSensitive(J->search, "ema");
        bool have = cJSON_IsArray(ema) && cJSON_GetArraySize(ema) == (int)L;
        cJSON *next = cJSON_CreateArray();
        for (int64_t b = 0; next && local == MP_OK && b < L; b++) {
            const mp_block_shape *s = &gs->shape[b];
            int64_t n[2] = {MP_GSCORE_COUNT * s->n_heads, MP_GSCORE_COUNT * s->ffn};
            double *v[2] = {gs->head[b], gs->ffn[b]};
            cJSON *prev = have ? cJSON_GetArrayItem(ema, (int)b) : NULL, *e = cJSON_CreateArray();
            for (int k = 0; e && local == MP_OK && k < 2; k++) {
                /* Kept as the doubles' bits: a resumed search must average the same values. */
                cJSON *p = prev ? cJSON_GetArrayItem(prev, k) : NULL;
                double *old = p ? mp_malloc((size_t)(n[k] ? n[k] : 1) * sizeof *old) : NULL;
                if (p && !old)
                    local = mp_error(MP_ERR_NOMEM, "cannot read the score EMA");
                else if (p && !mp_json_f64_unbits(p, old, n[k]))
                    local = mp_error(MP_ERR_FORMAT, "the score EMA of block %lld is not %lld "
                                     "values", (long long)b, (long long)n[k]);
                for (int64_t i = 0; local == MP_OK && p && i < n[k]; i++)
                    v[k][i] = B * old[i] + (1.0 - B) * v[k][i];
                free(old);
                if (local == MP_OK && !mp_json_add(e, NULL, mp_json_f64_bits(v[k], n[k])))
                    local = mp_error(MP_ERR_NOMEM, "cannot grow the search trace");
            }
            if (!e || !mp_json_add(next, NULL, e))
                local = mp_error(MP_ERR_NOMEM, "cannot grow the search trace");
        }
        if (!next)
            local = mp_error(MP_ERR_NOMEM, "cannot grow the search trace");
        if (local == MP_OK) {
            cJSON_DeleteItemFromObjectCaseSensitive(J->search, "ema");
            if (!cJSON_AddItemToObject(J->search, "ema", next)) {
                cJSON_Delete(next);
                local = mp_error(MP_ERR_NOMEM, "cannot grow the search trace");
            }
        } else {
            cJSON_Delete(next);
        }
    }
    MP_TRY(mp_prune_agree(J, local));
    for (int64_t b = 0; b < L; b++) {
        const mp_block_shape *s = &gs->shape[b];
        MP_TRY(mp_comm_bcast(J->comm, gs->head[b],
                             (int64_t)(MP_GSCORE_COUNT * s->n_heads * sizeof(double)), 0));
        MP_TRY(mp_comm_bcast(J->comm, gs->ffn[b],
                             (int64_t)(MP_GSCORE_COUNT * s->ffn * sizeof(double)), 0));
    }
done:
    return st;
}

/* ---- costs ---- */

/* Parameters (or FLOPs per token at seqlen T) of block l's attention (attn) or FFN linear
 * layers in cfg: the cost model the chains' unit costs add up to. */
static double sub_cost(const mp_model_config *c, int64_t l, bool attn, bool flops, int64_t T)
{
    double v = 0.0;
    int lo = attn ? MP_LIN_Q : MP_LIN_GATE, hi = attn ? MP_LIN_O : MP_LIN_DOWN;
    for (int id = lo; id <= hi; id++) {
        int64_t out, in;
        if (!mp_lin_present(c, l, (mp_lin_id)id))
            continue;
        mp_lin_dims(c, l, (mp_lin_id)id, &out, &in);
        bool bias = mp_lin_has_bias(c, (mp_lin_id)id);
        v += flops ? 2.0 * (double)out * (double)in
                   : (double)out * (double)in + (bias ? (double)out : 0.0);
    }
    mp_block_shape s = mp_layer_shape(c, l);
    if (flops && attn && s.n_heads > 0 && T > 0)
        v += 4.0 * (double)(s.n_heads * c->head_dim) * mp_attn_score_pairs(T) / (double)T;
    return v;
}

void mp_structured_out_config(const job *J, mp_model_config *c)
{
    if (J->o->method != MP_METHOD_STRUCTURED || !J->o->st.bias_comp)
        return;
    c->o_bias = true;
    c->down_bias = !c->mlp_bias;
}

/* Per sub-block (2·l + 0 attention, 2·l + 1 FFN) costs of the plan's model; `out`: as
 * written (with the biases of --bias-compensation), else the input's. */
static mp_status plan_costs(const job *J, const mp_plan *plan, bool out, double *cost)
{
    mp_model_config *pc = mp_malloc(sizeof *pc);
    if (!pc)
        return mp_error(MP_ERR_NOMEM, "cannot allocate a config");
    mp_plan_apply_config(&J->md.cfg, plan, pc);
    if (out)
        mp_structured_out_config(J, pc);
    bool flops = J->o->st.chain.flops;
    for (int64_t l = 0; l < pc->n_layers; l++) {
        cost[2 * l] = sub_cost(pc, l, true, flops, J->o->seqlen);
        cost[2 * l + 1] = sub_cost(pc, l, false, flops, J->o->seqlen);
    }
    free(pc);
    return MP_OK;
}

/* ---- Hessians of one sub-block ---- */

typedef struct {
    job *J;
    mp_in_group g;
    mp_hessian hs;
    double *colsum; /* [dim] sums of the inputs (FLAP's means) or NULL */
    const float *y; /* mask tuning: the target rows [rows, out] of the layer's output (the
                       next batch's), */
    const mp_linear *lin; /* the layer, */
    double *cross;  /* and [dim] Σ x ∘ (Wᵀ y) (mp_struct_scales); NULL without tuning */
} collect_ctx;

static mp_status collect_hook(void *ud, mp_in_group g, const float *x, int64_t rows, int64_t dim)
{
    collect_ctx *c = ud;
    if (g != c->g)
        return MP_OK;
    double t = mp_comm_wtime();
    mp_status st = mp_hessian_add(&c->hs, x, rows);
    if (c->colsum)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < dim; j++)
                c->colsum[j] += (double)x[r * dim + j];
    if (st == MP_OK && c->cross) {
        st = mp_struct_cross_add(x, c->y, c->lin->w, rows, dim, c->lin->out, c->cross);
        c->y += rows * c->lin->out; /* the forward runs in batches of sequences, in order */
    }
    c->J->t_stage[ST_HESSIAN] += mp_comm_wtime() - t;
    return st;
}

/* A sub-block's finished input Hessian on its owner: H = (2/N) Σ x xᵀ [dim, dim] and the
 * input means [dim] (NULL on the other ranks). */
typedef struct {
    int64_t dim;
    double *H, *mean;
    double *cross; /* mask tuning: (2/N) Σ x ∘ (Wᵀ y) [dim], or NULL */
    double resid; /* 2·E‖h‖² of the residual stream at the sub-block's input, outlier channels
                     left out (collect) */
    bool centered; /* H is centred (mp_struct_center): the OBS chains of --bias-compensation */
} hstat;

static void hstat_free(hstat *h)
{
    free(h->H);
    free(h->mean);
    free(h->cross);
    h->H = h->mean = h->cross = NULL;
}

enum { TAG_SUB = 300 };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs `view` on h (in place) accumulating input group g; sums the partial sums in rank order
 * on `owner`, which gets *out. With y (mask tuning: the target of lin's output, [rows, d]),
 * also out->cross. Collective. */
static mp_status collect(job *J, const mp_block *view, float *h, mp_in_group g, int64_t dim,
                         int owner, const float *y, const mp_linear *lin, hstat *out)
{
    mp_status st = MP_OK, local = MP_OK;
    int64_t D = J->md.cfg.d, nn = dim * dim, nx = y ? dim : 0, n = nn + dim + D + nx;
    int64_t rows = (J->s1 - J->s0) * J->o->seqlen;
    double *pack = NULL, *tot = NULL, *buf = NULL;
    /* The residual stream's energy per channel at the input (h before the view runs). */
    double *chan = mp_calloc((size_t)D, sizeof *chan);
    if (!chan)
        local = mp_error(MP_ERR_NOMEM, "cannot allocate channel sums of %lld", (long long)D);
    for (int64_t r = 0; chan && r < rows; r++)
        for (int64_t j = 0; j < D; j++)
            chan[j] += (double)h[r * D + j] * (double)h[r * D + j];
    collect_ctx cx = {.J = J, .g = g, .y = y, .lin = lin};
    out->dim = dim;
    if (local == MP_OK)
        local = mp_hessian_init(&cx.hs, dim);
    if (local == MP_OK && J->o->compute == MP_COMPUTE_BF16)
        local = mp_hessian_use_bf16(&cx.hs);
    if (local == MP_OK && y && !(cx.cross = mp_calloc((size_t)dim, sizeof(double))))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate tuning sums of %lld", (long long)dim);
    if (local == MP_OK && !(cx.colsum = mp_calloc((size_t)dim, sizeof(double))))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate input sums of %lld", (long long)dim);
    if (local == MP_OK) {
        double t = mp_comm_wtime(), th = J->t_stage[ST_HESSIAN];
        mp_hook hook = {.fn = collect_hook, .ud = &cx};
        local = mp_prune_run_block(J, view, h, &hook);
        J->t_stage[ST_FORWARD] += mp_comm_wtime() - t - (J->t_stage[ST_HESSIAN] - th);
    }
    if (local == MP_OK && !(pack = mp_malloc((size_t)n * sizeof *pack)))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate a %lld x %lld Hessian", (long long)dim,
                         (long long)dim);
    if (local == MP_OK) {
        memcpy(pack, cx.hs.sum, (size_t)nn * sizeof *pack);
        memcpy(pack + nn, cx.colsum, (size_t)dim * sizeof *pack);
        memcpy(pack + nn + dim, chan, (size_t)D * sizeof *pack);
        if (nx)
            memcpy(pack + nn + dim + D, cx.cross, (size_t)nx * sizeof *pack);
    }
    mp_hessian_free(&cx.hs);
    free(cx.colsum);
    free(cx.cross);
    cx.colsum = cx.cross = NULL;
    if (local == MP_OK && J->rank == owner &&
        (!(tot = mp_calloc((size_t)n, sizeof *tot)) || !(buf = mp_malloc((size_t)n * sizeof *buf)) ||
         !(out->H = mp_malloc((size_t)nn * sizeof *out->H)) ||
         !(out->mean = mp_malloc((size_t)dim * sizeof *out->mean)) ||
         (nx && !(out->cross = mp_malloc((size_t)nx * sizeof *out->cross)))))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate a %lld x %lld Hessian", (long long)dim,
                         (long long)dim);
    MP_TRY(mp_prune_agree(J, local));
    double t = mp_comm_wtime();
    if (J->rank == owner) {
        /* Rank order, as the one-pass pipeline sums its Hessians. */
        for (int r = 0; r < J->P; r++) {
            const double *src = pack;
            if (r != owner) {
                MP_TRY(mp_comm_recv_f64(J->comm, buf, n, r, TAG_SUB + (int)g));
                src = buf;
            }
            for (int64_t i = 0; i < n; i++)
                tot[i] += src[i];
        }
        double N = (double)(J->o->nsamples * J->o->seqlen);
        mp_hessian fin = {.dim = dim, .sum = tot, .rows = J->o->nsamples * J->o->seqlen};
        mp_hessian_finish(&fin, out->H);
        for (int64_t j = 0; j < dim; j++)
            out->mean[j] = tot[nn + j] / N;
        for (int64_t j = 0; j < nx; j++)
            out->cross[j] = 2.0 * tot[nn + dim + D + j] / N;
        /* The stream's energy without its massive-activation channels: many LLMs carry a
         * few channels hundreds of times the others' size (a constant, sink-like feature)
         * that would dominate E‖h‖² and make errors look cheap where they appear. Channels
         * above OUTLIER x the median mean square are left out, the rest scaled to d. */
        enum { OUTLIER = 100 };
        double *e = buf; /* free now: a sorted copy */
        memcpy(e, tot + nn + dim, (size_t)D * sizeof *e);
        qsort(e, (size_t)D, sizeof *e, cmp_double);
        double med = D % 2 ? e[D / 2] : 0.5 * (e[D / 2 - 1] + e[D / 2]), sum = 0.0;
        int64_t kept = 0;
        for (int64_t j = 0; j < D; j++)
            if (e[j] <= OUTLIER * med) {
                sum += e[j];
                kept++;
            }
        out->resid = 2.0 * sum * ((double)D / (double)(kept > 0 ? kept : 1)) / N;
    } else {
        MP_TRY(mp_comm_send_f64(J->comm, pack, n, owner, TAG_SUB + (int)g));
    }
    J->t_stage[ST_REDUCE] += mp_comm_wtime() - t;
done:
    if (st != MP_OK)
        hstat_free(out);
    free(pack);
    free(tot);
    free(buf);
    free(chan);
    return st;
}

mp_status mp_structured_add_biases(const job *J, mp_block *blk)
{
    if (J->o->method != MP_METHOD_STRUCTURED || !J->o->st.bias_comp)
        return MP_OK;
    static const mp_lin_id ids[2] = {MP_LIN_O, MP_LIN_DOWN};
    for (int i = 0; i < 2; i++) {
        mp_linear *l = &blk->lin[ids[i]];
        if (l->present && !l->b && !(l->b = mp_calloc((size_t)l->out, sizeof *l->b)))
            return mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate a bias of %lld",
                            (long long)blk->index, (long long)l->out);
    }
    return MP_OK;
}

/* The compensation of Wd[rows, cols] for keeping keep[cols], on the owner: W the kept columns
 * refit on H (OSSCAR's least squares, also the OBS update of the removed ones) or, without
 * --compensation ls, Wd with the removed columns zeroed; with --bias-compensation, bias[rows]
 * the intercept (the refit then on the inputs' covariance). Not collective. */
static mp_status fit(const job *J, const double *Wd, int64_t rows, int64_t cols,
                     const hstat *hs, const bool *keep, double *W, double *bias)
{
    mp_status st = MP_OK;
    const mp_struct_opts *so = &J->o->st;
    double *Hc = NULL;
    if (so->compensate) {
        const double *H = hs->H;
        if (so->bias_comp && !hs->centered) {
            if (!(Hc = mp_malloc((size_t)(cols * cols) * sizeof *Hc)))
                return mp_error(MP_ERR_NOMEM, "cannot allocate a %lld x %lld covariance",
                                (long long)cols, (long long)cols);
            memcpy(Hc, hs->H, (size_t)(cols * cols) * sizeof *Hc);
            mp_struct_center(Hc, hs->mean, cols);
            H = Hc;
        }
        MP_TRY(mp_struct_refit(Wd, rows, cols, H, keep, J->o->damp, W));
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++)
                W[r * cols + j] = keep[j] ? Wd[r * cols + j] : 0.0;
    }
    if (so->bias_comp)
        mp_struct_intercept(Wd, W, rows, cols, hs->mean, bias);
done:
    free(Hc);
    return st;
}

/* Kwon et al.'s mask tuning of Wd[rows, cols] on the owner: W is Wd with each kept unit's
 * `unit` columns scaled by its least-squares scale (mp_struct_scales), the removed ones 0. */
static mp_status tune(const double *Wd, int64_t rows, int64_t cols, const hstat *hs,
                      const bool *keep, int64_t unit, double damp, double *W)
{
    int64_t nu = cols / unit;
    bool *ku = mp_malloc((size_t)(nu + 1) * sizeof *ku);
    double *m = mp_malloc((size_t)(nu + 1) * sizeof *m);
    mp_status st = ku && m ? MP_OK
                           : mp_error(MP_ERR_NOMEM, "cannot allocate the scales of %lld units",
                                      (long long)nu);
    for (int64_t i = 0; st == MP_OK && i < nu; i++)
        ku[i] = keep[i * unit];
    if (st == MP_OK)
        st = mp_struct_scales(Wd, rows, cols, hs->H, hs->cross, unit, ku, damp, m);
    for (int64_t r = 0; st == MP_OK && r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            W[r * cols + j] = m[j / unit] * Wd[r * cols + j];
    free(ku);
    free(m);
    return st;
}

/* The owner compensates l for keeping keep[in] (fit, or the mask tuning of units of `unit`
 * columns), then every rank gets the weights and the bias. Collective. */
static mp_status compensate(job *J, mp_linear *l, const bool *keep, const hstat *hs, int owner,
                            int64_t unit)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_struct_opts *so = &J->o->st;
    int64_t rows = l->out, cols = l->in, nk = 0;
    double *Wd = NULL, *W = NULL, *b = NULL;
    for (int64_t j = 0; j < cols; j++)
        nk += keep[j];
    /* Mask tuning rescales the kept units also where none was removed (earlier layers' removals
     * changed the inputs). */
    if ((!so->compensate && !so->bias_comp && !so->tune) || (nk == cols && !so->tune) || nk == 0)
        return MP_OK;
    double t = mp_comm_wtime();
    if (J->rank == owner) {
        Wd = mp_malloc((size_t)(rows * cols) * sizeof *Wd);
        W = mp_malloc((size_t)(rows * cols) * sizeof *W);
        b = mp_calloc((size_t)rows, sizeof *b);
        if (!Wd || !W || !b)
            local = mp_error(MP_ERR_NOMEM, "cannot allocate a %lld x %lld refit",
                             (long long)rows, (long long)cols);
        if (local == MP_OK) {
            for (int64_t i = 0; i < rows * cols; i++)
                Wd[i] = (double)l->w[i];
            local = so->tune ? tune(Wd, rows, cols, hs, keep, unit, J->o->damp, W)
                             : fit(J, Wd, rows, cols, hs, keep, W, b);
        }
        if (local == MP_OK && (so->compensate || so->tune))
            for (int64_t i = 0; i < rows * cols; i++)
                l->w[i] = (float)W[i];
        if (local == MP_OK && so->bias_comp)
            for (int64_t r = 0; r < rows; r++)
                l->b[r] = (float)((double)l->b[r] + b[r]);
    }
    J->t_stage[ST_SOLVE] += mp_comm_wtime() - t;
    MP_TRY(mp_prune_agree(J, local));
    t = mp_comm_wtime();
    if (so->compensate || so->tune)
        MP_TRY(mp_comm_bcast(J->comm, l->w, rows * cols * (int64_t)sizeof(float), owner));
    if (so->bias_comp)
        MP_TRY(mp_comm_bcast(J->comm, l->b, rows * (int64_t)sizeof(float), owner));
    J->t_stage[ST_BCAST] += mp_comm_wtime() - t;
done:
    free(Wd);
    free(W);
    free(b);
    return st;
}

/* ---- mask tuning's teacher: the unpruned model's hidden states ---- */

/* J->ht becomes the unpruned model's input of block b on this rank's sequences: kept from the
 * previous block, or (first block, or after a resume) computed from the embeddings through
 * the dense blocks before b. Collective. */
static mp_status teacher_at(job *J, int64_t b)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    int64_t T = J->o->seqlen, n = J->s1 - J->s0, nh = n * T * c->d;
    mp_head *head = NULL;
    mp_block *blk = NULL;
    if (J->ht_block == b)
        return MP_OK;
    size_t bytes = (size_t)(nh ? nh : 1) * sizeof(float);
    if ((!J->ht && !(J->ht = mp_malloc(bytes))) || (!J->ht2 && !(J->ht2 = mp_malloc(bytes))) ||
        (!J->ytgt && !(J->ytgt = mp_malloc(bytes))))
        local = mp_error(MP_ERR_NOMEM, "mask tuning: cannot allocate the unpruned model's hidden "
                         "states for %lld sequences", (long long)n);
    if (local == MP_OK)
        local = mp_head_load(c, &J->md.src, &head);
    if (local == MP_OK && n > 0)
        local = mp_embed_forward(c, head, J->tok.ids + J->s0 * T, n, T, J->ht);
    mp_head_free(&head);
    MP_TRY(mp_prune_agree(J, local));
    if (b > 0)
        mp_progress_note(&J->pg, "mask tuning: the unpruned model's hidden states through "
                         "blocks 0-%lld", (long long)b - 1);
    for (int64_t k = 0; k < b; k++) {
        MP_TRY(mp_prune_agree(J, mp_block_load(c, &J->md.src, k, &blk)));
        double t = mp_comm_wtime();
        MP_TRY(mp_prune_agree(J, mp_prune_run_block(J, blk, J->ht, NULL)));
        J->t_stage[ST_FORWARD] += mp_comm_wtime() - t;
        mp_block_free(&blk);
    }
    J->ht_block = b;
done:
    mp_block_free(&blk);
    mp_head_free(&head);
    return st;
}

/* Mask tuning's target of a sub-block's output projection l: the teacher's stream after the
 * dense sub-block (J->ht2, computed here in place from `from`) less the student's input h and
 * l's bias: what l's kept, rescaled units should add. Collective. */
static mp_status teacher_sub(job *J, const mp_block *view, const float *from, const float *h,
                             const mp_linear *l)
{
    int64_t D = J->md.cfg.d, rows = (J->s1 - J->s0) * J->o->seqlen;
    if (from != J->ht2)
        memcpy(J->ht2, from, (size_t)(rows * D) * sizeof(float));
    double t = mp_comm_wtime();
    mp_status st = mp_prune_agree(J, mp_prune_run_block(J, view, J->ht2, NULL));
    J->t_stage[ST_FORWARD] += mp_comm_wtime() - t;
    if (st != MP_OK)
        return st;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < D; j++)
            J->ytgt[r * D + j] = J->ht2[r * D + j] - h[r * D + j] - (l->b ? l->b[j] : 0.0f);
    return MP_OK;
}

/* Block pass of one block: see mp_structured.h. own[2] are the owners of the attention and
 * FFN Hessians; keep[2] (may be NULL) receive them on their owners for the round's chains. */
static mp_status struct_block(job *J, mp_block *blk, const int own[2], hstat *keep, bool advance)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    const mp_block_plan *bp = &J->plan.b[blk->index];
    mp_block_shape s0 = blk->shape;
    int64_t hd = c->head_dim, G = s0.n_kv_heads > 0 ? s0.n_heads / s0.n_kv_heads : 0;
    int64_t nh = (J->s1 - J->s0) * J->o->seqlen * c->d;
    size_t hbytes = (size_t)nh * sizeof(float);
    hstat ha = {0}, hf = {0};
    int64_t *iota = NULL, *qiota = NULL;
    bool *kmask = NULL;
    int64_t width = s0.n_heads * hd > s0.ffn ? s0.n_heads * hd : s0.ffn;
    iota = mp_malloc((size_t)(width + 1) * sizeof *iota);
    qiota = mp_malloc((size_t)(s0.n_heads + 1) * sizeof *qiota);
    kmask = mp_malloc((size_t)(width + 1) * sizeof *kmask);
    if (!iota || !qiota || !kmask)
        local = mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate its masks",
                         (long long)blk->index);
    if (local == MP_OK)
        local = mp_structured_add_biases(J, blk);
    MP_TRY(mp_prune_agree(J, local));
    for (int64_t i = 0; i <= width; i++)
        iota[i] = i;
    bool tune = J->o->st.tune;
    if (tune) {
        MP_TRY(teacher_at(J, blk->index));
        if (s0.n_heads == 0)
            memcpy(J->ht2, J->ht, hbytes);
    }

    /* 1-2. Attention: the dense heads' o_proj inputs, then o_proj refit to the kept heads. */
    if (s0.n_heads > 0) {
        mp_block view = *blk;
        view.shape.ffn = 0;
        if (tune)
            MP_TRY(teacher_sub(J, &view, J->ht, J->h, &blk->lin[MP_LIN_O]));
        memcpy(J->hwork, J->h, hbytes);
        MP_TRY(collect(J, &view, J->hwork, MP_IN_O, s0.n_heads * hd, own[0],
                       tune ? J->ytgt : NULL, &blk->lin[MP_LIN_O], &ha));
        memset(kmask, 0, (size_t)(s0.n_heads * hd) * sizeof *kmask);
        for (int64_t i = 0; i < bp->n_kv; i++)
            for (int64_t j = 0; j < bp->q_per_kv; j++) {
                int64_t head = bp->kv[i] * G + bp->q[i * bp->q_per_kv + j];
                for (int64_t t = 0; t < hd; t++)
                    kmask[head * hd + t] = true;
            }
        if (bp->n_kv > 0)
            MP_TRY(compensate(J, &blk->lin[MP_LIN_O], kmask, &ha, own[0], hd));
        mp_block_plan attn = {bp->n_kv, bp->kv, bp->q_per_kv, bp->q, s0.ffn, iota};
        MP_TRY(mp_prune_agree(J, mp_block_apply_plan(c, &attn, blk)));
    }
    /* The pruned attention's output: the FFN's input (hwork). A block whose heads all stay
     * has it already: the dense run above left h + attention(h) in hwork, and the identity
     * cut computes the same products. */
    /* (Mask tuning rescales whole sub-blocks too: their outputs change.) */
    bool attn_whole = s0.n_heads > 0 && bp->n_kv == s0.n_kv_heads && bp->q_per_kv == G && !tune;
    bool ffn_whole = s0.ffn > 0 && bp->n_ffn == s0.ffn && !tune;
    if (!attn_whole)
        memcpy(J->hwork, J->h, hbytes);
    if (blk->shape.n_heads > 0 && !attn_whole) {
        mp_block view = *blk;
        view.shape.ffn = 0;
        double t = mp_comm_wtime();
        local = mp_prune_run_block(J, &view, J->hwork, NULL);
        J->t_stage[ST_FORWARD] += mp_comm_wtime() - t;
        MP_TRY(mp_prune_agree(J, local));
    }
    /* 3. FFN: the dense neurons' down_proj inputs, then down_proj refit to the kept ones. */
    if (s0.ffn > 0) {
        mp_block view = *blk;
        view.shape.n_heads = view.shape.n_kv_heads = 0;
        if (tune)
            MP_TRY(teacher_sub(J, &view, J->ht2, J->hwork, &blk->lin[MP_LIN_DOWN]));
        memcpy(J->hwork2, J->hwork, hbytes);
        MP_TRY(collect(J, &view, J->hwork2, MP_IN_DOWN, s0.ffn, own[1],
                       tune ? J->ytgt : NULL, &blk->lin[MP_LIN_DOWN], &hf));
        memset(kmask, 0, (size_t)s0.ffn * sizeof *kmask);
        for (int64_t i = 0; i < bp->n_ffn; i++)
            kmask[bp->ffn[i]] = true;
        if (bp->n_ffn > 0)
            MP_TRY(compensate(J, &blk->lin[MP_LIN_DOWN], kmask, &hf, own[1], 1));
        int64_t nkv = blk->shape.n_kv_heads, qpk = nkv > 0 ? blk->shape.n_heads / nkv : 0;
        for (int64_t i = 0; i < nkv; i++)
            for (int64_t j = 0; j < qpk; j++)
                qiota[i * qpk + j] = j;
        mp_block_plan ffn = {nkv, iota, qpk, qiota, bp->n_ffn, bp->ffn};
        MP_TRY(mp_prune_agree(J, mp_block_apply_plan(c, &ffn, blk)));
    }
    /* 4. The block's output (with every neuron kept: the dense FFN run's, in hwork2). */
    if (advance && ffn_whole) {
        float *tmp = J->h;
        J->h = J->hwork2;
        J->hwork2 = tmp;
    } else if (advance) {
        if (blk->shape.ffn > 0) {
            mp_block view = *blk;
            view.shape.n_heads = view.shape.n_kv_heads = 0;
            double t = mp_comm_wtime();
            local = mp_prune_run_block(J, &view, J->hwork, NULL);
            J->t_stage[ST_FORWARD] += mp_comm_wtime() - t;
            MP_TRY(mp_prune_agree(J, local));
        }
        float *tmp = J->h;
        J->h = J->hwork;
        J->hwork = tmp;
    }
    if (tune) {
        /* The teacher's block output (ht2) is the next block's teacher input. */
        float *tmp = J->ht;
        J->ht = J->ht2;
        J->ht2 = tmp;
        J->ht_block = blk->index + 1;
    }
    if (keep) {
        keep[0] = ha;
        keep[1] = hf;
        ha = (hstat){0};
        hf = (hstat){0};
    }
done:
    hstat_free(&ha);
    hstat_free(&hf);
    free(iota);
    free(qiota);
    free(kmask);
    return st;
}

static mp_status ensure_scratch(job *J)
{
    int64_t nh = (J->s1 - J->s0) * J->o->seqlen * J->md.cfg.d;
    if (!J->hwork2 && !(J->hwork2 = mp_malloc((size_t)(nh ? nh : 1) * sizeof(float))))
        return mp_error(MP_ERR_NOMEM, "cannot allocate hidden states for %lld sequences",
                        (long long)(J->s1 - J->s0));
    return MP_OK;
}

mp_status mp_structured_block(job *J, mp_block *blk, bool advance)
{
    mp_status st = mp_prune_agree(J, ensure_scratch(J));
    if (st != MP_OK)
        return st;
    /* Spread over ranks; the final pass keeps nothing, so any fixed choice is as good. */
    int own[2] = {(int)((2 * blk->index) % J->P), (int)((2 * blk->index + 1) % J->P)};
    return struct_block(J, blk, own, NULL, advance);
}

/* ---- the search ---- */

/* Sub-blocks onto ranks, largest chain first (a chain costs about dim³). */
static mp_status assign_subs(const job *J, int *owner)
{
    const mp_model_config *c = &J->md.cfg;
    int64_t n = 2 * c->n_layers;
    double *w = mp_malloc((size_t)n * sizeof *w);
    if (!w)
        return mp_error(MP_ERR_NOMEM, "cannot allocate the owners of %lld layers", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        mp_block_shape s = mp_layer_shape(c, i / 2);
        double dim = i % 2 == 0 ? (double)(s.n_heads * c->head_dim) : (double)s.ffn;
        w[i] = dim * dim * dim + 1.0;
    }
    mp_status st = mp_assign_largest_first(w, n, J->P, owner);
    free(w);
    return st;
}

/* Mean loss of the first loss_samples calibration sequences on h (the last block's output);
 * every rank gets it. h is overwritten. Collective. */
static mp_status trace_loss(job *J, double *loss)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    int64_t T = J->o->seqlen, want = J->o->st.loss_samples;
    int64_t a = J->s0, b = J->s1 < want ? J->s1 : want;
    mp_head *head = NULL;
    double *nll = NULL, mine[2] = {0.0, 0.0}, *all = NULL;
    int64_t *counts = mp_malloc((size_t)J->P * sizeof *counts);
    all = mp_malloc((size_t)(2 * J->P) * sizeof *all);
    if (!counts || !all)
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the loss trace");
    if (local == MP_OK && b > a) {
        nll = mp_malloc((size_t)(b - a) * sizeof *nll);
        local = nll ? mp_head_load(c, &J->md.src, &head)
                    : mp_error(MP_ERR_NOMEM, "cannot allocate the loss trace");
        if (local == MP_OK)
            local = mp_head_nll(c, head, J->h, J->tok.ids + a * T, b - a, T, nll);
        for (int64_t i = 0; local == MP_OK && i < b - a; i++) {
            mine[0] += nll[i];
            mine[1] += 1.0;
        }
    }
    MP_TRY(mp_prune_agree(J, local));
    for (int r = 0; r < J->P; r++)
        counts[r] = 2;
    MP_TRY(mp_comm_gatherv_f64(J->comm, mine, 2, all, counts, 0));
    double sum = 0.0, cnt = 0.0;
    if (J->rank == 0)
        for (int r = 0; r < J->P; r++) {
            sum += all[2 * r];
            cnt += all[2 * r + 1];
        }
    *loss = cnt > 0 ? sum / cnt : 0.0;
    MP_TRY(mp_comm_bcast(J->comm, loss, (int64_t)sizeof *loss, 0));
done:
    mp_head_free(&head);
    free(nll);
    free(counts);
    free(all);
    return st;
}

static mp_status reembed(job *J)
{
    free(J->h);
    free(J->hwork);
    J->h = J->hwork = NULL;
    return mp_prune_embed(J);
}

/* Rank 0: appends the round's record to the trace. */
static mp_status trace_round(job *J, int64_t r, double loss, double cum_target, double freed,
                             double cost_after, const mp_chain *ch, const int64_t *taken,
                             int64_t nc)
{
    cJSON *rounds = cJSON_GetObjectItemCaseSensitive(J->search, "rounds");
    cJSON *x = cJSON_CreateObject(), *rm = NULL;
    bool ok = x && cJSON_AddNumberToObject(x, "round", (double)r) &&
              cJSON_AddNumberToObject(x, "calib_loss_before", loss) &&
              cJSON_AddNumberToObject(x, "target_removed_so_far", cum_target) &&
              cJSON_AddNumberToObject(x, "removed_this_round", freed) &&
              cJSON_AddNumberToObject(x, "cost_after", cost_after) &&
              (rm = cJSON_AddArrayToObject(x, "removed"));
    for (int64_t i = 0; ok && i < nc; i++) {
        if (taken[i] == 0)
            continue;
        double sc = 0.0, co = 0.0;
        for (int64_t k = 0; k < taken[i]; k++) {
            sc += ch[i].score[k];
            co += ch[i].cost[k];
        }
        cJSON *u = cJSON_CreateObject();
        ok = u && cJSON_AddNumberToObject(u, "block", (double)ch[i].block) &&
             cJSON_AddStringToObject(u, "sub", ch[i].kind == 0 ? "attention" : "ffn") &&
             cJSON_AddNumberToObject(u, "units", (double)taken[i]) &&
             cJSON_AddNumberToObject(u, "score", sc) && cJSON_AddNumberToObject(u, "cost", co) &&
             cJSON_AddNumberToObject(u, "scale", ch[i].scale);
        if (!ok)
            cJSON_Delete(u);
        else
            ok = mp_json_add(rm, NULL, u);
    }
    if (!ok || !cJSON_IsArray(rounds) || !cJSON_AddItemToArray(rounds, x)) {
        cJSON_Delete(x);
        return mp_error(MP_ERR_NOMEM, "cannot grow the search trace");
    }
    return MP_OK;
}

/* Every rank replaces block b's attention part (from own_a) or FFN part (from own_f) of the
 * plan by the one `from` computed. Collective. */
static mp_status share_part(job *J, int64_t b, bool attn, int root, const mp_block_plan *from)
{
    mp_status st = MP_OK, local = MP_OK;
    mp_block_plan *cur = &J->plan.b[b];
    int64_t cnt[2] = {0, 0};
    int64_t *a = NULL, *q = NULL;
    if (J->rank == root)
        cnt[0] = attn ? from->n_kv : from->n_ffn, cnt[1] = attn ? from->q_per_kv : 0;
    MP_TRY(mp_comm_bcast(J->comm, cnt, (int64_t)sizeof cnt, root));
    a = mp_malloc((size_t)(cnt[0] + 1) * sizeof *a);
    q = mp_malloc((size_t)(cnt[0] * cnt[1] + 1) * sizeof *q);
    if (!a || !q)
        local = mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate its plan", (long long)b);
    MP_TRY(mp_prune_agree(J, local));
    if (J->rank == root) {
        memcpy(a, attn ? from->kv : from->ffn, (size_t)cnt[0] * sizeof *a);
        if (attn)
            memcpy(q, from->q, (size_t)(cnt[0] * cnt[1]) * sizeof *q);
    }
    MP_TRY(mp_comm_bcast(J->comm, a, cnt[0] * (int64_t)sizeof *a, root));
    if (attn)
        MP_TRY(mp_comm_bcast(J->comm, q, cnt[0] * cnt[1] * (int64_t)sizeof *q, root));
    local = attn ? mp_plan_set_block(&J->plan, b, cnt[0], a, cnt[1], q, cur->n_ffn, cur->ffn)
                 : mp_plan_set_block(&J->plan, b, cur->n_kv, cur->kv, cur->q_per_kv, cur->q,
                                     cnt[0], a);
    MP_TRY(mp_prune_agree(J, local));
done:
    free(a);
    free(q);
    return st;
}

/* The forward probe of one sub-block (the owner, round 0, on the dense model): its chain's
 * cheapest units worth probe_fraction of its cost go (compensated as the run would), the probe
 * sequences run from that block's stored inputs ph through the rest of the dense model, and
 * the scale is the calibration loss increase over the summed scores of the removed units:
 * loss per unit of score, the same currency for every layer. Not collective. */
static mp_status probe_sub(job *J, const mp_block *dense, bool attn, const mp_block_chain *ch,
                           const hstat *hs, const float *ph, int64_t np, const mp_head *head,
                           double base, double *scale)
{
    mp_status st = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    const mp_struct_opts *so = &J->o->st;
    int64_t b = dense->index, T = J->o->seqlen, L = c->n_layers;
    mp_plan plan = {0};
    mp_block *blk = NULL, *next = NULL;
    float *x = NULL;
    double *Wd = NULL, *W = NULL, *nll = NULL, *bias = NULL;
    bool *keep = NULL;
    *scale = 1.0;
    if (ch->n == 0)
        return MP_OK;
    double total = sub_cost(c, b, attn, so->chain.flops, T), got = 0.0, sum = 0.0;
    int64_t k = 0;
    while (k < ch->n && (k == 0 || got < so->probe_fraction * total)) {
        got += ch->cost[k];
        sum += ch->score[k];
        k++;
    }
    MP_TRY(mp_plan_identity(c, &plan));
    MP_TRY(mp_block_chain_plan(c, dense, attn ? ch : NULL, attn ? k : 0, attn ? NULL : ch,
                               attn ? 0 : k, &plan));
    MP_TRY(mp_block_load(c, &J->md.src, b, &blk));
    MP_TRY(mp_structured_add_biases(J, blk));
    mp_linear *l = &blk->lin[attn ? MP_LIN_O : MP_LIN_DOWN];
    const mp_block_plan *bp = &plan.b[b];
    if (so->compensate || so->bias_comp) {
        int64_t rows = l->out, cols = l->in, G = blk->shape.n_heads / blk->shape.n_kv_heads;
        Wd = mp_malloc((size_t)(rows * cols) * sizeof *Wd);
        W = mp_malloc((size_t)(rows * cols) * sizeof *W);
        keep = mp_calloc((size_t)cols, sizeof *keep);
        bias = mp_calloc((size_t)rows, sizeof *bias);
        if (!Wd || !W || !keep || !bias)
            MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate the probe", (long long)b);
        if (attn) {
            for (int64_t i = 0; i < bp->n_kv; i++)
                for (int64_t j = 0; j < bp->q_per_kv; j++)
                    for (int64_t t = 0; t < c->head_dim; t++)
                        keep[(bp->kv[i] * G + bp->q[i * bp->q_per_kv + j]) * c->head_dim + t] =
                            true;
        } else {
            for (int64_t i = 0; i < bp->n_ffn; i++)
                keep[bp->ffn[i]] = true;
        }
        for (int64_t i = 0; i < rows * cols; i++)
            Wd[i] = (double)l->w[i];
        MP_TRY(fit(J, Wd, rows, cols, hs, keep, W, bias));
        for (int64_t i = 0; i < rows * cols; i++)
            l->w[i] = (float)W[i];
        for (int64_t r = 0; so->bias_comp && r < rows; r++)
            l->b[r] = (float)((double)l->b[r] + bias[r]);
    }
    MP_TRY(mp_block_apply_plan(c, bp, blk));
    size_t n = (size_t)(np * T * c->d);
    x = mp_malloc(n * sizeof *x);
    nll = mp_malloc((size_t)np * sizeof *nll);
    if (!x || !nll)
        MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate the probe", (long long)b);
    memcpy(x, ph + (size_t)b * n, n * sizeof *x);
    MP_TRY(mp_block_forward(c, blk, x, np, T, NULL));
    for (int64_t m = b + 1; m < L; m++) {
        MP_TRY(mp_block_load(c, &J->md.src, m, &next));
        MP_TRY(mp_block_forward(c, next, x, np, T, NULL));
        mp_block_free(&next);
    }
    MP_TRY(mp_head_nll(c, head, x, J->tok.ids, np, T, nll));
    double loss = 0.0;
    for (int64_t i = 0; i < np; i++)
        loss += nll[i];
    loss /= (double)np;
    /* A removal that does not raise the loss still costs something: a floor keeps the scale
     * positive and such a layer first in line. */
    double dl = loss - base > 1e-6 * fabs(base) ? loss - base : 1e-6 * fabs(base);
    *scale = sum > 0.0 ? dl / sum : 1.0;
done:
    mp_plan_free(&plan);
    mp_block_free(&blk);
    mp_block_free(&next);
    free(x);
    free(Wd);
    free(W);
    free(bias);
    free(nll);
    free(keep);
    return st;
}

/* Rank 0: the probe scales the first round measured, from the trace ([nsub]); false if none. */
static bool probe_scales(const job *J, double *scale, int64_t nsub)
{
    /* The bits: the decimals of "probe_scale" (for people) need not read back exactly. */
    cJSON *a = J->search ? cJSON_GetObjectItemCaseSensitive(J->search, "probe_scale_bits") : NULL;
    return a && mp_json_f64_unbits(a, scale, nsub);
}

/* One round of the search: the pass, the chains, the coordinator's selection, the new plan.
 * Collective. */
static mp_status search_round(job *J, int64_t r, const double *cum, const int *owner,
                              const double *dense, double target_total, mp_progress *pg)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    const mp_struct_opts *so = &J->o->st;
    int64_t L = c->n_layers, nsub = 2 * L;
    hstat *hs = mp_calloc((size_t)nsub, sizeof *hs);
    mp_block_chain *bc = mp_calloc((size_t)nsub, sizeof *bc);
    mp_chain *ch = mp_calloc((size_t)nsub, sizeof *ch);
    double **sbuf = mp_calloc((size_t)nsub, sizeof *sbuf);
    int64_t *taken = mp_calloc((size_t)nsub, sizeof *taken);
    double *cur = mp_malloc((size_t)nsub * sizeof *cur);
    double *resid = mp_calloc((size_t)nsub, sizeof *resid);
    mp_block *blk = NULL;
    mp_plan newp = {0};
    double *pscale = mp_calloc((size_t)nsub, sizeof *pscale);
    float *ph = NULL;
    mp_head *head = NULL;
    mp_gscores gsc = {0};
    double *given = NULL;
    if (!hs || !bc || !ch || !sbuf || !taken || !cur || !resid || !pscale)
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the search round");
    if (local == MP_OK)
        local = reembed(J);
    MP_TRY(mp_prune_agree(J, local));
    /* The probe scales are measured once, in the first round (on the input model). */
    int64_t measure = 0, np = so->loss_samples < J->o->nsamples ? so->loss_samples
                                                                 : J->o->nsamples;
    if (J->rank == 0 && so->norm == MP_NORM_PROBE)
        measure = !probe_scales(J, pscale, nsub);
    MP_TRY(mp_comm_bcast(J->comm, &measure, (int64_t)sizeof measure, 0));
    size_t pn = (size_t)(np * J->o->seqlen * c->d);
    if (measure && !(ph = mp_malloc((size_t)L * pn * sizeof *ph)))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the probe's hidden states (%lld "
                         "blocks of %lld sequences)", (long long)L, (long long)np);
    MP_TRY(mp_prune_agree(J, local));

    /* The pass: every block as the current plan prunes it. */
    for (int64_t b = 0; b < L; b++) {
        MP_TRY(mp_prune_agree(J, mp_block_load(c, &J->md.src, b, &blk)));
        if (measure) {
            /* Every rank keeps the probe sequences' inputs of every block. */
            int64_t a = J->s0 < np ? J->s0 : np, e = J->s1 < np ? J->s1 : np, tot = 0;
            MP_TRY(mp_comm_allgatherv_f32(J->comm, J->h, (e - a) * J->o->seqlen * c->d,
                                          ph + (size_t)b * pn, &tot));
        }
        int own[2] = {owner[2 * b], owner[2 * b + 1]};
        MP_TRY(struct_block(J, blk, own, &hs[2 * b], true));
        mp_block_free(&blk);
        char detail[64];
        snprintf(detail, sizeof detail, "round %lld/%lld, block", (long long)r + 1,
                 (long long)so->rounds);
        mp_progress_step(pg, r * L + b + 1, (double)(J->o->nsamples * J->o->seqlen) *
                         (double)((r - J->search_round) * L + b + 1) * 2.0, detail);
    }
    double loss = 0.0;
    MP_TRY(trace_loss(J, &loss));

    /* Gradient scorers: a float64 forward and backward pass over the calibration windows of
     * the model as the plan masks it (mp_gradscore.h). */
    if (mp_structured_gradient(so->chain.scorer)) {
        double tg = mp_comm_wtime();
        mp_progress_note(pg, "round %lld/%lld: gradient pass (float64 forward and backward)",
                         (long long)r + 1, (long long)so->rounds);
        MP_TRY(mp_gscores_compute_ex(c, &J->md.src, &J->plan,
                                     J->tok.ids + J->s0 * J->o->seqlen, J->s1 - J->s0,
                                     J->o->seqlen, MP_GRAD_MEMORY, J->comm, NULL,
                                     mp_structured_grad_flags(so->chain.scorer), &gsc));
        J->t_stage[ST_FORWARD] += mp_comm_wtime() - tg;
        MP_TRY(grad_ema(J, &gsc));
    }

    /* The chains of this rank's sub-blocks, from the current plan on. */
    double t = mp_comm_wtime();
    mp_chain_opts co = so->chain;
    for (int64_t s = 0; s < nsub && local == MP_OK; s++) {
        if (owner[s] != J->rank || !hs[s].H)
            continue;
        int64_t b = s / 2;
        if (!blk || blk->index != b) {
            mp_block_free(&blk);
            local = mp_block_load(c, &J->md.src, b, &blk);
        }
        /* With an intercept the OBS error is that of the centred problem (mp_struct.h). */
        if (local == MP_OK && so->bias_comp && co.scorer == MP_SCORE_OBS) {
            mp_struct_center(hs[s].H, hs[s].mean, hs[s].dim);
            hs[s].centered = true;
        }
        if (local == MP_OK && gsc.n_blocks > 0) {
            free(given);
            given = NULL;
            local = grad_columns(J, &gsc, s, &given);
            co.given = given;
        }
        if (local == MP_OK)
            local = mp_block_chain_build_from(c, blk, s % 2 == 0, hs[s].H, hs[s].mean, &co,
                                              J->o->seqlen, &J->plan.b[b], -1, NULL, &bc[s]);
        if (local == MP_OK && measure && !head)
            local = mp_head_load(c, &J->md.src, &head);
        if (local == MP_OK && measure)
            local = probe_sub(J, blk, s % 2 == 0, &bc[s], &hs[s], ph, np, head, loss,
                              &pscale[s]);
        resid[s] = hs[s].resid;
        hstat_free(&hs[s]);
    }
    mp_block_free(&blk);
    J->t_stage[ST_SOLVE] += mp_comm_wtime() - t;
    MP_TRY(mp_prune_agree(J, local));

    /* Every chain's scores and costs to the coordinator, in sub-block order. */
    for (int64_t s = 0; s < nsub; s++) {
        double hdr[4] = {(double)bc[s].n, bc[s].energy, resid[s], pscale[s]};
        if (owner[s] != 0) {
            if (J->rank == owner[s])
                MP_TRY(mp_comm_send_f64(J->comm, hdr, 4, 0, TAG_SUB + 10));
            else if (J->rank == 0)
                MP_TRY(mp_comm_recv_f64(J->comm, hdr, 4, owner[s], TAG_SUB + 10));
        }
        if (J->rank == 0 && measure)
            pscale[s] = hdr[3];
        int64_t n = (int64_t)hdr[0];
        if (J->rank == 0 && !(sbuf[s] = mp_malloc((size_t)(2 * n + 1) * sizeof(double))))
            local = mp_error(MP_ERR_NOMEM, "cannot allocate a chain of %lld units", (long long)n);
        MP_TRY(mp_prune_agree(J, local));
        if (J->rank == owner[s] && (J->rank == 0 || n > 0)) {
            double *dst = J->rank == 0 ? sbuf[s] : NULL;
            double *tmp = dst ? dst : mp_malloc((size_t)(2 * n + 1) * sizeof(double));
            if (!tmp)
                local = mp_error(MP_ERR_NOMEM, "cannot allocate a chain of %lld units",
                                 (long long)n);
            else {
                /* (An empty chain has no arrays: every unit of the layer is at its floor.) */
                if (n > 0) {
                    memcpy(tmp, bc[s].score, (size_t)n * sizeof(double));
                    memcpy(tmp + n, bc[s].cost, (size_t)n * sizeof(double));
                }
                if (!dst) {
                    local = mp_comm_send_f64(J->comm, tmp, 2 * n, 0, TAG_SUB + 11);
                    free(tmp);
                }
            }
        } else if (J->rank == 0 && n > 0) {
            local = mp_comm_recv_f64(J->comm, sbuf[s], 2 * n, owner[s], TAG_SUB + 11);
        }
        MP_TRY(mp_prune_agree(J, local));
        if (J->rank == 0) {
            ch[s] = (mp_chain){.block = s / 2, .kind = (int)(s % 2), .n = n, .score = sbuf[s],
                               .cost = sbuf[s] + n, .scale = 1.0};
            mp_search_normalize(&ch[s], so->norm,
                                so->norm == MP_NORM_RESIDUAL ? hdr[2] : hdr[1], pscale[s]);
        }
    }

    /* The coordinator: this round's share of the budget, globally or uniformly. */
    MP_TRY(mp_prune_agree(J, plan_costs(J, &J->plan, true, cur)));
    double now = 0.0, before = 0.0, freed = 0.0;
    for (int64_t s = 0; s < nsub; s++) {
        now += cur[s];
        before += dense[s];
    }
    double want = cum[r] * target_total - (before - now);
    /* --max-remove: no layer loses more than that share of its cost (OWL's bounded deviation
     * from uniform, against a scale that favours a few layers too much). */
    for (int64_t q = 0; J->rank == 0 && so->max_remove < 1.0 && q < nsub; q++) {
        double room = so->max_remove * dense[q] - (dense[q] - cur[q]), acc = 0.0;
        int64_t k = 0;
        while (k < ch[q].n && acc + ch[q].cost[k] <= room + 1e-9 * dense[q])
            acc += ch[q].cost[k++];
        ch[q].n = k;
    }
    if (J->rank == 0) {
        if (so->uniform) {
            double *base = mp_malloc((size_t)nsub * sizeof *base);
            if (!base) {
                local = mp_error(MP_ERR_NOMEM, "cannot allocate the uniform allocation");
            } else {
                for (int64_t s = 0; s < nsub; s++)
                    base[s] = dense[s] - cur[s];
                /* A sub-block absent from the start has nothing to share. */
                double *tot = mp_malloc((size_t)nsub * sizeof *tot);
                if (!tot)
                    local = mp_error(MP_ERR_NOMEM, "cannot allocate the uniform allocation");
                for (int64_t s = 0; tot && s < nsub; s++)
                    tot[s] = dense[s] > 0.0 ? dense[s] : 1.0;
                if (local == MP_OK)
                    local = mp_search_select_uniform(ch, nsub, base, tot, want, taken, &freed);
                free(tot);
                free(base);
            }
        } else {
            local = mp_search_select(ch, nsub, want, taken, &freed);
        }
        if (local == MP_ERR_RANGE)
            local = mp_error(MP_ERR_ARG, "mpiprune prune: --target %s cannot be met: with the "
                             "floors of --min-keep and the --units given, at most %.6g of %.6g "
                             "can be removed", so->target_text, (before - now) + freed, before);
        if (local == MP_OK)
            local = trace_round(J, r, loss, cum[r] * target_total, freed, now - freed, ch, taken,
                                nsub);
        if (local == MP_OK && measure) {
            cJSON *a = cJSON_CreateDoubleArray(pscale, (int)nsub);
            if (!mp_json_add(J->search, "probe_scale", a) ||
                !mp_json_add(J->search, "probe_scale_bits", mp_json_f64_bits(pscale, nsub)))
                local = mp_error(MP_ERR_NOMEM, "cannot grow the search trace");
        }
    }
    MP_TRY(mp_prune_agree(J, local));
    MP_TRY(mp_comm_bcast(J->comm, taken, nsub * (int64_t)sizeof *taken, 0));

    /* The owners turn the taken prefixes into the plan; everyone adopts it. */
    for (int64_t s = 0; s < nsub; s++) {
        int64_t b = s / 2;
        bool attn = s % 2 == 0;
        if (J->rank == owner[s]) {
            mp_block shape = {.index = b, .shape = mp_layer_shape(c, b)};
            local = mp_plan_identity(c, &newp);
            if (local == MP_OK)
                local = mp_block_chain_plan_from(c, &shape, &J->plan.b[b], attn ? &bc[s] : NULL,
                                                 attn ? taken[s] : 0, attn ? NULL : &bc[s],
                                                 attn ? 0 : taken[s], &newp);
        }
        MP_TRY(mp_prune_agree(J, local));
        MP_TRY(share_part(J, b, attn, owner[s], J->rank == owner[s] ? &newp.b[b] : NULL));
        mp_plan_free(&newp);
    }
    MP_TRY(mp_prune_agree(J, mp_plan_check(c, &J->plan, "the search's plan")));
    mp_progress_note(pg, "round %lld/%lld: calibration loss %.6f before it; removed %.6g "
                     "(%s), %.4f of the blocks' %s kept", (long long)r + 1,
                     (long long)so->rounds, loss, freed, so->chain.flops ? "FLOPs/token"
                     : "parameters", (now - freed) / before,
                     so->chain.flops ? "FLOPs" : "parameters");
done:
    for (int64_t s = 0; hs && s < nsub; s++)
        hstat_free(&hs[s]);
    for (int64_t s = 0; bc && s < nsub; s++)
        mp_block_chain_free(&bc[s]);
    for (int64_t s = 0; sbuf && s < nsub; s++)
        free(sbuf[s]);
    mp_plan_free(&newp);
    mp_block_free(&blk);
    free(hs);
    free(bc);
    free(ch);
    free(sbuf);
    free(taken);
    free(cur);
    free(resid);
    free(pscale);
    free(ph);
    free(given);
    mp_gscores_free(&gsc);
    mp_head_free(&head);
    return st;
}

/* ---- --method kwon ---- */

/* Rank 0: the kwon round's trace record. */
static mp_status kwon_trace(job *J, double loss, double target, double freed, double after,
                            double kept_fisher, int64_t att_total, const cJSON *layers)
{
    cJSON *rounds = cJSON_GetObjectItemCaseSensitive(J->search, "rounds");
    cJSON *x = cJSON_CreateObject();
    bool ok = x && cJSON_AddNumberToObject(x, "round", 0) &&
              cJSON_AddStringToObject(x, "method", "kwon") &&
              cJSON_AddNumberToObject(x, "calib_loss_before", loss) &&
              cJSON_AddNumberToObject(x, "target_removed_so_far", target) &&
              cJSON_AddNumberToObject(x, "removed_this_round", freed) &&
              cJSON_AddNumberToObject(x, "cost_after", after) &&
              cJSON_AddNumberToObject(x, "kept_fisher", kept_fisher) &&
              cJSON_AddNumberToObject(x, "attention_units_kept", (double)att_total) &&
              mp_json_add(x, "removed", cJSON_Duplicate(layers, 1));
    if (!ok || !cJSON_IsArray(rounds) || !cJSON_AddItemToArray(rounds, x)) {
        cJSON_Delete(x);
        return mp_error(MP_ERR_NOMEM, "cannot grow the search trace");
    }
    return MP_OK;
}

/* Rank 0: the mask search and rearrangement on the gradient pass's numbers; newp gets the plan
 * and `removed` one record per sub-block. u[2L] are the unit costs (a KV group with its heads,
 * a neuron), budget what the units may keep. */
static mp_status kwon_plan(const job *J, const mp_gscores *gs, const double *u, double budget,
                           mp_plan *newp, cJSON *removed, double *kept_fisher,
                           int64_t *att_total)
{
    mp_status st = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    const mp_chain_opts *co = &J->o->st.chain;
    int64_t L = c->n_layers, nb = gs->n_win, maxw = 1;
    for (int64_t b = 0; b < L; b++) {
        mp_block_shape s = gs->shape[b];
        maxw = s.n_kv_heads > maxw ? s.n_kv_heads : maxw;
        maxw = s.ffn > maxw ? s.ffn : maxw;
    }
    mp_kwon_layer *ly = mp_calloc((size_t)L, sizeof *ly);
    double *fa = mp_malloc((size_t)(L * maxw) * sizeof *fa), *ff = mp_malloc((size_t)(L * maxw) * sizeof *ff);
    double *g = mp_malloc((size_t)(nb * maxw + 1) * sizeof *g);
    int64_t *ak = mp_malloc((size_t)L * sizeof *ak), *fk = mp_malloc((size_t)L * sizeof *fk);
    int64_t *kv = mp_malloc((size_t)(maxw + 1) * sizeof *kv), *q = NULL, *fn = NULL;
    bool *keep = mp_malloc((size_t)(maxw + 1) * sizeof *keep);
    if (!ly || !fa || !ff || !g || !ak || !fk || !kv || !keep)
        MP_FAIL(MP_ERR_NOMEM, "kwon: cannot allocate the mask search");
    bool att_on = co->kv_groups || co->heads;
    for (int64_t b = 0; b < L; b++) {
        mp_block_shape s = gs->shape[b];
        int64_t nh = s.n_heads, nkv = s.n_kv_heads, F = s.ffn, w = nh + F;
        int64_t G = nkv > 0 ? nh / nkv : 0;
        double *a = fa + b * maxw, *f = ff + b * maxw;
        /* A KV group's mask multiplies all its heads: its gradient is the sum of theirs. */
        for (int64_t k = 0; k < nkv; k++) {
            a[k] = 0.0;
            for (int64_t t = 0; t < nb; t++) {
                double v = 0.0;
                for (int64_t h = k * G; h < (k + 1) * G; h++)
                    v += gs->win[b][t * w + h];
                a[k] += v * v;
            }
        }
        for (int64_t j = 0; j < F; j++)
            f[j] = gs->ffn[b][MP_GSCORE_FISHER * F + j];
        ly[b] = (mp_kwon_layer){
            .n_att = nkv, .att_fisher = a, .att_cost = u[2 * b] > 0 ? u[2 * b] : 1.0,
            .att_min = att_on ? co->min_kv : nkv,
            .n_ffn = F, .ffn_fisher = f, .ffn_cost = u[2 * b + 1] > 0 ? u[2 * b + 1] : 1.0,
            .ffn_min = co->ffn ? co->min_ffn : F};
    }
    double kc = 0.0;
    st = mp_kwon_search(ly, L, co->ffn_multiple, budget, ak, fk, kept_fisher, &kc, att_total);
    if (st == MP_ERR_RANGE)
        st = mp_error(MP_ERR_ARG, "mpiprune prune: --target %s cannot be met: the floors of "
                      "--min-keep keep more (%s)", J->o->st.target_text, mp_error_message());
    MP_TRY(st);
    for (int64_t b = 0; b < L; b++) {
        mp_block_shape s = gs->shape[b];
        int64_t nh = s.n_heads, nkv = s.n_kv_heads, F = s.ffn, w = nh + F;
        int64_t G = nkv > 0 ? nh / nkv : 0, swa = 0, swf = 0;
        double lba = 0, laa = 0, lbf = 0, laf = 0;
        /* Attention: the groups' gradient vectors, rearranged at the searched count. */
        for (int64_t t = 0; t < nb; t++)
            for (int64_t k = 0; k < nkv; k++) {
                double v = 0.0;
                for (int64_t h = k * G; h < (k + 1) * G; h++)
                    v += gs->win[b][t * w + h];
                g[t * nkv + k] = v;
            }
        MP_TRY(mp_kwon_rearrange(g, nb, nkv, ak[b], keep, &swa, &lba, &laa));
        int64_t n_kv = 0;
        for (int64_t k = 0; k < nkv; k++)
            if (keep[k])
                kv[n_kv++] = k;
        free(q);
        if (!(q = mp_malloc((size_t)(n_kv * G + 1) * sizeof *q)))
            MP_FAIL(MP_ERR_NOMEM, "kwon: cannot allocate a plan");
        for (int64_t i = 0; i < n_kv * G; i++)
            q[i] = i % G;
        double fa_rm = 0.0, ff_rm = 0.0;
        for (int64_t k = 0; k < nkv; k++)
            fa_rm += keep[k] ? 0.0 : fa[b * maxw + k];
        /* FFN: each neuron's gradient vector. */
        for (int64_t t = 0; t < nb; t++)
            memcpy(g + t * F, gs->win[b] + t * w + nh, (size_t)F * sizeof *g);
        bool *fkeep = mp_malloc((size_t)(F + 1) * sizeof *fkeep);
        free(fn);
        fn = mp_malloc((size_t)(F + 1) * sizeof *fn);
        if (!fkeep || !fn) {
            free(fkeep);
            MP_FAIL(MP_ERR_NOMEM, "kwon: cannot allocate a plan");
        }
        st = mp_kwon_rearrange(g, nb, F, fk[b], fkeep, &swf, &lbf, &laf);
        int64_t n_ffn = 0;
        for (int64_t j = 0; st == MP_OK && j < F; j++) {
            if (fkeep[j])
                fn[n_ffn++] = j;
            else
                ff_rm += ff[b * maxw + j];
        }
        free(fkeep);
        MP_TRY(st);
        MP_TRY(mp_plan_set_block(newp, b, n_kv, kv, n_kv > 0 ? G : 0, q, n_ffn, fn));
        for (int k = 0; k < 2; k++) {
            int64_t units = k == 0 ? nkv - n_kv : F - n_ffn;
            cJSON *x = cJSON_CreateObject();
            bool ok = x && cJSON_AddNumberToObject(x, "block", (double)b) &&
                      cJSON_AddStringToObject(x, "sub", k == 0 ? "attention" : "ffn") &&
                      cJSON_AddNumberToObject(x, "units", (double)units) &&
                      cJSON_AddNumberToObject(x, "score", k == 0 ? fa_rm : ff_rm) &&
                      cJSON_AddNumberToObject(x, "cost", (double)units * u[2 * b + k]) &&
                      cJSON_AddNumberToObject(x, "swaps", (double)(k == 0 ? swa : swf)) &&
                      cJSON_AddNumberToObject(x, "fisher_loss_diagonal", k == 0 ? lba : lbf) &&
                      cJSON_AddNumberToObject(x, "fisher_loss_rearranged", k == 0 ? laa : laf);
            if (!ok)
                cJSON_Delete(x);
            if (!ok || !mp_json_add(removed, NULL, x))
                MP_FAIL(MP_ERR_NOMEM, "cannot grow the search trace");
        }
    }
done:
    free(ly);
    free(fa);
    free(ff);
    free(g);
    free(ak);
    free(fk);
    free(kv);
    free(q);
    free(fn);
    free(keep);
    return st;
}

/* --method kwon's one round: a gradient pass over the dense model (per-sequence mask
 * gradients to the coordinator), the mask search and rearrangement there, the plan to every
 * rank. Collective. */
static mp_status kwon_round(job *J, const double *dense, double target_total, mp_progress *pg)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    int64_t L = c->n_layers, nsub = 2 * L;
    mp_gscores gs = {0};
    mp_plan p1 = {0}, newp = {0};
    double *c1 = mp_malloc((size_t)nsub * sizeof *c1), *u = mp_malloc((size_t)nsub * sizeof *u);
    double *cur = mp_malloc((size_t)nsub * sizeof *cur);
    int64_t *kv = NULL, *q = NULL, *fn = NULL;
    cJSON *removed = NULL;
    if (!c1 || !u || !cur)
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the kwon round");
    /* Unit costs: the dense cost less that with one KV group and one neuron fewer per block
     * (costs are affine in the counts). */
    if (local == MP_OK)
        local = mp_plan_identity(c, &p1);
    for (int64_t b = 0; local == MP_OK && b < L; b++) {
        mp_block_shape s = mp_layer_shape(c, b);
        int64_t G = s.n_kv_heads > 0 ? s.n_heads / s.n_kv_heads : 0;
        int64_t nkv = s.n_kv_heads > 0 ? s.n_kv_heads - 1 : 0, nf = s.ffn > 0 ? s.ffn - 1 : 0;
        free(kv);
        free(q);
        free(fn);
        kv = mp_malloc((size_t)(nkv + 1) * sizeof *kv);
        q = mp_malloc((size_t)(nkv * G + 1) * sizeof *q);
        fn = mp_malloc((size_t)(nf + 1) * sizeof *fn);
        if (!kv || !q || !fn) {
            local = mp_error(MP_ERR_NOMEM, "cannot allocate the kwon round");
            break;
        }
        for (int64_t i = 0; i < nkv; i++)
            kv[i] = i;
        for (int64_t i = 0; i < nkv * G; i++)
            q[i] = i % G;
        for (int64_t i = 0; i < nf; i++)
            fn[i] = i;
        local = mp_plan_set_block(&p1, b, nkv, kv, nkv > 0 ? G : 0, q, nf, fn);
    }
    if (local == MP_OK)
        local = plan_costs(J, &p1, false, c1);
    double before = 0.0, consts = 0.0;
    for (int64_t sb = 0; local == MP_OK && sb < nsub; sb++) {
        mp_block_shape s = mp_layer_shape(c, sb / 2);
        int64_t n = sb % 2 == 0 ? s.n_kv_heads : s.ffn;
        u[sb] = dense[sb] - c1[sb];
        before += dense[sb];
        consts += dense[sb] - (double)n * u[sb];
    }
    MP_TRY(mp_prune_agree(J, local));

    mp_progress_note(pg, "kwon: gradient pass (float64 forward and backward) over %lld "
                     "sequences, then the Fisher mask search and rearrangement",
                     (long long)J->o->nsamples);
    double tg = mp_comm_wtime();
    MP_TRY(mp_gscores_compute_ex(c, &J->md.src, NULL, J->tok.ids + J->s0 * J->o->seqlen,
                                 J->s1 - J->s0, J->o->seqlen, MP_GRAD_MEMORY, J->comm, NULL,
                                 MP_GSCORE_WINDOWS, &gs));
    J->t_stage[ST_FORWARD] += mp_comm_wtime() - tg;
    double t = mp_comm_wtime(), kept_fisher = 0.0, freed = 0.0, after = 0.0;
    int64_t att_total = 0;
    if (J->rank == 0) {
        removed = cJSON_CreateArray();
        local = removed ? mp_plan_identity(c, &newp)
                        : mp_error(MP_ERR_NOMEM, "cannot allocate the search trace");
        if (local == MP_OK)
            local = kwon_plan(J, &gs, u, before - target_total - consts, &newp, removed,
                              &kept_fisher, &att_total);
        if (local == MP_OK)
            local = plan_costs(J, &newp, true, cur);
        for (int64_t sb = 0; local == MP_OK && sb < nsub; sb++)
            after += cur[sb];
        freed = before - after;
        if (local == MP_OK)
            local = kwon_trace(J, gs.loss, target_total, freed, after, kept_fisher, att_total,
                               removed);
    }
    J->t_stage[ST_SOLVE] += mp_comm_wtime() - t;
    MP_TRY(mp_prune_agree(J, local));
    for (int64_t b = 0; b < L; b++)
        for (int k = 0; k < 2; k++)
            MP_TRY(share_part(J, b, k == 0, 0, J->rank == 0 ? &newp.b[b] : NULL));
    MP_TRY(mp_prune_agree(J, mp_plan_check(c, &J->plan, "the mask search's plan")));
    MP_TRY(mp_comm_bcast(J->comm, &freed, (int64_t)sizeof freed, 0));
    mp_progress_note(pg, "kwon: calibration loss %.6f (float64); removed %.6g (%s), %.4f of the "
                     "blocks' %s kept", gs.loss, freed,
                     J->o->st.chain.flops ? "FLOPs/token" : "parameters", (before - freed) / before,
                     J->o->st.chain.flops ? "FLOPs" : "parameters");
done:
    mp_gscores_free(&gs);
    mp_plan_free(&p1);
    mp_plan_free(&newp);
    free(c1);
    free(u);
    free(cur);
    free(kv);
    free(q);
    free(fn);
    cJSON_Delete(removed);
    return st;
}

mp_status mp_structured_search(job *J)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    const mp_struct_opts *so = &J->o->st;
    int64_t L = c->n_layers, R = so->rounds;
    double *cum = mp_malloc((size_t)R * sizeof *cum);
    double *dense = mp_malloc((size_t)(2 * L) * sizeof *dense);
    int *owner = mp_malloc((size_t)(2 * L) * sizeof *owner);
    mp_plan id = {0};
    mp_progress pg;
    if (!cum || !dense || !owner)
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the search");
    if (local == MP_OK)
        local = ensure_scratch(J);
    if (local == MP_OK)
        local = assign_subs(J, owner);
    if (local == MP_OK)
        local = mp_plan_identity(c, &id);
    if (local == MP_OK)
        local = plan_costs(J, &id, false, dense);
    if (local == MP_OK && J->rank == 0 && !J->search) {
        J->search = cJSON_CreateObject();
        if (!J->search || !cJSON_AddArrayToObject(J->search, "rounds"))
            local = mp_error(MP_ERR_NOMEM, "cannot allocate the search trace");
    }
    MP_TRY(mp_prune_agree(J, local));
    mp_search_schedule((int)R, cum);
    double before = 0.0;
    for (int64_t s = 0; s < 2 * L; s++)
        before += dense[s];
    double target_total = (1.0 - so->keep) * before;
    mp_progress_start(&pg, J->pg.enabled, "search", R * L);
    mp_progress_restart(&pg, J->search_round * L);
    if (J->search_round < R && so->kwon)
        mp_progress_note(&pg, "kwon: %s, removing %.6g of %.6g %s (mask tuning: %s)",
                         so->target_text, target_total, before,
                         so->chain.flops ? "FLOPs per token" : "parameters",
                         so->tune ? "yes" : so->compensation_name);
    else if (J->search_round < R)
        mp_progress_note(&pg, "structured search: %lld round(s) over %lld blocks, %s, removing "
                         "%.6g of %.6g %s (%s allocation, %s scores, %s normalisation)%s",
                         (long long)R, (long long)L, so->target_text, target_total, before,
                         so->chain.flops ? "FLOPs per token" : "parameters",
                         so->allocation_name, so->score_name, so->normalize_name,
                         J->search_round > 0 ? ", resumed" : "");
    for (int64_t r = J->search_round; r < R; r++) {
        if (so->kwon)
            MP_TRY(kwon_round(J, dense, target_total, &pg));
        else
            MP_TRY(search_round(J, r, cum, owner, dense, target_total, &pg));
        J->search_round = r + 1;
        bool last = r + 1 == R;
        mp_status sig = MP_OK;
        int who = -1;
        MP_TRY(mp_comm_agree(J->comm, mp_signals_pending() ? MP_ERR_INTERRUPTED : MP_OK, &sig,
                             &who));
        bool stopping = sig != MP_OK && !last;
        if (J->o->checkpoint && !last)
            MP_TRY(mp_prune_checkpoint_search(J));
        if (stopping) {
            if (J->rank != 0) {
                st = mp_error_remote(MP_ERR_INTERRUPTED, 0);
                goto done;
            }
            if (J->o->checkpoint)
                MP_FAIL(MP_ERR_INTERRUPTED, "stopped by a signal after search round %lld of "
                        "%lld; checkpoint %s written: run the same command to resume",
                        (long long)r + 1, (long long)R, J->o->checkpoint);
            MP_FAIL(MP_ERR_INTERRUPTED, "stopped by a signal after search round %lld of %lld "
                    "(no --checkpoint: a rerun starts over)", (long long)r + 1, (long long)R);
        }
    }
    /* The final pass embeds the sequences again. */
    free(J->h);
    free(J->hwork);
    J->h = J->hwork = NULL;
done:
    free(cum);
    free(dense);
    free(owner);
    mp_plan_free(&id);
    return st;
}

/* ---- report ---- */

static cJSON *plan_json(const job *J)
{
    const mp_model_config *c = &J->md.cfg;
    cJSON *arr = cJSON_CreateArray();
    for (int64_t b = 0; arr && b < c->n_layers; b++) {
        const mp_block_plan *p = &J->plan.b[b];
        mp_block_shape s = mp_layer_shape(c, b);
        cJSON *x = cJSON_CreateObject(), *kv = NULL, *q = NULL, *f = NULL;
        bool ok = x && cJSON_AddNumberToObject(x, "block", (double)b) &&
                  cJSON_AddNumberToObject(x, "kv_groups", (double)p->n_kv) &&
                  cJSON_AddNumberToObject(x, "heads_per_group", (double)p->q_per_kv) &&
                  cJSON_AddNumberToObject(x, "heads", (double)(p->n_kv * p->q_per_kv)) &&
                  cJSON_AddNumberToObject(x, "heads_before", (double)s.n_heads) &&
                  cJSON_AddNumberToObject(x, "ffn", (double)p->n_ffn) &&
                  cJSON_AddNumberToObject(x, "ffn_before", (double)s.ffn) &&
                  (kv = cJSON_AddArrayToObject(x, "kept_kv_groups")) &&
                  (q = cJSON_AddArrayToObject(x, "kept_heads")) &&
                  (f = cJSON_AddArrayToObject(x, "kept_neurons"));
        for (int64_t i = 0; ok && i < p->n_kv; i++) {
            ok = mp_json_add(kv, NULL, cJSON_CreateNumber((double)p->kv[i]));
            int64_t G = s.n_kv_heads > 0 ? s.n_heads / s.n_kv_heads : 0;
            for (int64_t j = 0; ok && j < p->q_per_kv; j++)
                ok = mp_json_add(q, NULL,
                                 cJSON_CreateNumber((double)(p->kv[i] * G + p->q[i * p->q_per_kv + j])));
        }
        for (int64_t i = 0; ok && i < p->n_ffn; i++)
            ok = mp_json_add(f, NULL, cJSON_CreateNumber((double)p->ffn[i]));
        if (!ok) {
            cJSON_Delete(x);
            x = NULL;
        }
        if (!mp_json_add(arr, NULL, x)) {
            cJSON_Delete(arr);
            arr = NULL;
        }
    }
    return arr;
}

cJSON *mp_structured_report(const job *J)
{
    const mp_model_config *c = &J->md.cfg;
    const mp_struct_opts *so = &J->o->st;
    mp_model_config *pc = mp_malloc(sizeof *pc);
    cJSON *x = cJSON_CreateObject();
    if (!pc || !x) {
        free(pc);
        cJSON_Delete(x);
        return NULL;
    }
    mp_plan_apply_config(c, &J->plan, pc);
    mp_structured_out_config(J, pc);
    double pb = 0, pa = 0, fb = 0, fa = 0, cb = 0, ca = 0;
    int64_t T = J->o->seqlen;
    for (int64_t l = 0; l < c->n_layers; l++) {
        pb += (double)mp_block_params(c, l);
        pa += (double)mp_block_params(pc, l);
        fb += mp_block_flops(c, l, 1, T) / (double)T;
        fa += mp_block_flops(pc, l, 1, T) / (double)T;
        for (int k = 0; k < 2; k++) {
            cb += sub_cost(c, l, k == 0, so->chain.flops, T);
            ca += sub_cost(pc, l, k == 0, so->chain.flops, T);
        }
    }
    cJSON *tg = NULL;
    bool ok = (tg = cJSON_AddObjectToObject(x, "budget")) &&
              cJSON_AddStringToObject(tg, "kind", so->chain.flops ? "flops" : "params") &&
              cJSON_AddNumberToObject(tg, "keep_asked", so->keep) &&
              cJSON_AddNumberToObject(tg, "before", cb) &&
              cJSON_AddNumberToObject(tg, "after", ca) &&
              cJSON_AddNumberToObject(tg, "keep_met", cb > 0 ? ca / cb : 1.0) &&
              cJSON_AddNumberToObject(tg, "remove_asked", (1.0 - so->keep) * cb) &&
              cJSON_AddNumberToObject(tg, "removed", cb - ca) &&
              cJSON_AddNumberToObject(x, "block_params_before", pb) &&
              cJSON_AddNumberToObject(x, "block_params_after", pa) &&
              cJSON_AddNumberToObject(x, "block_flops_per_token_before", fb) &&
              cJSON_AddNumberToObject(x, "block_flops_per_token_after", fa) &&
              cJSON_AddBoolToObject(x, "uniform_widths", !pc->per_layer) &&
              mp_json_add(x, "plan", plan_json(J));
    cJSON *rounds = J->search ? cJSON_GetObjectItemCaseSensitive(J->search, "rounds") : NULL;
    ok = ok && mp_json_add(x, "rounds", rounds ? cJSON_Duplicate(rounds, 1) : cJSON_CreateArray());
    free(pc);
    if (!ok) {
        cJSON_Delete(x);
        return NULL;
    }
    return x;
}

static void tbf(mp_textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tbf(mp_textbuf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        mp_tb_add(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

mp_status mp_structured_svg(const job *J, char **text)
{
    const mp_model_config *c = &J->md.cfg;
    mp_textbuf tb = {0};
    int64_t L = c->n_layers;
    double W = 720, Hh = 520, x0 = 60, plotw = 620, ph = 180;
    double maxh = 1, maxf = 1;
    for (int64_t b = 0; b < L; b++) {
        mp_block_shape s = mp_layer_shape(c, b);
        maxh = (double)s.n_heads > maxh ? (double)s.n_heads : maxh;
        maxf = (double)s.ffn > maxf ? (double)s.ffn : maxf;
    }
    double bw = plotw / (double)(L > 0 ? L : 1);
    tbf(&tb, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
                      "height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n"
                      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, Hh);
    tbf(&tb, "<text x=\"%.0f\" y=\"16\">kept query heads (blue) and FFN width "
                      "(orange) per block, as a share of the input's</text>\n", x0);
    for (int64_t b = 0; b < L; b++) {
        mp_block_shape s = mp_layer_shape(c, b);
        const mp_block_plan *p = &J->plan.b[b];
        double hh = s.n_heads > 0 ? (double)(p->n_kv * p->q_per_kv) / maxh : 0.0;
        double fh = s.ffn > 0 ? (double)p->n_ffn / maxf : 0.0;
        double x = x0 + (double)b * bw;
        tbf(&tb, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                          "fill=\"#4477aa\"><title>block %lld: %lld heads</title></rect>\n",
                          x, 30 + ph * (1 - hh), bw * 0.45, ph * hh, (long long)b,
                          (long long)(p->n_kv * p->q_per_kv));
        tbf(&tb, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                          "fill=\"#ee7733\"><title>block %lld: FFN %lld</title></rect>\n",
                          x + bw * 0.45, 30 + ph * (1 - fh), bw * 0.45, ph * fh, (long long)b,
                          (long long)p->n_ffn);
    }
    tbf(&tb, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" "
                      "stroke=\"black\"/>\n<text x=\"%.0f\" y=\"%.0f\">block 0 .. %lld</text>\n",
                      x0, 30 + ph, x0 + plotw, 30 + ph, x0, 45 + ph, (long long)L - 1);
    /* The calibration loss before each round (the first is the dense model's). */
    cJSON *rounds = J->search ? cJSON_GetObjectItemCaseSensitive(J->search, "rounds") : NULL;
    int n = cJSON_GetArraySize(rounds);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rounds, i),
                                                    "calib_loss_before");
        double y = cJSON_IsNumber(v) ? v->valuedouble : 0.0;
        lo = y < lo ? y : lo;
        hi = y > hi ? y : hi;
    }
    double y0 = 280;
    tbf(&tb, "<text x=\"%.0f\" y=\"%.0f\">calibration loss before each search "
                      "round (round 1: the input model)</text>\n", x0, y0 - 8);
    if (n > 0 && hi - lo < 1e-12)
        hi = lo + 1.0;
    for (int i = 0; i < n; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rounds, i),
                                                    "calib_loss_before");
        double y = cJSON_IsNumber(v) ? v->valuedouble : 0.0;
        double px = x0 + (n > 1 ? plotw * i / (n - 1) : plotw / 2);
        double py = y0 + ph * (1 - (y - lo) / (hi - lo));
        tbf(&tb, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"#228833\"/>"
                          "<text x=\"%.2f\" y=\"%.2f\">%.4f</text>\n", px, py, px + 6, py - 6,
                          y);
    }
    tbf(&tb, "</svg>\n");
    if (tb.oom || !tb.p) {
        free(tb.p);
        return mp_error(MP_ERR_NOMEM, "report.svg: out of memory");
    }
    *text = tb.p;
    return MP_OK;
}
