#include "mp_chain.h"

#include <cblas.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_struct.h"

double mp_unit_cost(const mp_model_config *c, mp_unit_kind kind, int64_t n_kv, int64_t q_per_kv,
                    int64_t n_neurons, bool flops)
{
    double d = (double)c->d, hd = (double)c->head_dim;
    /* One query head: its q rows and o_proj columns (and q bias), plus, in FLOPs, its share
     * of the causal score products, 4·hd per key over (T + 1) / 2 keys on average (added by
     * the caller through seqlen below). */
    double head = flops ? 2.0 * (2.0 * hd * d) : 2.0 * hd * d + (c->qkv_bias ? hd : 0.0);
    double kv = flops ? 2.0 * (2.0 * hd * d) : 2.0 * hd * d + (c->qkv_bias ? 2.0 * hd : 0.0);
    double per_neuron = c->arch == MP_ARCH_LLAMA ? 3.0 * d : 2.0 * d;
    if (flops)
        per_neuron *= 2.0;
    else if (c->mlp_bias)
        per_neuron += c->arch == MP_ARCH_LLAMA ? 2.0 : 1.0;
    switch (kind) {
    case MP_UNIT_KV_GROUP: return (double)q_per_kv * head + kv;
    case MP_UNIT_HEAD_SLOT: return (double)n_kv * head;
    default: return (double)n_neurons * per_neuron;
    }
}

void mp_block_chain_free(mp_block_chain *c)
{
    if (!c)
        return;
    for (int64_t i = 0; c->unit && i < c->n; i++)
        free(c->unit[i].cols);
    free(c->score);
    free(c->cost);
    free(c->unit);
    memset(c, 0, sizeof *c);
}

typedef struct {
    const mp_model_config *cfg;
    const mp_chain_opts *o;
    int64_t rows, cols, seqlen;
    double *W;        /* [rows, cols] the layer, updated when OBS */
    double *Hinv;     /* OBS only */
    double *colscore; /* fixed-order scorers: a score per input column */
    int64_t *idx;     /* scratch: a candidate's columns */
    int64_t *best;    /* scratch: the best candidate's columns */
    int64_t cap;
    mp_block_chain *out;
} chain_ctx;

/* The error of removing columns idx[0..n) now. */
static mp_status cand_error(chain_ctx *x, const int64_t *idx, int64_t n, double *err)
{
    if (x->o->scorer == MP_SCORE_OBS)
        return mp_struct_error(x->W, x->rows, x->cols, x->Hinv, idx, n, err);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += x->colscore[idx[i]];
    *err = s;
    return MP_OK;
}

static mp_status take(chain_ctx *x, mp_unit_kind kind, int64_t group, const int64_t *cols,
                      int64_t n, double score, double cost)
{
    mp_block_chain *c = x->out;
    if (c->n == x->cap) {
        int64_t cap = x->cap ? 2 * x->cap : 64;
        double *s = mp_realloc(c->score, (size_t)cap * sizeof *s);
        if (s)
            c->score = s;
        double *k = mp_realloc(c->cost, (size_t)cap * sizeof *k);
        if (k)
            c->cost = k;
        mp_unit *u = mp_realloc(c->unit, (size_t)cap * sizeof *u);
        if (u)
            c->unit = u;
        if (!s || !k || !u)
            return mp_error(MP_ERR_NOMEM, "block %lld: cannot grow the chain", (long long)c->block);
        x->cap = cap;
    }
    mp_unit *u = &c->unit[c->n];
    u->kind = kind;
    u->group = group;
    u->n_cols = n;
    u->cols = mp_malloc((size_t)n * sizeof *u->cols);
    if (!u->cols)
        return mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate a unit", (long long)c->block);
    memcpy(u->cols, cols, (size_t)n * sizeof *cols);
    c->score[c->n] = score < 0.0 ? 0.0 : score; /* rounding can make an error a tiny negative */
    c->cost[c->n] = cost;
    c->n++;
    return MP_OK;
}

/* Removes columns cols[0..n) from the layer: the OBS update, or just zeros for the fixed-order
 * scorers (their compensation comes after the search). */
static mp_status remove_cols(chain_ctx *x, const int64_t *cols, int64_t n)
{
    if (x->o->scorer == MP_SCORE_OBS)
        return mp_struct_remove(x->W, x->rows, x->cols, x->Hinv, cols, n, NULL);
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < x->rows; r++)
            x->W[r * x->cols + cols[i]] = 0.0;
    return MP_OK;
}

static mp_status attn_chain(chain_ctx *x, const mp_block *blk, const mp_block_plan *start,
                            int64_t stop_after)
{
    mp_status st = MP_OK;
    const mp_model_config *c = x->cfg;
    const mp_chain_opts *o = x->o;
    int64_t nkv = blk->shape.n_kv_heads, G = nkv > 0 ? blk->shape.n_heads / nkv : 0;
    int64_t hd = c->head_dim, kept_g = nkv, qpk = G;
    /* Per token, a head's share of the score products as mp_block_flops counts them. */
    double head_flops = o->flops && x->seqlen > 0
                            ? 4.0 * (double)hd * mp_attn_score_pairs(x->seqlen) / (double)x->seqlen
                            : 0.0;
    bool *galive = mp_malloc((size_t)nkv * sizeof *galive);
    bool *halive = mp_malloc((size_t)(nkv * G) * sizeof *halive);
    if (!galive || !halive)
        MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate the attention state",
                (long long)blk->index);
    for (int64_t i = 0; i < nkv; i++)
        galive[i] = !start;
    for (int64_t i = 0; i < nkv * G; i++)
        halive[i] = !start;
    if (start) {
        /* What the start plan removed goes first, all at once (the exact update of the
         * remaining columns), and is not part of the chain. */
        for (int64_t i = 0; i < start->n_kv; i++) {
            galive[start->kv[i]] = true;
            for (int64_t j = 0; j < start->q_per_kv; j++)
                halive[start->kv[i] * G + start->q[i * start->q_per_kv + j]] = true;
        }
        kept_g = start->n_kv;
        qpk = start->q_per_kv;
        int64_t n = 0;
        for (int64_t h = 0; h < nkv * G; h++)
            if (!halive[h])
                for (int64_t t = 0; t < hd; t++)
                    x->idx[n++] = h * hd + t;
        if (n > 0)
            MP_TRY(remove_cols(x, x->idx, n));
    }
    int64_t floor_g = o->sublayers ? 0 : (o->min_kv > 1 ? o->min_kv : 1);
    int64_t floor_q = o->min_q_per_kv > 1 ? o->min_q_per_kv : 1;
    while (stop_after < 0 || x->out->n < stop_after) {
        int64_t nbest = 0, best_group = -1;
        mp_unit_kind best_kind = MP_UNIT_KV_GROUP;
        double best_key = INFINITY, best_err = 0.0, best_cost = 0.0;
        /* Whole KV groups. */
        if (o->kv_groups && kept_g > floor_g)
            for (int64_t g = 0; g < nkv; g++) {
                if (!galive[g])
                    continue;
                int64_t n = 0;
                for (int64_t j = 0; j < G; j++)
                    if (halive[g * G + j])
                        for (int64_t t = 0; t < hd; t++)
                            x->idx[n++] = (g * G + j) * hd + t;
                double e = 0.0;
                MP_TRY(cand_error(x, x->idx, n, &e));
                double cost = mp_unit_cost(c, MP_UNIT_KV_GROUP, kept_g, qpk, 0, o->flops) +
                              (double)qpk * head_flops;
                if (kept_g == 1 && !o->flops && c->o_bias)
                    cost += (double)c->d; /* the sub-block goes, and its o_proj bias */
                if (e / cost < best_key) {
                    best_key = e / cost, best_err = e, best_cost = cost;
                    best_kind = MP_UNIT_KV_GROUP, best_group = g, nbest = n;
                    memcpy(x->best, x->idx, (size_t)n * sizeof *x->idx);
                }
            }
        /* One head out of every kept group: in each, its head of least error alone. */
        if (o->heads && qpk > floor_q && kept_g > 0) {
            int64_t n = 0;
            for (int64_t g = 0; g < nkv; g++) {
                if (!galive[g])
                    continue;
                int64_t bj = -1;
                double be = INFINITY;
                for (int64_t j = 0; j < G; j++) {
                    if (!halive[g * G + j])
                        continue;
                    for (int64_t t = 0; t < hd; t++)
                        x->idx[n + t] = (g * G + j) * hd + t;
                    double e = 0.0;
                    MP_TRY(cand_error(x, x->idx + n, hd, &e));
                    if (e < be)
                        be = e, bj = j;
                }
                for (int64_t t = 0; t < hd; t++)
                    x->idx[n + t] = (g * G + bj) * hd + t;
                n += hd;
            }
            double e = 0.0;
            MP_TRY(cand_error(x, x->idx, n, &e));
            double cost = mp_unit_cost(c, MP_UNIT_HEAD_SLOT, kept_g, qpk, 0, o->flops) +
                          (double)kept_g * head_flops;
            if (e / cost < best_key) {
                best_key = e / cost, best_err = e, best_cost = cost;
                best_kind = MP_UNIT_HEAD_SLOT, best_group = -1, nbest = n;
                memcpy(x->best, x->idx, (size_t)n * sizeof *x->idx);
            }
        }
        if (nbest == 0)
            break;
        MP_TRY(take(x, best_kind, best_group, x->best, nbest, best_err, best_cost));
        MP_TRY(remove_cols(x, x->best, nbest));
        if (best_kind == MP_UNIT_KV_GROUP) {
            galive[best_group] = false;
            kept_g--;
        } else {
            qpk--;
        }
        for (int64_t i = 0; i < nbest; i += hd)
            halive[x->best[i] / hd] = false;
    }
done:
    free(galive);
    free(halive);
    return st;
}

static mp_status ffn_chain(chain_ctx *x, const mp_block *blk, const mp_block_plan *start,
                           int64_t stop_after)
{
    mp_status st = MP_OK;
    const mp_chain_opts *o = x->o;
    int64_t F = blk->shape.ffn, m = o->ffn_multiple > 0 ? o->ffn_multiple : 1, kept = F;
    int64_t floor_f = o->sublayers ? 0 : (o->min_ffn > 1 ? o->min_ffn : 1);
    bool *alive = mp_malloc((size_t)F * sizeof *alive);
    double *err = mp_malloc((size_t)F * sizeof *err);
    if (!alive || !err)
        MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate the FFN state",
                (long long)blk->index);
    for (int64_t j = 0; j < F; j++)
        alive[j] = !start;
    if (start) {
        for (int64_t i = 0; i < start->n_ffn; i++)
            alive[start->ffn[i]] = true;
        kept = start->n_ffn;
        int64_t n = 0;
        for (int64_t j = 0; j < F; j++)
            if (!alive[j])
                x->idx[n++] = j;
        if (n > 0)
            MP_TRY(remove_cols(x, x->idx, n));
    }
    while (kept > 0 && (stop_after < 0 || x->out->n < stop_after) && o->ffn) {
        /* A first unit of F mod m neurons brings the width to a multiple of m. */
        int64_t size = kept % m ? kept % m : m;
        if (kept - size < floor_f)
            break;
        /* The `size` alive neurons of least error now (single columns have
         * ε_j = ‖W_:,j‖² / Hinv_jj under OBS), removed together: one rank-`size` update
         * instead of `size` memory-bound rank-1 ones, and the unit's score is the exact joint
         * error of the set (ε_S), not a sum of singles. Ties go to the lower index. */
        for (int64_t j = 0; j < F; j++) {
            if (!alive[j])
                continue;
            if (o->scorer == MP_SCORE_OBS) {
                double w2 = 0.0;
                for (int64_t r = 0; r < x->rows; r++)
                    w2 += x->W[r * F + j] * x->W[r * F + j];
                err[j] = w2 / x->Hinv[j * F + j];
            } else {
                err[j] = x->colscore[j];
            }
        }
        for (int64_t s = 0; s < size; s++) {
            int64_t bj = -1;
            for (int64_t j = 0; j < F; j++)
                if (alive[j] && (bj < 0 || err[j] < err[bj]))
                    bj = j;
            x->best[s] = bj;
            alive[bj] = false;
        }
        double sum = 0.0;
        if (o->scorer == MP_SCORE_OBS) {
            MP_TRY(mp_struct_remove(x->W, x->rows, x->cols, x->Hinv, x->best, size, &sum));
        } else {
            for (int64_t s = 0; s < size; s++)
                sum += err[x->best[s]] > 0.0 ? err[x->best[s]] : 0.0;
            MP_TRY(remove_cols(x, x->best, size));
        }
        kept -= size;
        double cost = mp_unit_cost(x->cfg, MP_UNIT_NEURONS, 0, 0, size, o->flops);
        if (kept == 0 && !o->flops && mp_lin_has_bias(x->cfg, MP_LIN_DOWN))
            cost += (double)x->cfg->d; /* the sub-block goes, and its down_proj bias */
        MP_TRY(take(x, MP_UNIT_NEURONS, -1, x->best, size, sum, cost));
    }
done:
    free(alive);
    free(err);
    return st;
}

mp_status mp_block_chain_build(const mp_model_config *cfg, const mp_block *blk, bool attn,
                               const double *H, const double *mean, const mp_chain_opts *o,
                               int64_t seqlen, int64_t stop_after, double *W_out,
                               mp_block_chain *out)
{
    return mp_block_chain_build_from(cfg, blk, attn, H, mean, o, seqlen, NULL, stop_after, W_out,
                                     out);
}

mp_status mp_block_chain_build_from(const mp_model_config *cfg, const mp_block *blk, bool attn,
                                    const double *H, const double *mean,
                                    const mp_chain_opts *o, int64_t seqlen,
                                    const mp_block_plan *start, int64_t stop_after,
                                    double *W_out, mp_block_chain *out)
{
    mp_status st = MP_OK;
    const mp_linear *l = &blk->lin[attn ? MP_LIN_O : MP_LIN_DOWN];
    chain_ctx x = {.cfg = cfg, .o = o, .rows = l->out, .cols = l->in, .seqlen = seqlen,
                   .out = out};
    memset(out, 0, sizeof *out);
    out->block = blk->index;
    out->attn = attn;
    if (!l->present || l->in == 0)
        return MP_OK; /* an absent sub-block has nothing left to remove */
    int64_t rows = x.rows, cols = x.cols;
    x.W = mp_malloc((size_t)(rows * cols) * sizeof *x.W);
    x.idx = mp_malloc((size_t)cols * sizeof *x.idx);
    x.best = mp_malloc((size_t)cols * sizeof *x.best);
    if (!x.W || !x.idx || !x.best)
        MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate the chain of a %lld x %lld layer",
                (long long)blk->index, (long long)rows, (long long)cols);
    for (int64_t i = 0; i < rows * cols; i++)
        x.W[i] = (double)l->w[i];
    /* The dense layer's output energy tr(W H Wᵀ): what a relative error is relative to. */
    double energy = 0.0;
    {
        /* W H with BLAS (rows x cols x cols is the chain's largest single product). */
        double *WH = mp_malloc((size_t)(rows * cols) * sizeof *WH);
        if (!WH)
            MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate W H", (long long)blk->index);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols,
                    1.0, x.W, (int)cols, H, (int)cols, 0.0, WH, (int)cols);
        for (int64_t i = 0; i < rows * cols; i++)
            energy += WH[i] * x.W[i];
        free(WH);
    }
    out->energy = energy;
    if (o->scorer == MP_SCORE_OBS) {
        x.Hinv = mp_malloc((size_t)(cols * cols) * sizeof *x.Hinv);
        if (!x.Hinv)
            MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate H⁻¹", (long long)blk->index);
        MP_TRY(mp_struct_hinv(H, cols, o->damp, x.Hinv));
    } else {
        x.colscore = mp_malloc((size_t)cols * sizeof *x.colscore);
        if (!x.colscore)
            MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate column scores",
                    (long long)blk->index);
        if (o->scorer == MP_SCORE_FLAP && !mean)
            MP_FAIL(MP_ERR_INTERNAL, "block %lld: FLAP needs the input means",
                    (long long)blk->index);
        bool given = o->scorer == MP_SCORE_FISHER || o->scorer == MP_SCORE_NVIT ||
                     o->scorer == MP_SCORE_TAYLOR || o->scorer == MP_SCORE_TAYLOR_ELEM;
        if (given && !o->given)
            MP_FAIL(MP_ERR_INTERNAL, "block %lld: a gradient scorer without its scores",
                    (long long)blk->index);
        for (int64_t j = 0; j < cols; j++) {
            double w2 = 0.0, wa = 0.0;
            for (int64_t r = 0; r < rows; r++) {
                w2 += x.W[r * cols + j] * x.W[r * cols + j];
                wa += fabs(x.W[r * cols + j]);
            }
            double ex2 = H[j * cols + j] / 2.0; /* H = (2/N) Σ x xᵀ: E[x_j²] = H_jj / 2 */
            switch (o->scorer) {
            case MP_SCORE_FLAP: {
                double var = ex2 - mean[j] * mean[j];
                x.colscore[j] = (var > 0.0 ? var : 0.0) * w2;
                break;
            }
            case MP_SCORE_WANDA_SP:
                x.colscore[j] = (rows > 0 ? wa / (double)rows : 0.0) * sqrt(ex2);
                break;
            case MP_SCORE_FISHER:
            case MP_SCORE_NVIT:
            case MP_SCORE_TAYLOR: x.colscore[j] = o->given[j]; break;
            default: x.colscore[j] = w2; break;
            }
        }
    }
    if (start && (attn ? start->n_kv == 0 : start->n_ffn == 0)) {
        /* The sub-block is gone already: nothing left to remove. */
        memset(x.W, 0, (size_t)(rows * cols) * sizeof *x.W);
    } else {
        st = attn ? attn_chain(&x, blk, start, stop_after)
                  : ffn_chain(&x, blk, start, stop_after);
    }
    if (st == MP_OK && W_out)
        memcpy(W_out, x.W, (size_t)(rows * cols) * sizeof *x.W);
done:
    if (st != MP_OK)
        mp_block_chain_free(out);
    free(x.W);
    free(x.Hinv);
    free(x.colscore);
    free(x.idx);
    free(x.best);
    return st;
}

mp_status mp_block_chain_plan(const mp_model_config *cfg, const mp_block *blk,
                              const mp_block_chain *attn, int64_t ta, const mp_block_chain *ffn,
                              int64_t tf, mp_plan *plan)
{
    return mp_block_chain_plan_from(cfg, blk, NULL, attn, ta, ffn, tf, plan);
}

mp_status mp_block_chain_plan_from(const mp_model_config *cfg, const mp_block *blk,
                                   const mp_block_plan *start, const mp_block_chain *attn,
                                   int64_t ta, const mp_block_chain *ffn, int64_t tf,
                                   mp_plan *plan)
{
    mp_status st = MP_OK;
    int64_t nkv = blk->shape.n_kv_heads, G = nkv > 0 ? blk->shape.n_heads / nkv : 0;
    int64_t hd = cfg->head_dim, F = blk->shape.ffn, b = blk->index;
    bool *hgone = mp_calloc((size_t)(nkv * G), sizeof *hgone);
    bool *ggone = mp_calloc((size_t)nkv, sizeof *ggone);
    bool *fgone = mp_calloc((size_t)F, sizeof *fgone);
    int64_t *kv = mp_malloc((size_t)nkv * sizeof *kv), *q = mp_malloc((size_t)(nkv * G) * sizeof *q);
    int64_t *ff = mp_malloc((size_t)F * sizeof *ff);
    if (!hgone || !ggone || !fgone || !kv || !q || !ff)
        MP_FAIL(MP_ERR_NOMEM, "block %lld: cannot allocate its plan", (long long)b);
    if (start) {
        for (int64_t g = 0; g < nkv; g++)
            ggone[g] = true;
        for (int64_t h = 0; h < nkv * G; h++)
            hgone[h] = true;
        for (int64_t i = 0; i < start->n_kv; i++) {
            ggone[start->kv[i]] = false;
            for (int64_t j = 0; j < start->q_per_kv; j++)
                hgone[start->kv[i] * G + start->q[i * start->q_per_kv + j]] = false;
        }
        for (int64_t j = 0; j < F; j++)
            fgone[j] = true;
        for (int64_t i = 0; i < start->n_ffn; i++)
            fgone[start->ffn[i]] = false;
    }
    for (int64_t i = 0; attn && i < ta && i < attn->n; i++) {
        const mp_unit *u = &attn->unit[i];
        if (u->kind == MP_UNIT_KV_GROUP)
            ggone[u->group] = true;
        for (int64_t t = 0; t < u->n_cols; t += hd)
            hgone[u->cols[t] / hd] = true;
    }
    for (int64_t i = 0; ffn && i < tf && i < ffn->n; i++)
        for (int64_t t = 0; t < ffn->unit[i].n_cols; t++)
            fgone[ffn->unit[i].cols[t]] = true;
    int64_t n_kv = 0, qpk = -1, n_ffn = 0;
    for (int64_t g = 0; g < nkv; g++) {
        if (ggone[g])
            continue;
        int64_t nq = 0;
        for (int64_t j = 0; j < G; j++)
            if (!hgone[g * G + j])
                q[n_kv * G + nq++] = j;
        if (qpk >= 0 && nq != qpk)
            MP_FAIL(MP_ERR_INTERNAL, "block %lld: kept groups have %lld and %lld heads",
                    (long long)b, (long long)qpk, (long long)nq);
        qpk = nq;
        kv[n_kv++] = g;
    }
    /* The kept heads of group i sit at q[i·G ..]; pack them to q[i·qpk ..]. */
    for (int64_t i = 0; i < n_kv; i++)
        for (int64_t j = 0; j < qpk; j++)
            q[i * qpk + j] = q[i * G + j];
    if (n_kv == 0 || qpk <= 0)
        n_kv = 0, qpk = 0;
    for (int64_t j = 0; j < F; j++)
        if (!fgone[j])
            ff[n_ffn++] = j;
    MP_TRY(mp_plan_set_block(plan, b, n_kv, kv, qpk, q, n_ffn, ff));
done:
    free(hgone);
    free(ggone);
    free(fgone);
    free(kv);
    free(q);
    free(ff);
    return st;
}
