#include "mp_plan.h"

#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"

static void block_plan_free(mp_block_plan *bp)
{
    free(bp->kv);
    free(bp->q);
    free(bp->ffn);
    memset(bp, 0, sizeof *bp);
}

void mp_plan_free(mp_plan *plan)
{
    if (!plan)
        return;
    for (int64_t b = 0; plan->b && b < plan->n_blocks; b++)
        block_plan_free(&plan->b[b]);
    free(plan->b);
    plan->b = NULL;
    plan->n_blocks = 0;
}

/* A copy of a[0..n) (a non-NULL pointer also for n == 0). */
static int64_t *dup_idx(const int64_t *a, int64_t n)
{
    int64_t *p = mp_malloc((size_t)n * sizeof *p);
    if (p && n > 0)
        memcpy(p, a, (size_t)n * sizeof *p);
    return p;
}

mp_status mp_plan_set_block(mp_plan *plan, int64_t b, int64_t n_kv, const int64_t *kv,
                            int64_t q_per_kv, const int64_t *q, int64_t n_ffn,
                            const int64_t *ffn)
{
    if (b < 0 || b >= plan->n_blocks || n_kv < 0 || q_per_kv < 0 || n_ffn < 0)
        return mp_error(MP_ERR_INTERNAL, "plan: block %lld or its counts out of range",
                        (long long)b);
    mp_block_plan nb = {.n_kv = n_kv, .q_per_kv = q_per_kv, .n_ffn = n_ffn};
    nb.kv = dup_idx(kv, n_kv);
    nb.q = dup_idx(q, n_kv * q_per_kv);
    nb.ffn = dup_idx(ffn, n_ffn);
    if (!nb.kv || !nb.q || !nb.ffn) {
        block_plan_free(&nb);
        return mp_error(MP_ERR_NOMEM, "plan: cannot allocate block %lld", (long long)b);
    }
    block_plan_free(&plan->b[b]);
    plan->b[b] = nb;
    return MP_OK;
}

mp_status mp_plan_identity(const mp_model_config *cfg, mp_plan *plan)
{
    mp_status st = MP_OK;
    int64_t *kv = NULL, *q = NULL, *ffn = NULL;
    memset(plan, 0, sizeof *plan);
    plan->b = mp_calloc((size_t)cfg->n_layers, sizeof *plan->b);
    if (!plan->b)
        return mp_error(MP_ERR_NOMEM, "plan: cannot allocate %lld blocks",
                        (long long)cfg->n_layers);
    plan->n_blocks = cfg->n_layers;
    for (int64_t b = 0; b < cfg->n_layers; b++) {
        mp_block_shape s = mp_layer_shape(cfg, b);
        int64_t G = s.n_kv_heads > 0 ? s.n_heads / s.n_kv_heads : 0;
        kv = mp_malloc((size_t)s.n_kv_heads * sizeof *kv);
        q = mp_malloc((size_t)s.n_heads * sizeof *q);
        ffn = mp_malloc((size_t)s.ffn * sizeof *ffn);
        if (!kv || !q || !ffn)
            MP_FAIL(MP_ERR_NOMEM, "plan: cannot allocate block %lld", (long long)b);
        for (int64_t g = 0; g < s.n_kv_heads; g++) {
            kv[g] = g;
            for (int64_t j = 0; j < G; j++)
                q[g * G + j] = j;
        }
        for (int64_t j = 0; j < s.ffn; j++)
            ffn[j] = j;
        MP_TRY(mp_plan_set_block(plan, b, s.n_kv_heads, kv, G, q, s.ffn, ffn));
        free(kv);
        free(q);
        free(ffn);
        kv = q = ffn = NULL;
    }
done:
    free(kv);
    free(q);
    free(ffn);
    if (st != MP_OK)
        mp_plan_free(plan);
    return st;
}

/* a[0..n) strictly ascending inside [0, limit). */
static bool ascending_in(const int64_t *a, int64_t n, int64_t limit)
{
    for (int64_t i = 0; i < n; i++)
        if (a[i] < 0 || a[i] >= limit || (i > 0 && a[i] <= a[i - 1]))
            return false;
    return true;
}

mp_status mp_plan_check(const mp_model_config *cfg, const mp_plan *plan, const char *what)
{
    if (plan->n_blocks != cfg->n_layers)
        return mp_error(MP_ERR_FORMAT, "%s: the plan has %lld blocks, the model %lld", what,
                        (long long)plan->n_blocks, (long long)cfg->n_layers);
    for (int64_t b = 0; b < plan->n_blocks; b++) {
        const mp_block_plan *bp = &plan->b[b];
        mp_block_shape s = mp_layer_shape(cfg, b);
        int64_t G = s.n_kv_heads > 0 ? s.n_heads / s.n_kv_heads : 0;
        if (!ascending_in(bp->kv, bp->n_kv, s.n_kv_heads) || bp->q_per_kv > G ||
            (bp->n_kv > 0) != (bp->q_per_kv > 0))
            return mp_error(MP_ERR_FORMAT, "%s: block %lld: bad kept KV groups or head count",
                            what, (long long)b);
        for (int64_t i = 0; i < bp->n_kv; i++)
            if (!ascending_in(bp->q + i * bp->q_per_kv, bp->q_per_kv, G))
                return mp_error(MP_ERR_FORMAT, "%s: block %lld: bad kept query heads of group "
                                "%lld", what, (long long)b, (long long)bp->kv[i]);
        if (!ascending_in(bp->ffn, bp->n_ffn, s.ffn))
            return mp_error(MP_ERR_FORMAT, "%s: block %lld: bad kept FFN neurons", what,
                            (long long)b);
    }
    return MP_OK;
}

mp_block_shape mp_plan_block_shape(const mp_model_config *cfg, const mp_plan *plan, int64_t b)
{
    (void)cfg;
    const mp_block_plan *bp = &plan->b[b];
    return (mp_block_shape){bp->n_kv * bp->q_per_kv, bp->n_kv, bp->n_ffn};
}

void mp_plan_apply_config(const mp_model_config *cfg, const mp_plan *plan, mp_model_config *out)
{
    mp_block_shape shapes[MP_MAX_LAYERS];
    int64_t n = cfg->n_layers < MP_MAX_LAYERS ? cfg->n_layers : MP_MAX_LAYERS;
    for (int64_t b = 0; b < n; b++)
        shapes[b] = mp_plan_block_shape(cfg, plan, b);
    if (out != cfg)
        *out = *cfg;
    mp_model_config_set_shapes(out, shapes);
}

/* Keeps the rows rows[0..n) of w[*, cols] (in place, ascending, so no row is overwritten
 * before it is read). */
static void keep_rows(float *w, int64_t cols, const int64_t *rows, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (rows[i] != i)
            memmove(w + i * cols, w + rows[i] * cols, (size_t)cols * sizeof *w);
}

/* Keeps the columns idx[0..n) of w[rows, cols] (in place). */
static void keep_cols(float *w, int64_t rows, int64_t cols, const int64_t *idx, int64_t n)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            w[r * n + j] = w[r * cols + idx[j]];
}

static void drop_linear(mp_linear *l)
{
    free(l->w);
    free(l->b);
    memset(l, 0, sizeof *l);
}

mp_status mp_block_apply_plan(const mp_model_config *cfg, const mp_block_plan *bp, mp_block *blk)
{
    mp_status st = MP_OK;
    int64_t *rows = NULL, hd = cfg->head_dim;
    mp_block_shape s = blk->shape;
    int64_t G = s.n_kv_heads > 0 ? s.n_heads / s.n_kv_heads : 0;
    if (bp->n_kv > s.n_kv_heads || bp->q_per_kv > G || bp->n_ffn > s.ffn)
        return mp_error(MP_ERR_INTERNAL, "block %lld: the plan is wider than the block",
                        (long long)blk->index);
    int64_t nq = bp->n_kv * bp->q_per_kv;
    rows = mp_malloc((size_t)((nq > bp->n_ffn ? nq : bp->n_ffn) * hd + 1) * sizeof *rows);
    if (!rows)
        return mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate the plan's index",
                        (long long)blk->index);
    if (s.n_heads > 0 && nq == 0) {
        for (int id = MP_LIN_Q; id <= MP_LIN_O; id++)
            drop_linear(&blk->lin[id]);
        free(blk->norm1_w);
        free(blk->norm1_b);
        blk->norm1_w = blk->norm1_b = NULL;
    } else if (s.n_heads > 0) {
        /* q rows and o columns: head kv[i]·G + q[i·q_per_kv + j], hd rows each. */
        for (int64_t i = 0; i < bp->n_kv; i++)
            for (int64_t j = 0; j < bp->q_per_kv; j++) {
                int64_t h = bp->kv[i] * G + bp->q[i * bp->q_per_kv + j];
                for (int64_t t = 0; t < hd; t++)
                    rows[(i * bp->q_per_kv + j) * hd + t] = h * hd + t;
            }
        mp_linear *q = &blk->lin[MP_LIN_Q], *o = &blk->lin[MP_LIN_O];
        keep_rows(q->w, q->in, rows, nq * hd);
        if (q->b)
            keep_rows(q->b, 1, rows, nq * hd);
        q->out = nq * hd;
        keep_cols(o->w, o->out, o->in, rows, nq * hd);
        o->in = nq * hd;
        for (int64_t i = 0; i < bp->n_kv; i++)
            for (int64_t t = 0; t < hd; t++)
                rows[i * hd + t] = bp->kv[i] * hd + t;
        for (int id = MP_LIN_K; id <= MP_LIN_V; id++) {
            mp_linear *l = &blk->lin[id];
            keep_rows(l->w, l->in, rows, bp->n_kv * hd);
            if (l->b)
                keep_rows(l->b, 1, rows, bp->n_kv * hd);
            l->out = bp->n_kv * hd;
        }
    }
    if (s.ffn > 0 && bp->n_ffn == 0) {
        for (int id = MP_LIN_GATE; id <= MP_LIN_DOWN; id++)
            drop_linear(&blk->lin[id]);
        free(blk->norm2_w);
        free(blk->norm2_b);
        blk->norm2_w = blk->norm2_b = NULL;
    } else if (s.ffn > 0) {
        for (int id = MP_LIN_GATE; id <= MP_LIN_UP; id++) {
            mp_linear *l = &blk->lin[id];
            if (!l->present)
                continue;
            keep_rows(l->w, l->in, bp->ffn, bp->n_ffn);
            if (l->b)
                keep_rows(l->b, 1, bp->ffn, bp->n_ffn);
            l->out = bp->n_ffn;
        }
        mp_linear *dn = &blk->lin[MP_LIN_DOWN];
        keep_cols(dn->w, dn->out, dn->in, bp->ffn, bp->n_ffn);
        dn->in = bp->n_ffn;
    }
    blk->shape = (mp_block_shape){nq, bp->n_kv, bp->n_ffn};
    free(rows);
    return st;
}
