/* src/mp_status and src/mp_alloc: messages that quote the current message, and the allocation
 * hook that fails the N-th allocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mp_alloc.h"
#include "mp_status.h"

/* Wrapping the current message in a new one (the pattern `"%s: %s", name,
 * mp_error_message()`) keeps the original text: formatting must not read the buffer it writes. */
static void test_error_wraps_itself(void **state)
{
    (void)state;
    mp_error(MP_ERR_NUMERIC, "Hessian not positive definite even with damping %g", 1e4);
    mp_status st = mp_error(MP_ERR_NUMERIC, "%s: %s", "model.layers.3.mlp.down_proj",
                            mp_error_message());
    assert_int_equal(st, MP_ERR_NUMERIC);
    assert_string_equal(mp_error_message(), "model.layers.3.mlp.down_proj: Hessian not positive "
                                            "definite even with damping 10000");
    mp_error(MP_ERR_IO, "a\nb\rc");
    assert_string_equal(mp_error_message(), "a b c");
}

static void test_alloc_fail_at(void **state)
{
    (void)state;
    mp_alloc_fail_at(3);
    void *a = mp_malloc(8), *b = mp_calloc(2, 4), *c = mp_malloc(8), *d = mp_strdup("x");
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c); /* the 3rd */
    assert_null(d); /* and every one after */
    assert_int_equal(mp_alloc_count(), 4);
    mp_alloc_fail_at(0);
    void *e = mp_realloc(NULL, 0); /* size 0 is a valid allocation, never NULL */
    assert_non_null(e);
    char *f = mp_strdup("abc");
    assert_string_equal(f, "abc");
    free(a), free(b), free(e), free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_wraps_itself),
        cmocka_unit_test(test_alloc_fail_at),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
