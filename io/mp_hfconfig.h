/* mp_hfconfig: a Hugging Face config.json into mp_model_config.
 *
 * Accepted: model_type llama, mistral, qwen2 (LLaMA family) and opt. A required field that is
 * missing or of the wrong type, an unsupported model_type, or a field whose value asks for
 * something not implemented (a rope_scaling type, hidden_act other than silu/relu, ...) is an
 * error naming the file and the field; nothing is silently ignored.
 */
#ifndef MP_HFCONFIG_H
#define MP_HFCONFIG_H

#include "mp_model.h"
#include "mp_status.h"

/* Parses JSON text; `path` is only used in messages. */
MP_NODISCARD mp_status mp_hfconfig_parse(const char *json, const char *path,
                                         mp_model_config *cfg);
/* Reads and parses a file. */
MP_NODISCARD mp_status mp_hfconfig_load(const char *path, mp_model_config *cfg);

#endif
