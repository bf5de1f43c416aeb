#define _POSIX_C_SOURCE 200809L

#include "mp_alloc.h"
#include "mp_prune_job.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mp_gradscore.h"
#include "mp_hessian.h"
#include "mp_model.h"
#include "mp_modeldir.h"
#include "mp_outdir.h"
#include "mp_progress.h"
#include "mp_ckpt.h"
#include "mp_sha256.h"
#include "mp_tokens.h"

#include "mp_prune_ckpt_internal.h"
#include "mp_prune_state_internal.h"
#include "mp_signals.h"
#include "mp_structured.h"
#include "mp_blasinfo.h"

mp_status mp_prune_method_parse(const char *name, mp_method *out)
{
    static const struct { const char *name; mp_method m; } methods[] = {
        {"sparsegpt", MP_METHOD_SPARSEGPT}, {"wanda", MP_METHOD_WANDA},
        {"magnitude", MP_METHOD_MAGNITUDE}, {"structured", MP_METHOD_STRUCTURED},
        /* Kwon et al.'s pipeline: a structured job whose plan comes from its mask search */
        {"kwon", MP_METHOD_STRUCTURED}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(name, methods[i].name) == 0) {
            *out = methods[i].m;
            return MP_OK;
        }
    return mp_error(MP_ERR_ARG, "mpiprune prune: --method: unknown method '%s'", name);
}

mp_status mp_prune_parse_nm(const char *text, mp_sparsity *sp)
{
    if (mp_sparsity_parse_nm(text, sp) != MP_OK)
        return mp_error(MP_ERR_ARG, "mpiprune prune: --nm: %s", mp_error_message());
    return MP_OK;
}

/* "0-3,7" over [0, n). */
static mp_status parse_blocks(const char *text, int64_t n, bool *sel)
{
    if (!text) {
        for (int64_t i = 0; i < n; i++)
            sel[i] = true;
        return MP_OK;
    }
    for (int64_t i = 0; i < n; i++)
        sel[i] = false;
    const char *p = text;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p)
            goto bad;
        p = end;
        if (*p == '-') {
            b = strtol(p + 1, &end, 10);
            if (end == p + 1)
                goto bad;
            p = end;
        }
        if (a < 0 || b < a || b >= n)
            return mp_error(MP_ERR_ARG, "mpiprune prune: --blocks: range %ld-%ld outside the "
                            "model's blocks 0-%lld", a, b, (long long)n - 1);
        for (long i = a; i <= b; i++)
            sel[i] = true;
        if (*p == ',' && p[1] != '\0')
            p++;
        else if (*p)
            goto bad;
    }
    return MP_OK;
bad:
    return mp_error(MP_ERR_ARG, "mpiprune prune: --blocks: '%s' is not a list like 0-3,7", text);
}

static mp_status parse_layers(const char *text, const mp_model_config *c, bool *sel)
{
    for (int id = 0; id < MP_LIN_COUNT; id++)
        sel[id] = mp_lin_short_name(c, (mp_lin_id)id) != NULL && !text;
    if (!text)
        return MP_OK;
    const char *p = text;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        bool found = false;
        for (int id = 0; id < MP_LIN_COUNT; id++) {
            const char *nm = mp_lin_short_name(c, (mp_lin_id)id);
            if (nm && strlen(nm) == len && strncmp(nm, p, len) == 0) {
                sel[id] = true;
                found = true;
            }
        }
        if (!found)
            return mp_error(MP_ERR_ARG, "mpiprune prune: --layers: '%.*s' is not a linear layer "
                            "of this model (%s)", (int)len, p,
                            c->arch == MP_ARCH_OPT ? "q_proj,k_proj,v_proj,out_proj,fc1,fc2"
                            : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj");
        if (comma && comma[1] == '\0')
            return mp_error(MP_ERR_ARG, "mpiprune prune: --layers: '%s' ends with a comma", text);
        p = comma ? comma + 1 : p + len;
    }
    return MP_OK;
}

static double mem_available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0.0;
    if (!f)
        return 0.0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024.0;
}

/* What each rank will hold at its peak, printed by rank 0 before the first block. */
static mp_status memory_plan(job *J)
{
    const mp_model_config *c = &J->md.cfg;
    const mp_prune_opts *o = J->o;
    double MiB = 1048576.0;
    int64_t nloc = (o->nsamples + J->P - 1) / J->P;
    double head = (double)c->vocab * (double)c->word_embed_proj_dim * 4.0 *
                  (c->tie_embeddings ? 1.0 : 2.0);
    double hidden = 2.0 * (double)(nloc * o->seqlen * c->d) * 4.0;
    double rows = (double)(o->batch * o->seqlen);
    /* The widest block decides each term (blocks may differ in width). */
    double weights = 0.0, act = 0.0, hess = 0.0, solve = 0.0;
    for (int64_t l = 0; l < c->n_layers; l++) {
        mp_block_shape s = mp_layer_shape(c, l);
        double qd = (double)(s.n_heads * c->head_dim), kd = (double)(s.n_kv_heads * c->head_dim);
        bool bf16 = o->compute == MP_COMPUTE_BF16;
        /* --compute bf16: a pass's bf16 copy of the weights, a product's bf16 inputs, each
         * Hessian's bf16 chunk of rows. */
        double w = (double)mp_block_bytes(c, l) * (bf16 ? 1.5 : 1.0);
        double a = rows * (2.0 * (double)c->d + 2 * qd + 2 * kd + 2.0 * (double)s.ffn) * 4.0 +
                   (double)(o->seqlen * o->seqlen) * 4.0 +
                   (bf16 ? (double)(o->seqlen * (s.ffn > c->d ? s.ffn : c->d)) * 2.0 : 0.0);
        double h = 0.0, maxdim = 0.0;
        for (int g = 0; g < MP_IN_COUNT; g++) {
            double dim = (double)mp_in_group_dim(c, l, (mp_in_group)g);
            /* float64 sum, float32 chunk (and its bf16 rows) */
            h += dim * dim * 12.0 + (bf16 ? dim * (double)MP_HESSIAN_CHUNK * 2.0 : 0.0);
            maxdim = dim > maxdim ? dim : maxdim;
        }
        /* The owner of the largest group: the finished H (the partial sum, reduced in place),
         * the float64 factor and U, W copies. */
        double sv = maxdim * maxdim * (8.0 * 2 + 4.0) + 3.0 * (double)s.ffn * (double)c->d * 4.0;
        weights = w > weights ? w : weights;
        act = a > act ? a : act;
        hess = h > hess ? h : hess;
        solve = sv > solve ? sv : solve;
    }
    /* A structured search holds a third hidden-state buffer, and until each round's end the
     * finished Hessians of the sub-blocks a rank owns (about 1/P of them all); its reduction
     * needs four dim x dim float64 buffers on the owner. */
    double kept = 0.0;
    if (o->method == MP_METHOD_STRUCTURED) {
        double maxd = 0.0;
        for (int64_t l = 0; l < c->n_layers; l++) {
            mp_block_shape s = mp_layer_shape(c, l);
            double a = (double)(s.n_heads * c->head_dim), f = (double)s.ffn;
            kept += (a * a + f * f) * 8.0 / (double)J->P;
            maxd = a > maxd ? a : maxd;
            maxd = f > maxd ? f : maxd;
        }
        /* Mask tuning (--method kwon) holds three more: the unpruned model's states, their
         * scratch and the tuning target. */
        hidden *= o->st.tune ? 3.0 : 1.5;
        double sv = 4.0 * maxd * maxd * 8.0;
        solve = sv > solve ? sv : solve;
    }
    /* A gradient scorer's pass (mp_gradscore.h) runs while the hidden states are held. */
    double grad = o->method == MP_METHOD_STRUCTURED && mp_structured_gradient(o->st.chain.scorer)
                      ? mp_gscores_memory(c, J->s1 - J->s0, o->seqlen, MP_GRAD_MEMORY,
                                          mp_structured_grad_flags(o->st.chain.scorer))
                      : 0.0;
    /* --method kwon: rank 0 holds every sequence's mask gradients for the rearrangement. */
    for (int64_t l = 0; o->st.kwon && J->rank == 0 && l < c->n_layers; l++) {
        mp_block_shape s = mp_layer_shape(c, l);
        grad += (double)(o->nsamples * (s.n_heads + s.ffn)) * 8.0 * 2.0;
    }
    double total = weights + (head > hidden ? head : hidden) + act + hess + solve + kept + grad;
    double limit = o->max_memory_gib > 0 ? o->max_memory_gib * 1073741824.0
                                         : mem_available_bytes() / (double)J->P;
    /* ScaLAPACK from the dimension whose serial factorisation (about three n x n float64
     * matrices) would take more than half of a rank's memory, unless given. */
    J->scalapack_min = o->scalapack_min_dim > 0 ? o->scalapack_min_dim
                       : limit > 0 ? (int64_t)sqrt(limit / 2.0 / 24.0) : INT64_MAX;
    char held[160] = "";
    if (kept > 0)
        snprintf(held, sizeof held, " (+ %.1f MiB held for the round's chains)", kept / MiB);
    if (grad > 0)
        snprintf(held + strlen(held), sizeof held - strlen(held), ", gradient pass %.1f MiB",
                 grad / MiB);
    mp_progress_note(&J->pg, "memory plan per rank: block weights %.1f MiB, hidden states %.1f "
                     "MiB (embeddings %.1f MiB at start), Hessians %.1f MiB%s, solve workspace "
                     "%.1f MiB, activations %.1f MiB: %.1f MiB of %.1f MiB available",
                     weights / MiB, hidden / MiB, head / MiB, hess / MiB, held, solve / MiB,
                     act / MiB, total / MiB, limit / MiB);
    if (J->P > 1 && o->method == MP_METHOD_SPARSEGPT)
        mp_progress_note(&J->pg, "Hessians of dimension >= %lld are factored with ScaLAPACK "
                         "over all ranks", (long long)J->scalapack_min);
    if (limit > 0 && total > limit)
        return mp_error(MP_ERR_NOMEM, "memory plan needs %.2f GiB per rank but %.2f GiB is "
                        "available (use more ranks or nodes, a smaller --nsamples or --batch, or "
                        "--max-memory GIB to override)", total / 1073741824.0,
                        limit / 1073741824.0);
    return MP_OK;
}

static mp_status hook_fn(void *ud, mp_in_group g, const float *x, int64_t rows, int64_t dim)
{
    job *J = ud;
    if (!J->need[g])
        return MP_OK;
    double t = mp_comm_wtime();
    mp_status st = mp_hessian_add(&J->hs[g], x, rows);
    J->t_stage[ST_HESSIAN] += mp_comm_wtime() - t;
    return st;
}

/* Σ (y − b)² of a selected layer's output: ‖W x‖² summed over this rank's tokens, in float64
 * row by row. tr(W H Wᵀ) is the same sum over all ranks times 2/N. */
static mp_status hook_out_fn(void *ud, mp_lin_id id, const float *y, int64_t rows, int64_t dim)
{
    job *J = ud;
    if (!J->lin_sel[id])
        return MP_OK;
    double t = mp_comm_wtime();
    const float *b = J->hblk->lin[id].b;
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * dim;
        /* Four partial sums: one chain of float64 adds would wait on each add's latency. */
        double s[4] = {0.0, 0.0, 0.0, 0.0};
        int64_t j = 0;
        for (; j + 4 <= dim; j += 4)
            for (int k = 0; k < 4; k++) {
                double v = b ? (double)yr[j + k] - (double)b[j + k] : (double)yr[j + k];
                s[k] += v * v;
            }
        for (; j < dim; j++) {
            double v = b ? (double)yr[j] - (double)b[j] : (double)yr[j];
            s[0] += v * v;
        }
        total += (s[0] + s[1]) + (s[2] + s[3]);
    }
    J->ysq[id] += total;
    J->t_stage[ST_HESSIAN] += mp_comm_wtime() - t;
    return MP_OK;
}

/* den[id] = tr(W H Wᵀ) of every layer: the ranks' J->ysq summed in rank order on rank 0 and
 * broadcast, times 2/N, so that it is the same on every rank. Collective. */
static mp_status reduce_ysq(job *J, double den[MP_LIN_COUNT])
{
    mp_status st = MP_OK;
    int64_t *counts = mp_malloc((size_t)J->P * sizeof *counts);
    double *all = mp_malloc((size_t)(J->P * MP_LIN_COUNT) * sizeof *all);
    MP_TRY(mp_prune_agree(J, counts && all ? MP_OK : mp_error(MP_ERR_NOMEM, "cannot allocate "
                                                               "the output sums of %d ranks",
                                                               J->P)));
    for (int r = 0; r < J->P; r++)
        counts[r] = MP_LIN_COUNT;
    MP_TRY(mp_comm_gatherv_f64(J->comm, J->ysq, MP_LIN_COUNT, all, counts, 0));
    double scale = 2.0 / (double)(J->o->nsamples * J->o->seqlen);
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        double s = 0.0;
        for (int r = 0; J->rank == 0 && r < J->P; r++)
            s += all[r * MP_LIN_COUNT + id];
        den[id] = s * scale;
    }
    MP_TRY(mp_comm_bcast(J->comm, den, MP_LIN_COUNT * (int64_t)sizeof(double), 0));
done:
    free(counts);
    free(all);
    return st;
}

/* Layers onto ranks by cost, largest first (mp_assign_largest_first; ties in layer order). */
static mp_status assign_owners(layer_rec *recs, int64_t nrecs, int P)
{
    double work[MP_LIN_COUNT];
    int owner[MP_LIN_COUNT], map[MP_LIN_COUNT];
    int64_t n = 0;
    for (int64_t i = 0; i < nrecs; i++)
        if (!recs[i].dist) {
            map[n] = (int)i;
            work[n++] = recs[i].cost;
        }
    mp_status st = mp_assign_largest_first(work, n, P, owner);
    for (int64_t i = 0; st == MP_OK && i < n; i++)
        recs[map[i]].owner = owner[i];
    return st;
}

/* MPI tags of the Hessian reduction: partial sums to the root, finished sums to the owners
 * (plus the input group, so the groups of one block never match each other's messages). */
enum { TAG_PARTIAL = 100, TAG_FINISHED = 200 };

/* Values per message of the Hessian reduction: a 254 MB partial sum sent whole ran at 400 MB/s
 * here (and needed a receive buffer as large), in pieces the receiver adds each one while it
 * is in cache. */
enum { REDUCE_PIECE = 1 << 19 };

/* Partial Hessians of group g summed in rank order on `root` (the first owner), in place in its
 * own partial sum, then sent to the other owners, which receive into theirs. On return
 * J->hs[g].sum holds (2/N)·Σ on every owner of g (both triangles); pieces[2 * REDUCE_PIECE] is
 * the root's scratch. The sum is ((0 + S_0) + S_1) + ... + S_{P-1} elementwise, as when it was
 * accumulated into a zeroed buffer: the root's own S is added at its place in the order (the
 * sum of the lower ranks' is formed first, in a piece buffer). Collective. */
static mp_status reduce_group(job *J, int g, const bool *owners, double *pieces)
{
    mp_status st = MP_OK;
    int64_t dim = J->hs[g].dim, nn = dim * dim;
    double *acc = J->hs[g].sum;
    int root = -1;
    for (int r = 0; r < J->P; r++)
        if (owners[r]) {
            root = r;
            break;
        }
    if (root < 0)
        return MP_OK;
    /* N counts every calibration token of every rank. */
    mp_hessian tot = {.dim = dim, .sum = acc, .rows = J->o->nsamples * J->o->seqlen};
    for (int64_t e0 = 0; e0 < nn; e0 += REDUCE_PIECE) {
        int64_t cnt = nn - e0 < REDUCE_PIECE ? nn - e0 : REDUCE_PIECE;
        double *a = acc + e0;
        if (J->rank != root) {
            MP_TRY(mp_comm_send_f64(J->comm, a, cnt, root, TAG_PARTIAL + g));
            continue;
        }
        double *low = pieces, *in = pieces + REDUCE_PIECE;
        if (root == 0) {
            for (int64_t i = 0; i < cnt; i++)
                a[i] = 0.0 + a[i];
        } else {
            MP_TRY(mp_comm_recv_f64(J->comm, low, cnt, 0, TAG_PARTIAL + g));
            for (int64_t i = 0; i < cnt; i++)
                low[i] = 0.0 + low[i];
            for (int r = 1; r < root; r++) {
                MP_TRY(mp_comm_recv_f64(J->comm, in, cnt, r, TAG_PARTIAL + g));
                for (int64_t i = 0; i < cnt; i++)
                    low[i] += in[i];
            }
            for (int64_t i = 0; i < cnt; i++)
                a[i] = low[i] + a[i];
        }
        for (int r = root + 1; r < J->P; r++) {
            MP_TRY(mp_comm_recv_f64(J->comm, in, cnt, r, TAG_PARTIAL + g));
            for (int64_t i = 0; i < cnt; i++)
                a[i] += in[i];
        }
    }
    for (int64_t e0 = 0; e0 < nn; e0 += REDUCE_PIECE) {
        int64_t cnt = nn - e0 < REDUCE_PIECE ? nn - e0 : REDUCE_PIECE;
        if (J->rank == root) {
            for (int r = root + 1; r < J->P; r++)
                if (owners[r])
                    MP_TRY(mp_comm_send_f64(J->comm, acc + e0, cnt, r, TAG_FINISHED + g));
        } else if (owners[J->rank]) {
            MP_TRY(mp_comm_recv_f64(J->comm, acc + e0, cnt, root, TAG_FINISHED + g));
        }
    }
    if (owners[J->rank])
        /* (2/N)·Σ, both triangles, in place. */
        mp_hessian_finish(&tot, acc);
done:
    return st;
}

/* The damping had to be raised for the layer of r to factor its Hessian. */
static void warn_damping(const job *J, const layer_rec *r, const mp_obs_info *info)
{
    char nm[256];
    mp_lin_full_name(&J->md.cfg, r->block, r->id, nm, sizeof nm);
    fprintf(stderr, "mpiprune: warning: %s: Cholesky failed with damping %g; used %g of "
            "mean(diag H)\n", nm, J->o->damp, info->damp);
}

/* The end of every solve: the record's sparsity and reconstruction error of the pruned W
 * against the layer's weights, then W becomes the layer's weights. Not collective. */
/* The error's denominator tr(W H Wᵀ) is den (from the layer's outputs, reduce_ysq); obs: the
 * SparseGPT sweep's loss and damping give its numerator (mp_recon_error_obs), NULL: H does. */
typedef struct {
    double loss, lambda;
} obs_loss;

static mp_status finish_layer(layer_rec *r, mp_linear *l, const float *W, const double *H,
                              const obs_loss *obs, double den)
{
    int64_t rows = l->out, cols = l->in, zeros = 0;
    for (int64_t k = 0; k < rows * cols; k++)
        zeros += W[k] == 0.0f;
    r->sparsity = (double)zeros / (double)(rows * cols);
    mp_status st = obs ? mp_recon_error_obs(l->w, W, rows, cols, H, obs->loss, obs->lambda, den,
                                            &r->err)
                       : mp_recon_error_den(l->w, W, rows, cols, H, den, &r->err);
    if (st == MP_OK)
        memcpy(l->w, W, (size_t)(rows * cols) * sizeof(float));
    return st;
}

/* Prunes the layers this rank owns in block blk; fills their records. Not collective. */
static mp_status solve_owned(job *J, mp_block *blk, layer_rec *recs, int64_t n,
                             double *const *Hfull, const double *den)
{
    mp_status st = MP_OK;
    const mp_prune_opts *o = J->o;
    float *W = NULL, *U = NULL;
    int64_t *dead = NULL;
    int cached_group = -1;
    mp_obs_info info = {0};
    for (int64_t i = 0; i < n; i++) {
        layer_rec *r = &recs[i];
        if (r->dist || r->owner != J->rank)
            continue;
        double t0 = mp_comm_wtime();
        obs_loss obs = {0.0, 0.0}, *use_obs = NULL;
        mp_linear *l = &blk->lin[r->id];
        int g = (int)mp_lin_group(r->id);
        int64_t cols = l->in, rows = l->out;
        const double *H = Hfull[g];
        free(W);
        W = mp_malloc((size_t)(rows * cols) * sizeof(float));
        if (!W)
            MP_FAIL(MP_ERR_NOMEM, "cannot allocate a copy of a %lld x %lld layer",
                    (long long)rows, (long long)cols);
        memcpy(W, l->w, (size_t)(rows * cols) * sizeof(float));
        if (J->inner == MP_METHOD_SPARSEGPT) {
            if (cached_group != g) {
                free(U);
                free(dead);
                U = mp_malloc((size_t)(cols * cols) * sizeof(float));
                dead = mp_malloc((size_t)cols * sizeof *dead);
                if (!U || !dead)
                    MP_FAIL(MP_ERR_NOMEM, "cannot allocate a %lld x %lld factor",
                            (long long)cols, (long long)cols);
                /* mp_obs_prepare sets a dead input's diagonal to 1; the zero is put back (the
                 * sweep and the error read it), so H needs no copy. */
                int64_t ndead = 0;
                for (int64_t j = 0; j < cols; j++)
                    if (H[j * cols + j] == 0.0)
                        dead[ndead++] = j;
                char nm[256];
                st = mp_obs_prepare(Hfull[g], cols, NULL, 0, o->damp, U, &info);
                for (int64_t k = 0; k < ndead; k++)
                    Hfull[g][dead[k] * cols + dead[k]] = 0.0;
                if (st != MP_OK) {
                    mp_lin_full_name(&J->md.cfg, r->block, r->id, nm, sizeof nm);
                    MP_FAIL(st, "%s: %s", nm, mp_error_message());
                }
                if (info.escalations > 0)
                    warn_damping(J, r, &info);
                cached_group = g;
            }
            /* Dead inputs: their columns are zeroed before the sweep, as the reference does. */
            for (int64_t j = 0; j < cols; j++)
                if (H[j * cols + j] == 0.0)
                    for (int64_t k = 0; k < rows; k++)
                        W[k * cols + j] = 0.0f;
            obs.lambda = info.lambda;
            MP_TRY(mp_sparsegpt_sweep(W, rows, cols, U, o->blocksize, &o->sp, NULL, &obs.loss));
            use_obs = &obs;
            r->damp = info.damp;
            r->escalations = info.escalations;
            r->dead = (double)info.dead;
        } else if (J->inner == MP_METHOD_WANDA) {
            double *diag = mp_malloc((size_t)cols * sizeof(double));
            if (!diag)
                MP_FAIL(MP_ERR_NOMEM, "cannot allocate Wanda norms");
            for (int64_t j = 0; j < cols; j++)
                diag[j] = H[j * cols + j];
            st = mp_wanda_prune(W, rows, cols, diag, &o->sp);
            free(diag);
            MP_TRY(st);
        } else {
            MP_TRY(mp_magnitude_prune(W, rows, cols, &o->sp));
        }
        MP_TRY(finish_layer(r, l, W, H, use_obs, den[r->id]));
        r->seconds = mp_comm_wtime() - t0;
    }
done:
    free(W);
    free(U);
    free(dead);
    return st;
}

/* A layer whose Hessian is too large for one rank: the factorisations run on a ScaLAPACK grid of
 * all ranks and the sweep is split by rows; every rank ends with the pruned weights.
 * Collective. */
static mp_status solve_dist(job *J, mp_block *blk, layer_rec *r, const double *H, double den)
{
    mp_status st = MP_OK;
    mp_linear *l = &blk->lin[r->id];
    int64_t rows = l->out, cols = l->in;
    double t0 = mp_comm_wtime();
    mp_obs_info info = {0};
    float *W = mp_malloc((size_t)(rows * cols) * sizeof(float));
    float *U = mp_malloc((size_t)(cols * cols) * sizeof(float));
    double *Hw = mp_malloc((size_t)(cols * cols) * sizeof(double));
    MP_TRY(mp_prune_agree(J, W && U && Hw ? MP_OK : mp_error(MP_ERR_NOMEM, "cannot allocate the "
                                                    "ScaLAPACK solve of a %lld x %lld layer",
                                                    (long long)rows, (long long)cols)));
    memcpy(W, l->w, (size_t)(rows * cols) * sizeof(float));
    memcpy(Hw, H, (size_t)(cols * cols) * sizeof(double));
    MP_TRY(mp_obs_prepare_dist(J->comm, Hw, cols, W, rows, J->o->damp, 64, U, &info));
    if (info.escalations > 0 && J->rank == 0)
        warn_damping(J, r, &info);
    obs_loss obs = {0.0, info.lambda};
    MP_TRY(mp_sparsegpt_sweep_dist(J->comm, W, rows, cols, U, J->o->blocksize, &J->o->sp,
                                   &obs.loss));
    MP_TRY(mp_prune_agree(J, finish_layer(r, l, W, H, &obs, den)));
    r->damp = info.damp;
    r->escalations = info.escalations;
    r->dead = (double)info.dead;
    r->owner = 0;
    r->seconds = mp_comm_wtime() - t0;
done:
    free(W);
    free(U);
    free(Hw);
    return st;
}

/* The input width of group g in the block as it is (after a structured plan cut it, the
 * config's widths are the input model's). */
static int64_t block_group_dim(const mp_block *blk, mp_in_group g)
{
    for (int id = 0; id < MP_LIN_COUNT; id++)
        if (blk->lin[id].present && mp_lin_group((mp_lin_id)id) == g)
            return blk->lin[id].in;
    return 0;
}

static mp_status prune_block(job *J, mp_block *blk)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    layer_rec recs[MP_LIN_COUNT];
    int64_t n = 0;
    double *full[MP_IN_COUNT] = {NULL}, *buf = NULL;
    /* owners[g][r]: rank r needs group g's Hessian. */
    bool *owners[MP_IN_COUNT] = {NULL};
    bool *own_all = mp_calloc((size_t)(MP_IN_COUNT * J->P), sizeof *own_all);
    if (!own_all)
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the layer owners of %d ranks", J->P);
    MP_TRY(mp_prune_agree(J, local));
    for (int g = 0; g < MP_IN_COUNT; g++)
        owners[g] = own_all + g * J->P;

    for (int id = 0; id < MP_LIN_COUNT; id++) {
        if (!J->lin_sel[id] || !blk->lin[id].present)
            continue;
        layer_rec *r = &recs[n++];
        memset(r, 0, sizeof *r);
        r->block = blk->index;
        r->id = (mp_lin_id)id;
        r->rows = blk->lin[id].out;
        r->cols = blk->lin[id].in;
        r->cost = (double)r->rows * (double)r->cols * (double)r->cols +
                  pow((double)r->cols, 3.0);
        r->dist = J->P > 1 && J->inner == MP_METHOD_SPARSEGPT && r->cols >= J->scalapack_min;
    }
    if (local == MP_OK)
        local = assign_owners(recs, n, J->P);
    MP_TRY(mp_prune_agree(J, local));
    for (int g = 0; g < MP_IN_COUNT; g++)
        J->need[g] = false;
    for (int64_t i = 0; i < n; i++) {
        int g = (int)mp_lin_group(recs[i].id);
        J->need[g] = true;
        for (int r = 0; r < J->P; r++)
            owners[g][r] = owners[g][r] || recs[i].dist || r == recs[i].owner;
    }

    /* Forward with hooks on a copy: the inputs are needed again for the pruned rerun. */
    double t = mp_comm_wtime();
    int64_t nh = (J->s1 - J->s0) * J->o->seqlen * c->d;
    for (int g = 0; g < MP_IN_COUNT && local == MP_OK; g++)
        if (J->need[g]) {
            local = mp_hessian_init(&J->hs[g], block_group_dim(blk, (mp_in_group)g));
            if (local == MP_OK && J->o->compute == MP_COMPUTE_BF16)
                local = mp_hessian_use_bf16(&J->hs[g]);
        }
    if (local == MP_OK) {
        memcpy(J->hwork, J->h, (size_t)nh * sizeof(float));
        mp_hook hook = {.fn = hook_fn, .ud = J, .out = hook_out_fn};
        J->hblk = blk;
        for (int id = 0; id < MP_LIN_COUNT; id++)
            J->ysq[id] = 0.0;
        double th = J->t_stage[ST_HESSIAN];
        local = mp_prune_run_block(J, blk, J->hwork, &hook);
        J->t_stage[ST_FORWARD] += mp_comm_wtime() - t - (J->t_stage[ST_HESSIAN] - th);
    }
    /* The reduction sums into the partial sums themselves: the owners keep theirs as the
     * finished Hessians, the others free them. The root's scratch is two pieces. */
    if (local == MP_OK && !(buf = mp_malloc(2 * REDUCE_PIECE * sizeof(double))))
        local = mp_error(MP_ERR_NOMEM, "cannot allocate the Hessian reduction's buffer");
    MP_TRY(mp_prune_agree(J, local));

    t = mp_comm_wtime();
    for (int g = 0; g < MP_IN_COUNT; g++)
        if (J->need[g]) {
            MP_TRY(reduce_group(J, g, owners[g], buf));
            if (owners[g][J->rank]) {
                full[g] = J->hs[g].sum;
                J->hs[g].sum = NULL;
            }
        }
    double den[MP_LIN_COUNT];
    MP_TRY(reduce_ysq(J, den));
    J->t_stage[ST_REDUCE] += mp_comm_wtime() - t;
    for (int g = 0; g < MP_IN_COUNT; g++)
        mp_hessian_free(&J->hs[g]);

    t = mp_comm_wtime();
    local = solve_owned(J, blk, recs, n, full, den);
    J->t_stage[ST_SOLVE] += mp_comm_wtime() - t;
    MP_TRY(mp_prune_agree(J, local));
    t = mp_comm_wtime();
    for (int64_t i = 0; i < n; i++)
        if (recs[i].dist)
            MP_TRY(solve_dist(J, blk, &recs[i], full[mp_lin_group(recs[i].id)], den[recs[i].id]));
    J->t_stage[ST_SOLVE] += mp_comm_wtime() - t;

    /* Pruned weights and their records, from each owner to every rank, in layer order. */
    t = mp_comm_wtime();
    for (int64_t i = 0; i < n; i++) {
        mp_linear *l = &blk->lin[recs[i].id];
        if (recs[i].dist)
            continue;
        MP_TRY(mp_comm_bcast(J->comm, l->w, l->out * l->in * (int64_t)sizeof(float),
                             recs[i].owner));
        MP_TRY(mp_comm_bcast(J->comm, &recs[i].sparsity, 6 * (int64_t)sizeof(double),
                             recs[i].owner));
    }
    J->t_stage[ST_BCAST] += mp_comm_wtime() - t;

    if (J->rank == 0) {
        if (local == MP_OK && J->nrecs + n > J->cap) {
            int64_t cap = (J->cap ? J->cap * 2 : 64) + n;
            layer_rec *nr = mp_realloc(J->recs, (size_t)cap * sizeof *nr);
            if (!nr)
                local = mp_error(MP_ERR_NOMEM, "cannot grow the report");
            else {
                J->recs = nr;
                J->cap = cap;
            }
        }
        if (local == MP_OK) {
            memcpy(J->recs + J->nrecs, recs, (size_t)n * sizeof *recs);
            J->nrecs += n;
        }
    }
    MP_TRY(mp_prune_agree(J, local));
done:
    for (int g = 0; g < MP_IN_COUNT; g++) {
        free(full[g]);
        mp_hessian_free(&J->hs[g]);
    }
    free(buf);
    free(own_all);
    return st;
}

/* Rank 0: whether OUT already holds the result of this job (a run killed after OUT was renamed
 * into place, before its checkpoint was removed): OUT/report.json with the same inputs and the
 * same options that change the result. */
static bool finished_before(const job *J)
{
    char *text = NULL;
    if (mp_outdir_read_existing(J->o->out, "report.json", &text) != MP_OK) {
        mp_error_clear();
        return false;
    }
    bool same = false;
    cJSON *rep = cJSON_Parse(text), *ours = cJSON_Parse(J->job_json), *id = cJSON_CreateObject();
    const cJSON *ins = rep ? cJSON_GetObjectItemCaseSensitive(rep, "inputs_sha256") : NULL;
    const cJSON *ops = rep ? cJSON_GetObjectItemCaseSensitive(rep, "options") : NULL;
    if (ours && id && cJSON_IsObject(ins) && cJSON_IsObject(ops)) {
        /* The identity from the report: its options less those that do not change the result. */
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(rep, "mpiprune_version");
        bool head = cJSON_IsString(ver) && mp_prune_identity_head(id, ver->valuestring);
        cJSON_AddItemToObject(id, "inputs_sha256", cJSON_Duplicate(ins, 1));
        for (const cJSON *it = ops->child; it; it = it->next)
            if (strcmp(it->string, "model") != 0 && strcmp(it->string, "calib") != 0 &&
                strcmp(it->string, "out") != 0 && strcmp(it->string, "ranks") != 0)
                cJSON_AddItemToObject(id, it->string, cJSON_Duplicate(it, 1));
        same = head && cJSON_Compare(id, ours, true);
    }
    cJSON_Delete(rep);
    cJSON_Delete(ours);
    cJSON_Delete(id);
    free(text);
    return same;
}

/* Rank 0, when OUT is this job's finished result: removes the checkpoint left behind when it is
 * of this job (the run was killed between the rename and the removal). */
static mp_status finish_stale(job *J)
{
    const char *ck = J->o->checkpoint;
    mp_ckpt_info info = {0};
    if (!ck) {
        mp_progress_note(&J->pg, "%s already holds the result of this job (same inputs and "
                         "options in its report.json): nothing to do", J->o->out);
        return MP_OK;
    }
    /* The checkpoint's job id is the sha256 of the identity (as mp_prune_resume computes it). */
    char id[65];
    mp_sha256 sh;
    mp_sha256_init(&sh);
    mp_sha256_update(&sh, J->job_json, strlen(J->job_json));
    mp_sha256_final_hex(&sh, id);
    mp_status st = mp_ckpt_read_main(ck, &info);
    bool ours = st == MP_OK && strcmp(info.job_id, id) == 0;
    mp_ckpt_info_free(&info);
    if (st == MP_ERR_NOT_FOUND || (st == MP_OK && !ours)) {
        mp_error_clear();
        mp_progress_note(&J->pg, "%s already holds the result of this job (same inputs and "
                         "options in its report.json): nothing to do%s%s", J->o->out,
                         ours || st == MP_ERR_NOT_FOUND ? "" : "; left the checkpoint of another "
                         "job at ", ours || st == MP_ERR_NOT_FOUND ? "" : ck);
        return MP_OK;
    }
    if (st != MP_OK) /* damaged: it cannot be told apart, leave it */
        return st;
    st = mp_ckpt_remove(ck);
    if (st == MP_OK)
        mp_progress_note(&J->pg, "%s already holds the result of this job (same inputs and "
                         "options in its report.json): removed the stale checkpoint %s",
                         J->o->out, ck);
    return st;
}

/* report.json, rank 0. stages[P][ST_COUNT], peak[P] gathered from all ranks. Every cJSON
 * builder is checked: out of memory fails the run rather than writing a partial report. */
static mp_status write_report(job *J, const double *stages, const double *peak, double seconds)
{
    mp_status st = MP_OK;
    const mp_prune_opts *o = J->o;
    char *text = NULL;
    cJSON *root = cJSON_CreateObject(), *cmd = NULL, *op = NULL, *sts = NULL, *per = NULL;
    cJSON *pk = NULL;
    bool ok = root && cJSON_AddStringToObject(root, "mpiprune_version", MPIPRUNE_VERSION) &&
              (cmd = cJSON_AddArrayToObject(root, "command"));
    for (int i = 0; ok && i < o->argc; i++)
        ok = mp_json_add(cmd, NULL, cJSON_CreateString(o->argv[i]));
    ok = ok && (op = cJSON_AddObjectToObject(root, "options")) &&
         cJSON_AddStringToObject(op, "model", o->model) &&
         cJSON_AddStringToObject(op, "calib", o->calib) &&
         cJSON_AddStringToObject(op, "out", o->out) && mp_prune_options_json(o, op) &&
         cJSON_AddNumberToObject(op, "ranks", J->P) &&
         /* With the rank count, what the last bits of the weights depend on. */
         cJSON_AddNumberToObject(root, "blas_threads_per_rank", mp_blas_threads());
    /* Rank 0's; oneDNN picks its kernel per node. */
    if (o->compute == MP_COMPUTE_BF16)
        ok = ok && cJSON_AddStringToObject(root, "compute_backend", mp_bf16_backend());
    ok = ok && mp_json_add(root, "inputs_sha256", cJSON_Duplicate(J->inputs, 1)) &&
         cJSON_AddNumberToObject(root, "resumed_from_block", (double)J->resumed_from) &&
         mp_json_add(root, "layers", mp_prune_records_json(J));
    double zeros = 0.0, total = 0.0;
    for (int64_t i = 0; i < J->nrecs; i++) {
        const layer_rec *r = &J->recs[i];
        zeros += r->sparsity * (double)(r->rows * r->cols);
        total += (double)(r->rows * r->cols);
    }
    ok = ok && cJSON_AddNumberToObject(root, "pruned_layers_sparsity",
                                       total > 0 ? zeros / total : 0.0) &&
         (sts = cJSON_AddObjectToObject(root, "stage_seconds_max_over_ranks")) &&
         (per = cJSON_AddArrayToObject(root, "stage_seconds_per_rank"));
    for (int s = 0; ok && s < ST_COUNT; s++) {
        double mx = 0.0;
        for (int r = 0; r < J->P; r++)
            mx = stages[r * ST_COUNT + s] > mx ? stages[r * ST_COUNT + s] : mx;
        ok = cJSON_AddNumberToObject(sts, mp_stage_names[s], mx) != NULL;
    }
    for (int r = 0; ok && r < J->P; r++) {
        cJSON *x = cJSON_CreateObject();
        for (int s = 0; x && s < ST_COUNT; s++)
            if (!cJSON_AddNumberToObject(x, mp_stage_names[s], stages[r * ST_COUNT + s])) {
                cJSON_Delete(x);
                x = NULL;
            }
        ok = mp_json_add(per, NULL, x);
    }
    ok = ok && (pk = cJSON_AddArrayToObject(root, "peak_memory_bytes_per_rank"));
    for (int r = 0; ok && r < J->P; r++)
        ok = mp_json_add(pk, NULL, cJSON_CreateNumber(peak[r]));
    ok = ok && cJSON_AddNumberToObject(root, "seconds", seconds);
    if (ok && o->method == MP_METHOD_STRUCTURED)
        ok = mp_json_add(root, "structured", mp_structured_report(J));
    if (!ok)
        MP_FAIL(MP_ERR_NOMEM, "%s/report.json: out of memory building the report", o->out);
    text = cJSON_Print(root);
    if (!text)
        MP_FAIL(MP_ERR_NOMEM, "%s/report.json: out of memory printing the report", o->out);
    size_t len = strlen(text);
    char *withnl = mp_realloc(text, len + 2);
    if (!withnl)
        MP_FAIL(MP_ERR_NOMEM, "%s/report.json: out of memory printing the report", o->out);
    text = withnl;
    text[len] = '\n';
    text[len + 1] = '\0';
    MP_TRY(mp_outdir_write_file(&J->out, "report.json", text));
    if (o->method == MP_METHOD_STRUCTURED) {
        free(text);
        text = NULL;
        MP_TRY(mp_structured_svg(J, &text));
        MP_TRY(mp_outdir_write_file(&J->out, "report.svg", text));
    }
done:
    free(text);
    cJSON_Delete(root);
    return st;
}

/* --nm N:M on the planned widths: every pruned layer's input width a multiple of M. */
static mp_status nm_widths_check(const job *J)
{
    const mp_prune_opts *o = J->o;
    mp_model_config *c = mp_malloc(sizeof *c);
    mp_status st = MP_OK;
    if (!c)
        return mp_error(MP_ERR_NOMEM, "cannot allocate a config");
    mp_plan_apply_config(&J->md.cfg, &J->plan, c);
    for (int64_t l = 0; l < c->n_layers && st == MP_OK; l++)
        for (int id = 0; id < MP_LIN_COUNT && st == MP_OK; id++) {
            int64_t dim = mp_in_group_dim(c, l, mp_lin_group((mp_lin_id)id));
            if (J->block_sel[l] && J->lin_sel[id] && mp_lin_present(c, l, (mp_lin_id)id) &&
                dim % o->sp.m != 0)
                st = mp_error(MP_ERR_ARG, "mpiprune prune: --nm %d:%d: the planned input width "
                              "%lld of %s in block %lld is not a multiple of %d (use an "
                              "--ffn-multiple that is)", o->sp.n, o->sp.m, (long long)dim,
                              mp_lin_short_name(c, (mp_lin_id)id), (long long)l, o->sp.m);
        }
    free(c);
    return st;
}

/* Everything before the first block: inputs validated identically on every rank. */
static mp_status setup_local(job *J)
{
    mp_status st = MP_OK;
    const mp_prune_opts *o = J->o;
    int64_t nw = 0;
    MP_TRY(mp_modeldir_open(o->model, &J->md));
    MP_TRY(mp_modeldir_check_seqlen(&J->md, o->seqlen));
    if (o->method == MP_METHOD_STRUCTURED && J->md.gguf)
        MP_FAIL(MP_ERR_ARG, "%s: --method structured writes a Hugging Face directory and reads "
                "one: convert the GGUF file first (mpiprune convert %s DIR)", o->model, o->model);
    if (o->method == MP_METHOD_STRUCTURED && J->md.cfg.arch != MP_ARCH_LLAMA)
        MP_FAIL(MP_ERR_ARG, "%s: --method structured supports LLaMA-family models (per-block "
                "widths are written for them only); this is %s", o->model,
                J->md.cfg.model_type);
    /* One-pass pruning keeps every structure; the checkpoint stores the plan all the same. */
    MP_TRY(mp_plan_identity(&J->md.cfg, &J->plan));
    MP_TRY(mp_tokens_load(o->calib, &J->tok));
    MP_TRY(mp_tokens_windows(&J->tok, o->seqlen, o->calib, &nw));
    if (nw < o->nsamples)
        MP_FAIL(MP_ERR_RANGE, "%s: %lld windows of %lld tokens, fewer than --nsamples %lld",
                o->calib, (long long)nw, (long long)o->seqlen, (long long)o->nsamples);
    mp_tokens view = {.ids = J->tok.ids, .count = o->nsamples * o->seqlen};
    MP_TRY(mp_tokens_check_vocab(&view, J->md.cfg.vocab, o->calib));
    const mp_model_config *c = &J->md.cfg;
    if (o->sp.n > 0 && J->inner != MP_METHOD_STRUCTURED) {
        for (int64_t l = 0; l < c->n_layers; l++)
            for (int id = 0; id < MP_LIN_COUNT; id++) {
                int64_t dim = mp_in_group_dim(c, l, mp_lin_group((mp_lin_id)id));
                if (dim % o->sp.m != 0)
                    MP_FAIL(MP_ERR_ARG, "mpiprune prune: --nm %d:%d: input width %lld of %s in "
                            "block %lld is not a multiple of %d", o->sp.n, o->sp.m,
                            (long long)dim, mp_lin_short_name(c, (mp_lin_id)id), (long long)l,
                            o->sp.m);
            }
        if (o->method == MP_METHOD_SPARSEGPT && o->blocksize % o->sp.m != 0)
            MP_FAIL(MP_ERR_ARG, "mpiprune prune: --blocksize %lld is not a multiple of M = %d",
                    (long long)o->blocksize, o->sp.m);
    }
    J->block_sel = mp_calloc((size_t)c->n_layers, sizeof(bool));
    if (!J->block_sel)
        MP_FAIL(MP_ERR_NOMEM, "cannot allocate block selection");
    MP_TRY(parse_blocks(o->blocks, c->n_layers, J->block_sel));
    MP_TRY(parse_layers(o->layers, c, J->lin_sel));
    J->s0 = o->nsamples * J->rank / J->P;
    J->s1 = o->nsamples * (J->rank + 1) / J->P;
done:
    return st;
}

mp_status mp_prune_run(const mp_prune_opts *o, const mp_comm *comm)
{
    mp_status st = MP_OK, local = MP_OK;
    job Jv = {0}, *J = &Jv;
    mp_block *blk = NULL;
    double *stages = NULL, *peak = NULL;
    J->o = o;
    J->comm = comm;
    J->inner = o->method == MP_METHOD_STRUCTURED
                   ? (o->st.then_sparsegpt ? MP_METHOD_SPARSEGPT : MP_METHOD_STRUCTURED)
                   : o->method;
    J->rank = mp_comm_rank(comm);
    J->P = mp_comm_size(comm);
    double t0 = mp_comm_wtime();
    mp_progress_start(&J->pg, o->progress && J->rank == 0, "prune", 1);
    char bw[256];
    if (J->pg.enabled && mp_blas_kernel_warning(bw, sizeof bw))
        mp_progress_note(&J->pg, "warning: %s", bw);
    if (*mp_blas_threads_note())
        mp_progress_note(&J->pg, "%s", mp_blas_threads_note());
    if (o->compute == MP_COMPUTE_BF16)
        mp_progress_note(&J->pg, "%sbf16 products: %s", mp_bf16_native() ? "" : "warning: ",
                         mp_bf16_backend());

    J->resumed_from = -1;
    J->snapshot_block = -1;
    J->ht_block = -1;
    local = mp_signals_install();
    if (local == MP_OK)
        local = setup_local(J);
    if (local == MP_OK) {
        J->pg.total = J->md.cfg.n_layers;
        local = memory_plan(J);
    }
    if (local == MP_OK && J->rank == 0)
        local = mp_prune_identity(J);
    MP_TRY(mp_prune_agree(J, local));
    /* Available memory may differ between nodes: rank 0's choice holds for all. */
    MP_TRY(mp_comm_bcast(comm, &J->scalapack_min, (int64_t)sizeof J->scalapack_min, 0));
    /* A finished job (OUT renamed into place, the checkpoint not yet removed) is recognised. */
    int64_t finished = 0;
    if (J->rank == 0 && finished_before(J)) {
        finished = 1;
        local = finish_stale(J);
    }
    MP_TRY(mp_prune_agree(J, local));
    MP_TRY(mp_comm_bcast(comm, &finished, (int64_t)sizeof finished, 0));
    if (finished)
        goto done;
    MP_TRY(mp_prune_resume(J));
    bool structured = o->method == MP_METHOD_STRUCTURED;
    if (structured && J->search_round < o->st.rounds)
        MP_TRY(mp_structured_search(J));
    if (structured && o->st.then_sparsegpt && o->sp.n > 0)
        MP_TRY(mp_prune_agree(J, nm_widths_check(J)));
    if (J->rank == 0) {
        local = mp_outdir_create(&J->out, o->out, J->md.gguf ? NULL : o->model);
        J->out_open = local == MP_OK;
        /* The final widths: the plan's (the input's unless a structured search planned
         * others). */
        mp_model_config *outc = local == MP_OK ? mp_malloc(sizeof *outc) : NULL;
        if (local == MP_OK && !outc)
            local = mp_error(MP_ERR_NOMEM, "cannot allocate the output config");
        if (outc) {
            mp_plan_apply_config(&J->md.cfg, &J->plan, outc);
            mp_structured_out_config(J, outc);
        }
        if (local == MP_OK && J->md.gguf)
            local = mp_outgguf_open(o->model, &J->gout);
        else if (local == MP_OK)
            local = mp_export_begin(J->out.tmp, J->md.st, &J->md.cfg, outc, J->md.config_path,
                                    0, &J->exp);
        free(outc);
    }
    MP_TRY(mp_prune_agree(J, local));
    mp_progress_note(&J->pg, "%s %s on %lld sequences of %lld tokens, %d rank(s)%s",
                     structured ? (o->st.then_sparsegpt ? "structured, then sparsegpt"
                                                        : "structured: writing the pruned blocks,")
                                : o->method_name,
                     structured && !o->st.then_sparsegpt ? "compensated"
                     : o->nm_text ? o->nm_text : "unstructured",
                     (long long)o->nsamples, (long long)o->seqlen, J->P,
                     J->resumed_from >= 0 ? ", resumed from the checkpoint" : "");
    const mp_model_config *c = &J->md.cfg;
    if (J->resumed_from >= 0) {
        MP_TRY(mp_prune_restore(J));
    } else {
        MP_TRY(mp_prune_agree(J, mp_prune_embed(J)));
    }
    J->snapshot_time = mp_comm_wtime();
    mp_progress_restart(&J->pg, J->start_block);

    for (int64_t b = J->start_block; b < c->n_layers; b++) {
        /* A structured job cuts the dense block itself, compensating on its inputs; without
         * --then its pass also produces the block's output. */
        bool advanced = structured && !o->st.then_sparsegpt;
        /* Nothing reads the last block's output: its update pass is skipped. */
        bool last = b + 1 == c->n_layers;
        if (structured) {
            MP_TRY(mp_prune_agree(J, mp_block_load(c, &J->md.src, b, &blk)));
            MP_TRY(mp_structured_block(J, blk, advanced && !last));
        } else {
            MP_TRY(mp_prune_agree(J, mp_prune_load_block(J, b, &blk)));
        }
        if (J->block_sel[b] && J->inner != MP_METHOD_STRUCTURED)
            MP_TRY(prune_block(J, blk));
        if (J->rank == 0)
            MP_TRY(mp_prune_agree(J, mp_prune_write_block(J, blk)));
        else
            MP_TRY(mp_prune_agree(J, MP_OK));
        if (!advanced && !last) {
            double t = mp_comm_wtime();
            local = mp_prune_run_block(J, blk, J->h, NULL);
            J->t_stage[ST_FORWARD] += mp_comm_wtime() - t;
            MP_TRY(mp_prune_agree(J, local));
        }
        if (o->pause_ms > 0) {
            struct timespec ts = {o->pause_ms / 1000, (o->pause_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) != 0 && !mp_signals_pending())
                ;
        }
        /* A signal on any rank stops every rank here, after a checkpoint. */
        mp_status sig = MP_OK;
        int who = -1;
        MP_TRY(mp_comm_agree(comm, mp_signals_pending() ? MP_ERR_INTERRUPTED : MP_OK, &sig,
                             &who));
        bool stopping = sig != MP_OK && b + 1 < c->n_layers;
        if (o->checkpoint)
            MP_TRY(mp_prune_checkpoint(J, blk, b, stopping));
        mp_block_free(&blk);
        mp_progress_step(&J->pg, b + 1,
                         (double)(o->nsamples * o->seqlen) * (double)(b + 1 - J->start_block) *
                             (J->block_sel[b] ? 2.0 : 1.0),
                         "block");
        if (stopping) {
            if (J->rank != 0) {
                st = mp_error_remote(MP_ERR_INTERRUPTED, 0);
                goto done;
            }
            if (o->checkpoint)
                MP_FAIL(MP_ERR_INTERRUPTED, "stopped by a signal after block %lld of %lld; "
                        "checkpoint %s written: run the same command to resume",
                        (long long)b + 1, (long long)c->n_layers, o->checkpoint);
            MP_FAIL(MP_ERR_INTERRUPTED, "stopped by a signal after block %lld of %lld (no "
                    "--checkpoint: a rerun starts over)", (long long)b + 1,
                    (long long)c->n_layers);
        }
    }

    /* Stage times and peak memory of every rank, for the report. */
    struct rusage ru;
    double mine[ST_COUNT + 1];
    memcpy(mine, J->t_stage, sizeof J->t_stage);
    local = getrusage(RUSAGE_SELF, &ru) == 0
                ? MP_OK
                : mp_error(MP_ERR_INTERNAL, "getrusage failed: %s", strerror(errno));
    mine[ST_COUNT] = local == MP_OK ? (double)ru.ru_maxrss * 1024.0 : 0.0;
    int64_t *counts = mp_malloc((size_t)J->P * sizeof(int64_t));
    stages = mp_malloc((size_t)J->P * (ST_COUNT + 1) * sizeof(double));
    peak = mp_malloc((size_t)J->P * sizeof(double));
    if (local == MP_OK && !(counts && stages && peak))
        local = mp_error(MP_ERR_NOMEM, "report buffers");
    if (counts)
        for (int r = 0; r < J->P; r++)
            counts[r] = ST_COUNT + 1;
    st = mp_prune_agree(J, local);
    if (st == MP_OK)
        st = mp_comm_gatherv_f64(comm, mine, ST_COUNT + 1, stages, counts, 0);
    free(counts);
    MP_TRY(st);
    local = MP_OK;
    if (J->rank == 0) {
        double t = mp_comm_wtime();
        local = J->gout ? mp_outgguf_write(J->gout, J->out.tmp) : mp_export_finish(&J->exp);
        J->t_stage[ST_WRITE] += mp_comm_wtime() - t;
    }
    if (J->rank == 0 && local == MP_OK) {
        double *flat = mp_malloc((size_t)J->P * ST_COUNT * sizeof(double));
        if (!flat)
            local = mp_error(MP_ERR_NOMEM, "report buffers");
        else {
            for (int r = 0; r < J->P; r++) {
                memcpy(flat + r * ST_COUNT, stages + r * (ST_COUNT + 1),
                       ST_COUNT * sizeof(double));
                peak[r] = stages[r * (ST_COUNT + 1) + ST_COUNT];
            }
            local = write_report(J, flat, peak, mp_comm_wtime() - t0);
            free(flat);
        }
        if (local == MP_OK)
            local = mp_outdir_commit(&J->out);
        if (local == MP_OK)
            mp_fault_point("out_committed");
        if (local == MP_OK)
            mp_progress_note(&J->pg, "wrote %s (%.1f s)", o->out, mp_comm_wtime() - t0);
        /* The output is whole: the checkpoint has served its purpose. */
        if (local == MP_OK && o->checkpoint)
            local = mp_ckpt_remove(o->checkpoint);
    }
    MP_TRY(mp_prune_agree(J, local));
done:
    mp_export_abort(&J->exp);
    mp_outgguf_close(&J->gout);
    if (J->out_open)
        mp_outdir_abort(&J->out);
    mp_block_free(&blk);
    for (int g = 0; g < MP_IN_COUNT; g++)
        mp_hessian_free(&J->hs[g]);
    free(J->h);
    free(J->hwork);
    free(J->hwork2);
    free(J->ht);
    free(J->ht2);
    free(J->ytgt);
    cJSON_Delete(J->search);
    free(J->block_sel);
    free(J->recs);
    free(stages);
    free(peak);
    mp_tokens_free(&J->tok);
    mp_plan_free(&J->plan);
    mp_modeldir_close(&J->md);
    cJSON_Delete(J->inputs);
    free(J->job_json);
    return st;
}
