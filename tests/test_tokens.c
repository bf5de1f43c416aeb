/* io/mp_tokens: .bin + .json sidecar and .npy token files, windows, vocabulary check, and
 * every refusal. Bad files are written into a fresh temporary directory. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mp_sha256.h"
#include "mp_tokens.h"

#define CALIB_BIN MP_FIXTURE_DIR "/calib.bin"
#define CALIB_NPY MP_FIXTURE_DIR "/calib.npy"
#define EVAL_BIN MP_FIXTURE_DIR "/eval_dev.bin"
#define EVAL_NPY MP_FIXTURE_DIR "/eval_dev.npy"

static char g_dir[256];
/* Files written by the tests, removed at the end. */
static char g_files[64][320];
static int g_nfiles;

static const char *tmp_path(const char *name)
{
    static char buf[8][320];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", g_dir, name);
    return p;
}

static void write_file(const char *name, const void *data, size_t n)
{
    const char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (n > 0)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    for (int i = 0; i < g_nfiles; i++)
        if (strcmp(g_files[i], p) == 0)
            return;
    assert_true(g_nfiles < 64);
    snprintf(g_files[g_nfiles++], sizeof g_files[0], "%s", p);
}

static void write_text(const char *name, const char *text)
{
    write_file(name, text, strlen(text));
}

/* A .npy file: version major, header dict text (padded and newline-terminated here), data. */
static void write_npy(const char *name, int major, const char *dict, const void *data,
                      size_t n)
{
    unsigned char buf[4096];
    size_t prefix = major == 1 ? 10 : 12;
    size_t dl = strlen(dict);
    size_t total = prefix + dl + 1;
    total = (total + 63) / 64 * 64;
    size_t hlen = total - prefix;
    assert_true(total + n <= sizeof buf);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    if (major == 1) {
        buf[8] = (unsigned char)(hlen & 0xff);
        buf[9] = (unsigned char)(hlen >> 8);
    } else {
        for (int i = 0; i < 4; i++)
            buf[8 + i] = (unsigned char)(hlen >> (8 * i));
    }
    memcpy(buf + prefix, dict, dl);
    memset(buf + prefix + dl, ' ', hlen - dl - 1);
    buf[total - 1] = '\n';
    if (n > 0)
        memcpy(buf + total, data, n);
    write_file(name, buf, total + n);
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* The message names `file` and contains `what`, on one line. */
static void assert_msg(const char *file, const char *what)
{
    const char *m = mp_error_message();
    if (strstr(m, file) == NULL || (what != NULL && strstr(m, what) == NULL))
        fail_msg("message '%s' does not name '%s' / '%s'", m, file, what ? what : "");
    if (strchr(m, '\n') != NULL)
        fail_msg("message '%s' spans lines", m);
}

/* Loading `path` fails with `code`; the message names `named` (the data file or its sidecar). */
static void expect_load_fail_named(const char *path, mp_status code, const char *named,
                                   const char *what)
{
    mp_tokens t = {(uint32_t *)(uintptr_t)1, 99};
    mp_error_clear();
    mp_status st = mp_tokens_load(path, &t);
    if (st != code)
        fail_msg("%s: status %d (%s), expected %d; message '%s'", path, (int)st,
                 mp_status_str(st), (int)code, mp_error_message());
    assert_null(t.ids);
    assert_int_equal(t.count, 0);
    assert_msg(named, what);
}

static void expect_load_fail(const char *path, mp_status code, const char *what)
{
    expect_load_fail_named(path, code, path, what);
}

/* A sidecar whose content is wrong: the message names the sidecar. */
static void expect_sidecar_fail(const char *bin, const char *json, mp_status code,
                                const char *what)
{
    char p[320];
    snprintf(p, sizeof p, "%s", tmp_path(bin));
    expect_load_fail_named(p, code, tmp_path(json), what);
}

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/mp_test_tokens_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < g_nfiles; i++)
        remove(g_files[i]);
    return rmdir(g_dir);
}

static void load_ok(const char *path, mp_tokens *t)
{
    mp_status st = mp_tokens_load(path, t);
    if (st != MP_OK)
        fail_msg("%s", mp_error_message());
}

static void test_calib(void **state)
{
    (void)state;
    mp_tokens b = {0}, n = {0};
    load_ok(CALIB_BIN, &b);
    load_ok(CALIB_NPY, &n);
    assert_int_equal(b.count, 32768);
    assert_int_equal(n.count, 32768);
    static const uint32_t first[8] = {1, 301, 427, 309, 426, 301, 427, 309};
    assert_memory_equal(b.ids, first, sizeof first);
    assert_int_equal(b.ids[32767], 399);
    assert_memory_equal(b.ids, n.ids, (size_t)b.count * sizeof *b.ids);
    assert_int_equal(mp_tokens_check_vocab(&b, 512, CALIB_BIN), MP_OK);
    int64_t w = 0;
    assert_int_equal(mp_tokens_windows(&b, 256, CALIB_BIN, &w), MP_OK);
    assert_int_equal(w, 128);
    mp_tokens_free(&b);
    mp_tokens_free(&n);
    assert_null(b.ids);
    assert_int_equal(b.count, 0);
    mp_tokens_free(&b); /* twice is fine */
    mp_tokens_free(NULL);
}

static void test_eval_dev(void **state)
{
    (void)state;
    mp_tokens b = {0}, n = {0};
    load_ok(EVAL_BIN, &b);
    load_ok(EVAL_NPY, &n);
    assert_int_equal(b.count, 78336);
    assert_int_equal(n.count, 78336);
    static const uint32_t first[5] = {1, 403, 407, 261, 378};
    assert_memory_equal(b.ids, first, sizeof first);
    assert_int_equal(b.ids[1000], 413);
    assert_int_equal(b.ids[78335], 333);
    assert_memory_equal(b.ids, n.ids, (size_t)b.count * sizeof *b.ids);
    assert_int_equal(mp_tokens_check_vocab(&n, 512, EVAL_NPY), MP_OK);
    int64_t w = 0;
    assert_int_equal(mp_tokens_windows(&b, 256, EVAL_BIN, &w), MP_OK);
    assert_int_equal(w, 306);
    assert_int_equal(mp_tokens_windows(&b, 512, EVAL_BIN, &w), MP_OK);
    assert_int_equal(w, 153);
    assert_int_equal(mp_tokens_windows(&b, 1000, EVAL_BIN, &w), MP_OK);
    assert_int_equal(w, 78);
    assert_int_equal(mp_tokens_windows(&b, 78336, EVAL_BIN, &w), MP_OK);
    assert_int_equal(w, 1);
    mp_tokens_free(&b);
    mp_tokens_free(&n);
}

static void test_uint32_bin(void **state)
{
    (void)state;
    static const uint32_t ids[5] = {0, 70000, 4294967295u, 5, 65536};
    unsigned char raw[20];
    for (int i = 0; i < 5; i++)
        put_le(raw + 4 * i, ids[i], 4);
    write_file("u32.bin", raw, sizeof raw);
    mp_sha256 s;
    char hex[65], json[256];
    mp_sha256_init(&s);
    mp_sha256_update(&s, raw, sizeof raw);
    mp_sha256_final_hex(&s, hex);
    snprintf(json, sizeof json,
             "{\"dtype\": \"uint32\", \"byteorder\": \"little\", \"count\": 5, "
             "\"sha256\": \"%s\"}", hex);
    write_text("u32.json", json);
    mp_tokens t = {0};
    load_ok(tmp_path("u32.bin"), &t);
    assert_int_equal(t.count, 5);
    assert_memory_equal(t.ids, ids, sizeof ids);
    mp_error_clear();
    assert_int_equal(mp_tokens_check_vocab(&t, 100000, "u32.bin"), MP_ERR_RANGE);
    assert_msg("u32.bin", "position 2");
    mp_tokens_free(&t);

    /* upper-case hex is accepted */
    for (int i = 0; hex[i]; i++)
        if (hex[i] >= 'a' && hex[i] <= 'f')
            hex[i] = (char)(hex[i] - 'a' + 'A');
    snprintf(json, sizeof json,
             "{\"dtype\": \"uint32\", \"byteorder\": \"little\", \"sha256\": \"%s\"}", hex);
    write_text("u32.json", json);
    load_ok(tmp_path("u32.bin"), &t);
    assert_int_equal(t.count, 5);
    mp_tokens_free(&t);

    /* count and sha256 are optional */
    write_text("u32.json", "{\"dtype\": \"uint32\", \"byteorder\": \"little\"}");
    load_ok(tmp_path("u32.bin"), &t);
    assert_int_equal(t.count, 5);
    mp_tokens_free(&t);
}

static void test_npy_variants(void **state)
{
    (void)state;
    unsigned char raw[6 * 8];
    static const int64_t v[6] = {0, 1, 511, 2, 300000, 7};
    for (int i = 0; i < 6; i++)
        put_le(raw + 8 * i, (uint64_t)v[i], 8);
    write_npy("i8.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }", raw,
              sizeof raw);
    mp_tokens t = {0};
    load_ok(tmp_path("i8.npy"), &t);
    assert_int_equal(t.count, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(t.ids[i], v[i]);
    mp_tokens_free(&t);

    /* version 2.0 and 3.0 headers, <i4 and <u4, keys in another order, 1-D shape */
    unsigned char r4[3 * 4];
    for (int i = 0; i < 3; i++)
        put_le(r4 + 4 * i, (uint64_t)v[i + 2], 4);
    write_npy("i4v2.npy", 2, "{'shape': (3,), 'fortran_order': False, 'descr': '<i4'}", r4,
              sizeof r4);
    load_ok(tmp_path("i4v2.npy"), &t);
    assert_int_equal(t.count, 3);
    assert_int_equal(t.ids[0], 511);
    assert_int_equal(t.ids[2], 300000);
    mp_tokens_free(&t);
    write_npy("u4v3.npy", 3, "{'descr': '<u4', 'fortran_order': False, 'shape': (3,), }", r4,
              sizeof r4);
    load_ok(tmp_path("u4v3.npy"), &t);
    assert_int_equal(t.count, 3);
    assert_int_equal(t.ids[1], 2);
    mp_tokens_free(&t);
}

static void test_err_empty(void **state)
{
    (void)state;
    write_file("empty.bin", NULL, 0);
    write_text("empty.json", "{\"dtype\": \"uint16\", \"byteorder\": \"little\", \"count\": 0}");
    expect_load_fail(tmp_path("empty.bin"), MP_ERR_FORMAT, "empty token file");
    write_file("empty.npy", NULL, 0);
    expect_load_fail(tmp_path("empty.npy"), MP_ERR_FORMAT, "empty token file");
    write_npy("zero.npy", 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (0,), }", NULL,
              0);
    expect_load_fail(tmp_path("zero.npy"), MP_ERR_FORMAT, "empty token file");
}

static const unsigned char six[6] = {1, 0, 2, 0, 3, 0};

static void test_err_sidecar(void **state)
{
    (void)state;
    write_file("s.bin", six, sizeof six);
    write_text("s.json", "{\"dtype\": \"uint16\", \"byteorder\": \"little\", \"count\": 4}");
    expect_load_fail(tmp_path("s.bin"), MP_ERR_FORMAT, "count 4");
    write_text("s.json", "{\"dtype\": \"uint16\", \"byteorder\": \"little\", \"sha256\": "
               "\"0000000000000000000000000000000000000000000000000000000000000000\"}");
    expect_load_fail(tmp_path("s.bin"), MP_ERR_FORMAT, "sha256");
    write_text("s.json", "{\"dtype\": \"uint16\", \"byteorder\": \"little\", \"sha256\": \"ab\"}");
    expect_sidecar_fail("s.bin", "s.json", MP_ERR_FORMAT, "sha256");
    write_text("s.json", "{\"dtype\": \"int8\", \"byteorder\": \"little\"}");
    expect_sidecar_fail("s.bin", "s.json", MP_ERR_UNSUPPORTED, "int8");
    write_text("s.json", "{\"dtype\": \"uint16\", \"byteorder\": \"big\"}");
    expect_sidecar_fail("s.bin", "s.json", MP_ERR_UNSUPPORTED, "byteorder");
    write_text("s.json", "{\"byteorder\": \"little\"}");
    expect_sidecar_fail("s.bin", "s.json", MP_ERR_FORMAT, "dtype");
    write_text("s.json", "{\"dtype\": \"uint16\", \"byteorder\": \"little\", \"count\": \"3\"}");
    expect_sidecar_fail("s.bin", "s.json", MP_ERR_FORMAT, "count");
    write_text("s.json", "{\"dtype\": \"uint16\", ");
    expect_sidecar_fail("s.bin", "s.json", MP_ERR_FORMAT, "malformed JSON");
    write_text("s.json", "{\"dtype\": \"uint32\", \"byteorder\": \"little\"}");
    expect_load_fail(tmp_path("s.bin"), MP_ERR_FORMAT, "whole number");

    write_file("odd.bin", six, 5);
    write_text("odd.json", "{\"dtype\": \"uint16\", \"byteorder\": \"little\"}");
    expect_load_fail(tmp_path("odd.bin"), MP_ERR_FORMAT, "5 bytes");

    write_file("nosidecar.bin", six, sizeof six);
    expect_load_fail(tmp_path("nosidecar.bin"), MP_ERR_NOT_FOUND, "nosidecar.json");
}

static void test_err_missing(void **state)
{
    (void)state;
    expect_load_fail(tmp_path("absent.bin"), MP_ERR_NOT_FOUND, "no such file");
    expect_load_fail(tmp_path("absent.npy"), MP_ERR_NOT_FOUND, "no such file");
    expect_load_fail(g_dir, MP_ERR_UNSUPPORTED, NULL);
}

static void test_err_npy(void **state)
{
    (void)state;
    unsigned char raw[64];
    memset(raw, 0, sizeof raw);

    write_file("magic.npy", "\x93NUMPZ\x01\x00\x10\x00{}               \n", 26);
    expect_load_fail(tmp_path("magic.npy"), MP_ERR_FORMAT, "magic");
    write_file("short.npy", "\x93NUM", 4);
    expect_load_fail(tmp_path("short.npy"), MP_ERR_FORMAT, "short");

    write_npy("fortran.npy", 1, "{'descr': '<u2', 'fortran_order': True, 'shape': (2, 3), }",
              raw, 12);
    expect_load_fail(tmp_path("fortran.npy"), MP_ERR_UNSUPPORTED, "fortran_order");

    write_npy("f4.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", raw,
              12);
    expect_load_fail(tmp_path("f4.npy"), MP_ERR_UNSUPPORTED, "<f4");
    write_npy("be.npy", 1, "{'descr': '>u2', 'fortran_order': False, 'shape': (3,), }", raw, 6);
    expect_load_fail(tmp_path("be.npy"), MP_ERR_UNSUPPORTED, ">u2");

    /* shape × itemsize != data bytes, both ways */
    write_npy("size1.npy", 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (4,), }", raw,
              6);
    expect_load_fail(tmp_path("size1.npy"), MP_ERR_FORMAT, "data bytes");
    write_npy("size2.npy", 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }", raw,
              6);
    expect_load_fail(tmp_path("size2.npy"), MP_ERR_FORMAT, "data bytes");

    write_npy("key.npy", 1,
              "{'descr': '<u2', 'fortran_order': False, 'shape': (3,), 'extra': 1, }", raw, 6);
    expect_load_fail(tmp_path("key.npy"), MP_ERR_FORMAT, "extra");
    write_npy("nokey.npy", 1, "{'descr': '<u2', 'shape': (3,), }", raw, 6);
    expect_load_fail(tmp_path("nokey.npy"), MP_ERR_FORMAT, "fortran_order");
    write_npy("garbage.npy", 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (3,), } x",
              raw, 6);
    expect_load_fail(tmp_path("garbage.npy"), MP_ERR_FORMAT, "header");
    write_npy("negshape.npy", 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (-3,), }",
              raw, 6);
    expect_load_fail(tmp_path("negshape.npy"), MP_ERR_FORMAT, "header");
    write_npy("ver.npy", 4, "{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }", raw, 6);
    expect_load_fail(tmp_path("ver.npy"), MP_ERR_UNSUPPORTED, "version");

    /* header length pointing past the end of the file */
    unsigned char hl[32] = "\x93NUMPY\x01\x00\xff\x7f{'descr': '<u2'";
    write_file("hlen.npy", hl, 26);
    expect_load_fail(tmp_path("hlen.npy"), MP_ERR_FORMAT, "header length");
    unsigned char hl2[32] = "\x93NUMPY\x02\x00\x00\x00\x00\x80{'descr'";
    write_file("hlen2.npy", hl2, 20);
    expect_load_fail(tmp_path("hlen2.npy"), MP_ERR_FORMAT, "header length");
}

static void test_err_negative(void **state)
{
    (void)state;
    unsigned char raw[3 * 8];
    put_le(raw, 5, 8);
    put_le(raw + 8, 6, 8);
    put_le(raw + 16, (uint64_t)(int64_t)-1, 8);
    write_npy("neg8.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", raw,
              sizeof raw);
    expect_load_fail(tmp_path("neg8.npy"), MP_ERR_RANGE, "position 2");
    put_le(raw, 0x80000000u, 4);
    write_npy("neg4.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", raw,
              4);
    expect_load_fail(tmp_path("neg4.npy"), MP_ERR_RANGE, "negative");
    put_le(raw, (uint64_t)1 << 32, 8);
    write_npy("big8.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", raw,
              8);
    expect_load_fail(tmp_path("big8.npy"), MP_ERR_RANGE, "position 0");
}

static void test_err_vocab_and_windows(void **state)
{
    (void)state;
    mp_tokens t = {0};
    load_ok(EVAL_BIN, &t);
    t.ids[1234] = 600;
    mp_error_clear();
    assert_int_equal(mp_tokens_check_vocab(&t, 512, EVAL_BIN), MP_ERR_RANGE);
    assert_msg(EVAL_BIN, "position 1234");
    assert_non_null(strstr(mp_error_message(), "600"));
    t.ids[1234] = 511;
    assert_int_equal(mp_tokens_check_vocab(&t, 512, EVAL_BIN), MP_OK);
    t.ids[0] = 512;
    assert_int_equal(mp_tokens_check_vocab(&t, 512, EVAL_BIN), MP_ERR_RANGE);
    assert_msg(EVAL_BIN, "position 0");

    int64_t w = -1;
    mp_error_clear();
    assert_int_equal(mp_tokens_windows(&t, 78337, EVAL_BIN, &w), MP_ERR_RANGE);
    assert_msg(EVAL_BIN, "78337");
    assert_int_equal(w, -1);
    assert_int_equal(mp_tokens_windows(&t, 0, EVAL_BIN, &w), MP_ERR_ARG);
    mp_tokens_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calib),
        cmocka_unit_test(test_eval_dev),
        cmocka_unit_test(test_uint32_bin),
        cmocka_unit_test(test_npy_variants),
        cmocka_unit_test(test_err_empty),
        cmocka_unit_test(test_err_sidecar),
        cmocka_unit_test(test_err_missing),
        cmocka_unit_test(test_err_npy),
        cmocka_unit_test(test_err_negative),
        cmocka_unit_test(test_err_vocab_and_windows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
