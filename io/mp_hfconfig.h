/* mp_hfconfig: a Hugging Face config.json into mp_model_config.
 *
 * Accepted: model_type llama, mistral, qwen2 (LLaMA family) and opt. A required field that is
 * missing or of the wrong type, an unsupported model_type, or a field whose value asks for
 * something not implemented (a rope_scaling type, hidden_act other than silu/relu, ...) is an
 * error naming the file and the field; nothing is silently ignored.
 *
 * Per-layer widths (a structurally pruned model; written by mpiprune, read back by it and by the
 * modeling file it writes beside, see README "Models with per-layer widths"): the stock keys
 * hold the largest width of any block and `head_dim` is explicit, and
 *   "per_layer_widths": {"num_attention_heads": [n_layers ints],
 *                        "num_key_value_heads": [...],          (LLaMA family only)
 *                        "intermediate_size": [...]}            (OPT: "ffn_dim")
 * gives each block's widths; 0 heads means the block has no attention sub-block (no q/k/v/o
 * tensors, no norm before it), 0 FFN width no FFN sub-block. Unknown keys inside are refused.
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
