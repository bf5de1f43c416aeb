/* mp_st_stream: a streaming safetensors writer (one file or a sharded model directory).
 *
 * The final shape of every tensor is known before the first one is produced (after the plan),
 * so the header is written first, from the list of tensors in file order, and each tensor is
 * then written at its offset whenever it is ready (any order), converted from float32 to its
 * dtype (F16/BF16 rounded to nearest even, mp_dtype.h) or copied as raw bytes. No more than one
 * tensor (the caller's) and a small conversion buffer is in memory at any time.
 *
 * Files (format of mp_safetensors.h): 8-byte little-endian header length N, N bytes of compact
 * JSON {"__metadata__":{...},"name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]},...} with
 * the tensors in the order given and offsets contiguous from 0, padded with spaces so that
 * 8 + N is a multiple of 8; then the data. This is the layout mp_st_write and the reference
 * writer produce, so a model written back with its own order and shapes is byte-identical.
 *
 * Sharding (mp_sts_layout): the caller's shards (names, per-file __metadata__ and each tensor's
 * shard: how `prune` keeps the input's sharding), or automatic: one model.safetensors, or, when
 * max_shard_bytes > 0 and the data exceed it, model-00001-of-0000K.safetensors filled in order
 * up to the limit (a tensor larger than the limit gets a shard of its own). With more than one
 * shard, or when asked, model.safetensors.index.json is written as Hugging Face writes it:
 * {"metadata": {"total_size": bytes of tensor data}, "weight_map": {name: file}}, keys sorted,
 * indented by 2.
 *
 * Atomicity: every file is written as "<name>.tmp-<host>-<pid>" in the directory; mp_sts_close
 * checks that every tensor was written exactly once, fsyncs each file, renames them into place
 * (the index last) and fsyncs the directory. On any failure (and on mp_sts_abort) the temporary
 * files are removed and no final name is created. Renaming several files is not one atomic
 * step: mpiprune writes into a temporary directory that is renamed as a whole (jobs/mp_outdir).
 * Not collective; one process writes.
 */
#ifndef MP_ST_STREAM_H
#define MP_ST_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_dtype.h"
#include "mp_safetensors.h"
#include "mp_status.h"

/* One tensor of the output, in file order. */
typedef struct {
    const char *name;
    mp_dtype dtype;
    int ndim;
    int64_t shape[MP_ST_MAX_DIMS];
    int shard; /* with layout.n_shards > 0: the shard (0-based) it goes to; else ignored */
} mp_sts_spec;

typedef struct {
    /* Caller's shards: n_shards base names ("model-00001-of-00002.safetensors"), each file's
     * "__metadata__" as JSON text (NULL entry or array: none). 0: automatic (see above). */
    int n_shards;
    const char *const *shard_names;
    const char *const *shard_metadata;
    /* Automatic: the "__metadata__" of every file (NULL: none) and the shard size limit in
     * bytes of tensor data (0: one file). */
    const char *metadata;
    int64_t max_shard_bytes;
    /* Write model.safetensors.index.json even for one file (kept from a sharded input). */
    bool index;
} mp_sts_layout;

typedef struct mp_sts mp_sts;

/* Creates the temporary files in `dir` (an existing directory) with their headers written and
 * their final sizes reserved. MP_ERR_ARG for an invalid spec (empty or duplicate name, unknown
 * dtype, bad shard, metadata not an object of strings), MP_ERR_RANGE for sizes beyond 2^53. */
MP_NODISCARD mp_status mp_sts_create(const char *dir, const mp_sts_spec *specs, size_t n,
                                     const mp_sts_layout *layout, mp_sts **out);

/* Writes tensor `name` from values[numel], numel = product of its shape (checked), converted to
 * its dtype. MP_ERR_NOT_FOUND for a name not in the spec, MP_ERR_ARG for a second write. */
MP_NODISCARD mp_status mp_sts_put_f32(mp_sts *w, const char *name, const float *values,
                                      int64_t numel);
/* Writes tensor `name` from bytes already in its dtype (little-endian), nbytes checked. */
MP_NODISCARD mp_status mp_sts_put_raw(mp_sts *w, const char *name, const void *bytes,
                                      size_t nbytes);

/* The spec's tensors: count, name, and whether already written. */
size_t mp_sts_count(const mp_sts *w);
const char *mp_sts_name(const mp_sts *w, size_t i);
bool mp_sts_written(const mp_sts *w, size_t i);
/* Index of `name` in the spec, or -1. */
int64_t mp_sts_find(const mp_sts *w, const char *name);
/* The number of files and the base name of file k (the final name). */
int mp_sts_file_count(const mp_sts *w);
const char *mp_sts_file_name(const mp_sts *w, int k);

/* Checks that every tensor was written (MP_ERR_INTERNAL naming the first missing one and the
 * count), commits the files as described above and frees w (*w = NULL, also on failure, when
 * nothing is left behind). Accepts NULL. */
MP_NODISCARD mp_status mp_sts_close(mp_sts **w);
/* Removes the temporary files and frees w; accepts NULL and *w == NULL. */
void mp_sts_abort(mp_sts **w);

#endif
