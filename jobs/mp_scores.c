#include "mp_scores.h"

#include <stdio.h>
#include <stdlib.h>

#include "mp_eval.h"
#include "mp_gradscore.h"
#include "mp_modeldir.h"
#include "mp_progress.h"
#include "mp_tokens.h"

typedef struct {
    mp_progress pg;
    double tokens; /* windows × seqlen */
    int64_t L;
} step_ctx;

static void on_step(void *ud, int64_t done, int64_t total)
{
    step_ctx *x = ud;
    mp_progress_step(&x->pg, done, x->tokens * (double)done / (double)total,
                     ((done - 1) / x->L) % 2 == 0 ? "block forward" : "block backward");
}

static void print_arr(const char *key, const double *v, int64_t n, bool comma)
{
    printf("\"%s\": [", key);
    for (int64_t i = 0; i < n; i++)
        printf("%s%.17g", i ? ", " : "", v[i]);
    printf("]%s", comma ? ", " : "");
}

static void print_kinds(const char *key, const double *v, int64_t n, int nk, bool comma)
{
    static const char *const kinds[MP_GSCORE_COUNT] = {"fisher", "nvit", "taylor",
                                                       "taylor_element"};
    printf("\"%s\": {", key);
    for (int k = 0; k < nk; k++)
        print_arr(kinds[k], v + k * n, n, k + 1 < nk);
    printf("}%s", comma ? ", " : "");
}

mp_status mp_scores_run(const mp_scores_opts *o, const mp_comm *comm)
{
    mp_status st = MP_OK, gst = MP_OK;
    int who = -1, rank = mp_comm_rank(comm), P = mp_comm_size(comm);
    mp_modeldir md = {0};
    mp_tokens tok = {0};
    mp_gscores sc = {0};
    step_ctx sx = {0};
    int64_t nw = 0;
    st = mp_eval_open(o->model, o->data, o->seqlen, o->nsamples, &md, &tok, &nw);
    MP_TRY(mp_comm_agree(comm, st, &gst, &who));
    if (gst != MP_OK) {
        st = gst;
        goto done;
    }
    /* Consecutive windows per rank, in rank order (what mp_gscores_compute assumes). */
    int64_t s0 = nw * rank / P, s1 = nw * (rank + 1) / P;
    sx.tokens = (double)(nw * o->seqlen);
    sx.L = md.cfg.n_layers;
    mp_progress_start(&sx.pg, o->progress && rank == 0, "scores", 2 * md.cfg.n_layers);
    mp_progress_note(&sx.pg, "gradient scores on %lld windows of %lld tokens, %d rank(s), model %s",
                     (long long)nw, (long long)o->seqlen, P, o->model);
    mp_gscore_progress cb = {.fn = on_step, .ud = &sx};
    st = mp_gscores_compute_ex(&md.cfg, &md.src, NULL, tok.ids + s0 * o->seqlen, s1 - s0,
                               o->seqlen, o->max_memory * 1048576, comm, &cb,
                               o->element ? MP_GSCORE_ELEMENT : 0, &sc);
    int nk = o->element ? MP_GSCORE_COUNT : MP_GSCORE_TAYLOR_ELEM;
    if (st != MP_OK)
        goto done;
    if (rank == 0) {
        printf("{\"loss\": %.17g, \"windows\": %lld, \"seqlen\": %lld, \"ranks\": %d, "
               "\"seconds\": %.3f, \"blocks\": [", sc.loss, (long long)nw, (long long)o->seqlen,
               P, sc.seconds);
        for (int64_t b = 0; b < sc.n_blocks; b++) {
            const mp_block_shape *s = &sc.shape[b];
            printf("%s{", b ? ", " : "");
            print_kinds("heads", sc.head[b], s->n_heads, nk, true);
            print_kinds("kv_groups", sc.kv[b], s->n_kv_heads, nk, true);
            print_kinds("ffn", sc.ffn[b], s->ffn, nk, false);
            printf("}");
        }
        printf("]");
        if (sc.n_chan > 0) {
            printf(", \"embedding_channels\": {");
            print_arr("nvit", sc.chan, sc.n_chan, true);
            print_arr("taylor", sc.chan + sc.n_chan, sc.n_chan, false);
            printf("}");
        }
        printf("}\n");
        fflush(stdout);
    }
done:
    mp_gscores_free(&sc);
    mp_tokens_free(&tok);
    mp_modeldir_close(&md);
    return st;
}
