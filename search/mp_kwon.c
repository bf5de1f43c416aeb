#include "mp_kwon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"

typedef struct {
    double v;
    int64_t a, b; /* tie order: (a, b) ascending */
} item;

/* v descending, then (a, b) ascending. */
static int cmp_desc(const void *x, const void *y)
{
    const item *p = x, *q = y;
    if (p->v != q->v)
        return p->v > q->v ? -1 : 1;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

/* v ascending, then (a, b) ascending. */
static int cmp_asc(const void *x, const void *y)
{
    const item *p = x, *q = y;
    if (p->v != q->v)
        return p->v < q->v ? -1 : 1;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

static mp_status order_by(const double *v, int64_t n, bool desc, int64_t *order)
{
    item *it = mp_malloc((size_t)(n + 1) * sizeof *it);
    if (!it)
        return mp_error(MP_ERR_NOMEM, "mask search: cannot order %lld units", (long long)n);
    for (int64_t i = 0; i < n; i++)
        it[i] = (item){v[i], i, 0};
    qsort(it, (size_t)n, sizeof *it, desc ? cmp_desc : cmp_asc);
    for (int64_t i = 0; i < n; i++)
        order[i] = it[i].a;
    free(it);
    return MP_OK;
}

mp_status mp_kwon_order(const double *v, int64_t n, int64_t *order)
{
    return order_by(v, n, true, order);
}

mp_status mp_kwon_search(const mp_kwon_layer *ly, int64_t L, int64_t N, double budget,
                         int64_t *att_keep, int64_t *ffn_keep, double *kept_fisher,
                         double *kept_cost, int64_t *att_total)
{
    mp_status st = MP_OK;
    int64_t na = 0, nb = 0, maxn = 1;
    if (N < 1)
        return mp_error(MP_ERR_ARG, "mask search: FFN multiple %lld is not positive",
                        (long long)N);
    for (int64_t l = 0; l < L; l++) {
        na += ly[l].n_att;
        nb += ly[l].n_ffn / N + 1;
        maxn = ly[l].n_att > maxn ? ly[l].n_att : maxn;
        maxn = ly[l].n_ffn > maxn ? ly[l].n_ffn : maxn;
    }
    item *A = mp_malloc((size_t)(na + 1) * sizeof *A), *B = mp_malloc((size_t)(nb + 1) * sizeof *B);
    double *pa = mp_malloc((size_t)(na + 2) * sizeof *pa), *ca = mp_malloc((size_t)(na + 2) * sizeof *ca);
    double *pb = mp_malloc((size_t)(nb + 2) * sizeof *pb), *cb = mp_malloc((size_t)(nb + 2) * sizeof *cb);
    int64_t *ord = mp_malloc((size_t)maxn * sizeof *ord);
    int64_t *bsize = mp_malloc((size_t)(nb + 1) * sizeof *bsize);
    if (!A || !B || !pa || !ca || !pb || !cb || !ord || !bsize)
        MP_FAIL(MP_ERR_NOMEM, "mask search: cannot allocate %lld units", (long long)(na + nb));
    /* Floors first (each layer's units of most Fisher), then the free units in one list per
     * kind, best Fisher per cost first: within a layer that is its own Fisher order, so every
     * prefix of a list keeps a prefix of each layer's order. */
    double base_cost = 0.0, base_f = 0.0;
    int64_t ia = 0, ib = 0;
    for (int64_t l = 0; l < L; l++) {
        const mp_kwon_layer *y = &ly[l];
        if (!(y->att_cost > 0.0) || !(y->ffn_cost > 0.0))
            MP_FAIL(MP_ERR_ARG, "mask search: layer %lld has a unit cost that is not positive",
                    (long long)l);
        int64_t amin = y->att_min < y->n_att ? (y->att_min > 0 ? y->att_min : 0) : y->n_att;
        MP_TRY(order_by(y->att_fisher, y->n_att, true, ord));
        for (int64_t r = 0; r < y->n_att; r++) {
            double f = y->att_fisher[ord[r]];
            if (r < amin) {
                base_cost += y->att_cost;
                base_f += f;
            } else {
                A[ia++] = (item){f / y->att_cost, l, r};
            }
        }
        att_keep[l] = amin;
        int64_t fmin = y->ffn_min > 0 ? (y->ffn_min + N - 1) / N * N : 0;
        fmin = fmin < y->n_ffn ? fmin : y->n_ffn;
        MP_TRY(order_by(y->ffn_fisher, y->n_ffn, true, ord));
        for (int64_t r = 0; r < fmin; r++)
            base_f += y->ffn_fisher[ord[r]];
        base_cost += (double)fmin * y->ffn_cost;
        ffn_keep[l] = fmin;
        for (int64_t r = fmin; r < y->n_ffn; r += N) {
            int64_t e = r + N < y->n_ffn ? r + N : y->n_ffn;
            double f = 0.0;
            for (int64_t q = r; q < e; q++)
                f += y->ffn_fisher[ord[q]];
            B[ib++] = (item){f / ((double)(e - r) * y->ffn_cost), l, r};
        }
    }
    na = ia;
    nb = ib;
    qsort(A, (size_t)na, sizeof *A, cmp_desc);
    qsort(B, (size_t)nb, sizeof *B, cmp_desc);
    pa[0] = ca[0] = pb[0] = cb[0] = 0.0;
    for (int64_t i = 0; i < na; i++) {
        const mp_kwon_layer *y = &ly[A[i].a];
        ca[i + 1] = ca[i] + y->att_cost;
        pa[i + 1] = pa[i] + A[i].v * y->att_cost;
    }
    for (int64_t i = 0; i < nb; i++) {
        const mp_kwon_layer *y = &ly[B[i].a];
        /* A bucket's size from its layer and first rank (the last one may be short). */
        int64_t size = y->n_ffn - B[i].b < N ? y->n_ffn - B[i].b : N;
        bsize[i] = size;
        cb[i + 1] = cb[i] + (double)size * y->ffn_cost;
        pb[i + 1] = pb[i] + B[i].v * (double)size * y->ffn_cost;
    }
    double slack = 1e-12 * (budget > 0 ? budget : 1.0);
    if (base_cost > budget + slack)
        MP_FAIL(MP_ERR_RANGE, "mask search: the floors alone keep %.6g, more than the budget "
                "%.6g", base_cost, budget);
    /* The sweep: h attention units, then as many buckets as fit (fewer as h grows). */
    int64_t best_h = -1, best_j = 0, j = nb;
    double best = -1.0;
    for (int64_t h = 0; h <= na; h++) {
        double room = budget - base_cost - ca[h];
        if (room < -slack)
            break;
        while (j > 0 && cb[j] > room + slack)
            j--;
        double obj = base_f + pa[h] + pb[j];
        if (obj > best) {
            best = obj;
            best_h = h;
            best_j = j;
        }
    }
    for (int64_t i = 0; i < best_h; i++)
        att_keep[A[i].a]++;
    for (int64_t i = 0; i < best_j; i++)
        ffn_keep[B[i].a] += bsize[i];
    if (kept_fisher)
        *kept_fisher = best;
    if (kept_cost)
        *kept_cost = base_cost + ca[best_h] + cb[best_j];
    if (att_total) {
        int64_t t = 0;
        for (int64_t l = 0; l < L; l++)
            t += att_keep[l];
        *att_total = t;
    }
done:
    free(A);
    free(B);
    free(pa);
    free(ca);
    free(pb);
    free(cb);
    free(ord);
    free(bsize);
    return st;
}

static double pruned_loss(const double *g, int64_t nb, int64_t n, const bool *keep)
{
    double loss = 0.0;
    for (int64_t s = 0; s < nb; s++) {
        double v = 0.0;
        for (int64_t u = 0; u < n; u++)
            if (!keep[u])
                v += g[s * n + u];
        loss += v * v;
    }
    return loss;
}

mp_status mp_kwon_rearrange(const double *g, int64_t nb, int64_t n, int64_t keep,
                            bool *keep_out, int64_t *swaps, double *loss_before,
                            double *loss_after)
{
    mp_status st = MP_OK;
    int64_t np = n - keep;
    if (keep < 0 || keep > n)
        return mp_error(MP_ERR_ARG, "mask rearrangement: %lld of %lld units kept", (long long)keep,
                        (long long)n);
    double *fis = mp_calloc((size_t)(n + 1), sizeof *fis);
    double *nrm = mp_calloc((size_t)(n + 1), sizeof *nrm);
    double *S = mp_calloc((size_t)(nb + 1), sizeof *S);
    int64_t *ord = mp_malloc((size_t)(n + 1) * sizeof *ord);
    int64_t *P = mp_malloc((size_t)(np + 2) * sizeof *P);
    bool *diag = mp_malloc((size_t)(n + 1) * sizeof *diag);
    if (!fis || !nrm || !S || !ord || !P || !diag)
        MP_FAIL(MP_ERR_NOMEM, "mask rearrangement: cannot allocate %lld units", (long long)n);
    for (int64_t s = 0; s < nb; s++)
        for (int64_t u = 0; u < n; u++)
            fis[u] += g[s * n + u] * g[s * n + u];
    memcpy(nrm, fis, (size_t)n * sizeof *nrm); /* ‖g_u‖² over the minibatches */
    MP_TRY(order_by(fis, n, false, ord));
    for (int64_t u = 0; u < n; u++)
        diag[u] = true;
    for (int64_t i = 0; i < np; i++) {
        P[i] = ord[i];
        diag[ord[i]] = false;
        for (int64_t s = 0; s < nb; s++)
            S[s] += g[s * n + ord[i]];
    }
    if (np > 0 && keep > 0) {
        for (int64_t k = np; k < n; k++) {
            int64_t add = ord[k];
            P[np] = add;
            for (int64_t s = 0; s < nb; s++)
                S[s] += g[s * n + add];
            /* ‖S − g_i‖² = ‖S‖² − 2 S·g_i + ‖g_i‖²: return the i that leaves the least. */
            int64_t bi = 0;
            double bv = 0.0;
            for (int64_t i = 0; i <= np; i++) {
                int64_t u = P[i];
                double dot = 0.0;
                for (int64_t s = 0; s < nb; s++)
                    dot += S[s] * g[s * n + u];
                double v = nrm[u] - 2.0 * dot;
                if (i == 0 || v < bv || (v == bv && u < P[bi])) {
                    bv = v;
                    bi = i;
                }
            }
            int64_t back = P[bi];
            for (int64_t s = 0; s < nb; s++)
                S[s] -= g[s * n + back];
            P[bi] = P[np];
        }
    }
    for (int64_t u = 0; u < n; u++)
        keep_out[u] = true;
    for (int64_t i = 0; i < np; i++)
        keep_out[P[i]] = false;
    if (swaps) {
        int64_t c = 0;
        for (int64_t u = 0; u < n; u++)
            c += keep_out[u] != diag[u];
        *swaps = c;
    }
    if (loss_before)
        *loss_before = pruned_loss(g, nb, n, diag);
    if (loss_after)
        *loss_after = pruned_loss(g, nb, n, keep_out);
done:
    free(fis);
    free(nrm);
    free(S);
    free(ord);
    free(P);
    free(diag);
    return st;
}
