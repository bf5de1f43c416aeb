/* mp_convert: `mpiprune convert IN OUT`: a model from one format into another, tensor by
 * tensor (one tensor in memory at a time).
 *
 *   IN: a Hugging Face model directory or a GGUF file (llama, deci);
 *   OUT: a GGUF file (OUT ending in .gguf): `llama` when every block has the same widths, else
 *        `deci`; matrices in --dtype (f32, f16, bf16), norms in f32; a GGUF input's general.*
 *        and tokenizer.* metadata carried over.
 *   (GGUF → Hugging Face directory waits for the streaming safetensors writer.)
 *
 * OUT appears only when complete (written as OUT.tmp-PID and renamed); an existing OUT is
 * refused. Collective: rank 0 converts, the others wait for its status.
 */
#ifndef MP_CONVERT_H
#define MP_CONVERT_H

#include "mp_comm.h"
#include "mp_status.h"

typedef struct {
    const char *in;
    const char *out;
    const char *dtype; /* "f32", "f16", "bf16" */
} mp_convert_opts;

MP_NODISCARD mp_status mp_convert_run(const mp_convert_opts *o, const mp_comm *comm);

#endif
