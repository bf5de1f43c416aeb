/* test_sha256: FIPS 180-4 example vectors and a file hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
