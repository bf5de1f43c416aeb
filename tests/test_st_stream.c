/* test_st_stream: the streaming safetensors writer. Unit tests (cmocka): out-of-order writes
 * read back by mp_st_open, byte equality with mp_st_write, automatic and caller's sharding with
 * the index, every failure leaving nothing behind (a tensor missing at close, written twice,
 * wrong size, unknown name, bad spec), and mp_alloc failures at every allocation.
 *
 * `test_st_stream write DIR` writes the models that tests/check_st_stream.py reads with the
 * reference Python reader: DIR/single (one file, F32/F16/BF16/I64, a scalar, an empty tensor,
 * __metadata__) and DIR/sharded (the same, automatic shards of at most 4096 bytes). Values:
 * tensor k element i = (float)(((i * 7919 + k * 131) % 2001 - 1000) / 337.0).
 */
#define _XOPEN_SOURCE 700

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_st_stream.h"

static float value(int k, int64_t i)
{
    return (float)((double)((i * 7919 + k * 131) % 2001 - 1000) / 337.0);
}

#define NT 7
static const mp_sts_spec SPECS[NT] = {
    {.name = "model.embed_tokens.weight", .dtype = MP_DT_F32, .ndim = 2, .shape = {64, 16}},
    {.name = "half \"q\"", .dtype = MP_DT_F16, .ndim = 2, .shape = {24, 16}},
    {.name = "brain", .dtype = MP_DT_BF16, .ndim = 3, .shape = {3, 5, 7}},
    {.name = "ids", .dtype = MP_DT_I64, .ndim = 1, .shape = {5}},
    {.name = "scalar", .dtype = MP_DT_F32, .ndim = 0},
    {.name = "empty", .dtype = MP_DT_F16, .ndim = 2, .shape = {0, 4}},
    {.name = "z.last", .dtype = MP_DT_BF16, .ndim = 1, .shape = {2000}},
};
static const char *META = "{\"format\":\"pt\",\"note\":\"a b\"}";

static int64_t numel_of(const mp_sts_spec *s)
{
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++)
        n *= s->shape[d];
    return n;
}

/* Writes every tensor of SPECS, in reverse order, into w. */
static mp_status put_all(mp_sts *w)
{
    for (int k = NT - 1; k >= 0; k--) {
        const mp_sts_spec *s = &SPECS[k];
        int64_t n = numel_of(s);
        mp_status st;
        if (s->dtype == MP_DT_I64) {
            int64_t v[5] = {7, -1, INT64_MAX, 0, 42};
            st = mp_sts_put_raw(w, s->name, v, sizeof v);
        } else {
            float *v = calloc((size_t)(n ? n : 1), sizeof *v);
            if (!v)
                return MP_ERR_NOMEM;
            for (int64_t i = 0; i < n; i++)
                v[i] = value(k, i);
            st = mp_sts_put_f32(w, s->name, v, n);
            free(v);
        }
        if (st != MP_OK)
            return st;
    }
    return MP_OK;
}

static mp_status write_model(const char *dir, int64_t max_shard)
{
    mp_sts *w = NULL;
    mp_sts_layout lay = {.metadata = META, .max_shard_bytes = max_shard};
    mp_status st = mp_sts_create(dir, SPECS, NT, &lay, &w);
    if (st != MP_OK)
        return st;
    st = put_all(w);
    if (st != MP_OK) {
        mp_sts_abort(&w);
        return st;
    }
    return mp_sts_close(&w);
}

/* ---------- fixtures ---------- */

typedef struct {
    char dir[64];
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
    snprintf(f->dir, sizeof f->dir, "/tmp/mp_test_sts_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
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

static void expect_msg(mp_status got, mp_status want, const char *phrase)
{
    const char *msg = mp_error_message();
    if (got != want || !strstr(msg, phrase)) {
        print_error("status %d (want %d), message: %s (want '%s')\n", (int)got, (int)want, msg,
                    phrase);
        fail();
    }
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return b;
}

/* ---------- tests ---------- */

static void check_values(const mp_st_model *m)
{
    assert_int_equal(mp_st_count(m), NT);
    for (int k = 0; k < NT; k++) {
        const mp_sts_spec *s = &SPECS[k];
        const mp_st_tensor *t = mp_st_find(m, s->name);
        assert_non_null(t);
        assert_int_equal(t->dtype, s->dtype);
        assert_int_equal(t->ndim, s->ndim);
        for (int d = 0; d < s->ndim; d++)
            assert_int_equal(t->shape[d], s->shape[d]);
        if (s->dtype == MP_DT_I64)
            continue;
        int64_t n = numel_of(s);
        float *got = calloc((size_t)(n ? n : 1), sizeof *got);
        float *want = calloc((size_t)(n ? n : 1), sizeof *want);
        unsigned char *tmp = calloc((size_t)(n ? n : 1), 4);
        assert_true(got && want && tmp);
        for (int64_t i = 0; i < n; i++)
            want[i] = value(k, i);
        /* the expected rounding: float32 -> dtype -> float32 */
        assert_int_equal(mp_dtype_from_f32(s->dtype, want, (size_t)n, tmp), MP_OK);
        assert_int_equal(mp_dtype_to_f32(s->dtype, tmp, (size_t)n, want), MP_OK);
        assert_int_equal(mp_st_read_f32(m, s->name, 0, NULL, got), MP_OK);
        assert_memory_equal(got, want, (size_t)n * sizeof *got);
        free(got);
        free(want);
        free(tmp);
    }
}

static void test_single_file(void **state)
{
    fx *f = *state;
    assert_int_equal(write_model(f->dir, 0), MP_OK);
    assert_int_equal(count_dir(f->dir), 1); /* model.safetensors, no temporary, no index */
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", f->dir);
    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(path, &m), MP_OK);
    assert_string_equal(mp_st_file_metadata(m, 0), META);
    for (int k = 0; k < NT; k++) /* file order = spec order */
        assert_string_equal(mp_st_at(m, (size_t)k)->name, SPECS[k].name);
    check_values(m);
    mp_st_close(&m);
}

/* The same tensors through mp_st_write: the same bytes. */
static void test_same_bytes_as_mp_st_write(void **state)
{
    fx *f = *state;
    assert_int_equal(write_model(f->dir, 0), MP_OK);
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/model.safetensors", f->dir);
    snprintf(b, sizeof b, "%s/ref.safetensors", f->dir);
    mp_st_entry e[NT];
    void *data[NT];
    int64_t ids[5] = {7, -1, INT64_MAX, 0, 42};
    for (int k = 0; k < NT; k++) {
        const mp_sts_spec *s = &SPECS[k];
        int64_t n = numel_of(s);
        e[k] = (mp_st_entry){.name = s->name, .dtype = s->dtype, .ndim = s->ndim};
        memcpy(e[k].shape, s->shape, sizeof s->shape);
        data[k] = calloc((size_t)(n ? n : 1), 8);
        assert_non_null(data[k]);
        if (s->dtype == MP_DT_I64) {
            memcpy(data[k], ids, sizeof ids);
        } else {
            float *v = calloc((size_t)(n ? n : 1), sizeof *v);
            assert_non_null(v);
            for (int64_t i = 0; i < n; i++)
                v[i] = value(k, i);
            assert_int_equal(mp_dtype_from_f32(s->dtype, v, (size_t)n, data[k]), MP_OK);
            free(v);
        }
        e[k].data = data[k];
    }
    assert_int_equal(mp_st_write(b, e, NT, META), MP_OK);
    size_t na, nb;
    unsigned char *ba = read_all(a, &na), *bb = read_all(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
    for (int k = 0; k < NT; k++)
        free(data[k]);
}

static void test_auto_shards(void **state)
{
    fx *f = *state;
    assert_int_equal(write_model(f->dir, 4096), MP_OK);
    /* embed 4096 B | half 768 B + brain 210 B + ids 40 + scalar 4 + empty 0 | z.last 4000 B */
    assert_int_equal(count_dir(f->dir), 4);
    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(f->dir, &m), MP_OK);
    assert_true(mp_st_is_sharded(m));
    assert_int_equal(mp_st_file_count(m), 3);
    /* the reader orders files by the index: brain's shard comes first */
    assert_string_equal(mp_st_file_name(m, mp_st_find(m, "brain")->file),
                        "model-00002-of-00003.safetensors");
    assert_string_equal(mp_st_file_name(m, mp_st_find(m, "z.last")->file),
                        "model-00003-of-00003.safetensors");
    assert_string_equal(mp_st_file_name(m, mp_st_find(m, "model.embed_tokens.weight")->file),
                        "model-00001-of-00003.safetensors");
    for (int k = 0; k < 3; k++)
        assert_string_equal(mp_st_file_metadata(m, k), META);
    check_values(m);
    mp_st_close(&m);
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", f->dir);
    size_t n;
    char *idx = (char *)read_all(path, &n);
    idx[n] = '\0';
    assert_non_null(strstr(idx, "\"total_size\": 9118\n"));
    assert_non_null(strstr(idx, "\"brain\": \"model-00002-of-00003.safetensors\",\n"));
    free(idx);
}

static void test_caller_shards(void **state)
{
    fx *f = *state;
    mp_sts_spec sp[NT];
    memcpy(sp, SPECS, sizeof sp);
    for (int k = 0; k < NT; k++)
        sp[k].shard = k % 2;
    const char *names[2] = {"a.safetensors", "b.safetensors"};
    const char *meta[2] = {NULL, "{\"x\":\"y\"}"};
    mp_sts_layout lay = {.n_shards = 2, .shard_names = names, .shard_metadata = meta};
    mp_sts *w = NULL;
    assert_int_equal(mp_sts_create(f->dir, sp, NT, &lay, &w), MP_OK);
    assert_int_equal(mp_sts_file_count(w), 2);
    assert_string_equal(mp_sts_file_name(w, 1), "b.safetensors");
    assert_int_equal(put_all(w), MP_OK);
    assert_int_equal(mp_sts_close(&w), MP_OK);
    assert_null(w);
    mp_st_model *m = NULL;
    assert_int_equal(mp_st_open(f->dir, &m), MP_OK);
    assert_int_equal(mp_st_file_count(m), 2);
    assert_string_equal(mp_st_file_metadata(m, 0), "{}");
    assert_string_equal(mp_st_file_metadata(m, 1), "{\"x\":\"y\"}");
    assert_int_equal(mp_st_find(m, "brain")->file, 0);
    assert_int_equal(mp_st_find(m, "ids")->file, 1);
    check_values(m);
    mp_st_close(&m);

    /* One caller shard with index = true: the index is written all the same. */
    char sub[128];
    snprintf(sub, sizeof sub, "%s/one", f->dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    for (int k = 0; k < NT; k++)
        sp[k].shard = 0;
    mp_sts_layout one = {.n_shards = 1, .shard_names = names, .index = true};
    assert_int_equal(mp_sts_create(sub, sp, NT, &one, &w), MP_OK);
    assert_int_equal(put_all(w), MP_OK);
    assert_int_equal(mp_sts_close(&w), MP_OK);
    assert_int_equal(count_dir(sub), 2);
    assert_int_equal(mp_st_open(sub, &m), MP_OK);
    assert_true(mp_st_is_sharded(m));
    mp_st_close(&m);
}

static void test_failures_leave_nothing(void **state)
{
    fx *f = *state;
    mp_sts *w = NULL;
    mp_sts_layout lay = {.metadata = META, .max_shard_bytes = 4096};
    float v[2000] = {0};

    /* a tensor never written: close fails and removes everything */
    assert_int_equal(mp_sts_create(f->dir, SPECS, NT, &lay, &w), MP_OK);
    assert_int_equal(count_dir(f->dir), 3); /* the temporary shards */
    assert_int_equal(mp_sts_put_f32(w, "scalar", v, 1), MP_OK);
    expect_msg(mp_sts_close(&w), MP_ERR_INTERNAL, "was never written (6 of 7 missing)");
    assert_null(w);
    assert_int_equal(count_dir(f->dir), 0);

    /* twice, wrong size, unknown name, a non-float dtype from float32 */
    assert_int_equal(mp_sts_create(f->dir, SPECS, NT, &lay, &w), MP_OK);
    assert_int_equal(mp_sts_put_f32(w, "scalar", v, 1), MP_OK);
    expect_msg(mp_sts_put_f32(w, "scalar", v, 1), MP_ERR_ARG, "'scalar' written twice");
    expect_msg(mp_sts_put_f32(w, "z.last", v, 1999), MP_ERR_ARG, "2000 elements, 1999 given");
    expect_msg(mp_sts_put_raw(w, "z.last", v, 1000), MP_ERR_ARG, "4000 bytes, 1000 given");
    expect_msg(mp_sts_put_f32(w, "nope", v, 1), MP_ERR_NOT_FOUND, "no tensor 'nope'");
    expect_msg(mp_sts_put_f32(w, "ids", v, 5), MP_ERR_UNSUPPORTED, "I64");
    assert_true(mp_sts_written(w, 4));
    assert_false(mp_sts_written(w, 6));
    assert_int_equal(mp_sts_find(w, "brain"), 2);
    assert_int_equal(mp_sts_find(w, "nope"), -1);
    mp_sts_abort(&w);
    assert_null(w);
    mp_sts_abort(&w);
    assert_int_equal(count_dir(f->dir), 0);
    assert_int_equal(mp_sts_close(&w), MP_OK); /* NULL is fine */

    /* bad specs */
    mp_sts_spec sp[2] = {SPECS[0], SPECS[0]};
    expect_msg(mp_sts_create(f->dir, sp, 2, &lay, &w), MP_ERR_ARG, "given twice");
    sp[1].name = "__metadata__";
    expect_msg(mp_sts_create(f->dir, sp, 2, &lay, &w), MP_ERR_ARG, "invalid name");
    sp[1] = SPECS[1];
    sp[1].shape[0] = -1;
    expect_msg(mp_sts_create(f->dir, sp, 2, &lay, &w), MP_ERR_ARG, "negative dimension");
    sp[1] = SPECS[1];
    sp[1].shape[0] = (int64_t)1 << 40;
    sp[1].shape[1] = (int64_t)1 << 20;
    expect_msg(mp_sts_create(f->dir, sp, 2, &lay, &w), MP_ERR_RANGE, "too large");
    mp_sts_layout badmeta = {.metadata = "{\"a\":1}"};
    expect_msg(mp_sts_create(f->dir, SPECS, 1, &badmeta, &w), MP_ERR_ARG,
               "not a JSON object of strings (key 'a')");
    const char *names[1] = {"x.safetensors"};
    mp_sts_layout one = {.n_shards = 1, .shard_names = names};
    sp[1] = SPECS[1];
    sp[1].shard = 1;
    expect_msg(mp_sts_create(f->dir, sp, 2, &one, &w), MP_ERR_ARG, "names shard 1 of 1");
    assert_null(w);
    assert_int_equal(count_dir(f->dir), 0);

    /* an existing file of the same name is never replaced */
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", f->dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fclose(fp);
    mp_sts_layout plain = {0};
    assert_int_equal(mp_sts_create(f->dir, SPECS, NT, &plain, &w), MP_OK);
    assert_int_equal(put_all(w), MP_OK);
    expect_msg(mp_sts_close(&w), MP_ERR_IO, "already exists");
    assert_int_equal(count_dir(f->dir), 1);
}

/* Every allocation failing in turn: a clean error, nothing left, no leak (ASan). */
static void test_alloc_failures(void **state)
{
    fx *f = *state;
    int failed = 0;
    for (int64_t k = 1; k < 400; k++) {
        mp_alloc_fail_at(k);
        mp_status st = write_model(f->dir, 4096);
        mp_alloc_fail_at(0);
        if (st == MP_OK) {
            assert_true(failed > 0);
            break;
        }
        failed++;
        assert_int_equal(st, MP_ERR_NOMEM);
        assert_int_equal(count_dir(f->dir), 0);
    }
    assert_true(failed > 10);
}

static int write_models(const char *dir)
{
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/single", dir);
    snprintf(b, sizeof b, "%s/sharded", dir);
    if (mkdir(a, 0755) != 0 || mkdir(b, 0755) != 0) {
        fprintf(stderr, "test_st_stream: cannot create %s and %s\n", a, b);
        return 1;
    }
    if (write_model(a, 0) != MP_OK || write_model(b, 4096) != MP_OK) {
        fprintf(stderr, "test_st_stream: %s\n", mp_error_message());
        return 1;
    }
    return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "write") == 0)
        return write_models(argv[2]);
    const struct CMUnitTest tests[] = {
        T(test_single_file),   T(test_same_bytes_as_mp_st_write), T(test_auto_shards),
        T(test_caller_shards), T(test_failures_leave_nothing),    T(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
