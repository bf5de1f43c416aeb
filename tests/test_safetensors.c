/* test_safetensors: write/read round trip, atomic writer, sharded models, the bundled fixture,
 * and one test per kind of malformed file (status code and message checked). */
#define _XOPEN_SOURCE 700

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_safetensors.h"

typedef struct {
    char dir[64];
    char path[256]; /* <dir>/model.safetensors */
} fx;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/mp_test_st_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/model.safetensors", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* Writes 8-byte LE `hlen` (the header's length when hlen < 0), the header and data. */
static void write_raw(const char *path, const char *header, long long hlen, const void *data,
                      size_t dlen)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    uint64_t n = hlen < 0 ? (uint64_t)strlen(header) : (uint64_t)hlen;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++)
        lb[i] = (unsigned char)(n >> (8 * i));
    assert_int_equal(fwrite(lb, 1, 8, fp), 8);
    assert_int_equal(fwrite(header, 1, strlen(header), fp), strlen(header));
    if (dlen)
        assert_int_equal(fwrite(data, 1, dlen, fp), dlen);
    assert_int_equal(fclose(fp), 0);
}

static void expect_msg(mp_status got, mp_status want, const char *file, const char *phrase)
{
    const char *msg = mp_error_message();
    if (got != want || !strstr(msg, file) || !strstr(msg, phrase) || strchr(msg, '\n')) {
        print_error("status %d (want %d), message: %s\n(want '%s' and '%s')\n", (int)got,
                    (int)want, msg, file, phrase);
        fail();
    }
}

/* Opening f->path must fail with `want` and a message naming the file and `phrase`. */
static void expect_open_fails(fx *f, mp_status want, const char *phrase)
{
    mp_st_model *m = NULL;
    mp_error_clear();
    mp_status st = mp_st_open(f->path, &m);
    assert_null(m);
    expect_msg(st, want, f->path, phrase);
}

static size_t count_dir(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* ---------- round trip ---------- */

static void test_round_trip(void **state)
{
    fx *f = *state;
    float a[6] = {1.0f, -2.0f, 3.5f, 0.0f, -0.125f, 1e-3f};
    float hv[4] = {1.5f, -2.0f, 0.25f, 65504.0f};
    float bv[4] = {1.0f, -3.0f, 0.5f, 256.0f};
    unsigned char h16[8], b16[8];
    assert_int_equal(mp_dtype_from_f32(MP_DT_F16, hv, 4, h16), MP_OK);
    assert_int_equal(mp_dtype_from_f32(MP_DT_BF16, bv, 4, b16), MP_OK);
    int64_t idx[3] = {7, -1, INT64_MAX};
    float scalar = 42.0f;
    mp_st_entry e[5] = {
        {.name = "layer.w", .dtype = MP_DT_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "half \"q\"", .dtype = MP_DT_F16, .ndim = 1, .shape = {4}, .data = h16},
        {.name = "brain", .dtype = MP_DT_BF16, .ndim = 2, .shape = {2, 2}, .data = b16},
        {.name = "ids", .dtype = MP_DT_I64, .ndim = 1, .shape = {3}, .data = idx},
        {.name = "scalar", .dtype = MP_DT_F32, .ndim = 0, .data = &scalar},
    };
    assert_int_equal(mp_st_write(f->path, e, 5, "{\"format\":\"pt\",\"note\":\"a b\"}"), MP_OK);
    assert_int_equal(count_dir(f->dir), 1); /* no temporary left */

    /* header padded so that 8 + N is a multiple of 8 */
    FILE *fp = fopen(f->path, "rb");
    assert_non_null(fp);
    unsigned char lb[8];
    assert_int_equal(fread(lb, 1, 8, fp), 8);
    fclose(fp);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | lb[i];
    assert_int_equal((8 + hl) % 8, 0);

    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(f->path, &m), MP_OK);
    assert_int_equal(mp_st_count(m), 5);
    assert_false(mp_st_is_sharded(m));
    assert_int_equal(mp_st_file_count(m), 1);
    assert_string_equal(mp_st_file_name(m, 0), "model.safetensors");
    assert_string_equal(mp_st_file_path(m, 0), f->path);
    assert_string_equal(mp_st_file_metadata(m, 0), "{\"format\":\"pt\",\"note\":\"a b\"}");
    for (size_t i = 0; i < 5; i++) {
        const mp_st_tensor *t = mp_st_at(m, i);
        assert_string_equal(t->name, e[i].name); /* file order = write order */
        assert_int_equal(t->dtype, e[i].dtype);
        assert_int_equal(t->ndim, e[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], e[i].shape[d]);
        assert_int_equal(t->file, 0);
    }
    assert_null(mp_st_at(m, 5));
    const mp_st_tensor *t = mp_st_find(m, "ids");
    assert_non_null(t);
    assert_int_equal(t->numel, 3);
    assert_int_equal(t->nbytes, sizeof idx);
    /* file_offset: where the bytes are in the file */
    fp = fopen(f->path, "rb");
    assert_non_null(fp);
    int64_t got[3];
    assert_int_equal(fseek(fp, (long)t->file_offset, SEEK_SET), 0);
    assert_int_equal(fread(got, 1, sizeof got, fp), sizeof got);
    fclose(fp);
    assert_memory_equal(got, idx, sizeof idx);
    assert_int_equal(mp_st_at(m, 0)->file_offset, 8 + (int64_t)hl);
    assert_int_equal(mp_st_find(m, "scalar")->numel, 1);

    float out[6];
    int64_t sh[2] = {2, 3};
    assert_int_equal(mp_st_read_f32(m, "layer.w", 2, sh, out), MP_OK);
    assert_memory_equal(out, a, sizeof a);
    assert_int_equal(mp_st_read_f32(m, "half \"q\"", 0, NULL, out), MP_OK);
    assert_memory_equal(out, hv, sizeof hv);
    int64_t sb[2] = {2, 2};
    assert_int_equal(mp_st_read_f32(m, "brain", 2, sb, out), MP_OK);
    assert_memory_equal(out, bv, sizeof bv);
    assert_int_equal(mp_st_read_f32(m, "scalar", 0, NULL, out), MP_OK);
    assert_true(out[0] == 42.0f);
    expect_msg(mp_st_read_f32(m, "ids", 0, NULL, out), MP_ERR_UNSUPPORTED, f->path, "I64");

    /* the weight-source adapter */
    mp_weight_source src;
    mp_st_weight_source(m, &src);
    assert_true(src.has(src.ctx, "brain"));
    assert_false(src.has(src.ctx, "nope"));
    assert_int_equal(src.load(src.ctx, "layer.w", 2, sh, out), MP_OK);
    assert_memory_equal(out, a, sizeof a);
    mp_st_close(&m);
    assert_null(m);
    mp_st_close(&m); /* NULL is fine */

    /* no metadata -> "{}"; an empty model is valid too */
    assert_int_equal(mp_st_write(f->path, NULL, 0, NULL), MP_OK);
    assert_int_equal(mp_st_open(f->path, &m), MP_OK);
    assert_int_equal(mp_st_count(m), 0);
    assert_string_equal(mp_st_file_metadata(m, 0), "{}");
    mp_st_close(&m);
}

static void test_write_bad_args(void **state)
{
    fx *f = *state;
    float a[2] = {1, 2};
    mp_st_entry e[2] = {
        {.name = "x", .dtype = MP_DT_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "x", .dtype = MP_DT_F32, .ndim = 1, .shape = {2}, .data = a},
    };
    expect_msg(mp_st_write(f->path, e, 2, NULL), MP_ERR_ARG, f->path, "given twice");
    expect_msg(mp_st_write(f->path, e, 1, "{\"a\":1}"), MP_ERR_ARG, f->path, "metadata");
    expect_msg(mp_st_write(f->path, e, 1, "[\"a\"]"), MP_ERR_ARG, f->path, "metadata");
    e[1].name = "y";
    e[1].shape[0] = -2;
    expect_msg(mp_st_write(f->path, e, 2, NULL), MP_ERR_ARG, f->path, "negative");
    assert_int_equal(count_dir(f->dir), 0);
}

/* A failing write leaves nothing at the path or at the temporary name. */
static void test_write_failure_leaves_nothing(void **state)
{
    fx *f = *state;
    float a[2] = {1, 2};
    mp_st_entry e = {.name = "x", .dtype = MP_DT_F32, .ndim = 1, .shape = {2}, .data = a};
    char p[320];

    /* a directory that does not exist */
    snprintf(p, sizeof p, "%s/missing/model.safetensors", f->dir);
    expect_msg(mp_st_write(p, &e, 1, NULL), MP_ERR_IO, p, "cannot create");
    assert_int_equal(count_dir(f->dir), 0);

    /* an unwritable directory (root ignores permissions, so only when not root) */
    if (geteuid() != 0) {
        snprintf(p, sizeof p, "%s/ro", f->dir);
        assert_int_equal(mkdir(p, 0555), 0);
        snprintf(p, sizeof p, "%s/ro/model.safetensors", f->dir);
        expect_msg(mp_st_write(p, &e, 1, NULL), MP_ERR_IO, p, "cannot create");
        snprintf(p, sizeof p, "%s/ro", f->dir);
        assert_int_equal(count_dir(p), 0);
        assert_int_equal(chmod(p, 0755), 0);
        assert_int_equal(rmdir(p), 0);
    }

    /* the rename fails after the temporary was written: the target is a non-empty dir */
    snprintf(p, sizeof p, "%s/target", f->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    char q[400];
    snprintf(q, sizeof q, "%s/keep", p);
    FILE *fp = fopen(q, "w");
    assert_non_null(fp);
    fclose(fp);
    expect_msg(mp_st_write(p, &e, 1, NULL), MP_ERR_IO, p, "rename");
    assert_int_equal(count_dir(f->dir), 1); /* only target/, no temporary */
    assert_int_equal(count_dir(p), 1);
}

/* ---------- sharded ---------- */

static void write_index(const fx *f, const char *json)
{
    char p[320];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", f->dir);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(json, fp);
    assert_int_equal(fclose(fp), 0);
}

static void write_shards(const fx *f, const float *a, const float *b, const float *c)
{
    char p1[320], p2[320];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", f->dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", f->dir);
    mp_st_entry s1[2] = {
        {.name = "a", .dtype = MP_DT_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "b", .dtype = MP_DT_F32, .ndim = 2, .shape = {1, 3}, .data = b},
    };
    mp_st_entry s2[1] = {{.name = "c", .dtype = MP_DT_F32, .ndim = 1, .shape = {1}, .data = c}};
    assert_int_equal(mp_st_write(p1, s1, 2, "{\"format\":\"pt\"}"), MP_OK);
    assert_int_equal(mp_st_write(p2, s2, 1, NULL), MP_OK);
}

static void test_sharded(void **state)
{
    fx *f = *state;
    float a[2] = {1, 2}, b[3] = {3, 4, 5}, c[1] = {6};
    write_shards(f, a, b, c);
    write_index(f, "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
                   "\"c\":\"model-00002-of-00002.safetensors\","
                   "\"a\":\"model-00001-of-00002.safetensors\","
                   "\"b\":\"model-00001-of-00002.safetensors\"}}");
    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(f->dir, &m), MP_OK);
    assert_true(mp_st_is_sharded(m));
    assert_int_equal(mp_st_file_count(m), 2);
    /* files in index order (first appearance), tensors by offset within a file */
    assert_string_equal(mp_st_file_name(m, 0), "model-00002-of-00002.safetensors");
    assert_string_equal(mp_st_file_name(m, 1), "model-00001-of-00002.safetensors");
    assert_string_equal(mp_st_file_metadata(m, 0), "{}");
    assert_string_equal(mp_st_file_metadata(m, 1), "{\"format\":\"pt\"}");
    assert_int_equal(mp_st_count(m), 3);
    assert_string_equal(mp_st_at(m, 0)->name, "c");
    assert_string_equal(mp_st_at(m, 1)->name, "a");
    assert_string_equal(mp_st_at(m, 2)->name, "b");
    assert_int_equal(mp_st_find(m, "b")->file, 1);
    float out[3];
    int64_t sh[2] = {1, 3};
    assert_int_equal(mp_st_read_f32(m, "b", 2, sh, out), MP_OK);
    assert_memory_equal(out, b, sizeof b);
    assert_int_equal(mp_st_read_f32(m, "c", 0, NULL, out), MP_OK);
    assert_true(out[0] == 6.0f);
    expect_msg(mp_st_read_f32(m, "d", 0, NULL, out), MP_ERR_NOT_FOUND,
               "model.safetensors.index.json", "no tensor 'd'");
    mp_st_close(&m);
}

static void test_sharded_bad_map(void **state)
{
    fx *f = *state;
    float a[2] = {1, 2}, b[3] = {3, 4, 5}, c[1] = {6};
    write_shards(f, a, b, c);
    mp_st_model *m = NULL;
    /* b is in shard 1 but the map says shard 2 */
    write_index(f, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                   "\"b\":\"model-00002-of-00002.safetensors\","
                   "\"c\":\"model-00002-of-00002.safetensors\"}}");
    expect_msg(mp_st_open(f->dir, &m), MP_ERR_FORMAT, "model-00001-of-00002.safetensors",
               "tensor 'b'");
    assert_null(m);
    /* the map lists a tensor no shard holds */
    write_index(f, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                   "\"b\":\"model-00001-of-00002.safetensors\","
                   "\"c\":\"model-00002-of-00002.safetensors\","
                   "\"d\":\"model-00002-of-00002.safetensors\"}}");
    expect_msg(mp_st_open(f->dir, &m), MP_ERR_NOT_FOUND, "model.safetensors.index.json",
               "tensor 'd'");
    /* a shard the map names is missing */
    write_index(f, "{\"weight_map\":{\"a\":\"model-00003-of-00002.safetensors\"}}");
    expect_msg(mp_st_open(f->dir, &m), MP_ERR_NOT_FOUND, "model-00003-of-00002.safetensors",
               "no such file");
    /* a path outside the directory */
    write_index(f, "{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
    expect_msg(mp_st_open(f->dir, &m), MP_ERR_FORMAT, "model.safetensors.index.json",
               "../x.safetensors");
    /* malformed index */
    write_index(f, "{\"weight_map\":{\"a\":");
    expect_msg(mp_st_open(f->dir, &m), MP_ERR_FORMAT, "model.safetensors.index.json",
               "not valid JSON");
    assert_null(m);
}

/* ---------- the bundled fixture ---------- */

static void test_fixture(void **state)
{
    (void)state;
    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(MP_FIXTURE_DIR, &m), MP_OK); /* the directory */
    assert_int_equal(mp_st_count(m), 47);
    assert_string_equal(mp_st_file_metadata(m, 0), "{\"format\":\"pt\"}");
    const mp_st_tensor *t = mp_st_find(m, "model.embed_tokens.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, MP_DT_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 512);
    assert_int_equal(t->shape[1], 64);
    size_t maxn = 0;
    for (size_t i = 0; i < mp_st_count(m); i++)
        if ((size_t)mp_st_at(m, i)->numel > maxn)
            maxn = (size_t)mp_st_at(m, i)->numel;
    float *buf = malloc(maxn * sizeof *buf);
    assert_non_null(buf);
    for (size_t i = 0; i < mp_st_count(m); i++) {
        t = mp_st_at(m, i);
        assert_int_equal(mp_st_read_f32(m, t->name, t->ndim, t->shape, buf), MP_OK);
    }
    free(buf);
    mp_st_close(&m);
    assert_int_equal(mp_st_open(MP_FIXTURE_DIR "/model.safetensors", &m), MP_OK);
    assert_int_equal(mp_st_count(m), 47);
    mp_st_close(&m);
}

/* ---------- malformed files: one test each ---------- */

static const char ok_hdr2[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";

static void test_bad_truncated(void **state)
{
    fx *f = *state;
    write_raw(f->path, "", 0, NULL, 0);
    FILE *fp = fopen(f->path, "r+b");
    assert_non_null(fp);
    assert_int_equal(ftruncate(fileno(fp), 5), 0);
    fclose(fp);
    expect_open_fails(f, MP_ERR_FORMAT, "truncated");
}

static void test_bad_truncated_data(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path, ok_hdr2, -1, d, 10); /* 12 bytes promised */
    expect_open_fails(f, MP_ERR_FORMAT, "exceed the data section (10 bytes)");
}

static void test_bad_header_length(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path, ok_hdr2, 100000, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "header length 100000 exceeds the file");
}

static void test_bad_offsets_range(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[96,100]}}",
              -1, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "tensor 'b' data_offsets [96, 100] exceed the data "
                                        "section (12 bytes)");
}

static void test_bad_offsets_overlap(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              -1, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "overlap");
}

static void test_bad_offsets_hole(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
              -1, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "hole");
    /* trailing bytes that no tensor covers */
    write_raw(f->path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, d,
              sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "cover only 8");
}

static void test_bad_dtype(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F33\",\"shape\":[3],\"data_offsets\":[0,12]}}", -1, d,
              sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "tensor 'a' has unknown dtype 'F33'");
}

static void test_bad_shape_size(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", -1, d,
              sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "does not match data_offsets");
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[-3],\"data_offsets\":[0,12]}}", -1, d,
              sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "not a non-negative integer");
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,12]}}", -1, d,
              sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "not a non-negative integer");
    /* a product that overflows 64 bits */
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
              "\"data_offsets\":[0,12]}}", -1, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "overflow");
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,2097152],"
              "\"data_offsets\":[0,12]}}", -1, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "does not match");
}

static void test_bad_json(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],", -1, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "not valid JSON");
    write_raw(f->path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}} x",
              -1, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "not valid JSON");
    write_raw(f->path, "[1, 2]", -1, d, sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "not a JSON object");
    write_raw(f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", -1, d,
              sizeof d);
    mp_st_model *m = NULL;
    assert_int_not_equal(mp_st_open(f->path, &m), MP_OK); /* duplicate name */
    assert_null(m);
}

static void test_bad_metadata(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path,
              "{\"__metadata__\":{\"format\":1},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", -1, d,
              sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "__metadata__ value 'format' is not a string");
    write_raw(f->path,
              "{\"__metadata__\":[\"x\"],"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", -1, d,
              sizeof d);
    expect_open_fails(f, MP_ERR_FORMAT, "__metadata__");
}

static void test_missing_tensor(void **state)
{
    fx *f = *state;
    float d[3] = {1, 2, 3};
    write_raw(f->path, ok_hdr2, -1, d, sizeof d);
    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(f->path, &m), MP_OK);
    float out[4];
    expect_msg(mp_st_read_f32(m, "model.layers.2.mlp.up_proj.weight", 0, NULL, out),
               MP_ERR_NOT_FOUND, f->path, "no tensor 'model.layers.2.mlp.up_proj.weight'");
    mp_st_close(&m);
    /* through the directory the message still names the file */
    assert_int_equal(mp_st_open(f->dir, &m), MP_OK);
    expect_msg(mp_st_read_f32(m, "zz", 0, NULL, out), MP_ERR_NOT_FOUND, "model.safetensors",
               "no tensor 'zz'");
    mp_st_close(&m);
    /* an empty directory */
    assert_int_equal(remove(f->path), 0);
    expect_msg(mp_st_open(f->dir, &m), MP_ERR_NOT_FOUND, f->dir, "model.safetensors");
}

static void test_nan_weight(void **state)
{
    fx *f = *state;
    float d[3] = {1, NAN, 3};
    write_raw(f->path, ok_hdr2, -1, d, sizeof d);
    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(f->path, &m), MP_OK);
    float out[4];
    expect_msg(mp_st_read_f32(m, "a", 0, NULL, out), MP_ERR_NUMERIC, f->path,
               "tensor 'a' has a non-finite value (NaN) at element 1");
    assert_int_equal(mp_st_read_f32(m, "b", 0, NULL, out), MP_OK);
    mp_st_close(&m);
    /* an F16 infinity */
    uint16_t h[2] = {0x3c00, 0xfc00};
    write_raw(f->path, "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", -1,
              h, sizeof h);
    assert_int_equal(mp_st_open(f->path, &m), MP_OK);
    expect_msg(mp_st_read_f32(m, "h", 0, NULL, out), MP_ERR_NUMERIC, f->path, "-inf");
    mp_st_close(&m);
}

static void test_shape_mismatch_on_read(void **state)
{
    fx *f = *state;
    float d[6] = {1, 2, 3, 4, 5, 6};
    write_raw(f->path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}",
              -1, d, sizeof d);
    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(f->path, &m), MP_OK);
    float out[6];
    int64_t want[2] = {3, 2};
    expect_msg(mp_st_read_f32(m, "w", 2, want, out), MP_ERR_FORMAT, f->path,
               "tensor 'w' has shape [2, 3] but [3, 2] was expected");
    int64_t want1[1] = {6};
    expect_msg(mp_st_read_f32(m, "w", 1, want1, out), MP_ERR_FORMAT, f->path, "[6]");
    mp_st_close(&m);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_round_trip),
        T(test_write_bad_args),
        T(test_write_failure_leaves_nothing),
        T(test_sharded),
        T(test_sharded_bad_map),
        T(test_fixture),
        T(test_bad_truncated),
        T(test_bad_truncated_data),
        T(test_bad_header_length),
        T(test_bad_offsets_range),
        T(test_bad_offsets_overlap),
        T(test_bad_offsets_hole),
        T(test_bad_dtype),
        T(test_bad_shape_size),
        T(test_bad_json),
        T(test_bad_metadata),
        T(test_missing_tensor),
        T(test_nan_weight),
        T(test_shape_mismatch_on_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
