/* test_gguf: the GGUF reader and writer without Python: dequantisation of hand-made blocks,
 * the bundled model written as GGUF and read back (values, Q/K permutation round trip), a file
 * truncated while it is open (an error, not SIGBUS), and every allocation failing in turn
 * (a clean MP_ERR_NOMEM, no leak, no temporary file left). */
#define _XOPEN_SOURCE 700

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_dtype.h"
#include "mp_gguf.h"
#include "mp_hfconfig.h"
#include "mp_safetensors.h"

static char tmpdir[64];

static void path_in(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void test_dequantize_blocks(void **state)
{
    (void)state;
    unsigned char q8[34], q4[18], q41[20];
    float out[32];
    uint16_t d = mp_f32_to_f16(0.5f), m = mp_f32_to_f16(-1.25f);
    q8[0] = (unsigned char)(d & 0xff), q8[1] = (unsigned char)(d >> 8);
    for (int j = 0; j < 32; j++)
        q8[2 + j] = (unsigned char)(int8_t)(j - 16);
    assert_int_equal(mp_gguf_dequantize(MP_GGML_Q8_0, q8, 32, out), MP_OK);
    for (int j = 0; j < 32; j++)
        assert_true(out[j] == (float)(j - 16) * 0.5f);

    q4[0] = q8[0], q4[1] = q8[1];
    for (int j = 0; j < 16; j++)
        q4[2 + j] = (unsigned char)(j | ((15 - j) << 4));
    assert_int_equal(mp_gguf_dequantize(MP_GGML_Q4_0, q4, 32, out), MP_OK);
    for (int j = 0; j < 16; j++) {
        assert_true(out[j] == (float)(j - 8) * 0.5f);
        assert_true(out[j + 16] == (float)(15 - j - 8) * 0.5f);
    }

    q41[0] = q8[0], q41[1] = q8[1];
    q41[2] = (unsigned char)(m & 0xff), q41[3] = (unsigned char)(m >> 8);
    memcpy(q41 + 4, q4 + 2, 16);
    assert_int_equal(mp_gguf_dequantize(MP_GGML_Q4_1, q41, 32, out), MP_OK);
    for (int j = 0; j < 16; j++) {
        assert_true(out[j] == (float)j * 0.5f + -1.25f);
        assert_true(out[j + 16] == (float)(15 - j) * 0.5f + -1.25f);
    }
    assert_int_equal(mp_gguf_dequantize(MP_GGML_Q8_0, q8, 31, out), MP_ERR_ARG);
    assert_int_equal(mp_gguf_dequantize(12, q8, 256, out), MP_ERR_UNSUPPORTED);
    assert_non_null(strstr(mp_error_message(), "Q4_K"));
}

/* The fixture as GGUF at `name` (dtype), through the HF weight source. */
static mp_status write_fixture(const char *path, mp_dtype dt)
{
    mp_model_config cfg;
    mp_st_model *st = NULL;
    mp_weight_source src;
    mp_status s = mp_hfconfig_load(MP_FIXTURE_DIR "/config.json", &cfg);
    if (s == MP_OK)
        s = mp_st_open(MP_FIXTURE_DIR, &st);
    if (s == MP_OK) {
        mp_st_weight_source(st, &src);
        s = mp_gguf_write_model(path, &cfg, &src, dt, NULL);
    }
    mp_st_close(&st);
    return s;
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[128];
    path_in(path, sizeof path, "rt.gguf");
    unlink(path);
    assert_int_equal(write_fixture(path, MP_DT_F32), MP_OK);
    assert_int_equal(write_fixture(path, MP_DT_F32), MP_ERR_ARG); /* never overwritten */

    mp_gguf *g = NULL;
    mp_model_config cfg, ref;
    assert_int_equal(mp_gguf_open(path, &g), MP_OK);
    assert_int_equal(mp_gguf_model_config(g, &cfg), MP_OK);
    assert_int_equal(mp_hfconfig_load(MP_FIXTURE_DIR "/config.json", &ref), MP_OK);
    assert_int_equal(cfg.n_layers, ref.n_layers);
    assert_int_equal(cfg.n_heads, ref.n_heads);
    assert_int_equal(cfg.n_kv_heads, ref.n_kv_heads);
    assert_int_equal(cfg.head_dim, ref.head_dim);
    assert_int_equal(cfg.vocab, ref.vocab);
    assert_true(cfg.norm_eps == ref.norm_eps); /* 1e-05 from its float32 */
    assert_true(cfg.tie_embeddings);

    /* Every tensor through the weight source equals the safetensors original, and the file's
     * attn_q is the original with llama.cpp's row permutation. */
    mp_st_model *st = NULL;
    assert_int_equal(mp_st_open(MP_FIXTURE_DIR, &st), MP_OK);
    mp_weight_source src;
    mp_gguf_weight_source(g, &src);
    for (size_t i = 0; i < mp_st_count(st); i++) {
        const mp_st_tensor *t = mp_st_at(st, i);
        float *a = calloc((size_t)t->numel, sizeof *a), *b = calloc((size_t)t->numel, sizeof *b);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(mp_st_read_f32(st, t->name, t->ndim, t->shape, a), MP_OK);
        assert_true(src.has(src.ctx, t->name));
        assert_int_equal(src.load(src.ctx, t->name, t->ndim, t->shape, b), MP_OK);
        assert_memory_equal(a, b, (size_t)t->numel * sizeof *a);
        free(a);
        free(b);
    }
    const mp_gguf_tensor *q = mp_gguf_find_tensor(g, "blk.0.attn_q.weight");
    assert_non_null(q);
    float *raw = calloc((size_t)q->numel, sizeof *raw), *hf = calloc((size_t)q->numel, sizeof *hf);
    assert_int_equal(mp_gguf_read_f32(g, q, raw), MP_OK);
    int64_t shape[2] = {q->ne[1], q->ne[0]};
    assert_int_equal(mp_st_read_f32(st, "model.layers.0.self_attn.q_proj.weight", 2, shape, hf),
                     MP_OK);
    int64_t hd = cfg.head_dim, in = q->ne[0];
    for (int64_t h = 0; h < cfg.n_heads; h++)
        for (int64_t i = 0; i < hd / 2; i++)
            for (int64_t j = 0; j < 2; j++)
                assert_memory_equal(raw + (h * hd + 2 * i + j) * in,
                                    hf + (h * hd + j * hd / 2 + i) * in,
                                    (size_t)in * sizeof(float));
    free(raw);
    free(hf);
    int64_t bad[2] = {shape[1], shape[0] + 1};
    float dummy;
    assert_int_equal(src.load(src.ctx, "model.layers.0.self_attn.q_proj.weight", 2, bad, &dummy),
                     MP_ERR_FORMAT);
    assert_int_equal(src.load(src.ctx, "model.layers.9.self_attn.q_proj.weight", 2, shape, &dummy),
                     MP_ERR_NOT_FOUND);
    mp_st_close(&st);
    mp_gguf_close(&g);
    mp_gguf_close(&g); /* NULL is fine */
    unlink(path);
}

static void test_truncated_while_open(void **state)
{
    (void)state;
    char path[128];
    path_in(path, sizeof path, "trunc.gguf");
    unlink(path);
    assert_int_equal(write_fixture(path, MP_DT_F16), MP_OK);
    mp_gguf *g = NULL;
    assert_int_equal(mp_gguf_open(path, &g), MP_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    const mp_gguf_tensor *t = mp_gguf_tensor_at(g, mp_gguf_tensor_count(g) - 1);
    float *out = calloc((size_t)t->numel, sizeof *out);
    assert_int_equal(mp_gguf_read_f32(g, t, out), MP_ERR_FORMAT);
    assert_non_null(strstr(mp_error_message(), "truncated"));
    assert_non_null(strstr(mp_error_message(), path));
    free(out);
    mp_gguf_close(&g);
    unlink(path);
}

/* Every allocation of open + config + write failing in turn ends in MP_ERR_NOMEM and leaves
 * neither the output nor its temporary file (ASan checks the leaks). */
static void test_alloc_failures(void **state)
{
    (void)state;
    char in[128], out[128], tmp[160];
    path_in(in, sizeof in, "alloc_in.gguf");
    path_in(out, sizeof out, "alloc_out.gguf");
    unlink(in);
    assert_int_equal(write_fixture(in, MP_DT_BF16), MP_OK);
    int failures = 0;
    for (int64_t n = 1;; n++) {
        mp_alloc_fail_at(n);
        mp_gguf *g = NULL;
        mp_model_config cfg;
        mp_weight_source src;
        mp_status s = mp_gguf_open(in, &g);
        if (s == MP_OK)
            s = mp_gguf_model_config(g, &cfg);
        if (s == MP_OK) {
            mp_gguf_weight_source(g, &src);
            s = mp_gguf_write_model(out, &cfg, &src, MP_DT_F16, g);
        }
        mp_gguf_close(&g);
        mp_alloc_fail_at(0);
        if (getenv("TEST_GGUF_VERBOSE"))
            fprintf(stderr, "n=%lld s=%d %s\n", (long long)n, (int)s, mp_error_message());
        if (s == MP_OK)
            break;
        assert_int_equal(s, MP_ERR_NOMEM);
        assert_true(access(out, F_OK) != 0);
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
        assert_true(access(tmp, F_OK) != 0);
        failures++;
        assert_true(n < 100000);
    }
    assert_true(failures > 10);
    unlink(out);
    unlink(in);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mp_test_gguf_XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequantize_blocks),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncated_while_open),
        cmocka_unit_test(test_alloc_failures),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(tmpdir);
    return rc;
}
