#define _POSIX_C_SOURCE 200809L

#include "mp_fuzz.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_ckpt.h"
#include "mp_gguf.h"
#include "mp_hfconfig.h"
#include "mp_json.h"
#include "mp_model.h"
#include "mp_safetensors.h"
#include "mp_tokens.h"

/* A private directory for the files the harnesses write (tmpfs when there is one). */
static const char *fz_dir(void)
{
    static char dir[256];
    if (!dir[0]) {
        mp_json_init();
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/mpiprune-fuzz-%ld", base, (long)getpid());
        if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0)
            abort();
    }
    return dir;
}

static void fz_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", fz_dir(), name);
}

static void fz_write(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        abort();
    const unsigned char *p = data;
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w <= 0)
            abort();
        p += w;
        size -= (size_t)w;
    }
    close(fd);
}

/* The contract of every reader: MP_OK, or a known code with one line naming `who`. */
static void fz_check(mp_status st, const char *who)
{
    if (st == MP_OK)
        return;
    const char *msg = mp_error_message();
    if (st < 0 || st >= MP_STATUS_COUNT || st == MP_ERR_INTERNAL) {
        fprintf(stderr, "fuzz: unexpected status %d: %s\n", (int)st, msg);
        abort();
    }
    if (!msg[0] || strchr(msg, '\n') || !strstr(msg, who)) {
        fprintf(stderr, "fuzz: error message does not name %s in one line: '%s'\n", who, msg);
        abort();
    }
}

int mp_fuzz_safetensors(const uint8_t *data, size_t size)
{
    char path[512];
    fz_path(path, sizeof path, "model.safetensors");
    fz_write(path, data, size);
    mp_st_model *m = NULL;
    mp_status st = mp_st_open(path, &m);
    fz_check(st, "model.safetensors");
    if (st == MP_OK) {
        for (size_t i = 0; i < mp_st_count(m); i++) {
            const mp_st_tensor *t = mp_st_at(m, i);
            if (!mp_dtype_is_float(t->dtype) || t->numel > (1 << 22))
                continue;
            float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *out);
            if (!out)
                abort();
            fz_check(mp_st_read_f32(m, t->name, t->ndim, t->shape, out), "model.safetensors");
            free(out);
        }
        if (!mp_st_find(m, mp_st_count(m) ? mp_st_at(m, 0)->name : "x") && mp_st_count(m))
            abort();
    }
    mp_st_close(&m);
    return 0;
}

/* Two fixed shards: a, b in the first, c in the second. */
static const char *fz_shards(void)
{
    static char dir[512];
    if (!dir[0]) {
        fz_path(dir, sizeof dir, "sharded");
        mkdir(dir, 0700);
        float a[2] = {1, 2}, b[3] = {3, 4, 5}, c[1] = {6};
        mp_st_entry s1[2] = {
            {.name = "a", .dtype = MP_DT_F32, .ndim = 1, .shape = {2}, .data = a},
            {.name = "b", .dtype = MP_DT_F32, .ndim = 2, .shape = {1, 3}, .data = b}};
        mp_st_entry s2[1] = {{.name = "c", .dtype = MP_DT_F32, .ndim = 1, .shape = {1}, .data = c}};
        char p[640];
        snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
        if (mp_st_write(p, s1, 2, NULL) != MP_OK)
            abort();
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
        if (mp_st_write(p, s2, 1, "{\"format\":\"pt\"}") != MP_OK)
            abort();
    }
    return dir;
}

int mp_fuzz_st_index(const uint8_t *data, size_t size)
{
    const char *dir = fz_shards();
    char path[640];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    fz_write(path, data, size);
    mp_st_model *m = NULL;
    mp_status st = mp_st_open(dir, &m);
    /* A failing shard is named by its own path; every message names the directory. */
    fz_check(st, dir);
    mp_st_close(&m);
    return 0;
}

int mp_fuzz_hfconfig(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    mp_model_config cfg;
    mp_status st = mp_hfconfig_parse(text, "dir/config.json", &cfg);
    fz_check(st, "dir/config.json");
    if (st == MP_OK) {
        /* The products the model and the memory plan form from these sizes (UBSan checks). */
        volatile int64_t sink = cfg.vocab * cfg.word_embed_proj_dim + cfg.max_pos * cfg.d;
        /* The first blocks and the last: per-block widths may differ. */
        for (int64_t l = 0; l < cfg.n_layers; l = l < 3 ? l + 1 : (l < cfg.n_layers - 1 ? cfg.n_layers - 1 : l + 1)) {
            sink += mp_block_bytes(&cfg, l) + mp_block_params(&cfg, l);
            for (int g = 0; g < MP_IN_COUNT; g++)
                sink += mp_in_group_dim(&cfg, l, (mp_in_group)g) *
                        mp_in_group_dim(&cfg, l, (mp_in_group)g);
            (void)mp_block_flops(&cfg, l, 1, cfg.max_pos);
        }
        (void)sink;
    }
    free(text);
    return 0;
}

/* Errors name the token file or its sidecar: both are in fz_dir(). */
static void fz_tokens(const char *path)
{
    mp_tokens t = {0};
    mp_status st = mp_tokens_load(path, &t);
    fz_check(st, fz_dir());
    if (st == MP_OK) {
        int64_t nw = 0;
        fz_check(mp_tokens_check_vocab(&t, 512, path), path);
        fz_check(mp_tokens_windows(&t, 16, path, &nw), path);
    }
    mp_tokens_free(&t);
}

int mp_fuzz_tokens_bin(const uint8_t *data, size_t size)
{
    char bin[512], side[512];
    size_t l = size >= 2 ? (size_t)data[0] | (size_t)data[1] << 8 : 0;
    if (size < 2 || l > size - 2)
        return 0;
    fz_path(bin, sizeof bin, "tok.bin");
    fz_path(side, sizeof side, "tok.json");
    fz_write(side, data + 2, l);
    fz_write(bin, data + 2 + l, size - 2 - l);
    fz_tokens(bin);
    return 0;
}

int mp_fuzz_tokens_npy(const uint8_t *data, size_t size)
{
    char npy[512];
    fz_path(npy, sizeof npy, "tok.npy");
    fz_write(npy, data, size);
    fz_tokens(npy);
    return 0;
}

int mp_fuzz_ckpt(const uint8_t *data, size_t size)
{
    char path[512];
    fz_path(path, sizeof path, "ckpt.h5");
    fz_write(path, data, size);
    mp_ckpt_info info;
    fz_check(mp_ckpt_read_main(path, &info), "ckpt.h5");
    mp_ckpt_info_free(&info);
    return 0;
}

int mp_fuzz_gguf(const uint8_t *data, size_t size)
{
    char path[512];
    fz_path(path, sizeof path, "model.gguf");
    fz_write(path, data, size);
    mp_gguf *g = NULL;
    mp_status st = mp_gguf_open(path, &g);
    fz_check(st, "model.gguf");
    if (st == MP_OK) {
        /* Every small tensor of a readable type is decoded, then the config and, through the
         * weight source, every tensor the model would load. */
        for (size_t i = 0; i < mp_gguf_tensor_count(g); i++) {
            const mp_gguf_tensor *t = mp_gguf_tensor_at(g, i);
            if (t->numel > (1 << 20))
                continue;
            float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *out);
            if (!out)
                abort();
            fz_check(mp_gguf_read_f32(g, t, out), "model.gguf");
            free(out);
        }
        mp_model_config cfg;
        st = mp_gguf_model_config(g, &cfg);
        fz_check(st, "model.gguf");
        if (st == MP_OK && cfg.d * cfg.vocab <= (1 << 22)) {
            mp_weight_source src;
            mp_gguf_weight_source(g, &src);
            mp_head *head = NULL;
            fz_check(mp_head_load(&cfg, &src, &head), "model.gguf");
            mp_head_free(&head);
            for (int64_t l = 0; l < cfg.n_layers && l < 4; l++) {
                if (mp_block_bytes(&cfg, l) > (64 << 20))
                    break;
                mp_block *blk = NULL;
                fz_check(mp_block_load(&cfg, &src, l, &blk), "model.gguf");
                mp_block_free(&blk);
            }
        }
    }
    mp_gguf_close(&g);
    return 0;
}

const mp_fuzz_target mp_fuzz_targets[] = {
    {"safetensors", mp_fuzz_safetensors}, {"st_index", mp_fuzz_st_index},
    {"hfconfig", mp_fuzz_hfconfig},       {"tokens_bin", mp_fuzz_tokens_bin},
    {"tokens_npy", mp_fuzz_tokens_npy},   {"ckpt", mp_fuzz_ckpt},
    {"gguf", mp_fuzz_gguf},
};
const int mp_fuzz_ntargets = (int)(sizeof mp_fuzz_targets / sizeof mp_fuzz_targets[0]);
