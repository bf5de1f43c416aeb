/* make_pruned_model: structurally pruned models from the bundled stories260K, made with
 * mpiprune's own code path (mp_plan, mp_block_apply_plan, mp_export: the streaming safetensors
 * writer and the config.json writer), and mpiprune's logits of a model directory. For
 * tests/check_hf_export.py.
 *
 *   make_pruned_model make MODEL_DIR OUT_DIR uniform|nonuniform
 *     uniform:    every block keeps KV groups {0, 2}, one query head in each (heads 2, KV 2)
 *                 and 128 of the 172 FFN neurons: stock LlamaForCausalLM widths.
 *     nonuniform: block 0 drops KV groups 0 and 2 (4 heads, 2 KV); block 1 has no attention
 *                 and 100 FFN neurons; block 2 keeps one query head per group (4 heads, 4 KV)
 *                 and has no FFN; block 3 keeps KV group 2 only (2 heads, 1 KV) and 64
 *                 neurons; block 4 is unchanged.
 *     Checks that OUT_DIR/config.json parses back (mp_hfconfig_load) to the planned config.
 *   make_pruned_model logits MODEL_DIR TOKENS OUT
 *     TOKENS: little-endian uint32 token ids (one sequence); OUT: float32 logits [T, vocab].
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_alloc.h"
#include "mp_export.h"
#include "mp_hfconfig.h"
#include "mp_modeldir.h"
#include "mp_plan.h"

static mp_status set_plan(const mp_model_config *c, mp_plan *p, bool uniform)
{
    mp_status st = MP_OK;
    int64_t ffn[172];
    for (int64_t b = 0; b < c->n_layers; b++) {
        if (uniform) {
            int64_t kv[2] = {0, 2}, q[2] = {1, 0}, n = 0;
            for (int64_t i = 0; i < 172 && n < 128; i++)
                if (i % 4 != 1)
                    ffn[n++] = i;
            MP_TRY(mp_plan_set_block(p, b, 2, kv, 1, q, 128, ffn));
        } else if (b == 0) {
            int64_t kv[2] = {1, 3}, q[4] = {0, 1, 0, 1};
            for (int64_t i = 0; i < 172; i++)
                ffn[i] = i;
            MP_TRY(mp_plan_set_block(p, b, 2, kv, 2, q, 172, ffn));
        } else if (b == 1) {
            for (int64_t i = 0; i < 100; i++)
                ffn[i] = i + 50;
            MP_TRY(mp_plan_set_block(p, b, 0, NULL, 0, NULL, 100, ffn));
        } else if (b == 2) {
            int64_t kv[4] = {0, 1, 2, 3}, q[4] = {1, 0, 1, 0};
            MP_TRY(mp_plan_set_block(p, b, 4, kv, 1, q, 0, NULL));
        } else if (b == 3) {
            int64_t kv[1] = {2}, q[2] = {0, 1};
            for (int64_t i = 0; i < 64; i++)
                ffn[i] = 2 * i + 1;
            MP_TRY(mp_plan_set_block(p, b, 1, kv, 2, q, 64, ffn));
        }
    }
done:
    return st;
}

static bool same_config(const mp_model_config *a, const mp_model_config *b)
{
    if (a->arch != b->arch || strcmp(a->model_type, b->model_type) != 0 || a->vocab != b->vocab ||
        a->d != b->d || a->n_layers != b->n_layers || a->n_heads != b->n_heads ||
        a->n_kv_heads != b->n_kv_heads || a->head_dim != b->head_dim || a->ffn != b->ffn ||
        a->max_pos != b->max_pos || a->norm_eps != b->norm_eps ||
        a->rope_theta != b->rope_theta || a->tie_embeddings != b->tie_embeddings ||
        a->qkv_bias != b->qkv_bias || a->o_bias != b->o_bias || a->mlp_bias != b->mlp_bias ||
        a->per_layer != b->per_layer)
        return false;
    for (int64_t l = 0; l < a->n_layers; l++) {
        mp_block_shape x = mp_layer_shape(a, l), y = mp_layer_shape(b, l);
        if (x.n_heads != y.n_heads || x.n_kv_heads != y.n_kv_heads || x.ffn != y.ffn)
            return false;
    }
    return true;
}

static mp_status make(const char *model, const char *out, bool uniform)
{
    mp_status st = MP_OK;
    mp_modeldir *md = calloc(1, sizeof *md);
    mp_model_config *fin = calloc(1, sizeof *fin), *back = calloc(1, sizeof *back);
    mp_plan plan = {0};
    mp_export *e = NULL;
    mp_block *blk = NULL;
    char path[8192];
    if (!md || !fin || !back)
        MP_FAIL(MP_ERR_NOMEM, "out of memory");
    MP_TRY(mp_modeldir_open(model, md));
    const mp_model_config *c = &md->cfg;
    MP_TRY(mp_plan_identity(c, &plan));
    MP_TRY(set_plan(c, &plan, uniform));
    MP_TRY(mp_plan_check(c, &plan, "test plan"));
    mp_plan_apply_config(c, &plan, fin);
    if (fin->per_layer == uniform)
        MP_FAIL(MP_ERR_INTERNAL, "the %s plan came out %s", uniform ? "uniform" : "nonuniform",
                fin->per_layer ? "per-layer" : "uniform");
    if (mkdir(out, 0755) != 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create", out);
    MP_TRY(mp_export_begin(out, md->st, c, fin, md->config_path, 0, &e));
    for (int64_t b = c->n_layers - 1; b >= 0; b--) { /* any order */
        MP_TRY(mp_block_load(c, &md->src, b, &blk));
        MP_TRY(mp_block_apply_plan(c, &plan.b[b], blk));
        MP_TRY(mp_export_put_block(e, blk));
        mp_block_free(&blk);
    }
    MP_TRY(mp_export_finish(&e));
    snprintf(path, sizeof path, "%s/config.json", out);
    MP_TRY(mp_hfconfig_load(path, back));
    if (!same_config(back, fin))
        MP_FAIL(MP_ERR_INTERNAL, "%s does not parse back to the planned config", path);
done:
    mp_block_free(&blk);
    mp_export_abort(&e);
    mp_plan_free(&plan);
    if (md)
        mp_modeldir_close(md);
    free(md);
    free(fin);
    free(back);
    return st;
}

static mp_status logits(const char *model, const char *tokens, const char *out)
{
    mp_status st = MP_OK;
    mp_modeldir *md = calloc(1, sizeof *md);
    mp_head *head = NULL;
    mp_block *blk = NULL;
    uint32_t *tok = NULL;
    float *h = NULL, *lg = NULL;
    FILE *f = NULL;
    if (!md)
        MP_FAIL(MP_ERR_NOMEM, "out of memory");
    MP_TRY(mp_modeldir_open(model, md));
    const mp_model_config *c = &md->cfg;
    f = fopen(tokens, "rb");
    if (!f)
        MP_FAIL(MP_ERR_IO, "%s: cannot open", tokens);
    tok = calloc(4096, sizeof *tok);
    if (!tok)
        MP_FAIL(MP_ERR_NOMEM, "out of memory");
    int64_t T = (int64_t)fread(tok, sizeof *tok, 4096, f);
    fclose(f);
    f = NULL;
    h = calloc((size_t)(T * c->d), sizeof *h);
    lg = calloc((size_t)(T * c->vocab), sizeof *lg);
    if (!h || !lg || T == 0)
        MP_FAIL(MP_ERR_NOMEM, "out of memory or no tokens");
    MP_TRY(mp_head_load(c, &md->src, &head));
    MP_TRY(mp_embed_forward(c, head, tok, 1, T, h));
    for (int64_t b = 0; b < c->n_layers; b++) {
        MP_TRY(mp_block_load(c, &md->src, b, &blk));
        MP_TRY(mp_block_forward(c, blk, h, 1, T, NULL));
        mp_block_free(&blk);
    }
    MP_TRY(mp_head_logits(c, head, h, 1, T, lg));
    f = fopen(out, "wb");
    if (!f || fwrite(lg, sizeof *lg, (size_t)(T * c->vocab), f) != (size_t)(T * c->vocab))
        MP_FAIL(MP_ERR_IO, "%s: cannot write", out);
done:
    if (f && fclose(f) != 0 && st == MP_OK)
        st = mp_error(MP_ERR_IO, "%s: close failed", out);
    mp_block_free(&blk);
    mp_head_free(&head);
    if (md)
        mp_modeldir_close(md);
    free(md);
    free(tok);
    free(h);
    free(lg);
    return st;
}

int main(int argc, char **argv)
{
    mp_status st;
    if (argc == 5 && strcmp(argv[1], "make") == 0 &&
        (strcmp(argv[4], "uniform") == 0 || strcmp(argv[4], "nonuniform") == 0))
        st = make(argv[2], argv[3], strcmp(argv[4], "uniform") == 0);
    else if (argc == 5 && strcmp(argv[1], "logits") == 0)
        st = logits(argv[2], argv[3], argv[4]);
    else {
        fprintf(stderr, "usage: make_pruned_model make MODEL OUT uniform|nonuniform\n"
                        "       make_pruned_model logits MODEL TOKENS OUT\n");
        return 2;
    }
    if (st != MP_OK) {
        fprintf(stderr, "make_pruned_model: %s\n", mp_error_message());
        return 1;
    }
    return 0;
}
