#include "mp_alloc.h"
#include "mp_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mp_blasinfo.h"
#include "mp_model.h"
#include "mp_modeldir.h"
#include "mp_progress.h"
#include "mp_tokens.h"

/* The local part of the evaluation: windows [w0, w1) through the whole model, block by block,
 * one block's weights in memory at a time. Not collective. */
static mp_status eval_local(const mp_eval_opts *o, const mp_modeldir *md, const mp_tokens *tok,
                            int64_t w0, int64_t w1, mp_progress *pg, double *nll)
{
    mp_status st = MP_OK;
    const mp_model_config *c = &md->cfg;
    int64_t T = o->seqlen, n = w1 - w0, d = c->d;
    mp_head *head = NULL;
    mp_block *blk = NULL;
    float *h = NULL;
    if (n == 0)
        return MP_OK;
    const uint32_t *ids = tok->ids + w0 * T;
    h = mp_malloc((size_t)(n * T * d) * sizeof(float));
    if (!h)
        MP_FAIL(MP_ERR_NOMEM, "cannot allocate hidden states for %lld windows of %lld tokens "
                "(%.1f MiB)", (long long)n, (long long)T, (double)(n * T * d) * 4.0 / 1048576.0);
    MP_TRY(mp_head_load(c, &md->src, &head));
    MP_TRY(mp_embed_forward(c, head, ids, n, T, h));
    for (int64_t l = 0; l < c->n_layers; l++) {
        MP_TRY(mp_block_load(c, &md->src, l, &blk));
        /* Batches start at multiples of `batch` in global window numbering. */
        for (int64_t b0 = w0; b0 < w1;) {
            int64_t b1 = (b0 / o->batch + 1) * o->batch;
            b1 = b1 < w1 ? b1 : w1;
            MP_TRY(mp_block_forward(c, blk, h + (b0 - w0) * T * d, b1 - b0, T, NULL));
            b0 = b1;
        }
        mp_block_free(&blk);
        char detail[32];
        snprintf(detail, sizeof detail, "block");
        mp_progress_step(pg, l + 1, (double)(n * T) * (double)(l + 1) / (double)c->n_layers,
                         detail);
    }
    MP_TRY(mp_head_nll(c, head, h, ids, n, T, nll));
done:
    mp_block_free(&blk);
    mp_head_free(&head);
    free(h);
    return st;
}

mp_status mp_eval_open(const char *model, const char *data, int64_t seqlen, int64_t max_windows,
                       mp_modeldir *md, mp_tokens *tok, int64_t *nw)
{
    mp_status st = mp_modeldir_open(model, md);
    if (st == MP_OK)
        st = mp_modeldir_check_seqlen(md, seqlen);
    if (st == MP_OK)
        st = mp_tokens_load(data, tok);
    if (st == MP_OK)
        st = mp_tokens_windows(tok, seqlen, data, nw);
    if (st == MP_OK) {
        if (max_windows > 0 && *nw > max_windows)
            *nw = max_windows;
        mp_tokens view = {.ids = tok->ids, .count = *nw * seqlen};
        st = mp_tokens_check_vocab(&view, md->cfg.vocab, data);
    }
    return st;
}

/* Rank r's windows [*w0, *w1) of nw: whole batches, spread evenly over P ranks. The one rule
 * both the evaluation and the gathering use. */
static void eval_share(int64_t nw, int64_t batch, int r, int P, int64_t *w0, int64_t *w1)
{
    int64_t nb = (nw + batch - 1) / batch;
    int64_t b0 = nb * r / P * batch, b1 = nb * (r + 1) / P * batch;
    *w0 = b0 < nw ? b0 : nw;
    *w1 = b1 < nw ? b1 : nw;
}

mp_status mp_eval_run(const mp_eval_opts *o, const mp_comm *comm, mp_eval_result *res)
{
    mp_status st = MP_OK, gst = MP_OK;
    int who = -1, rank = mp_comm_rank(comm), P = mp_comm_size(comm);
    mp_modeldir md = {0};
    mp_tokens tok = {0};
    double *nll = NULL, *all = NULL;
    int64_t *counts = NULL;
    int64_t nw = 0, w0 = 0, w1 = 0;
    mp_progress pg;
    double t0 = mp_comm_wtime();

    /* Local phase: every failure here is reported once, by the lowest failing rank. */
    st = mp_eval_open(o->model, o->data, o->seqlen, o->max_windows, &md, &tok, &nw);
    if (st == MP_OK) {
        eval_share(nw, o->batch, rank, P, &w0, &w1);
        nll = mp_malloc((size_t)(w1 - w0 + 1) * sizeof(double));
        counts = mp_malloc((size_t)P * sizeof(int64_t));
        all = rank == 0 ? mp_malloc((size_t)(nw + 1) * sizeof(double)) : NULL;
        if (!nll || !counts || (rank == 0 && !all))
            st = mp_error(MP_ERR_NOMEM, "cannot allocate %lld window results", (long long)nw);
    }
    if (st == MP_OK) {
        mp_progress_start(&pg, o->progress && rank == 0, "eval", md.cfg.n_layers);
        char bw[256];
        if (pg.enabled && mp_blas_kernel_warning(bw, sizeof bw))
            mp_progress_note(&pg, "warning: %s", bw);
        if (*mp_blas_threads_note())
            mp_progress_note(&pg, "%s", mp_blas_threads_note());
        mp_progress_note(&pg, "%lld windows of %lld tokens on %d rank(s), model %s",
                         (long long)nw, (long long)o->seqlen, P, o->model);
        st = eval_local(o, &md, &tok, w0, w1, &pg, nll);
    }
    MP_TRY(mp_comm_agree(comm, st, &gst, &who));
    if (gst != MP_OK) {
        st = gst;
        goto done;
    }

    for (int r = 0; r < P; r++) {
        int64_t a, b;
        eval_share(nw, o->batch, r, P, &a, &b);
        counts[r] = b - a;
    }
    MP_TRY(mp_comm_gatherv_f64(comm, nll, w1 - w0, all, counts, 0));
    if (rank == 0) {
        double sum = 0.0;
        for (int64_t w = 0; w < nw; w++)
            sum += all[w];
        res->mean_nll = sum / (double)nw;
        res->perplexity = exp(res->mean_nll);
        res->windows = nw;
        res->tokens = nw * o->seqlen;
        res->predicted = nw * (o->seqlen - 1);
        res->seconds = mp_comm_wtime() - t0;
    }
done:
    free(nll);
    free(all);
    free(counts);
    mp_tokens_free(&tok);
    mp_modeldir_close(&md);
    return st;
}
