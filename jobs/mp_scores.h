/* mp_scores: `mpiprune scores`, the gradient-based importance of every query head, KV group
 * and FFN neuron of a model on calibration windows (src/mp_gradscore.h), as JSON on stdout.
 * The numbers the structured search's --score fisher|nvit|taylor ranks by, for inspection
 * and for the float64 reference tests. Collective.
 */
#ifndef MP_SCORES_H
#define MP_SCORES_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_comm.h"
#include "mp_status.h"

typedef struct {
    const char *model;
    const char *data;
    int64_t seqlen;
    int64_t nsamples;   /* the first N windows (0: all) */
    int64_t max_memory; /* MiB for a chunk's saved block inputs */
    bool element;       /* also taylor_element (every weight's gradient) */
    bool progress;
} mp_scores_opts;

/* Rank 0 prints the JSON document on stdout. */
MP_NODISCARD mp_status mp_scores_run(const mp_scores_opts *o, const mp_comm *comm);

#endif
