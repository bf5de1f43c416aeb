/* mp_prune_ckpt: checkpoint and resume of the prune job (format: io/mp_ckpt.h), the entry
 * points the pipeline calls. Stands on mp_prune_state; never calls into the pipeline.
 * Private to jobs/. */
#ifndef MP_PRUNE_CKPT_INTERNAL_H
#define MP_PRUNE_CKPT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_prune_state_internal.h"

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

/* Collective: checkpoint of a structured search after J->search_round rounds (plan, trace). */
MP_NODISCARD mp_status mp_prune_checkpoint_search(job *J);

#endif
