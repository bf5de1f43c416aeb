/* mp_outdir: the pruned model directory, built under a temporary name and renamed into place
 * only when complete, so OUT either does not exist or holds a whole model.
 *
 * Layout of OUT: the input's safetensors files under their names (a byte copy whose pruned
 * tensors are overwritten in place, so names, dtypes, shapes, order and __metadata__ are the
 * input's), model.safetensors.index.json when the input is sharded, config.json, the tokenizer
 * and generation files, README/LICENSE files, and report.json. Rank 0 only; not collective.
 */
#ifndef MP_OUTDIR_H
#define MP_OUTDIR_H

#include "mp_outgguf.h"
#include "mp_safetensors.h"
#include "mp_status.h"

typedef struct {
    char final[4096];
    char tmp[4096];
    const mp_st_model *st;
    mp_outgguf *gguf; /* a GGUF input (st is NULL): OUT holds model.gguf, see mp_outgguf.h */
    bool created;
} mp_outdir;

/* Refuses an existing OUT; creates OUT.tmp-<pid> next to it and copies the model's files.
 * st == NULL: model_dir is a GGUF file (mp_outgguf). */
MP_NODISCARD mp_status mp_outdir_create(mp_outdir *o, const char *out, const char *model_dir,
                                        const mp_st_model *st);
/* Overwrites tensor `name` in the copy with values[numel], converted to the tensor's dtype. */
MP_NODISCARD mp_status mp_outdir_put(mp_outdir *o, const char *name, const float *values);
/* Writes a text file into the directory (fsync'ed). */
MP_NODISCARD mp_status mp_outdir_write_file(mp_outdir *o, const char *name, const char *text);
/* fsyncs and renames the directory to its final name. */
MP_NODISCARD mp_status mp_outdir_commit(mp_outdir *o);
/* Removes the temporary directory if it was not committed. */
void mp_outdir_abort(mp_outdir *o);

#endif
