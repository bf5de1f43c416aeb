/* mp_prune_state: the prune job's state and the primitives that both the pipeline
 * (mp_prune_job.c) and its checkpoint and resume (mp_prune_ckpt.c) stand on: agreeing on a
 * failure, embedding the calibration sequences, running a block, and the per-layer record with
 * its one JSON form. Neither of those two files calls the other's internals; the pipeline calls
 * the checkpoint's entry points (mp_prune_ckpt_internal.h). Private to jobs/. */
#ifndef MP_PRUNE_STATE_INTERNAL_H
#define MP_PRUNE_STATE_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_comm.h"
#include "mp_export.h"
#include "mp_outgguf.h"
#include "mp_plan.h"
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
    /* filled by the owner, broadcast to all (six consecutive doubles, sent as one buffer) */
    double sparsity, err, damp, seconds, escalations, dead;
} layer_rec;
_Static_assert(offsetof(layer_rec, dead) == offsetof(layer_rec, sparsity) + 5 * sizeof(double),
               "the owner broadcasts sparsity..dead as six consecutive doubles");

typedef struct {
    const mp_prune_opts *o;
    const mp_comm *comm;
    int rank, P;
    mp_modeldir md;
    mp_tokens tok;
    mp_plan plan;              /* the kept structures of every block (identity: unstructured) */
    bool *block_sel;
    bool lin_sel[MP_LIN_COUNT];
    int64_t s0, s1;            /* this rank's calibration sequences [s0, s1) */
    float *h, *hwork;          /* [n_loc, T, d] */
    mp_hessian hs[MP_IN_COUNT];
    bool need[MP_IN_COUNT];
    /* The block in the Hessian pass, and Σ‖W x‖² of each of its selected layers over this
     * rank's tokens (the output hook): reduced, the denominator of the reconstruction error. */
    const mp_block *hblk;
    double ysq[MP_LIN_COUNT];
    double t_stage[ST_COUNT];
    layer_rec *recs;
    int64_t nrecs, cap;
    mp_outdir out;
    bool out_open;
    mp_export *exp;            /* rank 0: the weights and config.json being written into out */
    mp_outgguf *gout;          /* rank 0, a GGUF input: OUT/model.gguf instead (mp_outgguf.h) */
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
    /* structured search (mp_structured.h) */
    mp_method inner;           /* what prune_block applies: o->method, or SparseGPT after a
                                  structured search with --then sparsegpt */
    int64_t search_round;      /* search rounds done */
    cJSON *search;             /* rank 0: the search's trace, {"rounds": [...]} */
    float *hwork2;             /* [n_loc, T, d] scratch of the structured block pass */
    /* --compensation scale (Kwon et al.'s mask tuning): the unpruned model's hidden states */
    float *ht, *ht2, *ytgt;    /* [n_loc, T, d]: the input of block ht_block, scratch, target */
    int64_t ht_block;          /* -1: ht not computed */
} job;

/* Agrees on a failure across ranks (collective); see mp_comm_agree. */
MP_NODISCARD mp_status mp_prune_agree(job *J, mp_status local);
/* Runs the current block on this rank's sequences in place (not collective). */
MP_NODISCARD mp_status mp_prune_run_block(job *J, const mp_block *blk, float *h,
                                          const mp_hook *hook);
/* Block b as the plan has it: read at the input's widths, then cut to the plan's (not
 * collective). */
MP_NODISCARD mp_status mp_prune_load_block(job *J, int64_t b, mp_block **out);
/* The fixed head of a job identity: the checkpoint format and the mpiprune version that wrote
 * it (so that neither a renumbered format nor another version's results are mistaken for this
 * job's); false when cJSON runs out of memory. */
MP_NODISCARD bool mp_prune_identity_head(cJSON *id, const char *version);
/* Embeds this rank's calibration sequences into J->h (not collective). */
MP_NODISCARD mp_status mp_prune_embed(job *J);
/* Rank 0: writes block blk (all its tensors, at their final widths) into the output. */
MP_NODISCARD mp_status mp_prune_write_block(job *J, const mp_block *blk);

/* Spreads n items of work[n] over P ranks, largest first onto the least loaded rank (ties: the
 * lower index, the lower rank), into owner[n]: deterministic for a given P. */
MP_NODISCARD mp_status mp_assign_largest_first(const double *work, int64_t n, int P, int *owner);

/* Adds the options that change the result to obj (the job identity and report.json share
 * them); false when cJSON runs out of memory. */
MP_NODISCARD bool mp_prune_options_json(const mp_prune_opts *o, cJSON *obj);

/* Adds item to an object (key) or an array (key NULL); deletes item and returns false when it
 * is NULL or cannot be added, so a builder fails instead of writing a partial document. */
MP_NODISCARD bool mp_json_add(cJSON *to, const char *key, cJSON *item);

/* The per-layer records, one JSON form for both their homes: report.json's "layers" and the
 * checkpoint's /report. Each record is
 *   {"name": "model.layers.3.mlp.down_proj", "block": 3, "rows": R, "cols": C,
 *    "sparsity": s, "rel_recon_error": e, ["damp": x, "damp_escalations": k,
 *    "dead_inputs": n,]  (SparseGPT only)  "seconds": t, "rank": r | "all (ScaLAPACK)"}
 * The layer is stored by its name, never by an enum number. Rank 0. */
MP_NODISCARD cJSON *mp_prune_records_json(const job *J);

/* Parses and validates records (the text of /report from checkpoint file `path`): a JSON array
 * of records as above, each of a block before next_block and naming a linear layer of that
 * block of model c (c NULL: of any supported architecture). On success *recs holds *n records
 * (allocated with room for one more block; the caller frees it). MP_ERR_FORMAT naming path and
 * the record otherwise. Not collective. */
MP_NODISCARD mp_status mp_prune_records_parse(const char *text, const mp_model_config *c,
                                              int64_t next_block, const char *path,
                                              layer_rec **recs, int64_t *n);

#endif
