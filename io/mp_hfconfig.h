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
 * With per_layer_widths (model_type llama), "o_proj_bias": true and "down_proj_bias": true
 * give o_proj and down_proj a bias alone (FLAP's bias compensation); elsewhere they are refused.
 */
#ifndef MP_HFCONFIG_H
#define MP_HFCONFIG_H

#include <stdbool.h>

#include "mp_model.h"
#include "mp_status.h"

/* Parses JSON text; `path` is only used in messages. */
MP_NODISCARD mp_status mp_hfconfig_parse(const char *json, const char *path,
                                         mp_model_config *cfg);
/* Reads and parses a file. */
MP_NODISCARD mp_status mp_hfconfig_load(const char *path, mp_model_config *cfg);

/* The config.json of a model with cfg's widths, from the input model's config.json text `json`
 * (`path` names it in messages), keeping every key it had (mp_hfconfig_write.c):
 *   - widths unchanged: the input text itself, byte for byte;
 *   - uniform widths: the stock keys (num_attention_heads, num_key_value_heads,
 *     intermediate_size / ffn_dim) rewritten, head_dim explicit for the LLaMA family, any
 *     per_layer_widths and mpiprune auto_map dropped: the model loads in stock transformers;
 *   - per-block widths: the convention above (stock keys = the largest widths, explicit
 *     head_dim, per_layer_widths), plus "auto_map": {"AutoModelForCausalLM":
 *     "modeling_mpiprune.<class>"} and "architectures": [<class>], so that
 *     AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) loads it with the
 *     modeling file the caller writes beside (mp_hfconfig_modeling_py, *modeling = true);
 *   - an o_proj bias without q/k/v biases, or a down_proj bias without gate/up biases (FLAP's
 *     bias compensation): the per-block convention whatever the widths, with
 *     "o_proj_bias": true / "down_proj_bias": true, which modeling_mpiprune reads.
 * LLaMA family only for per-block widths (model_type llama; mistral and qwen2 are refused, as
 * is OPT with per-block widths or with a head_dim other than hidden_size / heads, which stock
 * OPT cannot express): MP_ERR_UNSUPPORTED naming the reason. *out is allocated (free()); it
 * parses back (mp_hfconfig_parse) to cfg's widths and bias switches. */
MP_NODISCARD mp_status mp_hfconfig_write(const char *json, const char *path,
                                         const mp_model_config *cfg, char **out,
                                         bool *modeling);
/* The modeling file of per-block-width models, io/modeling_mpiprune.py embedded at build time;
 * written into the model directory as MP_HFCONFIG_MODELING_NAME. */
#define MP_HFCONFIG_MODELING_NAME "modeling_mpiprune.py"
extern const char mp_hfconfig_modeling_py[];
/* The class of modeling_mpiprune.py that a per-block-width LLaMA-family model names. */
#define MP_HFCONFIG_LLAMA_CLASS "MpiPruneLlamaForCausalLM"

#endif
