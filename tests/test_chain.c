/* src/mp_chain: a block's removal chains. Their costs add up to the block's parameters, every
 * prefix is a legal GQA plan whose FFN width stays a multiple of --ffn-multiple, and the OBS
 * chain's compensated weights equal the least-squares refit of what it keeps (float64, exact
 * up to rounding: tolerance 1e-8 relative). */
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

#include "mp_chain.h"
#include "mp_plan.h"
#include "mp_struct.h"

static void fail_st(const char *what, mp_status st)
{
    if (st != MP_OK) fail_msg("%s: %s: %s", what, mp_status_str(st), mp_error_message());
}

static mp_model_config cfg_llama(void)
{
    mp_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = MP_ARCH_LLAMA;
    strcpy(c.model_type, "llama");
    c.vocab = 50;
    c.d = 24;
    c.n_layers = 1;
    c.n_heads = 6;
    c.n_kv_heads = 2;
    c.head_dim = 4;
    c.ffn = 20;
    c.max_pos = 64;
    c.norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.qkv_bias = true;
    c.o_bias = true;
    c.mlp_bias = true;
    c.norm_before = true;
    c.final_norm = true;
    c.word_embed_proj_dim = c.d;
    return c;
}

static mp_block *random_block(const mp_model_config *c, prng *r)
{
    mp_block *b = calloc(1, sizeof *b);
    assert_non_null(b);
    b->shape = mp_layer_shape(c, 0);
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        mp_linear *l = &b->lin[id];
        mp_lin_dims(c, 0, (mp_lin_id)id, &l->out, &l->in);
        l->present = true;
        l->w = falloc(l->out * l->in);
        for (int64_t i = 0; i < l->out * l->in; i++) l->w[i] = (float)prng_uniform(r, -1, 1);
        l->b = falloc(l->out);
    }
    b->norm1_w = falloc(c->d);
    b->norm2_w = falloc(c->d);
    return b;
}

static double *random_hessian(prng *r, int64_t n)
{
    int64_t N = 5 * n;
    double *X = dalloc(N * n), *H = dalloc(n * n);
    for (int64_t i = 0; i < N * n; i++) X[i] = prng_uniform(r, -1.0, 1.0) + (i % 7 == 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t t = 0; t < N; t++) s += X[t * n + i] * X[t * n + j];
            H[i * n + j] = 2.0 * s / (double)N;
        }
    free(X);
    return H;
}

static mp_chain_opts opts(mp_scorer s)
{
    mp_chain_opts o = {.scorer = s, .kv_groups = true, .heads = true, .ffn = true,
                       .sublayers = true, .ffn_multiple = 4, .damp = 0.0};
    return o;
}

static void check_chain(mp_scorer scorer)
{
    prng r = {21 + (uint64_t)scorer};
    mp_model_config c = cfg_llama();
    mp_block *blk = random_block(&c, &r);
    int64_t qd = c.n_heads * c.head_dim, F = c.ffn, d = c.d;
    double *Ho = random_hessian(&r, qd), *Hf = random_hessian(&r, F);
    double *mo = dalloc(qd), *mf = dalloc(F);
    for (int64_t j = 0; j < qd; j++) mo[j] = prng_uniform(&r, -0.3, 0.3);
    for (int64_t j = 0; j < F; j++) mf[j] = prng_uniform(&r, -0.3, 0.3);
    mp_chain_opts o = opts(scorer);
    mp_block_chain ca, cf;
    fail_st("attention chain", mp_block_chain_build(&c, blk, true, Ho, mo, &o, 32, -1, NULL, &ca));
    fail_st("FFN chain", mp_block_chain_build(&c, blk, false, Hf, mf, &o, 32, -1, NULL, &cf));

    /* Every unit of both chains (sub-blocks may go) frees every linear parameter. */
    double tot = 0.0;
    for (int64_t i = 0; i < ca.n; i++) tot += ca.cost[i];
    for (int64_t i = 0; i < cf.n; i++) tot += cf.cost[i];
    double want = (double)mp_block_params(&c, 0);
    if (tot != want) fail_msg("scorer %d: chains free %g parameters, the block has %g", scorer, tot, want);
    assert_true(cf.n == F / 4);

    /* Every prefix pair is a legal plan; FFN widths are multiples of 4. */
    for (int64_t ta = 0; ta <= ca.n; ta++)
        for (int64_t tf = 0; tf <= cf.n; tf++) {
            mp_plan plan;
            fail_st("identity", mp_plan_identity(&c, &plan));
            fail_st("chain plan", mp_block_chain_plan(&c, blk, &ca, ta, &cf, tf, &plan));
            fail_st("plan check", mp_plan_check(&c, &plan, "chain"));
            assert_int_equal(plan.b[0].n_ffn % 4, 0);
            assert_int_equal(plan.b[0].n_ffn, F - 4 * tf);
            double freed = 0.0;
            for (int64_t i = 0; i < ta; i++) freed += ca.cost[i];
            mp_model_config pc;
            mp_plan_apply_config(&c, &plan, &pc);
            double attn_after = 0.0;
            for (int id = MP_LIN_Q; id <= MP_LIN_O; id++) {
                int64_t out, in;
                mp_lin_dims(&pc, 0, (mp_lin_id)id, &out, &in);
                attn_after += (double)(out * in) + (out > 0 && in > 0 ? (double)out : 0.0);
            }
            double attn_before = 0.0;
            for (int id = MP_LIN_Q; id <= MP_LIN_O; id++)
                attn_before += (double)(blk->lin[id].out * blk->lin[id].in + blk->lin[id].out);
            if (attn_before - attn_after != freed)
                fail_msg("scorer %d prefix %lld: attention shrinks by %g, the chain says %g",
                         scorer, (long long)ta, attn_before - attn_after, freed);
            mp_plan_free(&plan);
        }

    /* OBS: the compensated weight of a prefix is the least-squares refit of what it keeps. */
    if (scorer == MP_SCORE_OBS) {
        for (int which = 0; which < 2; which++) {
            bool attn = which == 0;
            int64_t cols = attn ? qd : F, take = attn ? 1 : 3;
            const double *H = attn ? Ho : Hf;
            double *Wc = dalloc(d * cols), *Wd = dalloc(d * cols), *Wls = dalloc(d * cols);
            const mp_linear *l = &blk->lin[attn ? MP_LIN_O : MP_LIN_DOWN];
            for (int64_t i = 0; i < d * cols; i++) Wd[i] = l->w[i];
            mp_block_chain part;
            fail_st("prefix chain", mp_block_chain_build(&c, blk, attn, H, NULL, &o, 32, take,
                                                         Wc, &part));
            const mp_block_chain *full = attn ? &ca : &cf;
            assert_int_equal(part.n, take);
            bool *keep = calloc((size_t)cols, sizeof *keep);
            for (int64_t j = 0; j < cols; j++) keep[j] = true;
            for (int64_t i = 0; i < take; i++) {
                assert_true(part.score[i] == full->score[i]); /* deterministic */
                for (int64_t t = 0; t < part.unit[i].n_cols; t++) keep[part.unit[i].cols[t]] = false;
            }
            fail_st("refit", mp_struct_refit(Wd, d, cols, H, keep, 0.0, Wls));
            double num = 0.0, den = 0.0;
            for (int64_t i = 0; i < d * cols; i++) {
                num = fmax(num, fabs(Wc[i] - Wls[i]));
                den = fmax(den, fabs(Wls[i]));
            }
            print_message("%s: OBS chain vs least squares: rel %.2e\n", attn ? "attention" : "FFN",
                          num / den);
            assert_true(den > 0.0);
            if (!(num / den <= 1e-8)) fail_msg("OBS chain weights differ from the refit: %.3e", num / den);
            mp_block_chain_free(&part);
            free(keep), free(Wc), free(Wd), free(Wls);
        }
    }
    mp_block_chain_free(&ca);
    mp_block_chain_free(&cf);
    mp_block_free(&blk);
    free(Ho), free(Hf), free(mo), free(mf);
}

static void test_chain_obs(void **state) { (void)state; check_chain(MP_SCORE_OBS); }
static void test_chain_flap(void **state) { (void)state; check_chain(MP_SCORE_FLAP); }
static void test_chain_wanda_sp(void **state) { (void)state; check_chain(MP_SCORE_WANDA_SP); }
static void test_chain_magnitude(void **state) { (void)state; check_chain(MP_SCORE_MAGNITUDE); }

/* Floors: without sublayers at least one KV group with min_q_per_kv heads and min_ffn neurons
 * stay. */
static void test_floors(void **state)
{
    (void)state;
    prng r = {31};
    mp_model_config c = cfg_llama();
    mp_block *blk = random_block(&c, &r);
    double *Ho = random_hessian(&r, 24), *Hf = random_hessian(&r, 20);
    mp_chain_opts o = opts(MP_SCORE_OBS);
    o.sublayers = false;
    o.min_q_per_kv = 2;
    o.min_ffn = 8;
    mp_block_chain ca, cf;
    fail_st("attention", mp_block_chain_build(&c, blk, true, Ho, NULL, &o, 32, -1, NULL, &ca));
    fail_st("FFN", mp_block_chain_build(&c, blk, false, Hf, NULL, &o, 32, -1, NULL, &cf));
    mp_plan plan;
    fail_st("identity", mp_plan_identity(&c, &plan));
    fail_st("plan", mp_block_chain_plan(&c, blk, &ca, ca.n, &cf, cf.n, &plan));
    assert_int_equal(plan.b[0].n_kv, 1);
    assert_int_equal(plan.b[0].q_per_kv, 2);
    assert_int_equal(plan.b[0].n_ffn, 8);
    mp_plan_free(&plan);
    mp_block_chain_free(&ca);
    mp_block_chain_free(&cf);
    mp_block_free(&blk);
    free(Ho), free(Hf);
}

/* A chain continued from the plan of its own prefix is the rest of the chain: the OBS updates
 * compose (removing S1 then S2 is removing S1 ∪ S2 at once), so the same units follow with the
 * same scores, and the plan of start + k more units is the plan of the first k0 + k. */
static void test_chain_from_start(void **state)
{
    (void)state;
    for (int scorer = MP_SCORE_OBS; scorer <= MP_SCORE_MAGNITUDE; scorer++) {
        prng r = {77 + (uint64_t)scorer};
        mp_model_config c = cfg_llama();
        mp_block *blk = random_block(&c, &r);
        int64_t qd = c.n_heads * c.head_dim, F = c.ffn;
        double *Ho = random_hessian(&r, qd), *Hf = random_hessian(&r, F);
        double *mo = dalloc(qd), *mf = dalloc(F);
        for (int64_t j = 0; j < qd; j++) mo[j] = prng_uniform(&r, -0.3, 0.3);
        for (int64_t j = 0; j < F; j++) mf[j] = prng_uniform(&r, -0.3, 0.3);
        mp_chain_opts o = opts((mp_scorer)scorer);
        for (int which = 0; which < 2; which++) {
            bool attn = which == 0;
            const double *H = attn ? Ho : Hf, *m = attn ? mo : mf;
            mp_block_chain full, rest;
            fail_st("full", mp_block_chain_build(&c, blk, attn, H, m, &o, 32, -1, NULL, &full));
            int64_t k0 = full.n / 2;
            mp_plan start;
            fail_st("identity", mp_plan_identity(&c, &start));
            fail_st("start", mp_block_chain_plan(&c, blk, attn ? &full : NULL, attn ? k0 : 0,
                                                 attn ? NULL : &full, attn ? 0 : k0, &start));
            fail_st("rest", mp_block_chain_build_from(&c, blk, attn, H, m, &o, 32, &start.b[0],
                                                      -1, NULL, &rest));
            assert_int_equal(rest.n, full.n - k0);
            for (int64_t i = 0; i < rest.n; i++) {
                const mp_unit *a = &rest.unit[i], *b = &full.unit[k0 + i];
                assert_int_equal(a->kind, b->kind);
                assert_int_equal(a->n_cols, b->n_cols);
                for (int64_t t = 0; t < a->n_cols; t++) assert_int_equal(a->cols[t], b->cols[t]);
                double e = fabs(rest.score[i] - full.score[k0 + i]);
                if (!(e <= 1e-8 * (1.0 + fabs(full.score[k0 + i]))))
                    fail_msg("scorer %d %s unit %lld: score %.12g continued, %.12g in one chain",
                             scorer, attn ? "attention" : "FFN", (long long)i, rest.score[i],
                             full.score[k0 + i]);
            }
            mp_plan p1, p2;
            int64_t k = rest.n > 0 ? 1 : 0;
            fail_st("identity", mp_plan_identity(&c, &p1));
            fail_st("identity", mp_plan_identity(&c, &p2));
            fail_st("plan from", mp_block_chain_plan_from(&c, blk, &start.b[0], attn ? &rest : NULL,
                                                          attn ? k : 0, attn ? NULL : &rest,
                                                          attn ? 0 : k, &p1));
            fail_st("plan", mp_block_chain_plan(&c, blk, attn ? &full : NULL, attn ? k0 + k : 0,
                                                attn ? NULL : &full, attn ? 0 : k0 + k, &p2));
            assert_int_equal(p1.b[0].n_kv, p2.b[0].n_kv);
            assert_int_equal(p1.b[0].q_per_kv, p2.b[0].q_per_kv);
            assert_int_equal(p1.b[0].n_ffn, p2.b[0].n_ffn);
            assert_memory_equal(p1.b[0].kv, p2.b[0].kv, (size_t)p1.b[0].n_kv * sizeof(int64_t));
            assert_memory_equal(p1.b[0].q, p2.b[0].q,
                                (size_t)(p1.b[0].n_kv * p1.b[0].q_per_kv) * sizeof(int64_t));
            assert_memory_equal(p1.b[0].ffn, p2.b[0].ffn, (size_t)p1.b[0].n_ffn * sizeof(int64_t));
            mp_plan_free(&p1), mp_plan_free(&p2), mp_plan_free(&start);
            mp_block_chain_free(&full), mp_block_chain_free(&rest);
        }
        mp_block_free(&blk);
        free(Ho), free(Hf), free(mo), free(mf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_obs),
        cmocka_unit_test(test_chain_flap),
        cmocka_unit_test(test_chain_wanda_sp),
        cmocka_unit_test(test_chain_magnitude),
        cmocka_unit_test(test_floors),
        cmocka_unit_test(test_chain_from_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
