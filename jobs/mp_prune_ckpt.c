/* Checkpoint and resume of the prune job: the job's identity, the checkpoint after each block,
 * and the restore of a job from its checkpoint (format: io/mp_ckpt.h). */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mp_alloc.h"
#include "mp_blasinfo.h"
#include "mp_ckpt.h"
#include "mp_prune_ckpt_internal.h"
#include "mp_sha256.h"
#include "mp_structured.h"

static mp_status add_sha(cJSON *obj, const char *key, const char *path)
{
    char hex[65];
    mp_status st = mp_sha256_file(path, hex);
    if (st == MP_OK && !cJSON_AddStringToObject(obj, key, hex))
        st = mp_error(MP_ERR_NOMEM, "cannot build the job identity");
    return st;
}

mp_status mp_prune_identity(job *J)
{
    mp_status st = MP_OK;
    const mp_prune_opts *o = J->o;
    cJSON *id = cJSON_CreateObject();
    J->inputs = cJSON_CreateObject();
    if (!id || !J->inputs)
        MP_FAIL(MP_ERR_NOMEM, "cannot build the job identity");
    /* A GGUF input is one file, config and weights: its sha256 under its own name. */
    const char *slash = strrchr(J->md.config_path, '/');
    MP_TRY(add_sha(J->inputs, J->md.gguf ? (slash ? slash + 1 : J->md.config_path) : "config.json",
                   J->md.config_path));
    for (int f = 0; f < mp_st_file_count(J->md.st); f++)
        MP_TRY(add_sha(J->inputs, mp_st_file_name(J->md.st, f), mp_st_file_path(J->md.st, f)));
    if (mp_st_is_sharded(J->md.st)) {
        char p[4200];
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", J->md.dir);
        MP_TRY(add_sha(J->inputs, "model.safetensors.index.json", p));
    }
    MP_TRY(add_sha(J->inputs, "calib", o->calib));
    /* What changes the result; the rank count changes only rounding, so it is not here. */
    if (!mp_prune_identity_head(id, MPIPRUNE_VERSION) ||
        !mp_json_add(id, "inputs_sha256", cJSON_Duplicate(J->inputs, 1)) ||
        !mp_prune_options_json(o, id))
        MP_FAIL(MP_ERR_NOMEM, "cannot build the job identity");
    J->job_json = cJSON_PrintUnformatted(id);
    if (!J->job_json)
        MP_FAIL(MP_ERR_NOMEM, "cannot print the job identity");
done:
    cJSON_Delete(id);
    return st;
}

/* Names the first difference between a checkpoint's identity and this job's. */
static void describe_difference(const char *theirs, const char *ours, char *buf, size_t len)
{
    cJSON *a = cJSON_Parse(theirs), *b = cJSON_Parse(ours);
    snprintf(buf, len, "its identity differs");
    if (a && b) {
        cJSON *ia = cJSON_GetObjectItemCaseSensitive(a, "inputs_sha256");
        cJSON *ib = cJSON_GetObjectItemCaseSensitive(b, "inputs_sha256");
        cJSON *x;
        bool found = false;
        cJSON_ArrayForEach(x, ib)
        {
            cJSON *y = cJSON_GetObjectItemCaseSensitive(ia, x->string);
            if (!y || !cJSON_Compare(x, y, true)) {
                snprintf(buf, len, "input '%s' is not the same file", x->string);
                found = true;
                break;
            }
        }
        cJSON_ArrayForEach(x, b)
        {
            if (found)
                break;
            if (strcmp(x->string, "inputs_sha256") == 0)
                continue;
            cJSON *y = cJSON_GetObjectItemCaseSensitive(a, x->string);
            if (!y || !cJSON_Compare(x, y, true)) {
                char *vb = cJSON_PrintUnformatted(x), *va = y ? cJSON_PrintUnformatted(y) : NULL;
                snprintf(buf, len, "option '%s' is %s there, %s here", x->string,
                         va ? va : "absent", vb ? vb : "?");
                free(va);
                free(vb);
                found = true;
            }
        }
        cJSON_ArrayForEach(x, a)
        {
            if (found)
                break;
            if (!cJSON_GetObjectItemCaseSensitive(b, x->string)) {
                snprintf(buf, len, "option '%s' is set there, not here", x->string);
                found = true;
            }
        }
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
}

/* The records of a checkpoint's /report, validated against this job: every record names a
 * layer this job prunes (rank 0). */
static mp_status records_from_json(job *J, const char *text, int64_t next_block)
{
    const char *path = J->o->checkpoint;
    int64_t n = 0;
    mp_status st = mp_prune_records_parse(text, &J->md.cfg, next_block, path, &J->recs, &n);
    if (st != MP_OK)
        return st;
    if (J->o->method == MP_METHOD_STRUCTURED) {
        cJSON *x = cJSON_Parse(text);
        cJSON *srch = cJSON_DetachItemFromObjectCaseSensitive(x, "search");
        cJSON_Delete(x);
        if (!cJSON_IsObject(srch) ||
            !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(srch, "rounds"))) {
            cJSON_Delete(srch);
            return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: /report has no search trace",
                            path);
        }
        cJSON_Delete(J->search);
        J->search = srch;
    }
    J->nrecs = n;
    J->cap = n + MP_LIN_COUNT;
    for (int64_t i = 0; i < n; i++)
        if (!J->block_sel[J->recs[i].block] || !J->lin_sel[J->recs[i].id])
            return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: /report record %lld names a "
                            "layer this job does not prune", path, (long long)i);
    return MP_OK;
}

/* The checkpoint's plan against this job's model: "CKPT: damaged checkpoint: /plan: ...". */
static mp_status plan_check(const job *J, const mp_plan *p)
{
    char what[4200];
    snprintf(what, sizeof what, "%s: damaged checkpoint: /plan", J->o->checkpoint);
    return mp_plan_check(&J->md.cfg, p, what);
}

static bool plans_equal(const mp_plan *a, const mp_plan *b)
{
    if (a->n_blocks != b->n_blocks)
        return false;
    for (int64_t i = 0; i < a->n_blocks; i++) {
        const mp_block_plan *x = &a->b[i], *y = &b->b[i];
        if (x->n_kv != y->n_kv || x->q_per_kv != y->q_per_kv || x->n_ffn != y->n_ffn ||
            memcmp(x->kv, y->kv, (size_t)x->n_kv * sizeof *x->kv) != 0 ||
            memcmp(x->q, y->q, (size_t)(x->n_kv * x->q_per_kv) * sizeof *x->q) != 0 ||
            memcmp(x->ffn, y->ffn, (size_t)x->n_ffn * sizeof *x->ffn) != 0)
            return false;
    }
    return true;
}

/* Rank 0's plan to every rank (a plan adopted from a checkpoint). Collective. */
static mp_status share_plan(job *J)
{
    mp_status st = MP_OK, local = MP_OK;
    int64_t *buf = NULL;
    for (int64_t b = 0; b < J->md.cfg.n_layers; b++) {
        mp_block_plan *p = &J->plan.b[b];
        int64_t cnt[3] = {p->n_kv, p->q_per_kv, p->n_ffn};
        MP_TRY(mp_comm_bcast(J->comm, cnt, (int64_t)sizeof cnt, 0));
        int64_t n = cnt[0] + cnt[0] * cnt[1] + cnt[2];
        free(buf);
        buf = mp_malloc((size_t)(n + 1) * sizeof *buf);
        local = buf ? MP_OK : mp_error(MP_ERR_NOMEM, "cannot allocate the plan");
        MP_TRY(mp_prune_agree(J, local));
        if (J->rank == 0) {
            memcpy(buf, p->kv, (size_t)cnt[0] * sizeof *buf);
            memcpy(buf + cnt[0], p->q, (size_t)(cnt[0] * cnt[1]) * sizeof *buf);
            memcpy(buf + cnt[0] + cnt[0] * cnt[1], p->ffn, (size_t)cnt[2] * sizeof *buf);
        }
        MP_TRY(mp_comm_bcast(J->comm, buf, n * (int64_t)sizeof *buf, 0));
        if (J->rank != 0)
            local = mp_plan_set_block(&J->plan, b, cnt[0], buf, cnt[1], buf + cnt[0], cnt[2],
                                      buf + cnt[0] + cnt[0] * cnt[1]);
        MP_TRY(mp_prune_agree(J, local));
    }
done:
    free(buf);
    return st;
}

mp_status mp_prune_resume(job *J)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_prune_opts *o = J->o;
    mp_ckpt_info info = {0};
    int64_t len = J->rank == 0 ? (int64_t)strlen(J->job_json) : 0;
    MP_TRY(mp_comm_bcast(J->comm, &len, (int64_t)sizeof len, 0));
    if (J->rank != 0) {
        J->job_json = mp_calloc((size_t)len + 1, 1);
        local = J->job_json ? MP_OK : mp_error(MP_ERR_NOMEM, "cannot allocate the identity");
    }
    MP_TRY(mp_prune_agree(J, local));
    MP_TRY(mp_comm_bcast(J->comm, J->job_json, len, 0));
    mp_sha256 sh;
    mp_sha256_init(&sh);
    mp_sha256_update(&sh, J->job_json, (size_t)len);
    mp_sha256_final_hex(&sh, J->job_id);
    if (!o->checkpoint)
        return MP_OK;

    bool structured = o->method == MP_METHOD_STRUCTURED;
    int64_t found[5] = {0, 0, -1, 0, 0}; /* found, next_block, snapshot_block, phase, round */
    if (J->rank == 0 && !o->restart) {
        local = mp_ckpt_read_main(o->checkpoint, &info);
        if (local == MP_ERR_NOT_FOUND) {
            local = MP_OK;
        } else if (local != MP_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", mp_error_message());
            local = mp_error(local, "%s; refusing to overwrite it (use --restart to start over)",
                             msg);
        } else if (strcmp(info.job_id, J->job_id) != 0) {
            char why[512];
            describe_difference(info.job_json, J->job_json, why, sizeof why);
            local = mp_error(MP_ERR_FORMAT, "%s: checkpoint of another job (%s); refusing to "
                             "overwrite it (use --restart to start over)", o->checkpoint, why);
        } else if (info.n_blocks != J->md.cfg.n_layers || info.n_seq != o->nsamples ||
                   info.seqlen != o->seqlen || info.d != J->md.cfg.d) {
            local = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: shapes do not match the "
                             "job", o->checkpoint);
        } else if (plan_check(J, &info.plan) != MP_OK) {
            local = MP_ERR_FORMAT;
        } else if (structured && (info.round > o->st.rounds ||
                                  (info.phase == MP_CKPT_PHASE_SEARCH && info.next_block != 0) ||
                                  (info.phase == MP_CKPT_PHASE_PRUNE &&
                                   info.round != o->st.rounds))) {
            local = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: phase %lld round %lld does "
                             "not fit a search of %lld rounds", o->checkpoint,
                             (long long)info.phase, (long long)info.round,
                             (long long)o->st.rounds);
        } else if (structured) {
            /* The search made this plan: adopt it. */
            local = records_from_json(J, info.report_json, info.next_block);
            mp_plan_free(&J->plan);
            J->plan = info.plan;
            info.plan = (mp_plan){0};
            found[0] = 1;
            found[1] = info.next_block;
            found[2] = info.snapshot_block;
            found[3] = info.phase;
            found[4] = info.round;
        } else if (info.phase != MP_CKPT_PHASE_PRUNE) {
            local = mp_error(MP_ERR_FORMAT, "%s: checkpoint of a structured search, not of this "
                             "job", o->checkpoint);
        } else if (!plans_equal(&info.plan, &J->plan)) {
            /* The job's options fix its plan (one-pass pruning keeps every structure), so a
             * checkpoint of the same job with another plan is damaged. */
            local = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: its /plan is not this "
                             "job's", o->checkpoint);
        } else {
            local = records_from_json(J, info.report_json, info.next_block);
            found[0] = 1;
            found[1] = info.next_block;
            found[2] = info.snapshot_block;
        }
    }
    MP_TRY(mp_prune_agree(J, local));
    MP_TRY(mp_comm_bcast(J->comm, found, (int64_t)sizeof found, 0));
    if (found[0] && structured)
        MP_TRY(share_plan(J));
    /* The last bits depend on the rank count and on OpenBLAS's threads per rank: resuming with
     * others is allowed, but the result is then not the uninterrupted run's, bit for bit. */
    if (found[0] && J->rank == 0 &&
        (info.ranks != J->P || (info.blas_threads > 0 && info.blas_threads != mp_blas_threads()))) {
        char was[64] = "an unrecorded number of";
        if (info.blas_threads > 0)
            snprintf(was, sizeof was, "%lld", (long long)info.blas_threads);
        mp_progress_note(&J->pg, "warning: the checkpoint was written by %lld rank(s) with %s "
                         "BLAS thread(s) each, this run has %d with %d: the result's last bits "
                         "can differ from an uninterrupted run's (the same rank count and "
                         "OPENBLAS_NUM_THREADS keep them)", (long long)info.ranks, was, J->P,
                         mp_blas_threads());
    }
    if (found[0] && found[3] == MP_CKPT_PHASE_SEARCH) {
        J->search_round = found[4];
        if (J->rank == 0)
            mp_progress_note(&J->pg, "resuming from %s: %lld of %lld search rounds done "
                             "(written %s by %lld rank(s))", o->checkpoint,
                             (long long)info.round, (long long)o->st.rounds, info.written_at,
                             (long long)info.ranks);
    } else if (found[0]) {
        J->search_round = found[4];
        J->start_block = found[1];
        J->resumed_from = found[1];
        J->snapshot_block = found[2];
        if (J->rank == 0)
            mp_progress_note(&J->pg, "resuming from %s: %lld of %lld blocks done (written %s by "
                             "%lld rank(s)), hidden states of block %lld", o->checkpoint,
                             (long long)info.next_block, (long long)info.n_blocks,
                             info.written_at, (long long)info.ranks,
                             (long long)info.snapshot_block);
    }
done:
    mp_ckpt_info_free(&info);
    return st;
}

/* The pruned layers of block b: names, shapes and weight pointers into blk. */
static int block_layers(const job *J, const mp_block *blk, int64_t b, const char **names,
                        int64_t (*shapes)[2], float **data)
{
    int n = 0;
    /* A structured job changes every block (cut, o_proj and down_proj refit), whatever
     * --blocks and --layers select for --then. */
    bool all = J->o->method == MP_METHOD_STRUCTURED;
    if (!all && !J->block_sel[b])
        return 0;
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        if ((!all && !J->lin_sel[id]) || !blk->lin[id].present)
            continue;
        names[n] = mp_lin_short_name(&J->md.cfg, (mp_lin_id)id);
        shapes[n][0] = blk->lin[id].out;
        shapes[n][1] = blk->lin[id].in;
        data[n] = blk->lin[id].w;
        n++;
    }
    /* The biases --bias-compensation gives o_proj and down_proj (mp_structured). */
    static const mp_lin_id biased[2] = {MP_LIN_O, MP_LIN_DOWN};
    static const char *const bias_names[2] = {"o_proj.bias", "down_proj.bias"};
    for (int i = 0; all && J->o->st.bias_comp && i < 2; i++) {
        const mp_linear *l = &blk->lin[biased[i]];
        if (!l->present)
            continue;
        names[n] = bias_names[i];
        shapes[n][0] = l->out;
        shapes[n][1] = 1;
        data[n] = l->b;
        n++;
    }
    return n;
}

/* Block b with its pruned weights from the checkpoint. Not collective. */
static mp_status load_pruned_block(job *J, int64_t b, mp_block **out)
{
    const char *names[MP_LIN_COUNT + 2];
    int64_t shapes[MP_LIN_COUNT + 2][2];
    float *data[MP_LIN_COUNT + 2];
    mp_status st = mp_prune_load_block(J, b, out);
    if (st == MP_OK)
        st = mp_structured_add_biases(J, *out);
    if (st != MP_OK) {
        mp_block_free(out);
        return st;
    }
    int n = block_layers(J, *out, b, names, shapes, data);
    st = mp_ckpt_read_block(J->o->checkpoint, b, J->job_id, n, names,
                            (const int64_t(*)[2])shapes, data);
    if (st != MP_OK)
        mp_block_free(out);
    return st;
}

mp_status mp_prune_restore(job *J)
{
    mp_status st = MP_OK, local = MP_OK;
    mp_block *blk = NULL;
    const mp_prune_opts *o = J->o;
    const mp_model_config *c = &J->md.cfg;
    /* The output: the blocks done, with their pruned weights. */
    if (J->rank == 0)
        for (int64_t b = 0; b < J->start_block && local == MP_OK; b++) {
            local = load_pruned_block(J, b, &blk);
            if (local == MP_OK)
                local = mp_prune_write_block(J, blk);
            mp_block_free(&blk);
        }
    MP_TRY(mp_prune_agree(J, local));
    /* The hidden states: from the snapshot, then through the pruned blocks after it. */
    MP_TRY(mp_prune_agree(J, mp_prune_embed(J)));
    int64_t from = 0;
    if (J->snapshot_block >= 0) {
        MP_TRY(mp_ckpt_read_hidden(J->comm, o->checkpoint, J->snapshot_block, J->job_id,
                                   o->nsamples, o->seqlen, c->d, J->s0, J->s1, J->h));
        from = J->snapshot_block;
    }
    for (int64_t b = from; b < J->start_block; b++) {
        local = load_pruned_block(J, b, &blk);
        if (local == MP_OK)
            local = mp_prune_run_block(J, blk, J->h, NULL);
        mp_block_free(&blk);
        MP_TRY(mp_prune_agree(J, local));
        mp_progress_note(&J->pg, "recomputed the inputs of block %lld", (long long)b + 1);
    }
done:
    mp_block_free(&blk);
    return st;
}

/* /report's text: the records, with the search's trace for a structured job. */
static char *report_text(const job *J)
{
    cJSON *recs = mp_prune_records_json(J), *obj = NULL;
    char *text = NULL;
    if (recs && J->search) {
        obj = cJSON_CreateObject();
        if (obj && mp_json_add(obj, "layers", recs) &&
            mp_json_add(obj, "search", cJSON_Duplicate(J->search, 1)))
            text = cJSON_PrintUnformatted(obj);
        cJSON_Delete(obj);
        return text;
    }
    text = recs ? cJSON_PrintUnformatted(recs) : NULL;
    cJSON_Delete(recs);
    return text;
}

/* Rank 0: writes the main file of the job's state now (phase, next block, snapshot). */
static mp_status write_main(const job *J, int64_t phase, int64_t next_block,
                            int64_t snapshot_block)
{
    const mp_prune_opts *o = J->o;
    mp_ckpt_info info = {0};
    info.format_version = MP_CKPT_FORMAT_VERSION;
    snprintf(info.job_id, sizeof info.job_id, "%s", J->job_id);
    info.job_json = J->job_json;
    snprintf(info.mpiprune_version, sizeof info.mpiprune_version, "%s", MPIPRUNE_VERSION);
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(info.written_at, sizeof info.written_at, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    info.ranks = J->P;
    info.blas_threads = mp_blas_threads();
    info.plan = J->plan; /* borrowed, as job_json: info is not freed here */
    info.n_blocks = J->md.cfg.n_layers;
    info.n_seq = o->nsamples;
    info.seqlen = o->seqlen;
    info.d = J->md.cfg.d;
    info.round = J->search_round;
    info.phase = phase;
    info.next_block = next_block;
    info.snapshot_block = snapshot_block;
    info.report_json = report_text(J);
    mp_status st = info.report_json ? mp_ckpt_write_main(o->checkpoint, &info)
                                    : mp_error(MP_ERR_NOMEM, "cannot print the report");
    free(info.report_json);
    return st;
}

mp_status mp_prune_checkpoint_search(job *J)
{
    mp_status st = MP_OK;
    double t = mp_comm_wtime();
    st = mp_prune_agree(J, J->rank == 0 ? write_main(J, MP_CKPT_PHASE_SEARCH, 0, -1) : MP_OK);
    J->t_stage[ST_CKPT] += mp_comm_wtime() - t;
    return st;
}

mp_status mp_prune_checkpoint(job *J, const mp_block *blk, int64_t b, bool stopping)
{
    mp_status st = MP_OK, local = MP_OK;
    const mp_prune_opts *o = J->o;
    const mp_model_config *c = &J->md.cfg;
    double t = mp_comm_wtime();
    if (J->rank == 0) {
        const char *names[MP_LIN_COUNT + 2];
        int64_t shapes[MP_LIN_COUNT + 2][2];
        float *data[MP_LIN_COUNT + 2];
        int n = block_layers(J, blk, b, names, shapes, data);
        local = mp_ckpt_write_block(o->checkpoint, b, J->job_id, n, names,
                                    (const int64_t(*)[2])shapes, (const float *const *)data);
    }
    MP_TRY(mp_prune_agree(J, local));
    /* Snapshots are large: every K blocks, every M minutes, and when stopping. Rank 0's clock
     * decides for all. */
    int64_t due = 0;
    if (J->rank == 0 && b + 1 < c->n_layers) {
        int64_t last = J->snapshot_block >= 0 ? J->snapshot_block : 0;
        due = stopping || b + 1 - last >= o->snapshot_blocks ||
              (mp_comm_wtime() - J->snapshot_time) / 60.0 >= o->snapshot_minutes;
    }
    MP_TRY(mp_comm_bcast(J->comm, &due, (int64_t)sizeof due, 0));
    if (due) {
        MP_TRY(mp_ckpt_write_hidden(J->comm, o->checkpoint, b + 1, J->job_id, o->nsamples,
                                    o->seqlen, c->d, J->s0, J->s1, J->h));
        J->snapshot_block = b + 1;
        J->snapshot_time = mp_comm_wtime();
    }
    if (J->rank == 0)
        local = write_main(J, MP_CKPT_PHASE_PRUNE, b + 1, J->snapshot_block);
    MP_TRY(mp_prune_agree(J, local));
    J->t_stage[ST_CKPT] += mp_comm_wtime() - t;
done:
    return st;
}
