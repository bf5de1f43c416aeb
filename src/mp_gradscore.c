#include "mp_gradscore.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_grad.h"

void mp_gscore_masks(const mp_block_plan *bp, const mp_block_shape *s, double *hm, double *fm)
{
    int64_t G = s->n_kv_heads > 0 ? s->n_heads / s->n_kv_heads : 0;
    for (int64_t h = 0; h < s->n_heads; h++)
        hm[h] = bp ? 0.0 : 1.0;
    for (int64_t j = 0; j < s->ffn; j++)
        fm[j] = bp ? 0.0 : 1.0;
    if (!bp)
        return;
    for (int64_t i = 0; i < bp->n_kv; i++)
        for (int64_t j = 0; j < bp->q_per_kv; j++)
            hm[bp->kv[i] * G + bp->q[i * bp->q_per_kv + j]] = 1.0;
    for (int64_t i = 0; i < bp->n_ffn; i++)
        fm[bp->ffn[i]] = 1.0;
}

void mp_gscores_free(mp_gscores *s)
{
    if (!s)
        return;
    for (int64_t b = 0; b < s->n_blocks; b++) {
        if (s->head)
            free(s->head[b]);
        if (s->kv)
            free(s->kv[b]);
        if (s->ffn)
            free(s->ffn[b]);
        if (s->win)
            free(s->win[b]);
    }
    free(s->win);
    free(s->head);
    free(s->kv);
    free(s->ffn);
    free(s->chan);
    free(s->shape);
    memset(s, 0, sizeof *s);
}

/* Offsets of every present linear's weight gradient (out·in) and bias gradient (out) in one
 * block's float64 gradient buffer; returns its length. */
static int64_t elem_layout(const mp_model_config *c, int64_t b, int64_t *ow, int64_t *ob)
{
    int64_t n = 0;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        int64_t o = 0, in = 0;
        ow[id] = ob[id] = -1;
        if (!mp_lin_present(c, b, (mp_lin_id)id))
            continue;
        mp_lin_dims(c, b, (mp_lin_id)id, &o, &in);
        ow[id] = n;
        ob[id] = n + o * in;
        n += o * in + o;
    }
    return n;
}

double mp_gscores_memory(const mp_model_config *c, int64_t n_loc, int64_t T, int64_t mem_bytes,
                         int flags)
{
    int64_t L = c->n_layers, d = c->d;
    double per_seq = (double)(L * T * d) * 8.0, chunk = (double)mem_bytes / per_seq;
    chunk = chunk < 1.0 ? 1.0 : chunk > (double)n_loc ? (double)n_loc : (double)(int64_t)chunk;
    double head = (double)(c->vocab * c->word_embed_proj_dim) * (c->tie_embeddings ? 12.0 : 24.0);
    double blk = 0.0, act = 0.0, stats = 0.0;
    for (int64_t b = 0; b < L; b++) {
        mp_block_shape s = mp_layer_shape(c, b);
        double w = (double)mp_block_bytes(c, b) * 3.0; /* float32 read + float64 copy */
        double qd = (double)(s.n_heads * c->head_dim), kd = (double)(s.n_kv_heads * c->head_dim);
        double a = (double)T * (8.0 * (double)d + 6.0 * qd + 6.0 * kd + 6.0 * (double)s.ffn) *
                   8.0 + 2.0 * (double)(T * T) * 8.0;
        blk = w > blk ? w : blk;
        act = a > act ? a : act;
        stats += (double)(n_loc * (2 * s.n_heads + s.n_kv_heads + 2 * s.ffn)) * 8.0;
        if (flags & MP_GSCORE_ELEMENT) {
            int64_t ow[MP_LIN_COUNT], ob[MP_LIN_COUNT];
            stats += (double)elem_layout(c, b, ow, ob) * 8.0 * (b == 0 ? 2.0 : 1.0);
        }
    }
    return head + blk + act + stats + chunk * per_seq + (chunk + 1.0) * (double)(T * d) * 8.0;
}

/* Per sequence and block, the numbers of mp_grad_stats laid out as
 * [gm_head nh | wg_q nh | wg_kv nkv | gm_ffn F | wg_in F]. */
static int64_t stat_len(const mp_block_shape *s)
{
    return 2 * s->n_heads + s->n_kv_heads + 2 * s->ffn;
}

static void stat_pack(const mp_grad_stats *st, double *v)
{
    memcpy(v, st->gm_head, (size_t)st->nh * sizeof *v);
    v += st->nh;
    memcpy(v, st->wg_q, (size_t)st->nh * sizeof *v);
    v += st->nh;
    memcpy(v, st->wg_kv, (size_t)st->nkv * sizeof *v);
    v += st->nkv;
    memcpy(v, st->gm_ffn, (size_t)st->ffn * sizeof *v);
    v += st->ffn;
    memcpy(v, st->wg_in, (size_t)st->ffn * sizeof *v);
}

/* Rank 0: the scores of one block from its sequences' numbers all[n, m], summed in order. */
static void block_scores(const mp_block_shape *s, const double *all, int64_t n, double *head,
                         double *kv, double *ffn)
{
    int64_t nh = s->n_heads, nkv = s->n_kv_heads, F = s->ffn, m = stat_len(s);
    int64_t G = nkv > 0 ? nh / nkv : 0;
    memset(head, 0, (size_t)(MP_GSCORE_COUNT * nh) * sizeof *head);
    memset(kv, 0, (size_t)(MP_GSCORE_COUNT * nkv) * sizeof *kv);
    memset(ffn, 0, (size_t)(MP_GSCORE_COUNT * F) * sizeof *ffn);
    for (int64_t q = 0; q < n; q++) {
        const double *gm = all + q * m, *wq = gm + nh, *wkv = wq + nh, *gf = wkv + nkv,
                     *wi = gf + F;
        for (int64_t h = 0; h < nh; h++) {
            double wg = gm[h] + wq[h]; /* o_proj columns (= the mask's) and q rows */
            head[MP_GSCORE_FISHER * nh + h] += gm[h] * gm[h];
            head[MP_GSCORE_NVIT * nh + h] += wg * wg;
            head[MP_GSCORE_TAYLOR * nh + h] += wg; /* |.| after the sum */
        }
        for (int64_t g = 0; g < nkv; g++) {
            double wg = wkv[g], f = 0.0;
            for (int64_t h = g * G; h < (g + 1) * G; h++) {
                wg += gm[h] + wq[h];
                f += gm[h] * gm[h];
            }
            kv[MP_GSCORE_FISHER * nkv + g] += f;
            kv[MP_GSCORE_NVIT * nkv + g] += wg * wg;
            kv[MP_GSCORE_TAYLOR * nkv + g] += wg;
        }
        for (int64_t j = 0; j < F; j++) {
            double wg = gf[j] + wi[j];
            ffn[MP_GSCORE_FISHER * F + j] += gf[j] * gf[j];
            ffn[MP_GSCORE_NVIT * F + j] += wg * wg;
            ffn[MP_GSCORE_TAYLOR * F + j] += wg;
        }
    }
    for (int64_t h = 0; h < nh; h++)
        head[MP_GSCORE_TAYLOR * nh + h] = fabs(head[MP_GSCORE_TAYLOR * nh + h]);
    for (int64_t g = 0; g < nkv; g++)
        kv[MP_GSCORE_TAYLOR * nkv + g] = fabs(kv[MP_GSCORE_TAYLOR * nkv + g]);
    for (int64_t j = 0; j < F; j++)
        ffn[MP_GSCORE_TAYLOR * F + j] = fabs(ffn[MP_GSCORE_TAYLOR * F + j]);
}

/* Block b in float64 with the plan's masks. */
static mp_status load_gblock(const mp_model_config *c, const mp_weight_source *src,
                             const mp_plan *plan, int64_t b, mp_gblock *g)
{
    mp_block *blk = NULL;
    mp_status st = mp_block_load(c, src, b, &blk);
    if (st != MP_OK)
        return st;
    mp_block_shape s = blk->shape;
    double *hm = mp_malloc((size_t)(s.n_heads + 1) * sizeof *hm);
    double *fm = mp_malloc((size_t)(s.ffn + 1) * sizeof *fm);
    if (!hm || !fm)
        st = mp_error(MP_ERR_NOMEM, "block %lld: cannot allocate its masks", (long long)b);
    if (st == MP_OK) {
        mp_gscore_masks(plan ? &plan->b[b] : NULL, &s, hm, fm);
        st = mp_gblock_make(c, blk, hm, fm, g);
    }
    free(hm);
    free(fm);
    mp_block_free(&blk);
    return st;
}

/* This rank's part: per block, per local sequence, the packed numbers; and each loss. */
static mp_status local_pass(const mp_model_config *c, const mp_weight_source *src,
                            const mp_plan *plan, const uint32_t *tokens, int64_t n_loc,
                            int64_t T, int64_t mem_bytes, const mp_gscore_progress *pg,
                            double **loc, double *loss, double **grad, double *chan)
{
    mp_status st = MP_OK;
    int64_t L = c->n_layers, d = c->d;
    int64_t per_seq = L * T * d; /* saved inputs of one sequence, doubles */
    int64_t C = mem_bytes / (per_seq * (int64_t)sizeof(double));
    C = C < 1 ? 1 : C > n_loc ? n_loc : C;
    int64_t chunks = n_loc > 0 ? (n_loc + C - 1) / C : 0, step = 0;
    mp_head *head = NULL;
    mp_ghead gh = {0};
    mp_gblock g = {0};
    mp_grad_stats gs = {0};
    double *saved = NULL, *dh = NULL;
    if (n_loc == 0)
        return MP_OK;
    MP_TRY(mp_head_load(c, src, &head));
    MP_TRY(mp_ghead_make(c, head, &gh));
    mp_head_free(&head);
    saved = mp_malloc((size_t)(C * per_seq + T * d) * sizeof *saved);
    dh = mp_malloc((size_t)(C * T * d) * sizeof *dh);
    if (!saved || !dh)
        MP_FAIL(MP_ERR_NOMEM, "cannot allocate the gradient pass's saved inputs (%lld sequences "
                "of %lld blocks)", (long long)C, (long long)L);
    for (int64_t s0 = 0; s0 < n_loc; s0 += C) {
        int64_t n = n_loc - s0 < C ? n_loc - s0 : C;
        /* h of sequence q before block b: saved[(b·C + q)·T·d]; after the last: scratch. */
        double *fin = saved + C * per_seq;
        for (int64_t q = 0; q < n; q++)
            MP_TRY(mp_ghead_embed(&gh, tokens + (s0 + q) * T, T, saved + q * T * d));
        for (int64_t b = 0; b < L; b++) {
            MP_TRY(load_gblock(c, src, plan, b, &g));
            for (int64_t q = 0; q < n; q++) {
                double *in = saved + (b * C + q) * T * d;
                double *outp = b + 1 < L ? saved + ((b + 1) * C + q) * T * d : dh + q * T * d;
                memcpy(outp, in, (size_t)(T * d) * sizeof *in);
                MP_TRY(mp_gblock_forward(&g, outp, T));
            }
            mp_gblock_free(&g);
            if (pg && pg->fn)
                pg->fn(pg->ud, ++step, chunks * 2 * L);
        }
        for (int64_t q = 0; q < n; q++) {
            memcpy(fin, dh + q * T * d, (size_t)(T * d) * sizeof *fin);
            MP_TRY(mp_ghead_loss_chan(&gh, fin, tokens + (s0 + q) * T, T, &loss[s0 + q],
                                      dh + q * T * d, chan ? chan + (s0 + q) * d : NULL));
        }
        for (int64_t b = L - 1; b >= 0; b--) {
            MP_TRY(load_gblock(c, src, plan, b, &g));
            if (grad) {
                int64_t ow[MP_LIN_COUNT], ob[MP_LIN_COUNT];
                elem_layout(c, b, ow, ob);
                for (int id = 0; id < MP_LIN_COUNT; id++)
                    if (ow[id] >= 0 && g.w[id]) {
                        g.gw[id] = grad[b] + ow[id];
                        g.gb[id] = grad[b] + ob[id];
                    }
            }
            MP_TRY(mp_grad_stats_alloc(&g.shape, &gs));
            int64_t m = stat_len(&g.shape);
            for (int64_t q = 0; q < n; q++) {
                mp_grad_stats_zero(&gs);
                gs.emb = chan ? chan + (s0 + q) * d : NULL;
                MP_TRY(mp_gblock_backward(&g, saved + (b * C + q) * T * d, dh + q * T * d, T,
                                          &gs));
                /* The embeddings write every channel: Σ_t h0·∂L/∂h0 after the first block. */
                for (int64_t t = 0; chan && b == 0 && t < T; t++)
                    for (int64_t j = 0; j < d; j++)
                        chan[(s0 + q) * d + j] += saved[q * T * d + t * d + j] *
                                                  dh[q * T * d + t * d + j];
                stat_pack(&gs, loc[b] + (s0 + q) * m);
            }
            mp_grad_stats_free(&gs);
            mp_gblock_free(&g);
            if (pg && pg->fn)
                pg->fn(pg->ud, ++step, chunks * 2 * L);
        }
    }
done:
    mp_grad_stats_free(&gs);
    mp_gblock_free(&g);
    mp_ghead_free(&gh);
    mp_head_free(&head);
    free(saved);
    free(dh);
    return st;
}

/* Rank 0: block b's taylor_element scores from its summed gradients G (elem_layout) and
 * weights: Σ |w·G| over each unit's weights and biases. */
static mp_status elem_scores(const mp_model_config *c, const mp_weight_source *src, int64_t b,
                             const double *G, const mp_block_shape *s, double *head, double *kv,
                             double *ffn)
{
    mp_block *blk = NULL;
    int64_t ow[MP_LIN_COUNT], ob[MP_LIN_COUNT], hd = c->head_dim;
    int64_t nh = s->n_heads, nkv = s->n_kv_heads, F = s->ffn, G1 = nkv > 0 ? nh / nkv : 0;
    mp_status st = mp_block_load(c, src, b, &blk);
    if (st != MP_OK)
        return st;
    elem_layout(c, b, ow, ob);
    double *eh = head + MP_GSCORE_TAYLOR_ELEM * nh, *ek = kv + MP_GSCORE_TAYLOR_ELEM * nkv;
    double *ef = ffn + MP_GSCORE_TAYLOR_ELEM * F;
    memset(eh, 0, (size_t)nh * sizeof *eh);
    memset(ek, 0, (size_t)nkv * sizeof *ek);
    memset(ef, 0, (size_t)F * sizeof *ef);
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        const mp_linear *l = &blk->lin[id];
        if (ow[id] < 0 || !l->present)
            continue;
        const double *gw = G + ow[id], *gb = G + ob[id];
        bool cols = id == MP_LIN_O || id == MP_LIN_DOWN;
        for (int64_t r = 0; r < l->out; r++) {
            for (int64_t j = 0; j < l->in; j++) {
                double v = fabs((double)l->w[r * l->in + j] * gw[r * l->in + j]);
                int64_t u = cols ? j : r;
                if (id == MP_LIN_O || id == MP_LIN_Q)
                    eh[u / hd] += v;
                else if (id == MP_LIN_K || id == MP_LIN_V)
                    ek[u / hd] += v;
                else
                    ef[u] += v;
            }
            /* A row's bias belongs to the row's unit; o_proj's and down_proj's to none. */
            if (l->b && !cols) {
                double v = fabs((double)l->b[r] * gb[r]);
                if (id == MP_LIN_Q)
                    eh[r / hd] += v;
                else if (id == MP_LIN_K || id == MP_LIN_V)
                    ek[r / hd] += v;
                else
                    ef[r] += v;
            }
        }
    }
    /* A KV group: its k/v rows and all its heads. */
    for (int64_t k = 0; k < nkv; k++)
        for (int64_t h = k * G1; h < (k + 1) * G1; h++)
            ek[k] += eh[h];
    mp_block_free(&blk);
    return MP_OK;
}

static mp_status compute(const mp_model_config *c, const mp_weight_source *src,
                         const mp_plan *plan, const uint32_t *tokens, int64_t n_loc, int64_t T,
                         int64_t mem_bytes, const mp_comm *comm, const mp_gscore_progress *pg,
                         int flags, mp_gscores *out)
{
    bool windows = flags & MP_GSCORE_WINDOWS, elem = flags & MP_GSCORE_ELEMENT;
    double **grad = NULL, *gbuf = NULL, *chan = NULL, *chan_all = NULL;
    mp_status st = MP_OK, local = MP_OK, global = MP_OK;
    int rank = mp_comm_rank(comm), P = mp_comm_size(comm), who = -1;
    int64_t L = c->n_layers, n_total = 0;
    double t0 = mp_comm_wtime();
    double **loc = mp_calloc((size_t)L, sizeof *loc);
    int64_t *counts = mp_calloc((size_t)P, sizeof *counts), *cnt = mp_calloc((size_t)P,
                                                                             sizeof *cnt);
    double *loss = mp_calloc((size_t)(n_loc + 1), sizeof *loss), *all = NULL;
    memset(out, 0, sizeof *out);
    out->n_blocks = L;
    out->shape = mp_calloc((size_t)L, sizeof *out->shape);
    out->head = mp_calloc((size_t)L, sizeof *out->head);
    out->kv = mp_calloc((size_t)L, sizeof *out->kv);
    out->ffn = mp_calloc((size_t)L, sizeof *out->ffn);
    if (!loc || !counts || !cnt || !loss || !out->shape || !out->head || !out->kv || !out->ffn)
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the gradient scores");
    for (int64_t b = 0; local == MP_OK && b < L; b++) {
        mp_block_shape s = mp_layer_shape(c, b);
        out->shape[b] = s;
        loc[b] = mp_malloc((size_t)(n_loc * stat_len(&s) + 1) * sizeof(double));
        out->head[b] = mp_malloc((size_t)(MP_GSCORE_COUNT * s.n_heads + 1) * sizeof(double));
        out->kv[b] = mp_malloc((size_t)(MP_GSCORE_COUNT * s.n_kv_heads + 1) * sizeof(double));
        out->ffn[b] = mp_malloc((size_t)(MP_GSCORE_COUNT * s.ffn + 1) * sizeof(double));
        if (!loc[b] || !out->head[b] || !out->kv[b] || !out->ffn[b])
            local = mp_error(MP_ERR_NOMEM, "cannot allocate the gradient scores of block %lld",
                             (long long)b);
    }
    if (local == MP_OK && windows && !(out->win = mp_calloc((size_t)L, sizeof *out->win)))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the mask gradients");
    /* Element-wise Taylor: every block's weight gradients, summed over this rank's sequences
     * (the chunks revisit every block), and on rank 0 a buffer for another rank's. */
    int64_t gmax = 1;
    if (local == MP_OK && elem && !(grad = mp_calloc((size_t)L, sizeof *grad)))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the weight gradients");
    for (int64_t b = 0; local == MP_OK && elem && b < L; b++) {
        int64_t ow[MP_LIN_COUNT], ob[MP_LIN_COUNT], n = elem_layout(c, b, ow, ob);
        gmax = n > gmax ? n : gmax;
        if (!(grad[b] = mp_calloc((size_t)(n + 1), sizeof(double))))
            local = mp_error(MP_ERR_NOMEM, "cannot allocate the weight gradients of block %lld "
                             "(%lld values)", (long long)b, (long long)n);
    }
    if (local == MP_OK && elem && rank == 0 && !(gbuf = mp_malloc((size_t)gmax * sizeof *gbuf)))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate a weight-gradient buffer");
    /* The channel saliency, per sequence: residual channels are the embedding's only where no
     * projection sits between them (OPT's project_in/out). */
    bool chan_on = c->word_embed_proj_dim == c->d;
    int64_t d = c->d;
    if (local == MP_OK && chan_on && !(chan = mp_calloc((size_t)(n_loc * d + 1), sizeof *chan)))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the channel saliency");
    if (local == MP_OK)
        local = local_pass(c, src, plan, tokens, n_loc, T, mem_bytes, rank == 0 ? pg : NULL,
                           loc, loss, grad, chan);
    MP_TRY(mp_comm_agree(comm, local, &global, &who));
    if (global != MP_OK) {
        st = global; /* the failing rank holds the message (mp_comm_agree) */
        goto done;
    }
    counts[rank] = n_loc;
    MP_TRY(mp_comm_allreduce_sum_i64(comm, counts, P));
    for (int r = 0; r < P; r++)
        n_total += counts[r];
    /* Losses and numbers to rank 0 in rank order: ranks hold consecutive sequences, so this is
     * the sequence order, whatever P is. */
    int64_t mmax = 1;
    for (int64_t b = 0; b < L; b++)
        mmax = stat_len(&out->shape[b]) > mmax ? stat_len(&out->shape[b]) : mmax;
    if (rank == 0 && !(all = mp_malloc((size_t)(n_total * mmax + n_total + 1) * sizeof *all)))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the gathered gradient numbers (%lld "
                         "sequences)", (long long)n_total);
    MP_TRY(mp_comm_agree(comm, local, &global, &who));
    if (global != MP_OK) {
        st = global;
        goto done;
    }
    MP_TRY(mp_comm_gatherv_f64(comm, loss, n_loc, all, counts, 0));
    if (rank == 0) {
        double sum = 0.0;
        for (int64_t q = 0; q < n_total; q++)
            sum += all[q];
        out->loss = n_total > 0 ? sum / (double)n_total : 0.0;
    }
    MP_TRY(mp_comm_bcast(comm, &out->loss, (int64_t)sizeof out->loss, 0));
    if (chan_on) {
        if (!(out->chan = mp_calloc((size_t)(2 * d), sizeof *out->chan)) ||
            (rank == 0 && !(chan_all = mp_malloc((size_t)(n_total * d + 1) * sizeof *chan_all))))
            local = mp_error(MP_ERR_NOMEM, "cannot allocate the channel saliency");
        MP_TRY(mp_comm_agree(comm, local, &global, &who));
        if (global != MP_OK) {
            st = global;
            goto done;
        }
        for (int r = 0; r < P; r++)
            cnt[r] = counts[r] * d;
        MP_TRY(mp_comm_gatherv_f64(comm, chan, n_loc * d, chan_all, cnt, 0));
        for (int64_t q = 0; rank == 0 && q < n_total; q++)
            for (int64_t j = 0; j < d; j++) {
                double e = chan_all[q * d + j];
                out->chan[j] += e * e;
                out->chan[d + j] += e;
            }
        for (int64_t j = 0; rank == 0 && j < d; j++)
            out->chan[d + j] = fabs(out->chan[d + j]);
        MP_TRY(mp_comm_bcast(comm, out->chan, (int64_t)(2 * d * sizeof(double)), 0));
        out->n_chan = d;
    }
    for (int64_t b = 0; b < L; b++) {
        const mp_block_shape *s = &out->shape[b];
        int64_t m = stat_len(s);
        for (int r = 0; r < P; r++)
            cnt[r] = counts[r] * m;
        MP_TRY(mp_comm_gatherv_f64(comm, loc[b], n_loc * m, all, cnt, 0));
        if (rank == 0)
            block_scores(s, all, n_total, out->head[b], out->kv[b], out->ffn[b]);
        if (elem) {
            /* The ranks' gradient sums in rank order on rank 0. */
            int64_t ow[MP_LIN_COUNT], ob[MP_LIN_COUNT], n = elem_layout(c, b, ow, ob);
            for (int r = 1; r < P; r++) {
                if (rank == r)
                    MP_TRY(mp_comm_send_f64(comm, grad[b], n, 0, 700));
                if (rank == 0) {
                    MP_TRY(mp_comm_recv_f64(comm, gbuf, n, r, 700));
                    for (int64_t i = 0; i < n; i++)
                        grad[b][i] += gbuf[i];
                }
            }
            if (rank == 0)
                local = elem_scores(c, src, b, grad[b], s, out->head[b], out->kv[b],
                                    out->ffn[b]);
            MP_TRY(mp_comm_agree(comm, local, &global, &who));
            if (global != MP_OK) {
                st = global;
                goto done;
            }
            free(grad[b]);
            grad[b] = NULL;
        }
        if (rank == 0 && windows) {
            int64_t nh = s->n_heads, F = s->ffn, w = nh + F;
            if (!(out->win[b] = mp_malloc((size_t)(n_total * w + 1) * sizeof(double))))
                local = mp_error(MP_ERR_NOMEM, "cannot allocate the mask gradients of %lld "
                                 "sequences", (long long)n_total);
            for (int64_t q = 0; local == MP_OK && q < n_total; q++) {
                const double *gm = all + q * m, *gf = gm + 2 * nh + s->n_kv_heads;
                memcpy(out->win[b] + q * w, gm, (size_t)nh * sizeof(double));
                memcpy(out->win[b] + q * w + nh, gf, (size_t)F * sizeof(double));
            }
        }
        MP_TRY(mp_comm_agree(comm, local, &global, &who));
        if (global != MP_OK) {
            st = global;
            goto done;
        }
        MP_TRY(mp_comm_bcast(comm, out->head[b],
                             (int64_t)(MP_GSCORE_COUNT * s->n_heads * sizeof(double)), 0));
        MP_TRY(mp_comm_bcast(comm, out->kv[b],
                             (int64_t)(MP_GSCORE_COUNT * s->n_kv_heads * sizeof(double)), 0));
        MP_TRY(mp_comm_bcast(comm, out->ffn[b],
                             (int64_t)(MP_GSCORE_COUNT * s->ffn * sizeof(double)), 0));
    }
    out->seconds = mp_comm_wtime() - t0;
    out->n_win = rank == 0 && windows ? n_total : 0;
done:
    for (int64_t b = 0; loc && b < L; b++)
        free(loc[b]);
    for (int64_t b = 0; grad && b < L; b++)
        free(grad[b]);
    free(grad);
    free(gbuf);
    free(chan);
    free(chan_all);
    free(loc);
    free(counts);
    free(cnt);
    free(loss);
    free(all);
    if (st != MP_OK || local != MP_OK)
        mp_gscores_free(out);
    return st != MP_OK ? st : local;
}

mp_status mp_gscores_compute(const mp_model_config *c, const mp_weight_source *src,
                             const mp_plan *plan, const uint32_t *tokens, int64_t n_loc,
                             int64_t T, int64_t mem_bytes, const mp_comm *comm,
                             const mp_gscore_progress *pg, mp_gscores *out)
{
    return compute(c, src, plan, tokens, n_loc, T, mem_bytes, comm, pg, 0, out);
}

mp_status mp_gscores_compute_ex(const mp_model_config *c, const mp_weight_source *src,
                                const mp_plan *plan, const uint32_t *tokens, int64_t n_loc,
                                int64_t T, int64_t mem_bytes, const mp_comm *comm,
                                const mp_gscore_progress *pg, int flags, mp_gscores *out)
{
    return compute(c, src, plan, tokens, n_loc, T, mem_bytes, comm, pg, flags, out);
}
