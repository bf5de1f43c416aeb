/* mp_outgguf: the pruned model of a GGUF input, for now (until prune writes through a streaming
 * exporter): OUT/model.gguf beside report.json. Pruned tensors are spooled as float32 files in
 * the temporary output directory as they come (mp_outdir_put); at commit model.gguf is streamed
 * from the spool and, for every other tensor, the input GGUF, with the input's metadata
 * (general.*, tokenizer.*) and its matrix type when that is F32, F16 or BF16 (F32 for a
 * quantised input: the pruned zeros and updated weights are not re-quantised). Rank 0 only. */
#ifndef MP_OUTGGUF_H
#define MP_OUTGGUF_H

#include "mp_gguf.h"
#include "mp_status.h"

typedef struct mp_outgguf mp_outgguf;

/* Opens the input GGUF (its config and weights). */
MP_NODISCARD mp_status mp_outgguf_open(const char *gguf_path, mp_outgguf **out);
/* Spools tensor `name` (a Hugging Face name of the input) into dir. */
MP_NODISCARD mp_status mp_outgguf_put(mp_outgguf *g, const char *dir, const char *name,
                                      const float *values);
/* Writes dir/model.gguf and removes the spool. */
MP_NODISCARD mp_status mp_outgguf_write(mp_outgguf *g, const char *dir);
void mp_outgguf_close(mp_outgguf **g);

#endif
