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

#include "mp_bf16.h"
#include "mp_chain.h"
#include "mp_comm.h"
#include "mp_prune.h"
#include "mp_search.h"
#include "mp_status.h"

typedef enum {
    MP_METHOD_SPARSEGPT,
    MP_METHOD_WANDA,
    MP_METHOD_MAGNITUDE,
    MP_METHOD_STRUCTURED, /* heads, KV groups and FFN neurons by a global search (mp_structured) */
} mp_method;

/* --method structured (jobs/mp_structured.h). Texts as given, parsed by mp_structured_parse. */
typedef struct {
    const char *target_text;      /* "params=0.6" | "flops=0.5" */
    const char *units_text;       /* "kv-groups,heads,ffn[,sublayers]" */
    const char *min_keep_text;    /* "kv=1,heads=1,ffn=32" (any subset) */
    const char *score_name;       /* obs | flap | wanda-sp | magnitude */
    const char *normalize_name;   /* none | relative | zscore | probe */
    const char *allocation_name;  /* global | uniform */
    const char *compensation_name;/* auto | ls | none | scale */
    const char *then_name;        /* NULL | sparsegpt */
    double keep;                  /* fraction of the blocks' linear parameters (FLOPs) kept */
    int64_t rounds;               /* scoring rounds of the search */
    int64_t loss_samples;         /* calibration sequences whose loss is traced per round */
    double score_ema;             /* gradient scorers: EMA weight of the previous rounds' scores */
    double probe_fraction;        /* --normalize probe: share of a layer's cost the probe removes */
    double max_remove;            /* the most of one layer's cost the search may remove */
    bool bias_comp;               /* --bias-compensation: o_proj/down_proj biases (FLAP) */
    /* parsed */
    mp_chain_opts chain;
    mp_norm_mode norm;
    bool uniform, compensate, then_sparsegpt;
    bool kwon;                    /* --method kwon: the plan from Kwon et al.'s mask search */
    bool tune;                    /* --compensation scale: Kwon et al.'s mask tuning */
} mp_struct_opts;

/* The method of a --method name; MP_ERR_ARG for an unknown name (no silent default). */
MP_NODISCARD mp_status mp_prune_method_parse(const char *name, mp_method *out);

typedef struct {
    const char *model, *calib, *out;
    const char *method_name;   /* sparsegpt | wanda | magnitude | structured | kwon */
    mp_method method;
    mp_sparsity sp;
    const char *nm_text;       /* "2:4" or NULL */
    int64_t seqlen, nsamples, blocksize, batch;
    double damp;
    const char *blocks;        /* "0-3,7" or NULL: all */
    const char *layers;        /* "q_proj,o_proj" or NULL: all */
    int64_t scalapack_min_dim; /* Hessians at least this large use ScaLAPACK (P > 1) */
    const char *compute_name;  /* f32 | bf16 */
    mp_compute compute;        /* the block forwards' and Hessians' products (mp_bf16) */
    double max_memory_gib;     /* 0: MemAvailable / ranks per node */
    bool progress;
    const char *checkpoint;    /* HDF5 checkpoint path or NULL */
    bool restart;              /* ignore an existing checkpoint */
    int64_t snapshot_blocks;   /* hidden-state snapshot every K blocks ... */
    double snapshot_minutes;   /* ... or every M minutes, whichever comes first */
    int64_t pause_ms;          /* sleep after each block (for tests of signals and kills) */
    mp_struct_opts st;         /* --method structured */
    int argc;                  /* the command line, for the report */
    char **argv;
} mp_prune_opts;

/* Parses "N:M" into sp (N < M <= 64); MP_ERR_ARG otherwise. */
MP_NODISCARD mp_status mp_prune_parse_nm(const char *text, mp_sparsity *sp);

MP_NODISCARD mp_status mp_prune_run(const mp_prune_opts *o, const mp_comm *comm);

#endif
