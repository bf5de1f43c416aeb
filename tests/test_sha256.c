/* test_sha256: FIPS 180-4 example vectors and a file hash, with the CPU's SHA extensions and
 * without them (MPIPRUNE_SHA256=generic); the two against each other on random bytes. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mp_sha256.h"

static void hash_str(const char *s, char hex[65])
{
    mp_sha256 h;
    mp_sha256_init(&h);
    mp_sha256_update(&h, s, strlen(s));
    mp_sha256_final_hex(&h, hex);
}

static void test_vectors(void **state)
{
    (void)state;
    char hex[65];
    hash_str("", hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hash_str("abc", hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hash_str("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* 55, 56 and 64 bytes: the padding boundaries */
    hash_str("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", hex);
    assert_string_equal(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    hash_str("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", hex);
    assert_string_equal(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
}

static void test_million_a(void **state)
{
    (void)state;
    static char buf[1000000];
    memset(buf, 'a', sizeof buf);
    char hex[65];
    mp_sha256 h;
    mp_sha256_init(&h);
    mp_sha256_update(&h, buf, sizeof buf);
    mp_sha256_final_hex(&h, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* the same in uneven pieces, through the partial-block buffer */
    mp_sha256_init(&h);
    size_t off = 0, step = 1;
    while (off < sizeof buf) {
        size_t n = step < sizeof buf - off ? step : sizeof buf - off;
        mp_sha256_update(&h, buf + off, n);
        off += n;
        step = step % 97 + 13;
    }
    mp_sha256_final_hex(&h, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_file(void **state)
{
    (void)state;
    char hex[65];
    assert_int_equal(mp_sha256_file(MP_FIXTURE_DIR "/config.json", hex), MP_OK);
    assert_string_equal(hex, "2cab94eef5dd461408548e815fd7f101904c00b9441c764e7e155b32581036c5");
    assert_int_equal(mp_sha256_file(MP_FIXTURE_DIR "/no-such-file", hex), MP_ERR_NOT_FOUND);
    assert_non_null(strstr(mp_error_message(), "no-such-file"));
}

static void hash_bytes(const uint8_t *p, size_t n, size_t piece, char hex[65])
{
    mp_sha256 h;
    mp_sha256_init(&h);
    for (size_t off = 0; off < n; off += piece)
        mp_sha256_update(&h, p + off, piece < n - off ? piece : n - off);
    mp_sha256_final_hex(&h, hex);
}

/* Every length up to 4 blocks and some long ones, whole and in pieces: the hardware path (where
 * the CPU has it) gives the portable path's digest. */
static void test_hw_matches_generic(void **state)
{
    (void)state;
    enum { N = 70000 };
    uint8_t *buf = malloc(N);
    assert_non_null(buf);
    uint32_t x = 12345u;
    for (int i = 0; i < N; i++) {
        x = x * 1664525u + 1013904223u;
        buf[i] = (uint8_t)(x >> 24);
    }
    size_t lens[300];
    int nl = 0;
    for (size_t n = 0; n <= 260; n++)
        lens[nl++] = n;
    const size_t longer[] = {1000, 4095, 4096, 4097, 65536, 69999, N};
    for (size_t i = 0; i < sizeof longer / sizeof longer[0]; i++)
        lens[nl++] = longer[i];
    const size_t pieces[] = {1, 63, 64, 65, 200, 1 << 20};
    bool hw = mp_sha256_hw();
    for (int i = 0; i < nl; i++)
        for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
            if (pieces[k] == 1 && lens[i] > 4096)
                continue;
            char a[65], b[65];
            unsetenv("MPIPRUNE_SHA256");
            hash_bytes(buf, lens[i], pieces[k], a);
            setenv("MPIPRUNE_SHA256", "generic", 1);
            assert_false(mp_sha256_hw());
            hash_bytes(buf, lens[i], pieces[k], b);
            unsetenv("MPIPRUNE_SHA256");
            if (strcmp(a, b) != 0)
                fail_msg("length %zu in pieces of %zu: %s (hw %d) != %s", lens[i], pieces[k], a,
                         (int)hw, b);
        }
    free(buf);
}

static int generic_setup(void **state)
{
    (void)state;
    return setenv("MPIPRUNE_SHA256", "generic", 1);
}

static int generic_teardown(void **state)
{
    (void)state;
    return unsetenv("MPIPRUNE_SHA256");
}

int main(void)
{
    /* Where the CPU has SHA-NI (x86 since Ice Lake and Zen) the first run takes it. */
    print_message("sha256: SHA extensions %s\n", mp_sha256_hw() ? "in use" : "absent");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_file),
        cmocka_unit_test_setup_teardown(test_vectors, generic_setup, generic_teardown),
        cmocka_unit_test_setup_teardown(test_million_a, generic_setup, generic_teardown),
        cmocka_unit_test_setup_teardown(test_file, generic_setup, generic_teardown),
        cmocka_unit_test(test_hw_matches_generic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
