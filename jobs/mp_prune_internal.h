/* mp_prune_internal: the prune job's state, shared by the pipeline (mp_prune_job.c) and its
 * checkpoint and resume (mp_prune_ckpt.c). Private to jobs/. */
#ifndef MP_PRUNE_INTERNAL_H
#define MP_PRUNE_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "mp_comm.h"
#include "mp_export.h"
#include "mp_hessian.h"
#include "mp_model.h"
#include "mp_modeldir.h"
#include "mp_outdir.h"
#include "mp_progress.h"
#include "mp_prune_job.h"
#include "mp_tokens.h"

enum { ST_FORWARD, ST_HESSIAN, ST_REDUCE, ST_SOLVE, ST_BCAST, ST_WRITE, ST_CKPT, ST_COUNT };
extern const char *const mp_stage_names[ST_COUNT];

/* One pruned layer, as reported. */
typedef struct {
    int64_t block;
    mp_lin_id id;
    int owner;    /* the solving rank; for a ScaLAPACK layer every rank solves, 0 reports */
    bool dist;    /* factored with ScaLAPACK and swept by rows over all ranks */
    int64_t rows, cols;
    double cost;
    /* filled by the owner, broadcast to all */
    double sparsity, err, damp, seconds, escalations, dead;
} layer_rec;

typedef struct {
    const mp_prune_opts *o;
    const mp_comm *comm;
    int rank, P;
    mp_modeldir md;
    mp_tokens tok;
    bool *block_sel;
    bool lin_sel[MP_LIN_COUNT];
    int64_t s0, s1;            /* this rank's calibration sequences [s0, s1) */
    float *h, *hwork;          /* [n_loc, T, d] */
    mp_hessian hs[MP_IN_COUNT];
    bool need[MP_IN_COUNT];
    double t_stage[ST_COUNT];
    layer_rec *recs;
    int64_t nrecs, cap;
    mp_outdir out;
    bool out_open;
    mp_export *exp;            /* rank 0: the weights and config.json being written into out */
    mp_progress pg;
    int64_t scalapack_min;     /* Hessian dimension from which ScaLAPACK is used (P > 1) */
    /* identity and checkpoint */
    cJSON *inputs;             /* rank 0: {file: sha256} */
    char *job_json;            /* every rank */
    char job_id[65];
    int64_t start_block;       /* first block this run prunes (> 0 after a resume) */
    int64_t resumed_from;      /* -1: fresh start */
    int64_t snapshot_block;    /* block whose inputs the checkpoint's snapshot holds, -1 none */
    double snapshot_time;
} job;


/* Agrees on a failure across ranks (collective); see mp_comm_agree. */
MP_NODISCARD mp_status mp_prune_agree(job *J, mp_status local);
/* Runs the current block on this rank's sequences in place (not collective). */
MP_NODISCARD mp_status mp_prune_run_block(job *J, const mp_block *blk, float *h,
                                          const mp_hook *hook);
/* Embeds this rank's calibration sequences into J->h (not collective). */
MP_NODISCARD mp_status mp_prune_embed(job *J);

/* Checkpoint and resume (mp_prune_ckpt.c). */
/* Adds the options that change the result to obj (the job identity and report.json share it). */
void mp_prune_options_json(const mp_prune_opts *o, cJSON *obj);
/* Rank 0: sha256 of every input and the options that change the result, as JSON. */
MP_NODISCARD mp_status mp_prune_identity(job *J);
/* Collective: shares the identity, looks for a checkpoint of this job and, if one is found,
 * restores the state after its last block (J->start_block > 0). */
MP_NODISCARD mp_status mp_prune_resume(job *J);
/* Collective: after a resume, the hidden states of J->start_block and the output directory's
 * pruned weights of the blocks done, from the checkpoint. */
MP_NODISCARD mp_status mp_prune_restore(job *J);
/* Collective: checkpoint after block b (weights; hidden states when due or when stopping). */
MP_NODISCARD mp_status mp_prune_checkpoint(job *J, const mp_block *blk, int64_t b,
                                          bool stopping);
/* Rank 0: writes block blk (all its tensors, at their final widths) into the output. */
MP_NODISCARD mp_status mp_prune_write_block(job *J, const mp_block *blk);
/* The layer records as JSON text (rank 0). */
char *mp_prune_records_json(const job *J);

#endif
