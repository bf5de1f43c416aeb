/* mp_eval: distributed perplexity of a causal LM on a token file.
 *
 * Protocol (SparseGPT's llama_eval): the file is cut into non-overlapping windows of seqlen
 * tokens (a remainder is dropped); in each window tokens 1..L-1 are predicted and token 0 is
 * context only; perplexity = exp(mean over windows of the window's mean NLL).
 *
 * Windows are grouped into batches of `batch` consecutive windows; batches (not windows) are
 * split over ranks in contiguous ranges, so which windows share a matrix product never depends
 * on the number of ranks. Window NLLs (float64) are gathered to rank 0 in window order and
 * summed there in that order: the perplexity is bit-identical for any number of ranks.
 * Collective.
 */
#ifndef MP_EVAL_H
#define MP_EVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_comm.h"
#include "mp_modeldir.h"
#include "mp_tokens.h"
#include "mp_status.h"

typedef struct {
    const char *model;  /* Hugging Face model directory */
    const char *data;   /* token file */
    int64_t seqlen;
    int64_t batch;      /* windows per matrix product */
    int64_t max_windows;/* 0 = all */
    bool progress;      /* progress lines on rank 0 */
} mp_eval_opts;

typedef struct {
    double perplexity;
    double mean_nll;
    int64_t windows;
    int64_t tokens;      /* windows × seqlen */
    int64_t predicted;   /* windows × (seqlen − 1) */
    double seconds;
} mp_eval_result;

/* Opens the model and the token file and counts its windows of seqlen (at most max_windows
 * when > 0), checking their ids against the vocabulary: what eval and scores start with. Not
 * collective; the caller closes md and frees tok, also on failure. */
MP_NODISCARD mp_status mp_eval_open(const char *model, const char *data, int64_t seqlen,
                                    int64_t max_windows, mp_modeldir *md, mp_tokens *tok,
                                    int64_t *n_windows);

/* The result is valid on rank 0 only. */
MP_NODISCARD mp_status mp_eval_run(const mp_eval_opts *o, const mp_comm *comm,
                                   mp_eval_result *res);

#endif
