#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "mp_blasinfo.h"

#include <cblas.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
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

static char threads_note[160];

const char *mp_blas_threads_note(void) { return threads_note; }

int mp_blas_threads(void) { return openblas_get_num_threads(); }

int mp_blas_fit_threads(const mp_comm *c, char *note, size_t len)
{
    static const char *const vars[] = {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                                       "OMP_NUM_THREADS"};
    const char *set = NULL;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]) && *getenv(vars[i]))
            set = vars[i];
    cpu_set_t mine, all;
    CPU_ZERO(&mine);
    bool have = sched_getaffinity(0, sizeof mine, &mine) == 0;
    /* Collective whatever this rank found, so that no rank waits alone. */
    all = mine;
    int node_ranks = 1;
    bool reduced = mp_comm_node_bor(c, (unsigned char *)&all, (int)sizeof all, &node_ranks) ==
                   MP_OK;
    int t = openblas_get_num_threads();
    if (set) {
        snprintf(threads_note, sizeof threads_note, "%d BLAS thread(s) per rank (%s)", t, set);
    } else if (!have || !reduced) {
        snprintf(threads_note, sizeof threads_note, "%d BLAS thread(s) per rank (OpenBLAS's "
                 "default: this rank's CPUs unknown)", t);
    } else {
        int own = CPU_COUNT(&mine), union_n = CPU_COUNT(&all);
        /* Disjoint masks (ranks bound to their own cores): each its own; shared masks (no
         * binding): the node's CPUs divided among its ranks. */
        bool shared = union_n < own * node_ranks;
        int want = shared ? union_n / node_ranks : own;
        if (want < 1)
            want = 1;
        if (want != t)
            openblas_set_num_threads(want);
        t = openblas_get_num_threads();
        if (node_ranks == 1)
            snprintf(threads_note, sizeof threads_note, "%d BLAS thread(s) (%d CPU(s), one "
                     "rank on this node; OPENBLAS_NUM_THREADS overrides)", t, own);
        else if (shared)
            snprintf(threads_note, sizeof threads_note, "%d BLAS thread(s) per rank (%d CPU(s) "
                     "shared by %d rank(s) on this node; OPENBLAS_NUM_THREADS overrides)", t,
                     union_n, node_ranks);
        else
            snprintf(threads_note, sizeof threads_note, "%d BLAS thread(s) per rank (each rank "
                     "bound to its own %d CPU(s); OPENBLAS_NUM_THREADS overrides)", t, own);
    }
    if (note && len)
        snprintf(note, len, "%s", threads_note);
    return t;
}
