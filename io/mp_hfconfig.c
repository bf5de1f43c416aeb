/* mp_hfconfig: a Hugging Face config.json into mp_model_config.
 *
 * Every field that changes the forward pass is read and either mapped or refused. Fields that
 * cannot change the result of an inference forward pass in float32 are ignored:
 *   architectures, _name_or_path, transformers_version, torch_dtype / dtype (weights are
 *   converted to float32 from their safetensors dtype), bos/eos/pad_token_id, prefix,
 *   initializer_range, init_std, use_cache, output_* flags, attention_dropout, dropout,
 *   activation_dropout, hidden_dropout, layerdrop (no dropout at inference), and for qwen2
 *   sliding_window / max_window_layers when use_sliding_window is false (HF does not apply
 *   the window then).
 * Refused (MP_ERR_UNSUPPORTED, naming the field): any rope_scaling, a rope_parameters with a
 * rope_type other than "default", pretraining_tp != 1, hidden_act / activation_function other
 * than silu / relu, partial_rotary_factor != 1, quantization_config, OPT
 * layer_norm_elementwise_affine false, and bias switches that HF ignores for a family
 * (attention_bias / mlp_bias true for mistral and qwen2), since the weights would not match.
 */
#include "mp_alloc.h"
#include "mp_file.h"
#include "mp_hfconfig.h"
#include "mp_json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* config.json files are a few KiB; anything this large is not one. */
#define HFC_MAX_BYTES (64 * 1024 * 1024)

typedef struct {
    const cJSON *root;
    const char *path;
} hfc_ctx;

static const char *hfc_type_name(const cJSON *it)
{
    if (cJSON_IsNull(it))
        return "null";
    if (cJSON_IsBool(it))
        return "a boolean";
    if (cJSON_IsNumber(it))
        return "a number";
    if (cJSON_IsString(it))
        return "a string";
    if (cJSON_IsArray(it))
        return "an array";
    if (cJSON_IsObject(it))
        return "an object";
    return "an invalid value";
}

/* The field, or NULL when absent or JSON null (HF treats null as "use the default"). */
static const cJSON *hfc_field(const hfc_ctx *c, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(c->root, name);
    if (it == NULL || cJSON_IsNull(it))
        return NULL;
    return it;
}

static mp_status hfc_missing(const hfc_ctx *c, const char *name)
{
    return mp_error(MP_ERR_FORMAT, "%s: missing field '%s'", c->path, name);
}

/* Integer field. required: absent or null is an error; else *out = def. */
static mp_status hfc_int(const hfc_ctx *c, const char *name, bool required, int64_t def,
                         int64_t *out)
{
    const cJSON *it = hfc_field(c, name);
    if (it == NULL) {
        if (required)
            return hfc_missing(c, name);
        *out = def;
        return MP_OK;
    }
    if (!cJSON_IsNumber(it))
        return mp_error(MP_ERR_FORMAT, "%s: field '%s' must be an integer, got %s", c->path,
                        name, hfc_type_name(it));
    double v = it->valuedouble;
    /* 2^53: beyond it a double no longer holds every integer exactly. */
    if (!isfinite(v) || v != floor(v) || fabs(v) > 9007199254740992.0)
        return mp_error(MP_ERR_FORMAT, "%s: field '%s' must be an integer, got %.17g", c->path,
                        name, v);
    *out = (int64_t)v;
    return MP_OK;
}

static mp_status hfc_double(const hfc_ctx *c, const char *name, double def, double *out)
{
    const cJSON *it = hfc_field(c, name);
    if (it == NULL) {
        *out = def;
        return MP_OK;
    }
    if (!cJSON_IsNumber(it))
        return mp_error(MP_ERR_FORMAT, "%s: field '%s' must be a number, got %s", c->path, name,
                        hfc_type_name(it));
    if (!isfinite(it->valuedouble))
        return mp_error(MP_ERR_FORMAT, "%s: field '%s' is not a finite number", c->path, name);
    *out = it->valuedouble;
    return MP_OK;
}

static mp_status hfc_bool(const hfc_ctx *c, const char *name, bool def, bool *out)
{
    const cJSON *it = hfc_field(c, name);
    if (it == NULL) {
        *out = def;
        return MP_OK;
    }
    if (!cJSON_IsBool(it))
        return mp_error(MP_ERR_FORMAT, "%s: field '%s' must be true or false, got %s", c->path,
                        name, hfc_type_name(it));
    *out = cJSON_IsTrue(it);
    return MP_OK;
}

/* String field; *out points into the JSON tree (or is def). */
static mp_status hfc_string(const hfc_ctx *c, const char *name, bool required, const char *def,
                            const char **out)
{
    const cJSON *it = hfc_field(c, name);
    if (it == NULL) {
        if (required)
            return hfc_missing(c, name);
        *out = def;
        return MP_OK;
    }
    if (!cJSON_IsString(it))
        return mp_error(MP_ERR_FORMAT, "%s: field '%s' must be a string, got %s", c->path, name,
                        hfc_type_name(it));
    *out = it->valuestring;
    return MP_OK;
}

/* Python's json keeps the last of duplicate keys, cJSON the first: refuse the ambiguity. */
static mp_status hfc_check_duplicates(const hfc_ctx *c)
{
    for (const cJSON *a = c->root->child; a != NULL; a = a->next)
        for (const cJSON *b = a->next; b != NULL; b = b->next)
            if (a->string != NULL && b->string != NULL && strcmp(a->string, b->string) == 0)
                return mp_error(MP_ERR_FORMAT, "%s: duplicate field '%s'", c->path, a->string);
    return MP_OK;
}

/* Refuses fields that ask for something the forward pass does not implement. */
static mp_status hfc_common_refusals(const hfc_ctx *c)
{
    if (hfc_field(c, "quantization_config") != NULL)
        return mp_error(MP_ERR_UNSUPPORTED,
                        "%s: field 'quantization_config': quantized models are not supported",
                        c->path);
    return MP_OK;
}

/* head_dim = d / n_heads when not given; the division must be exact (HF raises otherwise). */
static mp_status hfc_default_head_dim(const hfc_ctx *c, int64_t d, int64_t n_heads,
                                      int64_t *head_dim)
{
    if (n_heads <= 0)
        return mp_error(MP_ERR_FORMAT, "%s: field 'num_attention_heads' must be positive, got "
                        "%lld", c->path, (long long)n_heads);
    if (d % n_heads != 0)
        return mp_error(MP_ERR_FORMAT,
                        "%s: hidden_size %lld is not divisible by num_attention_heads %lld",
                        c->path, (long long)d, (long long)n_heads);
    *head_dim = d / n_heads;
    return MP_OK;
}

static mp_status hfc_rope(const hfc_ctx *c, mp_model_config *cfg)
{
    mp_status st = MP_OK;
    const cJSON *rs = hfc_field(c, "rope_scaling");
    if (rs != NULL) {
        const cJSON *ty = NULL;
        if (cJSON_IsObject(rs)) {
            ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
            if (!cJSON_IsString(ty))
                ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
        }
        if (cJSON_IsString(ty))
            return mp_error(MP_ERR_UNSUPPORTED,
                            "%s: field 'rope_scaling': rope scaling type '%s' is not supported",
                            c->path, ty->valuestring);
        return mp_error(MP_ERR_UNSUPPORTED,
                        "%s: field 'rope_scaling' must be absent or null (rope scaling is not "
                        "supported), got %s", c->path, hfc_type_name(rs));
    }
    MP_TRY(hfc_double(c, "rope_theta", 10000.0, &cfg->rope_theta));

    /* Newer transformers write rope_parameters {"rope_type", "rope_theta"} instead. */
    const cJSON *rp = hfc_field(c, "rope_parameters");
    if (rp != NULL) {
        if (!cJSON_IsObject(rp))
            MP_FAIL(MP_ERR_FORMAT, "%s: field 'rope_parameters' must be an object, got %s",
                    c->path, hfc_type_name(rp));
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
        if (ty != NULL && !cJSON_IsNull(ty)) {
            if (!cJSON_IsString(ty))
                MP_FAIL(MP_ERR_FORMAT, "%s: field 'rope_parameters.rope_type' must be a string",
                        c->path);
            if (strcmp(ty->valuestring, "default") != 0)
                MP_FAIL(MP_ERR_UNSUPPORTED,
                        "%s: field 'rope_parameters': rope type '%s' is not supported",
                        c->path, ty->valuestring);
        }
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(rp, "rope_theta");
        if (th != NULL && !cJSON_IsNull(th)) {
            if (!cJSON_IsNumber(th) || !isfinite(th->valuedouble))
                MP_FAIL(MP_ERR_FORMAT,
                        "%s: field 'rope_parameters.rope_theta' must be a finite number",
                        c->path);
            if (hfc_field(c, "rope_theta") != NULL && th->valuedouble != cfg->rope_theta)
                MP_FAIL(MP_ERR_FORMAT,
                        "%s: field 'rope_theta' (%g) disagrees with rope_parameters.rope_theta "
                        "(%g)", c->path, cfg->rope_theta, th->valuedouble);
            cfg->rope_theta = th->valuedouble;
        }
    }

    double prf = 1.0;
    MP_TRY(hfc_double(c, "partial_rotary_factor", 1.0, &prf));
    if (prf != 1.0)
        MP_FAIL(MP_ERR_UNSUPPORTED,
                "%s: field 'partial_rotary_factor' = %g is not supported (only 1)", c->path, prf);
done:
    return st;
}

/* A bias switch that the HF modeling code of this family does not read. */
static mp_status hfc_refuse_true(const hfc_ctx *c, const char *name, const char *family)
{
    mp_status st = MP_OK;
    bool v = false;
    MP_TRY(hfc_bool(c, name, false, &v));
    if (v)
        MP_FAIL(MP_ERR_UNSUPPORTED,
                "%s: field '%s' = true is not supported for model_type '%s' (HF ignores it)",
                c->path, name, family);
done:
    return st;
}

static mp_status hfc_llama(const hfc_ctx *c, const char *mt, mp_model_config *cfg)
{
    mp_status st = MP_OK;
    bool is_mistral = strcmp(mt, "mistral") == 0;
    bool is_qwen2 = strcmp(mt, "qwen2") == 0;

    cfg->arch = MP_ARCH_LLAMA;
    MP_TRY(hfc_int(c, "hidden_size", true, 0, &cfg->d));
    MP_TRY(hfc_int(c, "intermediate_size", true, 0, &cfg->ffn));
    MP_TRY(hfc_int(c, "num_hidden_layers", true, 0, &cfg->n_layers));
    MP_TRY(hfc_int(c, "num_attention_heads", true, 0, &cfg->n_heads));
    MP_TRY(hfc_int(c, "vocab_size", true, 0, &cfg->vocab));
    MP_TRY(hfc_int(c, "max_position_embeddings", true, 0, &cfg->max_pos));
    MP_TRY(hfc_int(c, "num_key_value_heads", false, cfg->n_heads, &cfg->n_kv_heads));
    if (hfc_field(c, "head_dim") != NULL) {
        MP_TRY(hfc_int(c, "head_dim", true, 0, &cfg->head_dim));
    } else {
        MP_TRY(hfc_default_head_dim(c, cfg->d, cfg->n_heads, &cfg->head_dim));
    }
    MP_TRY(hfc_double(c, "rms_norm_eps", 1e-6, &cfg->norm_eps));
    MP_TRY(hfc_rope(c, cfg));
    MP_TRY(hfc_bool(c, "tie_word_embeddings", false, &cfg->tie_embeddings));

    const char *act = NULL;
    MP_TRY(hfc_string(c, "hidden_act", false, "silu", &act));
    if (strcmp(act, "silu") != 0)
        MP_FAIL(MP_ERR_UNSUPPORTED,
                "%s: field 'hidden_act' = '%s' is not supported for model_type '%s' (only "
                "'silu')", c->path, act, mt);

    int64_t tp = 1;
    MP_TRY(hfc_int(c, "pretraining_tp", false, 1, &tp));
    if (tp != 1)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: field 'pretraining_tp' = %lld is not supported (only 1)",
                c->path, (long long)tp);

    if (is_qwen2) {
        cfg->qkv_bias = true;
        cfg->o_bias = false;
        cfg->mlp_bias = false;
        MP_TRY(hfc_refuse_true(c, "attention_bias", mt));
        MP_TRY(hfc_refuse_true(c, "mlp_bias", mt));
    } else if (is_mistral) {
        cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = false;
        MP_TRY(hfc_refuse_true(c, "attention_bias", mt));
        MP_TRY(hfc_refuse_true(c, "mlp_bias", mt));
    } else {
        bool ab = false;
        MP_TRY(hfc_bool(c, "attention_bias", false, &ab));
        cfg->qkv_bias = cfg->o_bias = ab;
        MP_TRY(hfc_bool(c, "mlp_bias", false, &cfg->mlp_bias));
    }
    /* o_proj/down_proj biases alone (FLAP's bias compensation): keys of modeling_mpiprune,
     * which stock transformers would ignore, so they come with per_layer_widths only. */
    bool ob = false, db = false;
    MP_TRY(hfc_bool(c, "o_proj_bias", false, &ob));
    MP_TRY(hfc_bool(c, "down_proj_bias", false, &db));
    if ((ob || db) && (is_qwen2 || is_mistral || hfc_field(c, "per_layer_widths") == NULL))
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: field '%s' = true is read by modeling_mpiprune only "
                "(model_type 'llama' with per_layer_widths); stock transformers would ignore it",
                c->path, ob ? "o_proj_bias" : "down_proj_bias");
    cfg->o_bias = cfg->o_bias || ob;
    cfg->down_bias = db && !cfg->mlp_bias;

    cfg->sliding_window = 0;
    bool use_sw = is_mistral;
    if (is_qwen2)
        MP_TRY(hfc_bool(c, "use_sliding_window", false, &use_sw));
    if (use_sw && hfc_field(c, "sliding_window") != NULL) {
        MP_TRY(hfc_int(c, "sliding_window", true, 0, &cfg->sliding_window));
        if (cfg->sliding_window <= 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: field 'sliding_window' must be positive or null, got "
                    "%lld", c->path, (long long)cfg->sliding_window);
    }

    cfg->norm_before = true;
    cfg->final_norm = true;
    cfg->word_embed_proj_dim = cfg->d;
done:
    return st;
}

static mp_status hfc_opt(const hfc_ctx *c, mp_model_config *cfg)
{
    mp_status st = MP_OK;
    cfg->arch = MP_ARCH_OPT;
    MP_TRY(hfc_int(c, "hidden_size", true, 0, &cfg->d));
    MP_TRY(hfc_int(c, "ffn_dim", true, 0, &cfg->ffn));
    MP_TRY(hfc_int(c, "num_hidden_layers", true, 0, &cfg->n_layers));
    MP_TRY(hfc_int(c, "num_attention_heads", true, 0, &cfg->n_heads));
    MP_TRY(hfc_int(c, "vocab_size", true, 0, &cfg->vocab));
    MP_TRY(hfc_int(c, "max_position_embeddings", true, 0, &cfg->max_pos));
    cfg->n_kv_heads = cfg->n_heads;
    /* OPT has no head_dim key; a structurally pruned OPT (per_layer_widths) carries one, since
     * its head count no longer divides hidden_size. */
    if (hfc_field(c, "head_dim") != NULL && hfc_field(c, "per_layer_widths") != NULL) {
        MP_TRY(hfc_int(c, "head_dim", true, 0, &cfg->head_dim));
    } else {
        MP_TRY(hfc_default_head_dim(c, cfg->d, cfg->n_heads, &cfg->head_dim));
    }

    MP_TRY(hfc_bool(c, "do_layer_norm_before", true, &cfg->norm_before));
    bool remove_final = false;
    MP_TRY(hfc_bool(c, "_remove_final_layer_norm", false, &remove_final));
    cfg->final_norm = cfg->norm_before && !remove_final;
    MP_TRY(hfc_int(c, "word_embed_proj_dim", false, cfg->d, &cfg->word_embed_proj_dim));

    const char *act = NULL;
    MP_TRY(hfc_string(c, "activation_function", false, "relu", &act));
    if (strcmp(act, "relu") != 0)
        MP_FAIL(MP_ERR_UNSUPPORTED,
                "%s: field 'activation_function' = '%s' is not supported for model_type 'opt' "
                "(only 'relu')", c->path, act);

    bool bias = true;
    MP_TRY(hfc_bool(c, "enable_bias", true, &bias));
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = bias;

    bool affine = true;
    MP_TRY(hfc_bool(c, "layer_norm_elementwise_affine", true, &affine));
    if (!affine)
        MP_FAIL(MP_ERR_UNSUPPORTED,
                "%s: field 'layer_norm_elementwise_affine' = false is not supported", c->path);

    cfg->norm_eps = 1e-5;
    MP_TRY(hfc_bool(c, "tie_word_embeddings", true, &cfg->tie_embeddings));
    cfg->rope_theta = 0.0;
    cfg->sliding_window = 0;
done:
    return st;
}

/* One list of per_layer_widths: n_layers non-negative integers. */
static mp_status hfc_width_list(const hfc_ctx *c, const cJSON *obj, const char *key,
                                int64_t n_layers, int64_t *out, size_t stride)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (a == NULL)
        return mp_error(MP_ERR_FORMAT, "%s: field 'per_layer_widths.%s' is missing", c->path,
                        key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n_layers)
        return mp_error(MP_ERR_FORMAT, "%s: field 'per_layer_widths.%s' must be an array of "
                        "num_hidden_layers (%lld) integers", c->path, key, (long long)n_layers);
    int64_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
        if (!(v >= 0.0 && v <= 9007199254740992.0) || v != floor(v))
            return mp_error(MP_ERR_FORMAT, "%s: field 'per_layer_widths.%s[%lld]' must be a "
                            "non-negative integer", c->path, key, (long long)i);
        *(int64_t *)((char *)out + (size_t)i * stride) = (int64_t)v;
        i++;
    }
    return MP_OK;
}

/* The per-layer convention (io/mp_hfconfig.h): widths of every block, the stock keys holding the
 * largest. */
static mp_status hfc_per_layer(const hfc_ctx *c, mp_model_config *cfg)
{
    const cJSON *obj = hfc_field(c, "per_layer_widths");
    if (obj == NULL)
        return MP_OK;
    bool llama = cfg->arch == MP_ARCH_LLAMA;
    const char *ffn_key = llama ? "intermediate_size" : "ffn_dim";
    if (!cJSON_IsObject(obj))
        return mp_error(MP_ERR_FORMAT, "%s: field 'per_layer_widths' must be an object, got %s",
                        c->path, hfc_type_name(obj));
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (strcmp(it->string, "num_attention_heads") != 0 && strcmp(it->string, ffn_key) != 0 &&
            !(llama && strcmp(it->string, "num_key_value_heads") == 0))
            return mp_error(MP_ERR_FORMAT, "%s: unknown field 'per_layer_widths.%s'", c->path,
                            it->string);
    }
    if (cfg->n_layers > MP_MAX_LAYERS)
        return mp_error(MP_ERR_UNSUPPORTED, "%s: per_layer_widths for %lld layers; at most %d",
                        c->path, (long long)cfg->n_layers, MP_MAX_LAYERS);
    mp_block_shape *L = cfg->layer;
    size_t stride = sizeof *L;
    mp_status st = hfc_width_list(c, obj, "num_attention_heads", cfg->n_layers, &L[0].n_heads,
                                  stride);
    if (st == MP_OK && llama)
        st = hfc_width_list(c, obj, "num_key_value_heads", cfg->n_layers, &L[0].n_kv_heads,
                            stride);
    if (st == MP_OK)
        st = hfc_width_list(c, obj, ffn_key, cfg->n_layers, &L[0].ffn, stride);
    if (st != MP_OK)
        return st;
    for (int64_t l = 0; l < cfg->n_layers && !llama; l++)
        L[l].n_kv_heads = L[l].n_heads;
    cfg->per_layer = true;
    return MP_OK;
}

mp_status mp_hfconfig_parse(const char *json, const char *path, mp_model_config *cfg)
{
    mp_status st = MP_OK;
    cJSON *root = NULL;
    mp_model_config tmp;
    memset(&tmp, 0, sizeof tmp);

    if (json == NULL || path == NULL || cfg == NULL)
        MP_FAIL(MP_ERR_INTERNAL, "mp_hfconfig_parse: NULL argument");

    const char *end = NULL;
    bool oom = false;
    root = mp_json_parse(json, &end, &oom);
    if (root == NULL && oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory parsing the JSON", path);
    if (root == NULL) {
        size_t off = end != NULL && end >= json ? (size_t)(end - json) : 0;
        MP_FAIL(MP_ERR_FORMAT, "%s: malformed JSON near byte %zu", path, off);
    }
    if (!cJSON_IsObject(root))
        MP_FAIL(MP_ERR_FORMAT, "%s: top level must be a JSON object, got %s", path,
                hfc_type_name(root));

    hfc_ctx c = {root, path};
    MP_TRY(hfc_check_duplicates(&c));
    const char *mt = NULL;
    MP_TRY(hfc_string(&c, "model_type", true, NULL, &mt));
    if (strlen(mt) >= sizeof tmp.model_type)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: model_type '%.40s...' is not supported (supported: "
                "llama, mistral, qwen2, opt)", path, mt);
    if (strcmp(mt, "llama") == 0 || strcmp(mt, "mistral") == 0 || strcmp(mt, "qwen2") == 0) {
        MP_TRY(hfc_common_refusals(&c));
        MP_TRY(hfc_llama(&c, mt, &tmp));
    } else if (strcmp(mt, "opt") == 0) {
        MP_TRY(hfc_common_refusals(&c));
        MP_TRY(hfc_opt(&c, &tmp));
    } else {
        MP_FAIL(MP_ERR_UNSUPPORTED,
                "%s: model_type '%s' is not supported (supported: llama, mistral, qwen2, opt)",
                path, mt);
    }
    memcpy(tmp.model_type, mt, strlen(mt) + 1);
    MP_TRY(hfc_per_layer(&c, &tmp));

    MP_TRY(mp_model_config_check(&tmp, path));
    *cfg = tmp;
done:
    cJSON_Delete(root);
    return st;
}

mp_status mp_hfconfig_load(const char *path, mp_model_config *cfg)
{
    mp_status st = MP_OK;
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;

    MP_TRY(mp_file_fopen_regular(path, &f, NULL));
    for (;;) {
        if (cap - len < 4097) {
            size_t ncap = cap == 0 ? 16384 : cap * 2;
            if (ncap > (size_t)HFC_MAX_BYTES + 4097)
                MP_FAIL(MP_ERR_FORMAT, "%s: larger than %d bytes, not a config.json", path,
                        HFC_MAX_BYTES);
            char *nb = mp_realloc(buf, ncap);
            if (nb == NULL)
                MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, ncap);
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                MP_FAIL(MP_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
    }
    buf[len] = '\0';
    if (strlen(buf) != len)
        MP_FAIL(MP_ERR_FORMAT, "%s: malformed JSON near byte %zu (NUL byte)", path, strlen(buf));
    MP_TRY(mp_hfconfig_parse(buf, path, cfg));
done:
    if (f != NULL)
        fclose(f);
    free(buf);
    return st;
}
