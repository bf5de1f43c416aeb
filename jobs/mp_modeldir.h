/* mp_modeldir: the model given to --model, opened for reading: a Hugging Face model directory
 * (config.json parsed, the safetensors, single or sharded, mapped and validated) or a GGUF file
 * (a regular file starting with the GGUF magic: metadata and tensor infos validated, config from
 * the metadata), and a weight source over it that serves Hugging Face names.
 * Not collective (every rank opens the same model). */
#ifndef MP_MODELDIR_H
#define MP_MODELDIR_H

#include <stdbool.h>

#include "mp_gguf.h"
#include "mp_model.h"
#include "mp_safetensors.h"
#include "mp_status.h"

typedef struct {
    char dir[4096];         /* the --model path (a directory, or the GGUF file) */
    char config_path[4096]; /* config.json, or the GGUF file: the file config messages name */
    mp_model_config cfg;
    bool gguf;              /* a GGUF file: st is NULL, gg is set */
    mp_st_model *st;
    mp_gguf *gg;
    mp_weight_source src;
} mp_modeldir;

MP_NODISCARD mp_status mp_modeldir_open(const char *path, mp_modeldir *m);
void mp_modeldir_close(mp_modeldir *m);

/* MP_ERR_RANGE naming config.json when seqlen does not fit the model's positions or sliding
 * window. */
MP_NODISCARD mp_status mp_modeldir_check_seqlen(const mp_modeldir *m, int64_t seqlen);

#endif
