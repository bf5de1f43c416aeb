/* src/mp_blasinfo: which OpenBLAS kernel sets are generic for which CPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mp_blasinfo.h"

static void test_lag(void **state)
{
    (void)state;
    const char *s = "x";
    assert_true(mp_blas_kernels_lag("Prescott", true, true, &s));
    assert_string_equal(s, "SkylakeX");
    assert_true(mp_blas_kernels_lag("Nehalem", true, false, &s));
    assert_string_equal(s, "Haswell");
    assert_true(mp_blas_kernels_lag("Sandybridge", true, true, &s)); /* AVX without AVX2 */
    assert_false(mp_blas_kernels_lag("SkylakeX", true, true, &s));
    assert_null(s);
    assert_false(mp_blas_kernels_lag("haswell", true, true, &s)); /* AVX2 kernels: not generic */
    assert_false(mp_blas_kernels_lag("Zen", true, false, &s));
    assert_false(mp_blas_kernels_lag("Prescott", false, false, &s)); /* an old CPU */
    assert_null(s);
    assert_non_null(mp_blas_corename());
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_lag)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
