/* mp_hfconfig_write: config.json for a model with new widths (see mp_hfconfig.h).
 *
 * The input's JSON tree is edited in place (cJSON keeps key order; new keys go at the end) and
 * printed formatted; only the width keys and, for per-block widths, auto_map and architectures
 * change. When the widths did not change the input text is returned as it was, so that
 * unstructured pruning writes a config.json byte-identical to its input.
 */
#include "mp_alloc.h"
#include "mp_hfconfig.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool same_widths(const mp_model_config *a, const mp_model_config *b)
{
    /* per_layer itself may differ: uniform per_layer_widths (kept for lone biases) read back
     * as per-layer widths that are all the same. */
    if (a->n_layers != b->n_layers || a->head_dim != b->head_dim || a->n_heads != b->n_heads ||
        a->n_kv_heads != b->n_kv_heads || a->ffn != b->ffn)
        return false;
    for (int64_t l = 0; l < a->n_layers; l++) {
        mp_block_shape x = mp_layer_shape(a, l), y = mp_layer_shape(b, l);
        if (x.n_heads != y.n_heads || x.n_kv_heads != y.n_kv_heads || x.ffn != y.ffn)
            return false;
    }
    return true;
}

/* Biases stock LlamaConfig cannot switch on alone: o_proj's without q/k/v's (attention_bias
 * is all four) and down_proj's without gate/up's (mlp_bias is all three). */
static bool lone_biases(const mp_model_config *c)
{
    return (c->o_bias && !c->qkv_bias) || c->down_bias;
}

static bool same_config(const mp_model_config *a, const mp_model_config *b)
{
    return same_widths(a, b) && a->qkv_bias == b->qkv_bias && a->o_bias == b->o_bias &&
           a->mlp_bias == b->mlp_bias && a->down_bias == b->down_bias;
}

/* Sets key to a number (replacing it where it was, appending otherwise). */
static bool set_number(cJSON *root, const char *key, double v)
{
    cJSON *n = cJSON_CreateNumber(v);
    if (!n)
        return false;
    if (cJSON_GetObjectItemCaseSensitive(root, key))
        return cJSON_ReplaceItemInObjectCaseSensitive(root, key, n);
    return cJSON_AddItemToObject(root, key, n);
}

static bool set_item(cJSON *root, const char *key, cJSON *item)
{
    if (!item)
        return false;
    if (cJSON_GetObjectItemCaseSensitive(root, key))
        return cJSON_ReplaceItemInObjectCaseSensitive(root, key, item);
    return cJSON_AddItemToObject(root, key, item);
}

/* An array of one width of every block. */
static cJSON *width_array(const mp_model_config *cfg, int which)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t l = 0; a && l < cfg->n_layers; l++) {
        mp_block_shape s = mp_layer_shape(cfg, l);
        double v = (double)(which == 0 ? s.n_heads : which == 1 ? s.n_kv_heads : s.ffn);
        cJSON *n = cJSON_CreateNumber(v);
        if (!n || !cJSON_AddItemToArray(a, n)) {
            cJSON_Delete(n);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* Whether auto_map points into modeling_mpiprune (a model mpiprune wrote). */
static bool is_our_auto_map(const cJSON *root)
{
    const cJSON *am = cJSON_GetObjectItemCaseSensitive(root, "auto_map");
    const cJSON *cls = cJSON_IsObject(am) ? cJSON_GetObjectItemCaseSensitive(am,
                                                                             "AutoModelForCausalLM")
                                          : NULL;
    return cJSON_IsString(cls) && strncmp(cls->valuestring, "modeling_mpiprune.", 18) == 0;
}

static const char *stock_class(const char *model_type)
{
    if (strcmp(model_type, "mistral") == 0)
        return "MistralForCausalLM";
    if (strcmp(model_type, "qwen2") == 0)
        return "Qwen2ForCausalLM";
    if (strcmp(model_type, "opt") == 0)
        return "OPTForCausalLM";
    return "LlamaForCausalLM";
}

mp_status mp_hfconfig_write(const char *json, const char *path, const mp_model_config *cfg,
                            char **out, bool *modeling)
{
    mp_status st = MP_OK;
    cJSON *root = NULL;
    char *text = NULL;
    mp_model_config *in = NULL, *norm = NULL;
    bool llama = cfg->arch == MP_ARCH_LLAMA;
    *out = NULL;
    *modeling = false;

    in = mp_malloc(sizeof *in);
    norm = mp_malloc(sizeof *norm);
    if (!in || !norm)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    /* Per-layer widths that are all the same are uniform ones: a stock config carries them. */
    *norm = *cfg;
    if (norm->per_layer)
        mp_model_config_set_shapes(norm, norm->layer);
    cfg = norm;
    MP_TRY(mp_hfconfig_parse(json, path, in));
    if (in->arch != cfg->arch || strcmp(in->model_type, cfg->model_type) != 0 ||
        in->d != cfg->d || in->n_layers != cfg->n_layers)
        MP_FAIL(MP_ERR_INTERNAL, "%s: the new config is not of the same model (family, "
                "hidden size, blocks)", path);
    bool ours = cfg->per_layer || lone_biases(cfg); /* needs modeling_mpiprune */
    if (same_config(in, cfg)) {
        *out = mp_strdup(json);
        root = cJSON_Parse(json);
        if (!*out || !root)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
        *modeling = ours || is_our_auto_map(root); /* the text names the modeling file */
        goto done;
    }
    if (lone_biases(cfg) && !(llama && strcmp(cfg->model_type, "llama") == 0))
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: o_proj/down_proj biases alone are written for "
                "model_type 'llama' only, not '%s'", path, cfg->model_type);
    if (cfg->per_layer && !(llama && strcmp(cfg->model_type, "llama") == 0))
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: writing per-block widths is implemented for "
                "model_type 'llama' only, not '%s' (the modeling file mpiprune writes covers "
                "LLaMA)", path, cfg->model_type);
    if (!llama && cfg->head_dim * cfg->n_heads != cfg->d)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: an OPT model with %lld heads of %lld cannot be written: "
                "stock OPT derives the head width from hidden_size %lld", path,
                (long long)cfg->n_heads, (long long)cfg->head_dim, (long long)cfg->d);
    MP_TRY(mp_model_config_check(cfg, path));

    root = cJSON_Parse(json);
    if (!root)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    bool ok = set_number(root, "num_attention_heads", (double)cfg->n_heads) &&
              set_number(root, llama ? "intermediate_size" : "ffn_dim", (double)cfg->ffn);
    if (ok && llama)
        ok = set_number(root, "num_key_value_heads", (double)cfg->n_kv_heads) &&
             set_number(root, "head_dim", (double)cfg->head_dim);
    if (ok && ours) {
        cJSON *plw = cJSON_CreateObject();
        ok = plw && set_item(root, "per_layer_widths", plw) &&
             cJSON_AddItemToObject(plw, "num_attention_heads", width_array(cfg, 0)) &&
             cJSON_AddItemToObject(plw, "num_key_value_heads", width_array(cfg, 1)) &&
             cJSON_AddItemToObject(plw, "intermediate_size", width_array(cfg, 2));
        cJSON *am = ok ? cJSON_CreateObject() : NULL;
        ok = am && set_item(root, "auto_map", am) &&
             cJSON_AddStringToObject(am, "AutoModelForCausalLM",
                                     "modeling_mpiprune." MP_HFCONFIG_LLAMA_CLASS) != NULL;
        cJSON_DeleteItemFromObjectCaseSensitive(root, "o_proj_bias");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "down_proj_bias");
        if (ok && cfg->o_bias && !cfg->qkv_bias)
            ok = cJSON_AddBoolToObject(root, "o_proj_bias", true) != NULL;
        if (ok && cfg->down_bias)
            ok = cJSON_AddBoolToObject(root, "down_proj_bias", true) != NULL;
        cJSON *arch = ok ? cJSON_CreateArray() : NULL;
        ok = arch && set_item(root, "architectures", arch) &&
             cJSON_AddItemToArray(arch, cJSON_CreateString(MP_HFCONFIG_LLAMA_CLASS));
        *modeling = true;
    } else if (ok) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "per_layer_widths");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "o_proj_bias");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "down_proj_bias");
        if (is_our_auto_map(root)) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "auto_map");
            cJSON *arch = cJSON_CreateArray();
            ok = arch && set_item(root, "architectures", arch) &&
                 cJSON_AddItemToArray(arch, cJSON_CreateString(stock_class(cfg->model_type)));
        }
    }
    if (!ok)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory building the new config", path);
    text = cJSON_Print(root);
    if (!text)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory printing the new config", path);
    size_t len = strlen(text);
    *out = mp_malloc(len + 2);
    if (!*out)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    memcpy(*out, text, len);
    (*out)[len] = '\n';
    (*out)[len + 1] = '\0';

    /* What is written must read back as cfg. */
    MP_TRY(mp_hfconfig_parse(*out, path, in));
    if (!same_config(in, cfg))
        MP_FAIL(MP_ERR_INTERNAL, "%s: the written config does not read back to its widths "
                "and biases",
                path);
done:
    if (st != MP_OK) {
        free(*out);
        *out = NULL;
        *modeling = false;
    }
    free(text);
    free(in);
    free(norm);
    cJSON_Delete(root);
    return st;
}
