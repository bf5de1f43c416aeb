/* mp_prune_job: the sequential block pipeline of one-shot pruning (SparseGPT's reference order).
 *
 * Calibration sequences are split over ranks in contiguous ranges. For each block b: every
 * rank runs block b on its sequences, accumulating the input Hessian of each input group
 * (q/k/v share one, gate/up share one); the partial Hessians are summed in float64, in rank
 * order, on the rank that solves the group's layers (layers are spread over ranks by cost,
 * about rows·cols² + cols³, largest first); the owners prune; the pruned weights are
 * broadcast; every rank reruns block b with them to produce the inputs of block b + 1.
 * Rank 0 writes the output directory as the blocks finish and renames it into place at the end.
 * Collective.
 */
#ifndef MP_PRUNE_JOB_H
#define MP_PRUNE_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_comm.h"
#include "mp_prune.h"
#include "mp_status.h"

typedef enum { MP_METHOD_SPARSEGPT, MP_METHOD_WANDA, MP_METHOD_MAGNITUDE } mp_method;

/* The method of a --method name; MP_ERR_ARG for an unknown name (no silent default). */
MP_NODISCARD mp_status mp_prune_method_parse(const char *name, mp_method *out);

typedef struct {
    const char *model, *calib, *out;
    const char *method_name;   /* sparsegpt | wanda | magnitude */
    mp_method method;
    mp_sparsity sp;
    const char *nm_text;       /* "2:4" or NULL */
    int64_t seqlen, nsamples, blocksize, batch;
    double damp;
    const char *blocks;        /* "0-3,7" or NULL: all */
    const char *layers;        /* "q_proj,o_proj" or NULL: all */
    int64_t scalapack_min_dim; /* Hessians at least this large use ScaLAPACK (P > 1) */
    double max_memory_gib;     /* 0: MemAvailable / ranks per node */
    bool progress;
    const char *checkpoint;    /* HDF5 checkpoint path or NULL */
    bool restart;              /* ignore an existing checkpoint */
    int64_t snapshot_blocks;   /* hidden-state snapshot every K blocks ... */
    double snapshot_minutes;   /* ... or every M minutes, whichever comes first */
    int64_t pause_ms;          /* sleep after each block (for tests of signals and kills) */
    int argc;                  /* the command line, for the report */
    char **argv;
} mp_prune_opts;

/* Parses "N:M" into sp (N < M <= 64); MP_ERR_ARG otherwise. */
MP_NODISCARD mp_status mp_prune_parse_nm(const char *text, mp_sparsity *sp);

MP_NODISCARD mp_status mp_prune_run(const mp_prune_opts *o, const mp_comm *comm);

#endif
