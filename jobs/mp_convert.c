#define _POSIX_C_SOURCE 200809L

#include "mp_convert.h"

#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "mp_alloc.h"
#include "mp_dtype.h"
#include "mp_gguf.h"
#include "mp_hfconfig.h"
#include "mp_modeldir.h"
#include "mp_outdir.h"
#include "mp_st_stream.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The tensors of a LLaMA-family Hugging Face model with cfg's widths, in the order
 * transformers saves them: embeddings, each block (absent sub-blocks have none), final norm,
 * head. names[] owns its strings. */
static mp_status hf_specs(const mp_model_config *c, mp_dtype dt, mp_sts_spec **out, size_t *n)
{
    size_t cap = 4 + (size_t)c->n_layers * 16, k = 0;
    mp_sts_spec *sp = mp_calloc(cap, sizeof *sp);
    char name[320], base[256];
    if (!sp)
        return mp_error(MP_ERR_NOMEM, "cannot allocate the tensor list");
#define ADD(nm, d0, d1)                                                                    \
    do {                                                                                   \
        sp[k].name = mp_strdup(nm);                                                        \
        sp[k].dtype = (d1) > 0 ? dt : MP_DT_F32; /* norms and biases stay float32 */       \
        sp[k].ndim = (d1) > 0 ? 2 : 1;                                                     \
        sp[k].shape[0] = (d0);                                                             \
        sp[k].shape[1] = (d1);                                                             \
        if (!sp[k++].name)                                                                 \
            goto nomem;                                                                    \
    } while (0)
    ADD("model.embed_tokens.weight", c->vocab, c->d);
    for (int64_t l = 0; l < c->n_layers; l++) {
        mp_block_shape s = mp_layer_shape(c, l);
        if (s.n_heads > 0) {
            snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
            ADD(name, c->d, 0);
        }
        for (int id = 0; id < MP_LIN_COUNT; id++) {
            int64_t rows, cols;
            if (!mp_lin_present(c, l, (mp_lin_id)id))
                continue;
            if (id == MP_LIN_GATE && s.ffn > 0) {
                snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight",
                         (long long)l);
                ADD(name, c->d, 0);
            }
            mp_lin_dims(c, l, (mp_lin_id)id, &rows, &cols);
            mp_lin_full_name(c, l, (mp_lin_id)id, base, sizeof base);
            snprintf(name, sizeof name, "%s.weight", base);
            ADD(name, rows, cols);
            if (mp_lin_has_bias(c, (mp_lin_id)id)) {
                snprintf(name, sizeof name, "%s.bias", base);
                ADD(name, rows, 0);
            }
        }
    }
    ADD("model.norm.weight", c->d, 0);
    if (!c->tie_embeddings)
        ADD("lm_head.weight", c->vocab, c->d);
#undef ADD
    *out = sp;
    *n = k;
    return MP_OK;
nomem:
    for (size_t i = 0; i < k; i++)
        free((char *)sp[i].name);
    free(sp);
    return mp_error(MP_ERR_NOMEM, "cannot allocate the tensor list");
}

/* config.json of a model without one (a GGUF input): the LLaMA keys mp_hfconfig_write then
 * completes with the widths. */
static char *base_config(const mp_model_config *c)
{
    cJSON *j = cJSON_CreateObject(), *arch = cJSON_CreateStringArray(
                                         (const char *[]){"LlamaForCausalLM"}, 1);
    char *text = NULL;
    bool ok = j && arch && cJSON_AddItemToObject(j, "architectures", arch);
    if (!ok)
        cJSON_Delete(arch);
    ok = ok && cJSON_AddStringToObject(j, "model_type", "llama") &&
         cJSON_AddNumberToObject(j, "hidden_size", (double)c->d) &&
         cJSON_AddNumberToObject(j, "intermediate_size", (double)c->ffn) &&
         cJSON_AddNumberToObject(j, "num_hidden_layers", (double)c->n_layers) &&
         cJSON_AddNumberToObject(j, "num_attention_heads", (double)c->n_heads) &&
         cJSON_AddNumberToObject(j, "num_key_value_heads", (double)c->n_kv_heads) &&
         cJSON_AddNumberToObject(j, "head_dim", (double)c->head_dim) &&
         cJSON_AddNumberToObject(j, "vocab_size", (double)c->vocab) &&
         cJSON_AddNumberToObject(j, "max_position_embeddings", (double)c->max_pos) &&
         cJSON_AddNumberToObject(j, "rms_norm_eps", c->norm_eps) &&
         cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta) &&
         cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings) &&
         cJSON_AddBoolToObject(j, "attention_bias", c->qkv_bias) &&
         cJSON_AddBoolToObject(j, "mlp_bias", c->mlp_bias) &&
         cJSON_AddStringToObject(j, "hidden_act", "silu") &&
         cJSON_AddStringToObject(j, "torch_dtype", "float32");
    if (ok)
        text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

/* A Hugging Face model directory OUT from any input: every tensor read through the weight
 * source (GGUF: dequantised, Q/K rows back in rotate_half order) and streamed into
 * model.safetensors, config.json from the input's (or built for a GGUF input), the modeling
 * file for per-block widths, the input directory's tokenizer files. Atomic (mp_outdir). */
static mp_status write_hf(const mp_convert_opts *o, const mp_modeldir *md, mp_dtype dt)
{
    mp_status st = MP_OK;
    mp_outdir od = {0};
    mp_sts *w = NULL;
    mp_sts_spec *sp = NULL;
    size_t n = 0;
    float *buf = NULL;
    char *base = NULL, *cfg_text = NULL;
    bool created = false, modeling = false;
    if (md->cfg.arch != MP_ARCH_LLAMA)
        return mp_error(MP_ERR_UNSUPPORTED, "%s: convert writes LLaMA-family Hugging Face "
                        "directories only (use a .gguf OUT)", o->out);
    MP_TRY(hf_specs(&md->cfg, dt, &sp, &n));
    MP_TRY(mp_outdir_create(&od, o->out, md->gguf ? NULL : md->dir));
    created = true;
    mp_sts_layout lay = {0};
    MP_TRY(mp_sts_create(od.tmp, sp, n, &lay, &w));
    int64_t most = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t e = sp[i].shape[0] * (sp[i].ndim == 2 ? sp[i].shape[1] : 1);
        most = e > most ? e : most;
    }
    if (!(buf = mp_malloc((size_t)most * sizeof *buf)))
        MP_FAIL(MP_ERR_NOMEM, "cannot allocate %lld floats", (long long)most);
    /* One tensor in memory at a time. */
    for (size_t i = 0; i < n; i++) {
        int64_t e = sp[i].shape[0] * (sp[i].ndim == 2 ? sp[i].shape[1] : 1);
        MP_TRY(md->src.load(md->src.ctx, sp[i].name, sp[i].ndim, sp[i].shape, buf));
        MP_TRY(mp_sts_put_f32(w, sp[i].name, buf, e));
    }
    MP_TRY(mp_sts_close(&w));
    if (md->gguf) {
        if (!(base = base_config(&md->cfg)))
            MP_FAIL(MP_ERR_NOMEM, "cannot build config.json");
    } else {
        FILE *f = fopen(md->config_path, "rb");
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0)
            len = ftell(f);
        if (len >= 0 && fseek(f, 0, SEEK_SET) == 0 && (base = mp_malloc((size_t)len + 1)) &&
            fread(base, 1, (size_t)len, f) == (size_t)len)
            base[len] = '\0';
        else {
            free(base);
            base = NULL;
        }
        if (f)
            fclose(f);
        if (!base)
            MP_FAIL(MP_ERR_IO, "%s: cannot read", md->config_path);
    }
    MP_TRY(mp_hfconfig_write(base, md->config_path, &md->cfg, &cfg_text, &modeling));
    MP_TRY(mp_outdir_write_file(&od, "config.json", cfg_text));
    if (modeling)
        MP_TRY(mp_outdir_write_file(&od, "modeling_mpiprune.py", mp_hfconfig_modeling_py));
    MP_TRY(mp_outdir_commit(&od));
    created = false;
done:
    mp_sts_abort(&w);
    if (created)
        mp_outdir_abort(&od);
    for (size_t i = 0; sp && i < n; i++)
        free((char *)sp[i].name);
    free(sp);
    free(buf);
    free(base);
    free(cfg_text);
    return st;
}

/* The conversion itself, on one rank. */
static mp_status convert_local(const mp_convert_opts *o)
{
    mp_status st = MP_OK;
    mp_modeldir md = {0};
    struct stat sb;
    mp_dtype dt = strcmp(o->dtype, "f16") == 0    ? MP_DT_F16
                  : strcmp(o->dtype, "bf16") == 0 ? MP_DT_BF16
                                                  : MP_DT_F32;
    if (lstat(o->out, &sb) == 0)
        return mp_error(MP_ERR_ARG, "%s: exists; mpiprune does not overwrite", o->out);
    MP_TRY(mp_modeldir_open(o->in, &md));
    if (ends_with(o->out, ".gguf"))
        MP_TRY(mp_gguf_write_model(o->out, &md.cfg, &md.src, dt, md.gguf ? md.gg : NULL));
    else
        MP_TRY(write_hf(o, &md, dt));
done:
    mp_modeldir_close(&md);
    return st;
}

mp_status mp_convert_run(const mp_convert_opts *o, const mp_comm *comm)
{
    mp_status st = MP_OK, gst = MP_OK;
    int who = -1;
    if (mp_comm_rank(comm) == 0)
        st = convert_local(o);
    MP_TRY(mp_comm_agree(comm, st, &gst, &who));
    st = gst; /* the failing rank keeps its message, the others say who reports it */
done:
    return st;
}
