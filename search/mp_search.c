#include "mp_search.h"

#include "mp_alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double key_of(const mp_chain *c, int64_t i)
{
    return c->scale * (c->score[i] / c->cost[i]) + c->shift;
}

/* Whether chain c with key k goes before the best so far (b, bk): the lower key, ties to the
 * lower (block, kind), so the choice does not depend on the chains' order. */
static bool goes_before(const mp_chain *c, double k, const mp_chain *b, double bk)
{
    return !b || k < bk ||
           (k == bk && (c->block < b->block || (c->block == b->block && c->kind < b->kind)));
}

mp_status mp_search_select(const mp_chain *chains, int64_t nc, double target, int64_t *taken,
                           double *freed)
{
    double got = 0.0;
    for (int64_t c = 0; c < nc; c++) {
        taken[c] = 0;
        for (int64_t i = 0; i < chains[c].n; i++)
            if (!(chains[c].cost[i] > 0.0) || !(chains[c].score[i] >= 0.0) ||
                !isfinite(chains[c].score[i]))
                return mp_error(MP_ERR_INTERNAL, "search: block %lld unit %lld has score %g "
                                "and cost %g", (long long)chains[c].block, (long long)i,
                                chains[c].score[i], chains[c].cost[i]);
    }
    /* A linear scan per unit taken: the chains are a few hundred, the units a few thousand, so
     * this is cheap next to the forward passes, and plainly deterministic. */
    while (got < target) {
        int64_t best = -1;
        double bk = 0.0;
        for (int64_t c = 0; c < nc; c++) {
            if (taken[c] >= chains[c].n)
                continue;
            double k = key_of(&chains[c], taken[c]);
            if (goes_before(&chains[c], k, best >= 0 ? &chains[best] : NULL, bk)) {
                best = c;
                bk = k;
            }
        }
        if (best < 0) {
            *freed = got;
            return mp_error(MP_ERR_RANGE, "search: removing every removable unit frees %g, less "
                            "than the %g the budget asks", got, target);
        }
        got += chains[best].cost[taken[best]];
        taken[best]++;
    }
    *freed = got;
    return MP_OK;
}

mp_status mp_search_select_uniform(const mp_chain *chains, int64_t nc, const double *base,
                                   const double *total, double target, int64_t *taken,
                                   double *freed)
{
    double got = 0.0;
    double *done = NULL;
    for (int64_t c = 0; c < nc; c++) {
        taken[c] = 0;
        for (int64_t i = 0; i < chains[c].n; i++)
            if (!(chains[c].cost[i] > 0.0))
                return mp_error(MP_ERR_INTERNAL, "search: block %lld unit %lld has cost %g",
                                (long long)chains[c].block, (long long)i, chains[c].cost[i]);
        if (!(total[c] > 0.0))
            return mp_error(MP_ERR_INTERNAL, "search: block %lld has total cost %g",
                            (long long)chains[c].block, total[c]);
    }
    if (nc > 0 && !(done = mp_malloc((size_t)nc * sizeof *done)))
        return mp_error(MP_ERR_NOMEM, "search: cannot allocate %lld chains", (long long)nc);
    for (int64_t c = 0; c < nc; c++)
        done[c] = base[c];
    mp_status st = MP_OK;
    while (got < target) {
        /* The chain whose removed share would stay least after its next unit. */
        int64_t best = -1;
        double bk = 0.0;
        for (int64_t c = 0; c < nc; c++) {
            if (taken[c] >= chains[c].n)
                continue;
            double k = (done[c] + chains[c].cost[taken[c]]) / total[c];
            if (goes_before(&chains[c], k, best >= 0 ? &chains[best] : NULL, bk)) {
                best = c;
                bk = k;
            }
        }
        if (best < 0) {
            st = mp_error(MP_ERR_RANGE, "search: removing every removable unit frees %g, less "
                          "than the %g the budget asks", got, target);
            break;
        }
        got += chains[best].cost[taken[best]];
        done[best] += chains[best].cost[taken[best]];
        taken[best]++;
    }
    *freed = got;
    free(done);
    return st;
}

void mp_search_schedule(int rounds, double *cum)
{
    double step = 0.5, acc = 0.0;
    for (int r = 0; r < rounds; r++) {
        acc += step;
        step /= 2.0;
        cum[r] = r == rounds - 1 ? 1.0 : acc;
    }
}

void mp_search_normalize(mp_chain *c, mp_norm_mode mode, double energy, double probe)
{
    c->scale = 1.0;
    c->shift = 0.0;
    switch (mode) {
    case MP_NORM_RELATIVE:
    case MP_NORM_RESIDUAL:
        if (energy > 0.0 && isfinite(energy))
            c->scale = 1.0 / energy;
        break;
    case MP_NORM_ZSCORE: {
        double m = 0.0, v = 0.0;
        for (int64_t i = 0; i < c->n; i++)
            m += c->score[i] / c->cost[i];
        m = c->n > 0 ? m / (double)c->n : 0.0;
        for (int64_t i = 0; i < c->n; i++) {
            double x = c->score[i] / c->cost[i] - m;
            v += x * x;
        }
        double sd = c->n > 1 ? sqrt(v / (double)c->n) : 0.0;
        if (sd > 0.0) {
            c->scale = 1.0 / sd;
            c->shift = -m / sd;
        }
        break;
    }
    case MP_NORM_PROBE:
        if (probe > 0.0 && isfinite(probe))
            c->scale = probe;
        break;
    case MP_NORM_NONE:
        break;
    }
}

mp_status mp_search_norm_parse(const char *name, mp_norm_mode *out)
{
    static const struct { const char *name; mp_norm_mode m; } modes[] = {
        {"none", MP_NORM_NONE}, {"relative", MP_NORM_RELATIVE}, {"residual", MP_NORM_RESIDUAL},
        {"zscore", MP_NORM_ZSCORE},
        {"probe", MP_NORM_PROBE}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(name, modes[i].name) == 0) {
            *out = modes[i].m;
            return MP_OK;
        }
    return mp_error(MP_ERR_ARG, "--normalize: unknown mode '%s' (none, relative, residual, zscore, probe)",
                    name);
}
