/* mp_ckpt (h5ck): the HDF5 checkpoint of a prune job.
 *
 * Layout (format version 2). A checkpoint CKPT is a main file and a folder CKPT.d beside it:
 *
 *   CKPT                       the main file, small, rewritten at every checkpoint
 *     attributes  format_version (int64), job_id (string, sha256 of /job), mpiprune_version,
 *                 written_at (UTC ISO 8601), ranks (int64: ranks that wrote it),
 *                 phase, round (int64: what the job was doing; 0, 0 for one-pass pruning),
 *                 n_blocks, next_block (first block not yet pruned),
 *                 snapshot_block (int64: the hidden-state snapshot holds the inputs of this
 *                 block; -1 when there is none), n_seq, seqlen, d (the snapshot's shape)
 *     /job        uint8 [n]: JSON text of the job's identity (sha256 of the model and
 *                 calibration files, every option that changes the result)
 *     /report     uint8 [n]: JSON array of the per-layer records of the blocks done, the
 *                 objects of report.json's "layers" ({"name": "model.layers.3.mlp.down_proj",
 *                 "block": 3, ...}: the layer by its name; jobs/mp_prune_state_internal.h);
 *                 for a structured search the object {"layers": [...], "search": {...}}, the
 *                 records and the search's trace so far (report.json's "structured")
 *     /plan/counts  int64 [n_blocks, 3]: per block the kept KV groups, query heads per kept
 *                 group and FFN neurons (src/mp_plan.h)
 *     /plan/kv, /plan/q, /plan/ffn  int64: the kept indices of every block, concatenated in
 *                 block order (kv: groups; q: per kept group its heads; ffn: neurons)
 *     /weights/block_BBBBB   external link to CKPT.d/block_BBBBB.h5 "/", per finished block
 *     /hidden                external link to CKPT.d/hidden_BBBBB.h5 "/hidden" (if any)
 *   CKPT.d/block_BBBBB.h5      pruned weights of block B, written once by rank 0: one float32
 *                 dataset [out, in] per pruned linear layer at the block's planned widths,
 *                 named by its short name
 *                 ("q_proj", "fc1", ...); attributes job_id, block
 *   CKPT.d/hidden_BBBBB.h5     /hidden float32 [n_seq, seqlen, d], the inputs of block B of
 *                 every calibration sequence; written collectively, each rank its sequences;
 *                 attributes job_id, block
 *
 * Every dataset is chunked with a Fletcher32 checksum, verified on every read; the files use
 * the 1.10 format (libver bounds pinned to V110), whose metadata carries checksums too. Every
 * file is written under a temporary name with its room reserved first (a full disk is an error
 * before HDF5 writes anything), closed, synced, and renamed into place only when complete, its
 * folder synced after the rename; the main file is renamed last, so the previous checkpoint
 * stays valid until the new one is whole. Files no longer referenced are removed after the main
 * file's rename. Readers check every attribute's type and element count and every dataset's
 * rank, shape and type before reading it.
 * A format 1 checkpoint (no plan, no phase) is refused with that reason.
 * Readable with h5dump and h5py (which follow the external links).
 */
#ifndef MP_CKPT_H
#define MP_CKPT_H

#include <stdint.h>

#include "mp_comm.h"
#include "mp_plan.h"
#include "mp_status.h"

#define MP_CKPT_FORMAT_VERSION 2

/* What the job was doing when it wrote the checkpoint. One-pass pruning has one phase; an
 * iterative search adds its own (scoring rounds) with their round number. */
enum {
    MP_CKPT_PHASE_PRUNE = 0,  /* the block pass that writes the output (round 0) */
    MP_CKPT_PHASE_SEARCH = 1, /* a structured search between rounds: `round` rounds are done,
                                 /plan is the plan after them, next_block is 0 */
};

typedef struct {
    int64_t format_version;
    char job_id[65];
    char *job_json;
    char mpiprune_version[32];
    char written_at[32];
    int64_t ranks;
    int64_t blas_threads;      /* BLAS threads per rank that wrote it; 0: not recorded (older) */
    int64_t phase, round;      /* progress: phase (MP_CKPT_PHASE_*), round, then next_block */
    int64_t n_blocks, next_block, snapshot_block;
    int64_t n_seq, seqlen, d;
    char *report_json;
    mp_plan plan;              /* the kept structures of every block (owned) */
} mp_ckpt_info;

void mp_ckpt_info_free(mp_ckpt_info *info);

/* Rank 0 only. Writes CKPT.d/block_BBBBB.h5 with n datasets. */
MP_NODISCARD mp_status mp_ckpt_write_block(const char *ckpt, int64_t block, const char *job_id,
                                           int n, const char *const *names,
                                           const int64_t (*shapes)[2], const float *const *data);
/* Any rank. Reads the n datasets of a block file into data[i] (shapes must match). */
MP_NODISCARD mp_status mp_ckpt_read_block(const char *ckpt, int64_t block, const char *job_id,
                                          int n, const char *const *names,
                                          const int64_t (*shapes)[2], float *const *data);

/* Collective. Every rank writes sequences [s0, s1) of h[n_seq, T, d] (h holds s1 − s0). */
MP_NODISCARD mp_status mp_ckpt_write_hidden(const mp_comm *c, const char *ckpt, int64_t block,
                                            const char *job_id, int64_t n_seq, int64_t T,
                                            int64_t d, int64_t s0, int64_t s1, const float *h);
/* Collective. Every rank reads its sequences [s0, s1). */
MP_NODISCARD mp_status mp_ckpt_read_hidden(const mp_comm *c, const char *ckpt, int64_t block,
                                           const char *job_id, int64_t n_seq, int64_t T,
                                           int64_t d, int64_t s0, int64_t s1, float *h);

/* Rank 0 only. Writes the main file (tmp + rename), then removes files of CKPT.d that it does
 * not reference. */
MP_NODISCARD mp_status mp_ckpt_write_main(const char *ckpt, const mp_ckpt_info *info);
/* Any rank. MP_ERR_NOT_FOUND when CKPT does not exist; MP_ERR_FORMAT with the reason when it is
 * damaged, truncated or of an unknown format version. */
MP_NODISCARD mp_status mp_ckpt_read_main(const char *ckpt, mp_ckpt_info *info);
/* Rank 0 only: removes CKPT and CKPT.d. */
MP_NODISCARD mp_status mp_ckpt_remove(const char *ckpt);

#endif
