/* search/mp_search: the global selection over layer chains, the round schedule and the
 * normalisations, against brute force on small cases. */
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

#include "mp_kwon.h"
#include "mp_search.h"

static void fail_st(const char *what, mp_status st)
{
    if (st != MP_OK) fail_msg("%s: %s: %s", what, mp_status_str(st), mp_error_message());
}

/* Brute force: the prefixes freeing >= target of least total key (equal costs, so the greedy
 * over non-decreasing chains must find it). */
static double brute(const mp_chain *c, int64_t nc, double target, int64_t *best_taken)
{
    int64_t t[4] = {0};
    double best = INFINITY;
    for (;;) {
        double freed = 0.0, sum = 0.0;
        for (int64_t i = 0; i < nc; i++)
            for (int64_t u = 0; u < t[i]; u++) {
                freed += c[i].cost[u];
                sum += c[i].scale * c[i].score[u] / c[i].cost[u] + c[i].shift;
            }
        if (freed >= target && sum < best - 1e-12) {
            best = sum;
            memcpy(best_taken, t, (size_t)nc * sizeof *t);
        }
        int64_t i = 0;
        while (i < nc && ++t[i] > c[i].n) t[i++] = 0;
        if (i == nc) break;
    }
    return best;
}

static void test_select_vs_brute_force(void **state)
{
    (void)state;
    prng r = {5};
    for (int trial = 0; trial < 200; trial++) {
        double sc[3][6], co[3][6];
        mp_chain ch[3];
        for (int c = 0; c < 3; c++) {
            double v = 0.0;
            for (int u = 0; u < 6; u++) {
                v += prng_uniform(&r, 0.0, 1.0); /* non-decreasing marginal errors */
                sc[c][u] = v;
                co[c][u] = 2.0;
            }
            ch[c] = (mp_chain){.block = c, .kind = 0, .n = 6, .score = sc[c], .cost = co[c],
                               .scale = prng_uniform(&r, 0.5, 2.0)};
        }
        double target = 2.0 * (double)(1 + trial % 17), freed = 0.0;
        int64_t taken[3], want[3];
        fail_st("select", mp_search_select(ch, 3, target, taken, &freed));
        double bf = brute(ch, 3, target, want);
        double got = 0.0;
        for (int c = 0; c < 3; c++)
            for (int64_t u = 0; u < taken[c]; u++) got += ch[c].scale * sc[c][u] / co[c][u];
        if (!(fabs(got - bf) <= 1e-9 * (1.0 + bf)))
            fail_msg("trial %d: greedy total %.12g, brute force %.12g", trial, got, bf);
        /* Met to within one unit. */
        if (!(freed >= target && freed - 2.0 < target))
            fail_msg("trial %d: freed %g for target %g", trial, freed, target);
    }
}

/* Unequal costs: a cheap unit of small error goes before an expensive one of the same error
 * per cost only by its key; the budget is met to within the last unit taken. */
static void test_select_costs_and_ties(void **state)
{
    (void)state;
    double s0[3] = {1.0, 2.0, 3.0}, c0[3] = {1.0, 1.0, 1.0};
    double s1[2] = {4.0, 100.0}, c1[2] = {8.0, 8.0}; /* key 0.5 then 12.5 */
    mp_chain ch[2] = {{.block = 0, .kind = 1, .n = 3, .score = s0, .cost = c0, .scale = 1.0},
                      {.block = 1, .kind = 0, .n = 2, .score = s1, .cost = c1, .scale = 1.0}};
    int64_t taken[2];
    double freed;
    fail_st("select", mp_search_select(ch, 2, 9.0, taken, &freed));
    /* keys: 1,2,3 | 0.5,12.5: first block 1's unit (8), then block 0's first (9 >= 9). */
    assert_int_equal(taken[0], 1);
    assert_int_equal(taken[1], 1);
    assert_true(freed == 9.0);
    /* Ties: equal keys go to the lower block whatever the chain order. */
    double s2[1] = {1.0}, c2[1] = {1.0};
    mp_chain a[2] = {{.block = 7, .kind = 0, .n = 1, .score = s2, .cost = c2, .scale = 1.0},
                     {.block = 3, .kind = 1, .n = 1, .score = s2, .cost = c2, .scale = 1.0}};
    fail_st("select ties", mp_search_select(a, 2, 1.0, taken, &freed));
    assert_int_equal(taken[0], 0);
    assert_int_equal(taken[1], 1);
    /* Nothing to take; too much asked; a bad unit. */
    fail_st("select 0", mp_search_select(a, 2, 0.0, taken, &freed));
    assert_int_equal(taken[0] + taken[1], 0);
    assert_int_equal(mp_search_select(a, 2, 3.0, taken, &freed), MP_ERR_RANGE);
    double bad[1] = {NAN};
    mp_chain b = {.block = 0, .n = 1, .score = bad, .cost = c2, .scale = 1.0};
    assert_int_equal(mp_search_select(&b, 1, 1.0, taken, &freed), MP_ERR_INTERNAL);
}

static void test_schedule(void **state)
{
    (void)state;
    double cum[4];
    mp_search_schedule(4, cum);
    assert_true(cum[0] == 0.5 && cum[1] == 0.75 && cum[2] == 0.875 && cum[3] == 1.0);
    mp_search_schedule(1, cum);
    assert_true(cum[0] == 1.0);
}

static void test_normalize(void **state)
{
    (void)state;
    double s[4] = {1.0, 2.0, 3.0, 6.0}, c[4] = {1.0, 1.0, 1.0, 2.0};
    mp_chain ch = {.block = 0, .n = 4, .score = s, .cost = c};
    mp_search_normalize(&ch, MP_NORM_RELATIVE, 4.0, 0.0);
    assert_true(ch.scale == 0.25 && ch.shift == 0.0);
    mp_search_normalize(&ch, MP_NORM_PROBE, 0.0, 3.0);
    assert_true(ch.scale == 3.0);
    mp_search_normalize(&ch, MP_NORM_PROBE, 0.0, -1.0); /* no usable probe */
    assert_true(ch.scale == 1.0);
    mp_search_normalize(&ch, MP_NORM_ZSCORE, 0.0, 0.0);
    double m = 0.0, v = 0.0;
    for (int i = 0; i < 4; i++) m += ch.scale * s[i] / c[i] + ch.shift;
    m /= 4.0;
    for (int i = 0; i < 4; i++) {
        double x = ch.scale * s[i] / c[i] + ch.shift - m;
        v += x * x;
    }
    if (!(fabs(m) <= 1e-12 && fabs(v / 4.0 - 1.0) <= 1e-12))
        fail_msg("z-scored keys: mean %g, variance %g", m, v / 4.0);
    mp_norm_mode mode;
    fail_st("parse", mp_search_norm_parse("zscore", &mode));
    assert_int_equal(mode, MP_NORM_ZSCORE);
    assert_int_equal(mp_search_norm_parse("bogus", &mode), MP_ERR_ARG);
}

/* Uniform: the shares removed stay within one unit of each other, scores play no part, and
 * what a layer lost before counts toward its share. */
static void test_select_uniform(void **state)
{
    (void)state;
    double sa[8], ca[8], sb[4], cb[4];
    for (int i = 0; i < 8; i++) sa[i] = 1e6, ca[i] = 1.0;   /* costly scores, small units */
    for (int i = 0; i < 4; i++) sb[i] = 1e-6, cb[i] = 4.0;  /* cheap scores, big units */
    mp_chain ch[2] = {{.block = 0, .kind = 0, .n = 8, .score = sa, .cost = ca, .scale = 1.0},
                      {.block = 1, .kind = 0, .n = 4, .score = sb, .cost = cb, .scale = 1.0}};
    double base[2] = {0.0, 0.0}, total[2] = {8.0, 16.0}, freed = 0.0;
    int64_t taken[2];
    fail_st("uniform", mp_search_select_uniform(ch, 2, base, total, 6.0, taken, &freed));
    /* 1/8 (a), then 2/8, 4/16 tie -> block 0 first ... shares 2/8 and 4/16 after 6 freed. */
    assert_int_equal(taken[0], 2);
    assert_int_equal(taken[1], 1);
    assert_true(freed == 6.0);
    /* A layer that lost a quarter already is left alone until the other catches up. */
    base[1] = 4.0;
    fail_st("uniform base", mp_search_select_uniform(ch, 2, base, total, 2.0, taken, &freed));
    assert_int_equal(taken[0], 2);
    assert_int_equal(taken[1], 0);
    assert_int_equal(mp_search_select_uniform(ch, 2, base, total, 100.0, taken, &freed),
                     MP_ERR_RANGE);
}

/* Kwon et al.'s mask search against brute force over every subset of units: with one cost per
 * attention unit and one per neuron, the sweep over the number of kept attention units is the
 * exact optimum of the kept Fisher under the budget (floors included). */
static void test_kwon_search_vs_brute_force(void **state)
{
    (void)state;
    prng r = {11};
    enum { L = 2 };
    const int64_t na[L] = {2, 3}, nf[L] = {3, 4};
    for (int trial = 0; trial < 40; trial++) {
        double fa[L][3], ff[L][4];
        mp_kwon_layer ly[L];
        int64_t amin = trial % 3 == 0 ? 1 : 0, fmin = trial % 4 == 0 ? 1 : 0;
        for (int l = 0; l < L; l++) {
            for (int i = 0; i < na[l]; i++) fa[l][i] = prng_uniform(&r, 0.0, 4.0);
            for (int i = 0; i < nf[l]; i++) ff[l][i] = prng_uniform(&r, 0.0, 1.0);
            ly[l] = (mp_kwon_layer){na[l], fa[l], 5.0, amin, nf[l], ff[l], 2.0, fmin};
        }
        double budget = prng_uniform(&r, 12.0, 38.0);
        int64_t ak[L], fk[L], at = 0;
        double kf = 0.0, kc = 0.0;
        fail_st("search", mp_kwon_search(ly, L, 1, budget, ak, fk, &kf, &kc, &at));
        /* Brute force: 12 units, each kept or not. */
        double best = -1.0;
        for (int mask = 0; mask < 1 << 12; mask++) {
            double f = 0.0, c = 0.0;
            int bit = 0;
            bool ok = true;
            for (int l = 0; l < L; l++) {
                int ka = 0, kn = 0;
                for (int i = 0; i < na[l]; i++, bit++)
                    if (mask >> bit & 1) f += fa[l][i], c += 5.0, ka++;
                for (int i = 0; i < nf[l]; i++, bit++)
                    if (mask >> bit & 1) f += ff[l][i], c += 2.0, kn++;
                ok = ok && ka >= amin && kn >= fmin;
            }
            if (ok && c <= budget && f > best) best = f;
        }
        if (!(fabs(kf - best) <= 1e-12 * best))
            fail_msg("trial %d: kept Fisher %.15g, brute force %.15g", trial, kf, best);
        double cost = 0.0;
        int64_t tot = 0;
        for (int l = 0; l < L; l++) {
            cost += 5.0 * (double)ak[l] + 2.0 * (double)fk[l];
            tot += ak[l];
            if (ak[l] < amin || fk[l] < fmin) fail_msg("trial %d: floors broken", trial);
        }
        if (!(cost <= budget) || cost != kc || tot != at)
            fail_msg("trial %d: cost %g (reported %g) of budget %g", trial, cost, kc, budget);
    }
    /* Buckets of 2 neurons: kept widths stay multiples of 2 (or whole), within the budget. */
    double a2[2] = {1.0, 2.0}, f2[5] = {0.5, 0.1, 0.4, 0.3, 0.2};
    mp_kwon_layer one = {2, a2, 5.0, 1, 5, f2, 1.0, 1};
    int64_t ak, fk;
    fail_st("buckets", mp_kwon_search(&one, 1, 2, 8.0, &ak, &fk, NULL, NULL, NULL));
    if (ak != 1 || fk != 2) fail_msg("buckets: kept %lld heads, %lld neurons (want 1, 2)", (long long)ak, (long long)fk);
    if (mp_kwon_search(&one, 1, 2, 4.0, &ak, &fk, NULL, NULL, NULL) != MP_ERR_RANGE)
        fail_msg("floors above the budget were accepted");
}

/* The rearrangement: a case the diagonal gets wrong (two units whose gradients cancel), and on
 * random gradients a loss never above the diagonal choice's, at the same count. */
static void test_kwon_rearrange(void **state)
{
    (void)state;
    /* Units: g0 = (1, 0), g1 = (-1, 0), g2 = (0.5, 0.5); Fisher 1, 1, 0.5. Keeping one, the
     * diagonal prunes {2, 0} (loss 2.5); pruning {0, 1} costs nothing. */
    const double g[6] = {1.0, -1.0, 0.5, 0.0, 0.0, 0.5};
    bool keep[3];
    int64_t sw = -1;
    double lb = 0.0, la = -1.0;
    fail_st("rearrange", mp_kwon_rearrange(g, 2, 3, 1, keep, &sw, &lb, &la));
    if (keep[0] || keep[1] || !keep[2] || sw != 2 || !(fabs(lb - 2.5) <= 1e-15) || la != 0.0)
        fail_msg("rearranged keep %d%d%d, %lld swaps, loss %g -> %g (want 001, 2, 2.5 -> 0)",
                 keep[0], keep[1], keep[2], (long long)sw, lb, la);
    prng r = {5};
    enum { NB = 16, NU = 20 };
    double *G = dalloc(NB * NU);
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < NB * NU; i++) G[i] = prng_uniform(&r, -1.0, 1.0) + (i % NU == 3 ? 0.8 : 0.0);
        int64_t k = trial % NU;
        bool kp[NU];
        fail_st("rearrange", mp_kwon_rearrange(G, NB, NU, k, kp, &sw, &lb, &la));
        int64_t n = 0;
        for (int u = 0; u < NU; u++) n += kp[u];
        if (n != k) fail_msg("trial %d: %lld kept, not %lld", trial, (long long)n, (long long)k);
        if (!(la <= lb * (1.0 + 1e-12))) fail_msg("trial %d: loss rose %g -> %g", trial, lb, la);
    }
    free(G);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_vs_brute_force),
        cmocka_unit_test(test_kwon_search_vs_brute_force),
        cmocka_unit_test(test_kwon_rearrange),
        cmocka_unit_test(test_select_costs_and_ties),
        cmocka_unit_test(test_select_uniform),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
