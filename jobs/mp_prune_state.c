/* The prune job's state and its primitives, shared by the pipeline and the checkpoint code
 * (see mp_prune_state_internal.h). */
#define _POSIX_C_SOURCE 200809L

#include "mp_prune_state_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_ckpt.h"
#include "mp_structured.h"

const char *const mp_stage_names[ST_COUNT] = {"forward", "hessian", "reduction", "solve",
                                               "broadcast", "write", "checkpoint"};

/* The "rank" of a layer solved by all ranks with ScaLAPACK. */
static const char dist_rank[] = "all (ScaLAPACK)";

mp_status mp_prune_agree(job *J, mp_status local)
{
    mp_status g = MP_OK;
    int who = -1;
    mp_status st = mp_comm_agree(J->comm, local, &g, &who);
    (void)who; /* the other ranks hold a remote error (mp_error_remote) */
    return st != MP_OK ? st : g;
}

/* `batch` sequences at a time. */
mp_status mp_prune_run_block(job *J, const mp_block *blk, float *h, const mp_hook *hook)
{
    const mp_model_config *c = &J->md.cfg;
    int64_t T = J->o->seqlen, n = J->s1 - J->s0;
    mp_block view;
    /* --compute bf16: weights rounded once per pass, after whatever changed them. */
    bool bf16 = J->o->compute == MP_COMPUTE_BF16 && n > 0;
    if (bf16) {
        mp_status st = mp_block_bf16_view(blk, &view);
        if (st != MP_OK)
            return st;
        blk = &view;
    }
    mp_status st = MP_OK;
    for (int64_t s = 0; s < n && st == MP_OK; s += J->o->batch) {
        int64_t k = n - s < J->o->batch ? n - s : J->o->batch;
        st = mp_block_forward(c, blk, h + s * T * c->d, k, T, hook);
    }
    if (bf16)
        mp_block_bf16_release(&view);
    return st;
}

mp_status mp_prune_embed(job *J)
{
    mp_status st = MP_OK;
    const mp_model_config *c = &J->md.cfg;
    mp_head *head = NULL;
    int64_t T = J->o->seqlen, n = J->s1 - J->s0, nh = n * T * c->d;
    J->h = mp_malloc((size_t)(nh ? nh : 1) * sizeof(float));
    J->hwork = mp_malloc((size_t)(nh ? nh : 1) * sizeof(float));
    if (!J->h || !J->hwork)
        MP_FAIL(MP_ERR_NOMEM, "cannot allocate hidden states for %lld sequences", (long long)n);
    MP_TRY(mp_head_load(c, &J->md.src, &head));
    if (n > 0)
        MP_TRY(mp_embed_forward(c, head, J->tok.ids + J->s0 * T, n, T, J->h));
done:
    mp_head_free(&head);
    return st;
}

typedef struct {
    int64_t i;
    double w;
} work_item;

static int cmp_work(const void *a, const void *b)
{
    const work_item *x = a, *y = b;
    if (x->w != y->w)
        return x->w > y->w ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

mp_status mp_assign_largest_first(const double *work, int64_t n, int P, int *owner)
{
    work_item *it = mp_malloc((size_t)(n + 1) * sizeof *it);
    double *load = mp_calloc((size_t)P, sizeof *load);
    if (!it || !load) {
        free(it);
        free(load);
        return mp_error(MP_ERR_NOMEM, "cannot allocate the owners of %lld items", (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
        it[i] = (work_item){i, work[i]};
    qsort(it, (size_t)n, sizeof *it, cmp_work);
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int r = 1; r < P; r++)
            if (load[r] < load[best])
                best = r;
        owner[it[i].i] = best;
        load[best] += it[i].w;
    }
    free(it);
    free(load);
    return MP_OK;
}

bool mp_json_add(cJSON *to, const char *key, cJSON *item)
{
    if (!item)
        return false;
    if (to && (key ? cJSON_AddItemToObject(to, key, item) : cJSON_AddItemToArray(to, item)))
        return true;
    cJSON_Delete(item);
    return false;
}

bool mp_prune_options_json(const mp_prune_opts *o, cJSON *obj)
{
    bool ok = cJSON_AddStringToObject(obj, "method", o->method_name) != NULL;
    if (o->sp.n > 0) {
        char nm[32];
        snprintf(nm, sizeof nm, "%d:%d", o->sp.n, o->sp.m);
        ok = ok && cJSON_AddStringToObject(obj, "nm", nm);
    } else {
        ok = ok && cJSON_AddNumberToObject(obj, "sparsity", o->sp.sparsity);
    }
    ok = ok && cJSON_AddNumberToObject(obj, "seqlen", (double)o->seqlen);
    ok = ok && cJSON_AddNumberToObject(obj, "nsamples", (double)o->nsamples);
    ok = ok && cJSON_AddNumberToObject(obj, "blocksize", (double)o->blocksize);
    ok = ok && cJSON_AddNumberToObject(obj, "damp", o->damp);
    ok = ok && cJSON_AddNumberToObject(obj, "batch", (double)o->batch);
    ok = ok && cJSON_AddStringToObject(obj, "compute", mp_compute_name(o->compute));
    ok = ok && cJSON_AddStringToObject(obj, "blocks", o->blocks ? o->blocks : "all");
    ok = ok && cJSON_AddStringToObject(obj, "layers", o->layers ? o->layers : "all");
    if (o->scalapack_min_dim > 0)
        ok = ok && cJSON_AddNumberToObject(obj, "scalapack_min_dim", (double)o->scalapack_min_dim);
    if (o->method == MP_METHOD_STRUCTURED)
        ok = ok && mp_structured_options_json(o, obj);
    return ok;
}

/* One record; NULL when out of memory. */
static cJSON *record_json(const mp_model_config *c, bool sparsegpt, const layer_rec *r)
{
    char name[256];
    cJSON *l = cJSON_CreateObject();
    bool ok = l != NULL;
    ok = ok && cJSON_AddStringToObject(l, "name", mp_lin_full_name(c, r->block, r->id, name,
                                                                   sizeof name));
    ok = ok && cJSON_AddNumberToObject(l, "block", (double)r->block);
    ok = ok && cJSON_AddNumberToObject(l, "rows", (double)r->rows);
    ok = ok && cJSON_AddNumberToObject(l, "cols", (double)r->cols);
    ok = ok && cJSON_AddNumberToObject(l, "sparsity", r->sparsity);
    ok = ok && cJSON_AddNumberToObject(l, "rel_recon_error", r->err);
    if (sparsegpt) {
        ok = ok && cJSON_AddNumberToObject(l, "damp", r->damp);
        ok = ok && cJSON_AddNumberToObject(l, "damp_escalations", r->escalations);
        ok = ok && cJSON_AddNumberToObject(l, "dead_inputs", r->dead);
    }
    ok = ok && cJSON_AddNumberToObject(l, "seconds", r->seconds);
    if (r->dist)
        ok = ok && cJSON_AddStringToObject(l, "rank", dist_rank);
    else
        ok = ok && cJSON_AddNumberToObject(l, "rank", r->owner);
    if (!ok) {
        cJSON_Delete(l);
        return NULL;
    }
    return l;
}

cJSON *mp_prune_records_json(const job *J)
{
    bool sparsegpt = J->inner == MP_METHOD_SPARSEGPT;
    cJSON *arr = cJSON_CreateArray();
    for (int64_t i = 0; arr && i < J->nrecs; i++)
        if (!mp_json_add(arr, NULL, record_json(&J->md.cfg, sparsegpt, &J->recs[i]))) {
            cJSON_Delete(arr);
            arr = NULL;
        }
    return arr;
}

/* ---- reading records back ---- */

/* A number that is a whole value in [lo, hi]. */
static bool get_int(const cJSON *x, const char *key, int64_t lo, int64_t hi, int64_t *v)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(x, key);
    if (!cJSON_IsNumber(n) || !(n->valuedouble >= (double)lo && n->valuedouble <= (double)hi) ||
        n->valuedouble != floor(n->valuedouble))
        return false;
    *v = (int64_t)n->valuedouble;
    return true;
}

/* A finite number in [lo, hi]; absent is 0 when optional. */
static bool get_num(const cJSON *x, const char *key, double lo, double hi, bool optional,
                    double *v)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(x, key);
    if (!n && optional) {
        *v = 0.0;
        return true;
    }
    if (!cJSON_IsNumber(n) || !(n->valuedouble >= lo && n->valuedouble <= hi))
        return false;
    *v = n->valuedouble;
    return true;
}

/* The layer of block `block` whose full name is `name` in architecture c; -1 if none. */
static int layer_of(const mp_model_config *c, int64_t block, const char *name)
{
    char full[256];
    for (int id = 0; id < MP_LIN_COUNT; id++)
        if (mp_lin_short_name(c, (mp_lin_id)id) &&
            strcmp(mp_lin_full_name(c, block, (mp_lin_id)id, full, sizeof full), name) == 0)
            return id;
    return -1;
}

static mp_status record_parse(const cJSON *x, const mp_model_config *c, int64_t next_block,
                              const char *path, int64_t i, layer_rec *r)
{
    const char *bad = NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(x, "name");
    const cJSON *rank = cJSON_GetObjectItemCaseSensitive(x, "rank");
    int64_t owner = 0;
    memset(r, 0, sizeof *r);
    if (!cJSON_IsObject(x))
        bad = "is not a JSON object";
    else if (!cJSON_IsString(name))
        bad = "has no layer name";
    else if (!get_int(x, "block", 0, next_block - 1, &r->block))
        bad = "has no block, or one not yet done";
    else if (!get_int(x, "rows", 1, (int64_t)1 << 40, &r->rows) ||
             !get_int(x, "cols", 1, (int64_t)1 << 40, &r->cols))
        bad = "has no valid rows and cols";
    else if (!get_num(x, "sparsity", 0.0, 1.0, false, &r->sparsity))
        bad = "has no sparsity in [0, 1]";
    else if (!get_num(x, "rel_recon_error", -HUGE_VAL, HUGE_VAL, false, &r->err) ||
             !get_num(x, "seconds", 0.0, HUGE_VAL, false, &r->seconds) ||
             !get_num(x, "damp", 0.0, HUGE_VAL, true, &r->damp) ||
             !get_num(x, "damp_escalations", 0.0, 1e9, true, &r->escalations) ||
             !get_num(x, "dead_inputs", 0.0, HUGE_VAL, true, &r->dead))
        bad = "has a missing or invalid figure";
    else if (cJSON_IsString(rank) && strcmp(rank->valuestring, dist_rank) == 0)
        r->dist = true;
    else if (get_int(x, "rank", 0, 1 << 30, &owner))
        r->owner = (int)owner;
    else
        bad = "has no valid rank";
    if (!bad) {
        int id = -1;
        if (c) {
            id = layer_of(c, r->block, name->valuestring);
        } else {
            /* No model at hand (mpiprune status): a layer of either architecture. */
            mp_model_config any = {.arch = MP_ARCH_LLAMA};
            id = layer_of(&any, r->block, name->valuestring);
            any.arch = MP_ARCH_OPT;
            if (id < 0)
                id = layer_of(&any, r->block, name->valuestring);
        }
        if (id < 0)
            bad = "names no linear layer of its block of this model";
        r->id = (mp_lin_id)(id < 0 ? 0 : id);
    }
    if (bad)
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: /report record %lld %s", path,
                        (long long)i, bad);
    return MP_OK;
}

mp_status mp_prune_records_parse(const char *text, const mp_model_config *c, int64_t next_block,
                                 const char *path, layer_rec **recs, int64_t *n)
{
    mp_status st = MP_OK;
    layer_rec *r = NULL;
    cJSON *doc = cJSON_Parse(text), *arr = doc;
    *recs = NULL;
    *n = 0;
    /* A structured search's /report: {"layers": [...], "search": {...}}, both present. */
    if (cJSON_IsObject(doc) && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(doc, "search")))
        arr = cJSON_GetObjectItemCaseSensitive(doc, "layers");
    if (!cJSON_IsArray(arr))
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: /report is not a JSON array", path);
    int64_t count = cJSON_GetArraySize(arr);
    if (!(r = mp_calloc((size_t)(count + MP_LIN_COUNT), sizeof *r)))
        MP_FAIL(MP_ERR_NOMEM, "cannot allocate the report");
    int64_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
    {
        MP_TRY(record_parse(x, c, next_block, path, i, &r[i]));
        i++;
    }
    *recs = r;
    *n = count;
    r = NULL;
done:
    free(r);
    cJSON_Delete(doc);
    return st;
}

mp_status mp_prune_write_block(job *J, const mp_block *blk)
{
    double t = mp_comm_wtime();
    mp_status st = MP_OK;
    if (J->gout) {
        /* A GGUF input: only the linear weights change (same shapes); the rest is copied from
         * the input when model.gguf is written. */
        char base[256], name[300];
        for (int id = 0; id < MP_LIN_COUNT && st == MP_OK; id++) {
            if (!blk->lin[id].present)
                continue;
            mp_lin_full_name(&J->md.cfg, blk->index, (mp_lin_id)id, base, sizeof base);
            snprintf(name, sizeof name, "%s.weight", base);
            st = mp_outgguf_put(J->gout, J->out.tmp, name, blk->lin[id].w);
        }
    } else {
        st = mp_export_put_block(J->exp, blk);
    }
    J->t_stage[ST_WRITE] += mp_comm_wtime() - t;
    return st;
}

mp_status mp_prune_load_block(job *J, int64_t b, mp_block **out)
{
    mp_status st = mp_block_load(&J->md.cfg, &J->md.src, b, out);
    if (st == MP_OK && J->plan.b) {
        st = mp_block_apply_plan(&J->md.cfg, &J->plan.b[b], *out);
        if (st != MP_OK)
            mp_block_free(out);
    }
    return st;
}

bool mp_prune_identity_head(cJSON *id, const char *version)
{
    return cJSON_AddNumberToObject(id, "format", MP_CKPT_FORMAT_VERSION) &&
           cJSON_AddStringToObject(id, "mpiprune_version", version);
}
