#include "mp_blasinfo.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *mp_blas_corename(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

static bool in_list(const char *core, const char *const *names)
{
    for (; *names; names++)
        if (strcasecmp(core, *names) == 0)
            return true;
    return false;
}

bool mp_blas_kernels_lag(const char *core, bool avx2, bool avx512, const char **suggest)
{
    /* OpenBLAS's x86-64 kernel sets with AVX-512, and those with at least AVX2. */
    static const char *const k512[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const k2[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                     "SapphireRapids", NULL};
    *suggest = NULL;
    if (avx512 && !in_list(core, k512) && !in_list(core, k2))
        *suggest = "SkylakeX";
    else if (avx2 && !in_list(core, k2))
        *suggest = "Haswell";
    return *suggest != NULL;
}

bool mp_blas_kernel_warning(char *buf, size_t len)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2"), avx512 = __builtin_cpu_supports("avx512f");
    const char *core = mp_blas_corename(), *suggest = NULL;
    if (!mp_blas_kernels_lag(core, avx2, avx512, &suggest))
        return false;
    snprintf(buf, len, "OpenBLAS runs its %s kernels on a CPU with %s, several times slower "
             "than it could; set OPENBLAS_CORETYPE=%s (see README, Performance)", core,
             avx512 ? "AVX-512" : "AVX2", suggest);
    return true;
#else
    (void)buf;
    (void)len;
    return false;
#endif
}
