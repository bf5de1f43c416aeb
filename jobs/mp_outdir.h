/* mp_outdir: the lifecycle of the pruned model directory: built under a temporary name and
 * renamed into place only when complete, so OUT either does not exist or holds a whole model.
 *
 * The temporary name is OUT.tmp-<host>-<pid>: a run that finds such a directory of this host
 * whose process is gone (killed) removes it; one of another host (a concurrent run on a shared
 * file system) is left alone. The directory starts with the input's companions (tokenizer and
 * generation files, README/LICENSE files); the weights, model.safetensors.index.json and
 * config.json are written into it by mp_export (jobs/mp_export.h), report.json by the job.
 * Rank 0 only; not collective.
 */
#ifndef MP_OUTDIR_H
#define MP_OUTDIR_H

#include <stdbool.h>

#include "mp_status.h"

typedef struct {
    char final[4096];
    char tmp[4096]; /* the directory to write into until the commit */
    bool created;
} mp_outdir;

/* Refuses an existing OUT (MP_ERR_ARG); creates OUT.tmp-<host>-<pid> next to it and copies the
 * model directory's companions into it (none when model_dir is NULL: a GGUF input). */
MP_NODISCARD mp_status mp_outdir_create(mp_outdir *o, const char *out, const char *model_dir);
/* Reads OUT/name of an existing (finished) OUT into *text (free()); MP_ERR_NOT_FOUND when it
 * does not exist. */
MP_NODISCARD mp_status mp_outdir_read_existing(const char *out, const char *name, char **text);
/* Writes a text file into the directory (fsync'ed). */
MP_NODISCARD mp_status mp_outdir_write_file(mp_outdir *o, const char *name, const char *text);
/* fsyncs and renames the directory to its final name. */
MP_NODISCARD mp_status mp_outdir_commit(mp_outdir *o);
/* Removes the temporary directory if it was not committed. */
void mp_outdir_abort(mp_outdir *o);

#endif
