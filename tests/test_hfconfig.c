/* io/mp_hfconfig: Hugging Face config.json -> mp_model_config, defaults and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mp_hfconfig.h"
#include "mp_json.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>

#define CFG_PATH "test/config.json"

/* The message names the file and, when given, the field. */
static void assert_msg(const char *file, const char *field)
{
    const char *m = mp_error_message();
    if (strstr(m, file) == NULL || (field != NULL && strstr(m, field) == NULL))
        fail_msg("message '%s' does not name '%s' and '%s'", m, file, field ? field : "");
    if (strchr(m, '\n') != NULL)
        fail_msg("message '%s' is more than one line", m);
}

static mp_status parse(const char *json, mp_model_config *cfg)
{
    memset(cfg, 0x5a, sizeof *cfg);
    mp_error_clear();
    return mp_hfconfig_parse(json, CFG_PATH, cfg);
}

static void test_fixture(void **state)
{
    (void)state;
    mp_model_config c;
    const char *path = MP_FIXTURE_DIR "/config.json";
    mp_status st = mp_hfconfig_load(path, &c);
    if (st != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_int_equal(c.arch, MP_ARCH_LLAMA);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.d, 64);
    assert_int_equal(c.ffn, 172);
    assert_int_equal(c.n_layers, 5);
    assert_int_equal(c.n_heads, 8);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.vocab, 512);
    assert_int_equal(c.max_pos, 512);
    assert_int_equal(c.sliding_window, 0);
    assert_true(c.norm_eps == 1e-5);
    assert_true(c.rope_theta == 10000.0);
    assert_true(c.tie_embeddings);
    assert_false(c.qkv_bias);
    assert_false(c.o_bias);
    assert_false(c.mlp_bias);
    assert_true(c.norm_before);
    assert_true(c.final_norm);
    assert_int_equal(c.word_embed_proj_dim, 64);
}

static const char *opt125m =
    "{\"_name_or_path\": \"facebook/opt-125m\", \"activation_dropout\": 0.0,"
    " \"activation_function\": \"relu\", \"architectures\": [\"OPTForCausalLM\"],"
    " \"attention_dropout\": 0.0, \"bos_token_id\": 2, \"do_layer_norm_before\": true,"
    " \"dropout\": 0.1, \"eos_token_id\": 2, \"ffn_dim\": 3072, \"hidden_size\": 768,"
    " \"init_std\": 0.02, \"layerdrop\": 0.0, \"max_position_embeddings\": 2048,"
    " \"model_type\": \"opt\", \"num_attention_heads\": 12, \"num_hidden_layers\": 12,"
    " \"pad_token_id\": 1, \"prefix\": \"</s>\", \"torch_dtype\": \"float16\","
    " \"transformers_version\": \"4.21.0.dev0\", \"use_cache\": true, \"vocab_size\": 50272,"
    " \"word_embed_proj_dim\": 768}";

static void test_opt125m(void **state)
{
    (void)state;
    mp_model_config c;
    if (parse(opt125m, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_int_equal(c.arch, MP_ARCH_OPT);
    assert_string_equal(c.model_type, "opt");
    assert_int_equal(c.d, 768);
    assert_int_equal(c.ffn, 3072);
    assert_int_equal(c.n_layers, 12);
    assert_int_equal(c.n_heads, 12);
    assert_int_equal(c.n_kv_heads, 12);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.vocab, 50272);
    assert_int_equal(c.max_pos, 2048);
    assert_int_equal(c.word_embed_proj_dim, 768);
    assert_int_equal(c.sliding_window, 0);
    assert_true(c.norm_eps == 1e-5);
    assert_true(c.norm_before);
    assert_true(c.final_norm);
    assert_true(c.tie_embeddings);
    assert_true(c.qkv_bias);
    assert_true(c.o_bias);
    assert_true(c.mlp_bias);
}

static void test_opt350m(void **state)
{
    (void)state;
    const char *json =
        "{\"activation_function\": \"relu\", \"architectures\": [\"OPTForCausalLM\"],"
        " \"do_layer_norm_before\": false, \"ffn_dim\": 4096, \"hidden_size\": 1024,"
        " \"max_position_embeddings\": 2048, \"model_type\": \"opt\","
        " \"num_attention_heads\": 16, \"num_hidden_layers\": 24, \"vocab_size\": 50272,"
        " \"word_embed_proj_dim\": 512, \"torch_dtype\": \"float16\"}";
    mp_model_config c;
    if (parse(json, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_int_equal(c.arch, MP_ARCH_OPT);
    assert_int_equal(c.d, 1024);
    assert_int_equal(c.ffn, 4096);
    assert_int_equal(c.n_layers, 24);
    assert_int_equal(c.n_heads, 16);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.word_embed_proj_dim, 512);
    assert_false(c.norm_before);
    assert_false(c.final_norm);
    assert_true(c.tie_embeddings);
    assert_true(c.qkv_bias && c.o_bias && c.mlp_bias);
}

static void test_opt_options(void **state)
{
    (void)state;
    mp_model_config c;
    const char *json =
        "{\"model_type\": \"opt\", \"hidden_size\": 64, \"ffn_dim\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"_remove_final_layer_norm\": true,"
        " \"enable_bias\": false, \"tie_word_embeddings\": false,"
        " \"layer_norm_elementwise_affine\": true}";
    if (parse(json, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_true(c.norm_before);
    assert_false(c.final_norm);
    assert_false(c.qkv_bias || c.o_bias || c.mlp_bias);
    assert_false(c.tie_embeddings);
    assert_int_equal(c.word_embed_proj_dim, 64);

    const char *gelu =
        "{\"model_type\": \"opt\", \"hidden_size\": 64, \"ffn_dim\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"activation_function\": \"gelu\"}";
    assert_int_equal(parse(gelu, &c), MP_ERR_UNSUPPORTED);
    assert_msg(CFG_PATH, "activation_function");

    const char *noaffine =
        "{\"model_type\": \"opt\", \"hidden_size\": 64, \"ffn_dim\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"layer_norm_elementwise_affine\": false}";
    assert_int_equal(parse(noaffine, &c), MP_ERR_UNSUPPORTED);
    assert_msg(CFG_PATH, "layer_norm_elementwise_affine");

    const char *indiv =
        "{\"model_type\": \"opt\", \"hidden_size\": 65, \"ffn_dim\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64}";
    assert_int_equal(parse(indiv, &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "num_attention_heads");
}

/* Qwen2-0.5B's config.json. */
static void test_qwen2(void **state)
{
    (void)state;
    const char *json =
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0,"
        " \"bos_token_id\": 151643, \"eos_token_id\": 151643, \"hidden_act\": \"silu\","
        " \"hidden_size\": 896, \"initializer_range\": 0.02, \"intermediate_size\": 4864,"
        " \"max_position_embeddings\": 131072, \"max_window_layers\": 24,"
        " \"model_type\": \"qwen2\", \"num_attention_heads\": 14, \"num_hidden_layers\": 24,"
        " \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0,"
        " \"sliding_window\": 131072, \"tie_word_embeddings\": true,"
        " \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.40.1\","
        " \"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}";
    mp_model_config c;
    if (parse(json, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_int_equal(c.arch, MP_ARCH_LLAMA);
    assert_string_equal(c.model_type, "qwen2");
    assert_int_equal(c.d, 896);
    assert_int_equal(c.n_heads, 14);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.sliding_window, 0);
    assert_true(c.rope_theta == 1e6);
    assert_true(c.norm_eps == 1e-6);
    assert_true(c.qkv_bias);
    assert_false(c.o_bias);
    assert_false(c.mlp_bias);
    assert_true(c.tie_embeddings);

    const char *sw =
        "{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"use_sliding_window\": true,"
        " \"sliding_window\": 32}";
    if (parse(sw, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_int_equal(c.sliding_window, 32);
}

static void test_mistral(void **state)
{
    (void)state;
    const char *json =
        "{\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
        " \"vocab_size\": 100, \"max_position_embeddings\": 64, \"sliding_window\": 16}";
    mp_model_config c;
    if (parse(json, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_string_equal(c.model_type, "mistral");
    assert_int_equal(c.sliding_window, 16);
    assert_false(c.qkv_bias || c.o_bias || c.mlp_bias);

    const char *nosw =
        "{\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"sliding_window\": null}";
    if (parse(nosw, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_int_equal(c.sliding_window, 0);
}

static void test_llama_bias(void **state)
{
    (void)state;
    const char *json =
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"attention_bias\": true, \"mlp_bias\": false}";
    mp_model_config c;
    if (parse(json, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_true(c.qkv_bias);
    assert_true(c.o_bias);
    assert_false(c.mlp_bias);

    const char *mlp =
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"mlp_bias\": true}";
    if (parse(mlp, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_false(c.qkv_bias || c.o_bias);
    assert_true(c.mlp_bias);
}

static void test_llama_defaults(void **state)
{
    (void)state;
    const char *json =
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"head_dim\": null, \"rope_scaling\": null}";
    mp_model_config c;
    if (parse(json, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.norm_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_false(c.tie_embeddings);
    assert_false(c.qkv_bias || c.o_bias || c.mlp_bias);
    assert_true(c.norm_before && c.final_norm);
    assert_int_equal(c.word_embed_proj_dim, 64);
    assert_int_equal(c.sliding_window, 0);

    /* transformers 5 style rope_parameters */
    const char *rp =
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64,"
        " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}}";
    if (parse(rp, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_true(c.rope_theta == 500000.0);
}

static const char *llama_base_fmt =
    "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
    " \"max_position_embeddings\": 64, %s}";

/* Parses the base llama config plus `extra` fields; expects `code` naming `field`. */
static void expect_refused(const char *extra, mp_status code, const char *field)
{
    char json[2048];
    snprintf(json, sizeof json, llama_base_fmt, extra);
    mp_model_config c;
    mp_status st = parse(json, &c);
    if (st != code)
        fail_msg("'%s': status %d (%s), expected %d; message '%s'", extra, (int)st,
                 mp_status_str(st), (int)code, mp_error_message());
    assert_msg(CFG_PATH, field);
}

static void test_err_missing_field(void **state)
{
    (void)state;
    mp_model_config c;
    const char *json =
        "{\"model_type\": \"llama\", \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64}";
    assert_int_equal(parse(json, &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "hidden_size");
    assert_non_null(strstr(mp_error_message(), "missing"));

    assert_int_equal(parse("{\"hidden_size\": 4}", &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "model_type");

    const char *opt =
        "{\"model_type\": \"opt\", \"hidden_size\": 64,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64}";
    assert_int_equal(parse(opt, &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "ffn_dim");
}

static void test_err_wrong_type(void **state)
{
    (void)state;
    mp_model_config c;
    const char *json =
        "{\"model_type\": \"llama\", \"hidden_size\": \"64\", \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64}";
    assert_int_equal(parse(json, &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "hidden_size");

    expect_refused("\"num_key_value_heads\": 2.5", MP_ERR_FORMAT, "num_key_value_heads");
    expect_refused("\"tie_word_embeddings\": 1", MP_ERR_FORMAT, "tie_word_embeddings");
    expect_refused("\"rms_norm_eps\": \"1e-5\"", MP_ERR_FORMAT, "rms_norm_eps");
    expect_refused("\"hidden_act\": 3", MP_ERR_FORMAT, "hidden_act");
    assert_int_equal(parse("{\"model_type\": 7}", &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "model_type");
    assert_int_equal(parse("[1, 2]", &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, NULL);
    expect_refused("\"hidden_size\": 64", MP_ERR_FORMAT, "hidden_size"); /* duplicate */
}

static void test_err_malformed(void **state)
{
    (void)state;
    mp_model_config c;
    assert_int_equal(parse("{\"model_type\": \"llama\", \"hidden_size\": 64,,}", &c),
                     MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "malformed JSON");
    assert_int_equal(parse("", &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "malformed JSON");
    assert_int_equal(parse("{\"model_type\": \"llama\"} trailing", &c), MP_ERR_FORMAT);
    assert_msg(CFG_PATH, "malformed JSON");
}

static void test_err_model_type(void **state)
{
    (void)state;
    mp_model_config c;
    assert_int_equal(parse("{\"model_type\": \"gpt2\", \"n_embd\": 768}", &c),
                     MP_ERR_UNSUPPORTED);
    assert_msg(CFG_PATH, "gpt2");
    assert_non_null(strstr(mp_error_message(), "model_type"));
    assert_non_null(strstr(mp_error_message(), "llama, mistral, qwen2, opt"));
}

static void test_err_rope_scaling(void **state)
{
    (void)state;
    expect_refused("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}",
                   MP_ERR_UNSUPPORTED, "rope_scaling");
    assert_non_null(strstr(mp_error_message(), "linear"));
    expect_refused("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}",
                   MP_ERR_UNSUPPORTED, "rope_scaling");
    assert_non_null(strstr(mp_error_message(), "llama3"));
    expect_refused("\"rope_scaling\": 2", MP_ERR_UNSUPPORTED, "rope_scaling");
    expect_refused("\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
                   MP_ERR_UNSUPPORTED, "rope_parameters");
}

static void test_err_other_refusals(void **state)
{
    (void)state;
    expect_refused("\"hidden_act\": \"gelu\"", MP_ERR_UNSUPPORTED, "hidden_act");
    assert_non_null(strstr(mp_error_message(), "gelu"));
    expect_refused("\"pretraining_tp\": 2", MP_ERR_UNSUPPORTED, "pretraining_tp");
    expect_refused("\"partial_rotary_factor\": 0.5", MP_ERR_UNSUPPORTED,
                   "partial_rotary_factor");
    expect_refused("\"quantization_config\": {\"quant_method\": \"gptq\"}", MP_ERR_UNSUPPORTED,
                   "quantization_config");
    expect_refused("\"num_key_value_heads\": 3", MP_ERR_FORMAT, "num_key_value_heads");
    expect_refused("\"num_key_value_heads\": 0", MP_ERR_FORMAT, "num_key_value_heads");

    mp_model_config c;
    const char *mistral_bias =
        "{\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"attention_bias\": true}";
    assert_int_equal(parse(mistral_bias, &c), MP_ERR_UNSUPPORTED);
    assert_msg(CFG_PATH, "attention_bias");
}

static void test_err_missing_file(void **state)
{
    (void)state;
    mp_model_config c;
    const char *path = MP_FIXTURE_DIR "/no_such_dir/config.json";
    mp_error_clear();
    assert_int_equal(mp_hfconfig_load(path, &c), MP_ERR_NOT_FOUND);
    assert_msg(path, "no such file");
}

#define PL_BASE                                                                           \
    "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"         \
    " \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"    \
    " \"head_dim\": 16, \"vocab_size\": 100, \"max_position_embeddings\": 64, "

/* per_layer_widths: each block's widths; 0 means the sub-block is absent. */
static void test_per_layer(void **state)
{
    (void)state;
    mp_model_config c;
    const char *ok = PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, 0, 2],"
                     " \"num_key_value_heads\": [2, 0, 1], \"intermediate_size\": [128, 64, 0]}}";
    if (parse(ok, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_true(c.per_layer);
    assert_int_equal(c.layer[0].n_heads, 4);
    assert_int_equal(c.layer[1].n_heads, 0);
    assert_int_equal(c.layer[1].n_kv_heads, 0);
    assert_int_equal(c.layer[1].ffn, 64);
    assert_int_equal(c.layer[2].n_kv_heads, 1);
    assert_int_equal(c.layer[2].ffn, 0);
    assert_int_equal(mp_layer_shape(&c, 2).n_heads, 2);
    /* No per_layer_widths: a stock config. */
    assert_int_equal(parse(PL_BASE "\"rms_norm_eps\": 1e-5}", &c), MP_OK);
    assert_false(c.per_layer);
    assert_int_equal(mp_layer_shape(&c, 1).ffn, 128);

    struct { const char *json, *field; } bad[] = {
        {PL_BASE "\"per_layer_widths\": [1]}", "per_layer_widths"},
        {PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, 4],"
         " \"num_key_value_heads\": [2, 2, 2], \"intermediate_size\": [1, 1, 1]}}",
         "per_layer_widths.num_attention_heads"},
        {PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, 4, 4],"
         " \"intermediate_size\": [1, 1, 1]}}", "per_layer_widths.num_key_value_heads"},
        {PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, -1, 4],"
         " \"num_key_value_heads\": [2, 2, 2], \"intermediate_size\": [1, 1, 1]}}",
         "per_layer_widths.num_attention_heads[1]"},
        {PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, 4, 4],"
         " \"num_key_value_heads\": [2, 2, 2], \"intermediate_size\": [1, 1.5, 1]}}",
         "per_layer_widths.intermediate_size[1]"},
        {PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, 4, 4],"
         " \"num_key_value_heads\": [2, 2, 2], \"intermediate_size\": [1, 1, 1],"
         " \"hidden_size\": [1, 1, 1]}}", "per_layer_widths.hidden_size"},
        /* 3 heads in 2 KV groups; heads without KV heads; wider than the stock keys. */
        {PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, 3, 4],"
         " \"num_key_value_heads\": [2, 2, 2], \"intermediate_size\": [1, 1, 1]}}", "block 1"},
        {PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, 4, 4],"
         " \"num_key_value_heads\": [2, 0, 2], \"intermediate_size\": [1, 1, 1]}}", "block 1"},
        {PL_BASE "\"per_layer_widths\": {\"num_attention_heads\": [4, 4, 4],"
         " \"num_key_value_heads\": [2, 2, 2], \"intermediate_size\": [1, 1, 129]}}",
         "block 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mp_status st = parse(bad[i].json, &c);
        if (st != MP_ERR_FORMAT)
            fail_msg("case %zu: status %d (%s), want a format error", i, st, mp_error_message());
        assert_msg(CFG_PATH, bad[i].field);
    }
}

/* A pruned OPT's head count no longer divides hidden_size: head_dim is then explicit. */
static void test_per_layer_opt(void **state)
{
    (void)state;
    mp_model_config c;
    const char *ok =
        "{\"model_type\": \"opt\", \"hidden_size\": 64, \"ffn_dim\": 256, \"num_hidden_layers\": 2,"
        " \"num_attention_heads\": 3, \"head_dim\": 16, \"vocab_size\": 100,"
        " \"max_position_embeddings\": 64, \"per_layer_widths\": {\"num_attention_heads\": [3, 1],"
        " \"ffn_dim\": [0, 256]}}";
    if (parse(ok, &c) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.layer[1].n_kv_heads, 1);
    assert_int_equal(c.layer[0].ffn, 0);
}

/* mp_hfconfig_write: verbatim when unchanged, stock keys when uniform, the per-layer convention
 * otherwise, each parsing back to its widths; refusals for what stock loaders cannot express. */
static void test_write(void **state)
{
    (void)state;
    static mp_model_config cfg, back, per;
    char *out = NULL, *out2 = NULL;
    bool modeling = true;
    assert_int_equal(parse(opt125m, &cfg), MP_OK);
    assert_int_equal(mp_hfconfig_write(opt125m, CFG_PATH, &cfg, &out, &modeling), MP_OK);
    assert_string_equal(out, opt125m);
    assert_false(modeling);
    free(out);
    out = NULL;
    cfg.n_heads = cfg.n_kv_heads = 6; /* 6 heads of 64 != 768: stock OPT cannot say so */
    assert_int_equal(mp_hfconfig_write(opt125m, CFG_PATH, &cfg, &out, &modeling),
                     MP_ERR_UNSUPPORTED);
    assert_msg(CFG_PATH, "derives the head width");
    assert_null(out);

    const char *llama = "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"],"
                        " \"hidden_size\": 128, \"intermediate_size\": 256,"
                        " \"num_hidden_layers\": 3, \"num_attention_heads\": 8,"
                        " \"num_key_value_heads\": 4, \"vocab_size\": 100,"
                        " \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-05,"
                        " \"custom_key\": [1, \"x\"]}";
    assert_int_equal(parse(llama, &cfg), MP_OK);
    mp_block_shape sh[3] = {{4, 2, 100}, {4, 2, 100}, {4, 2, 100}};
    mp_model_config_set_shapes(&cfg, sh);
    assert_false(cfg.per_layer);
    assert_int_equal(mp_hfconfig_write(llama, CFG_PATH, &cfg, &out, &modeling), MP_OK);
    assert_false(modeling);
    assert_int_equal(parse(out, &back), MP_OK);
    assert_int_equal(back.n_heads, 4);
    assert_int_equal(back.n_kv_heads, 2);
    assert_int_equal(back.ffn, 100);
    assert_int_equal(back.head_dim, 16);
    assert_false(back.per_layer);
    assert_non_null(strstr(out, "\"custom_key\":\t[1, \"x\"]"));
    assert_null(strstr(out, "auto_map"));
    free(out);
    out = NULL;

    per = cfg;
    mp_block_shape ps[3] = {{4, 2, 100}, {0, 0, 256}, {8, 1, 0}};
    mp_model_config_set_shapes(&per, ps);
    assert_true(per.per_layer);
    assert_int_equal(mp_hfconfig_write(llama, CFG_PATH, &per, &out, &modeling), MP_OK);
    assert_true(modeling);
    assert_int_equal(parse(out, &back), MP_OK);
    assert_true(back.per_layer);
    for (int l = 0; l < 3; l++) {
        mp_block_shape b = mp_layer_shape(&back, l);
        assert_int_equal(b.n_heads, ps[l].n_heads);
        assert_int_equal(b.n_kv_heads, ps[l].n_kv_heads);
        assert_int_equal(b.ffn, ps[l].ffn);
    }
    assert_int_equal(back.n_heads, 8);
    assert_int_equal(back.ffn, 256);
    assert_non_null(strstr(out, "modeling_mpiprune." MP_HFCONFIG_LLAMA_CLASS));
    assert_non_null(strstr(mp_hfconfig_modeling_py, "class " MP_HFCONFIG_LLAMA_CLASS "("));
    /* back to uniform widths: the stock class again */
    assert_int_equal(mp_hfconfig_write(out, CFG_PATH, &cfg, &out2, &modeling), MP_OK);
    assert_false(modeling);
    assert_null(strstr(out2, "auto_map"));
    assert_null(strstr(out2, "per_layer_widths"));
    assert_non_null(strstr(out2, "\"LlamaForCausalLM\""));
    free(out);
    free(out2);
    out = NULL;

    /* per-block widths other than LLaMA's are refused */
    assert_int_equal(parse(opt125m, &cfg), MP_OK);
    mp_block_shape os[12];
    for (int l = 0; l < 12; l++)
        os[l] = (mp_block_shape){12, 12, l == 3 ? 1000 : 3072};
    mp_model_config_set_shapes(&cfg, os);
    assert_int_equal(mp_hfconfig_write(opt125m, CFG_PATH, &cfg, &out, &modeling),
                     MP_ERR_UNSUPPORTED);
    assert_msg(CFG_PATH, "model_type 'llama' only");
    assert_null(out);
}

/* o_proj/down_proj biases alone (--bias-compensation): written in the per-block convention
 * even at uniform widths (stock LlamaConfig cannot switch them on alone), read back; the keys
 * are refused where stock transformers would ignore them. */
static void test_lone_biases(void **state)
{
    (void)state;
    static mp_model_config cfg, back;
    char *out = NULL, *out2 = NULL;
    bool modeling = false;
    assert_int_equal(parse(PL_BASE "\"rms_norm_eps\": 1e-5}", &cfg), MP_OK);
    assert_false(mp_lin_has_bias(&cfg, MP_LIN_O));
    cfg.o_bias = cfg.down_bias = true;
    assert_true(mp_lin_has_bias(&cfg, MP_LIN_O));
    assert_true(mp_lin_has_bias(&cfg, MP_LIN_DOWN));
    assert_false(mp_lin_has_bias(&cfg, MP_LIN_Q));
    assert_false(mp_lin_has_bias(&cfg, MP_LIN_UP));
    assert_int_equal(mp_block_params(&cfg, 0), 2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 128 + 64 + 64);
    const char *in = PL_BASE "\"rms_norm_eps\": 1e-5}";
    if (mp_hfconfig_write(in, CFG_PATH, &cfg, &out, &modeling) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_true(modeling);
    assert_non_null(strstr(out, "\"o_proj_bias\":\ttrue"));
    assert_non_null(strstr(out, "\"down_proj_bias\":\ttrue"));
    assert_non_null(strstr(out, "per_layer_widths"));
    assert_non_null(strstr(out, "modeling_mpiprune." MP_HFCONFIG_LLAMA_CLASS));
    if (parse(out, &back) != MP_OK)
        fail_msg("%s", mp_error_message());
    assert_true(back.o_bias);
    assert_true(back.down_bias);
    assert_false(back.qkv_bias);
    assert_false(back.mlp_bias);
    for (int l = 0; l < 3; l++) {
        mp_block_shape b = mp_layer_shape(&back, l);
        assert_true(b.n_heads == 4 && b.n_kv_heads == 2 && b.ffn == 128);
    }
    /* The same config again is the same text; without the biases the stock class again. */
    assert_int_equal(mp_hfconfig_write(out, CFG_PATH, &back, &out2, &modeling), MP_OK);
    assert_string_equal(out2, out);
    assert_true(modeling);
    free(out2);
    back.o_bias = back.down_bias = false;
    assert_int_equal(mp_hfconfig_write(out, CFG_PATH, &back, &out2, &modeling), MP_OK);
    assert_false(modeling);
    assert_null(strstr(out2, "o_proj_bias"));
    assert_null(strstr(out2, "per_layer_widths"));
    free(out);
    free(out2);
    out = NULL;
    /* attention_bias already gives o_proj one: nothing lone, a stock config. */
    assert_int_equal(parse(PL_BASE "\"attention_bias\": true}", &cfg), MP_OK);
    cfg.o_bias = true;
    assert_int_equal(mp_hfconfig_write(PL_BASE "\"attention_bias\": true}", CFG_PATH, &cfg,
                                       &out, &modeling), MP_OK);
    assert_false(modeling);
    free(out);
    out = NULL;

    /* The keys without per_layer_widths, or for another family: refused. */
    assert_int_equal(parse(PL_BASE "\"o_proj_bias\": true}", &cfg), MP_ERR_UNSUPPORTED);
    assert_msg(CFG_PATH, "'o_proj_bias'");
    assert_int_equal(parse(PL_BASE "\"down_proj_bias\": true}", &cfg), MP_ERR_UNSUPPORTED);
    assert_msg(CFG_PATH, "'down_proj_bias'");
    assert_int_equal(parse(PL_BASE "\"o_proj_bias\": 1, \"per_layer_widths\": {"
                           "\"num_attention_heads\": [4, 4, 4], \"num_key_value_heads\": [2, 2, 2],"
                           " \"intermediate_size\": [128, 128, 128]}}", &cfg), MP_ERR_FORMAT);
}

/* Doubles through mp_json_f64_bits come back bit for bit, where cJSON's own printing of a
 * number (15 digits when they read back within about an ulp) need not. */
static void test_json_f64_bits(void **state)
{
    (void)state;
    double v[6] = {nextafter(0.1, 1.0), -0.0, 1.0 / 3.0, DBL_MIN / 4, -INFINITY, 1e300};
    double w[6] = {0};
    cJSON *s = mp_json_f64_bits(v, 6);
    assert_non_null(s);
    char *text = cJSON_PrintUnformatted(s);
    cJSON *back = cJSON_Parse(text);
    assert_true(mp_json_f64_unbits(back, w, 6));
    assert_memory_equal(v, w, sizeof v);
    assert_false(mp_json_f64_unbits(back, w, 5)); /* the count must match */
    cJSON *bad = cJSON_CreateString("3fb0g00000000000");
    assert_false(mp_json_f64_unbits(bad, w, 1));
    cJSON *num = cJSON_CreateNumber(1.0);
    assert_false(mp_json_f64_unbits(num, w, 1));
    /* What cJSON does itself: 0.1 + 1 ulp prints as 0.1 (its 15 digits read back within its
     * tolerance), another double. */
    cJSON *n = cJSON_CreateNumber(v[0]);
    char *t2 = cJSON_PrintUnformatted(n);
    print_message("cJSON prints %.17g as %s\n", v[0], t2);
    cJSON_Delete(n);
    cJSON_free(t2);
    cJSON_Delete(num);
    cJSON_Delete(bad);
    cJSON_Delete(back);
    cJSON_free(text);
    cJSON_Delete(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_opt125m),
        cmocka_unit_test(test_opt350m),
        cmocka_unit_test(test_opt_options),
        cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_llama_bias),
        cmocka_unit_test(test_llama_defaults),
        cmocka_unit_test(test_err_missing_field),
        cmocka_unit_test(test_err_wrong_type),
        cmocka_unit_test(test_err_malformed),
        cmocka_unit_test(test_err_model_type),
        cmocka_unit_test(test_err_rope_scaling),
        cmocka_unit_test(test_err_other_refusals),
        cmocka_unit_test(test_err_missing_file),
        cmocka_unit_test(test_per_layer),
        cmocka_unit_test(test_per_layer_opt),
        cmocka_unit_test(test_lone_biases),
        cmocka_unit_test(test_json_f64_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
