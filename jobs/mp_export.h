/* mp_export: writes a model with its final widths into a directory, block by block, through
 * the streaming safetensors writer (io/mp_st_stream.h) and the config.json writer
 * (io/mp_hfconfig.h).
 *
 * The output's tensors are the input's, in the input's file order and dtypes, with the shapes
 * of the final config: a block's q/k/v/o, gate/up/down (OPT: fc1/fc2) weights and biases take
 * the block's final widths; the tensors of an absent sub-block (and its norm) are dropped;
 * every other tensor (embeddings, final norm, head, anything the model does not read) is kept.
 * The input's sharding and each file's __metadata__ are kept (or automatic shards above
 * max_shard_bytes). Each block's tensors are written from the float32 block as it is produced
 * (mp_export_put_block); at mp_export_finish every tensor not written is copied byte for byte
 * from the input (pread, one tensor at a time), then config.json (and modeling_mpiprune.py for
 * per-block widths) is written. A model whose shapes did not change is written back
 * byte-identical except for the blocks' new values.
 * Rank 0 only; not collective.
 */
#ifndef MP_EXPORT_H
#define MP_EXPORT_H

#include "mp_model.h"
#include "mp_safetensors.h"
#include "mp_status.h"

typedef struct mp_export mp_export;

/* in: the input's tensors; in_cfg its config; out_cfg the final config (same family, d and
 * blocks); config_path the input's config.json; dir an existing directory. */
MP_NODISCARD mp_status mp_export_begin(const char *dir, const mp_st_model *in,
                                       const mp_model_config *in_cfg,
                                       const mp_model_config *out_cfg, const char *config_path,
                                       int64_t max_shard_bytes, mp_export **out);
/* Writes every tensor of a block at its final widths (blk->shape must be the final shape). */
MP_NODISCARD mp_status mp_export_put_block(mp_export *e, const mp_block *blk);
/* Copies the tensors not yet written from the input, commits the safetensors files, writes
 * config.json; frees e (*e = NULL) also on failure. A failure before the commit leaves no
 * safetensors file; one after it (config.json) leaves them in dir, the caller's temporary
 * directory to remove. */
MP_NODISCARD mp_status mp_export_finish(mp_export **e);
/* Removes what was written and frees e; accepts NULL. */
void mp_export_abort(mp_export **e);

#endif
