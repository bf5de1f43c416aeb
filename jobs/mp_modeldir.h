/* mp_modeldir: a Hugging Face model directory opened for reading: config.json parsed, the
 * safetensors (single or sharded) mapped and validated, and a weight source over them.
 * Not collective (every rank opens the same directory). */
#ifndef MP_MODELDIR_H
#define MP_MODELDIR_H

#include "mp_model.h"
#include "mp_safetensors.h"
#include "mp_status.h"

typedef struct {
    char dir[4096];
    char config_path[4096];
    mp_model_config cfg;
    mp_st_model *st;
    mp_weight_source src;
} mp_modeldir;

MP_NODISCARD mp_status mp_modeldir_open(const char *dir, mp_modeldir *m);
void mp_modeldir_close(mp_modeldir *m);

/* MP_ERR_RANGE naming config.json when seqlen does not fit the model's positions or sliding
 * window. */
MP_NODISCARD mp_status mp_modeldir_check_seqlen(const mp_modeldir *m, int64_t seqlen);

#endif
