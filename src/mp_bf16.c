#include "mp_alloc.h"
#include "mp_bf16.h"
#include "mp_dtype.h"

#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MPIPRUNE_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#endif

const char *mp_compute_name(mp_compute c) { return c == MP_COMPUTE_BF16 ? "bf16" : "f32"; }

mp_status mp_compute_parse(const char *name, mp_compute *out)
{
    if (name && strcmp(name, "f32") == 0)
        *out = MP_COMPUTE_F32;
    else if (name && strcmp(name, "bf16") == 0)
        *out = MP_COMPUTE_BF16;
    else
        return mp_error(MP_ERR_ARG, "--compute: unknown mode '%s' (f32 or bf16)",
                        name ? name : "");
    return MP_OK;
}

/* mp_f32_to_bf16 without the call, in a loop the compiler vectorises (the conversions of
 * activations cost as much as their products otherwise). */
static inline uint16_t round_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x0040u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : r);
}

/* The rounding loops in AVX-512 and AVX2 as well, picked at load time (GCC's ifunc clones): the
 * baseline x86-64 build has SSE2 only. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MP_CLONES __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define MP_CLONES
#endif

MP_CLONES void mp_bf16_from_f32(const float *x, int64_t n, uint16_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = round_bits(x[i]);
}

MP_CLONES void mp_bf16_from_f32_t(const float *x, int64_t rows, int64_t cols, uint16_t *out)
{
    /* Tiles keep both the reads and the writes within a few cache lines. */
    enum { TILE = 32 };
    for (int64_t i0 = 0; i0 < rows; i0 += TILE)
        for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
            int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows;
            int64_t j1 = j0 + TILE < cols ? j0 + TILE : cols;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < i1; i++)
                    out[j * rows + i] = round_bits(x[i * cols + j]);
        }
}

/* The emulation: sgemm on the widened inputs. */
static mp_status gemm_emulated(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                               const uint16_t *b, int64_t ldb, float *c, int64_t ldc)
{
    float *aw = mp_malloc((size_t)(m * k) * sizeof(float));
    float *bw = mp_malloc((size_t)(n * k) * sizeof(float));
    if (!aw || !bw) {
        free(aw);
        free(bw);
        return mp_error(MP_ERR_NOMEM, "bf16 product [%lld x %lld] x [%lld x %lld]: cannot "
                        "allocate its float32 inputs", (long long)m, (long long)k, (long long)k,
                        (long long)n);
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < k; j++)
            aw[i * k + j] = mp_bf16_to_f32(a[i * lda + j]);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++)
            bw[i * k + j] = mp_bf16_to_f32(b[i * ldb + j]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, aw,
                (int)k, bw, (int)k, 0.0f, c, (int)ldc);
    free(aw);
    free(bw);
    return MP_OK;
}

/* Process-wide: the engine and stream live until exit (oneDNN keeps its own primitive cache
 * too). Made by the first product or query. */
static struct {
    bool ready, native;
    char backend[192];
#ifdef MPIPRUNE_HAVE_DNNL
    dnnl_engine_t engine;
    dnnl_stream_t stream;
#endif
} bf;

#ifdef MPIPRUNE_HAVE_DNNL
/* The descriptors of c[m, n] = a[m, k] · b[n, k]ᵀ with these row strides: b is read as the
 * k x n weights of oneDNN's matmul, column-major. */
typedef struct {
    dnnl_memory_desc_t a, b, c;
} matmul_mds;

static dnnl_status_t matmul_mds_init(matmul_mds *md, int64_t m, int64_t n, int64_t k,
                                     int64_t lda, int64_t ldb, int64_t ldc)
{
    dnnl_dims_t da = {m, k}, sa = {lda, 1}, db = {k, n}, sb = {1, ldb}, dc = {m, n},
                sc = {ldc, 1};
    dnnl_status_t s = dnnl_memory_desc_init_by_strides(&md->a, 2, da, dnnl_bf16, sa);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_strides(&md->b, 2, db, dnnl_bf16, sb);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_strides(&md->c, 2, dc, dnnl_f32, sc);
    return s;
}

/* The primitive for md (oneDNN's primitive cache makes a repeated shape cheap); name[len]
 * (when given) gets oneDNN's name of the kernel. */
static dnnl_status_t make_matmul(const matmul_mds *md, dnnl_primitive_t *prim, char *name,
                                 size_t len)
{
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_matmul_desc_init(&desc, &md->a, &md->b, NULL, &md->c);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&pd, &desc, NULL, bf.engine, NULL);
    if (s == dnnl_success && name) {
        const char *str = NULL;
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &str) == dnnl_success &&
            str)
            snprintf(name, len, "%s", str);
    }
    if (s == dnnl_success)
        s = dnnl_primitive_create(prim, pd);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return s;
}
#endif

static void bf16_init(void)
{
    if (bf.ready)
        return;
    bf.ready = true;
#ifdef MPIPRUNE_HAVE_DNNL
    const char *force = getenv("MPIPRUNE_BF16_EMULATE");
    if (force && *force && strcmp(force, "0") != 0) {
        snprintf(bf.backend, sizeof bf.backend,
                 "emulated (sgemm on bf16-rounded inputs): MPIPRUNE_BF16_EMULATE is set");
        return;
    }
    if (!getenv("OMP_NUM_THREADS")) {
        int t = openblas_get_num_threads();
        omp_set_num_threads(t > 0 ? t : 1);
    }
    const dnnl_version_t *v = dnnl_version();
    if (dnnl_engine_create(&bf.engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&bf.stream, bf.engine, dnnl_stream_default_flags) != dnnl_success) {
        snprintf(bf.backend, sizeof bf.backend,
                 "emulated (sgemm on bf16-rounded inputs): oneDNN %d.%d.%d has no CPU engine",
                 v->major, v->minor, v->patch);
        return;
    }
    /* A probe product: oneDNN's reference kernel (or none) means this CPU has no bf16 kernel,
     * and sgemm on rounded inputs is then far faster than oneDNN's scalar loops. */
    char impl[96] = "";
    dnnl_primitive_t p = NULL;
    matmul_mds md;
    dnnl_status_t s = matmul_mds_init(&md, 64, 64, 64, 64, 64, 64);
    if (s == dnnl_success)
        s = make_matmul(&md, &p, impl, sizeof impl);
    if (p)
        dnnl_primitive_destroy(p);
    if (s != dnnl_success || strncmp(impl, "ref", 3) == 0) {
        snprintf(bf.backend, sizeof bf.backend,
                 "emulated (sgemm on bf16-rounded inputs): oneDNN %d.%d.%d has no bf16 kernel "
                 "for this CPU (%s)", v->major, v->minor, v->patch,
                 s != dnnl_success ? "unimplemented" : impl);
        return;
    }
    bf.native = true;
    snprintf(bf.backend, sizeof bf.backend, "oneDNN %d.%d.%d, %s", v->major, v->minor, v->patch,
             impl);
#else
    snprintf(bf.backend, sizeof bf.backend,
             "emulated (sgemm on bf16-rounded inputs): built without oneDNN");
#endif
}

bool mp_bf16_native(void)
{
    bf16_init();
    return bf.native;
}

const char *mp_bf16_backend(void)
{
    bf16_init();
    return bf.backend;
}

mp_status mp_bf16_gemm_nt(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                          const uint16_t *b, int64_t ldb, float *c, int64_t ldc)
{
    if (m < 0 || n < 0 || k < 0 || m > INT_MAX || n > INT_MAX || k > INT_MAX || lda < k ||
        ldb < k || ldc < n || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
        return mp_error(MP_ERR_RANGE, "bf16 product [%lld x %lld] x [%lld x %lld] out of range",
                        (long long)m, (long long)k, (long long)k, (long long)n);
    if (m == 0 || n == 0)
        return MP_OK;
    if (k == 0) {
        for (int64_t i = 0; i < m; i++)
            memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return MP_OK;
    }
    bf16_init();
    if (!bf.native)
        return gemm_emulated(m, n, k, a, lda, b, ldb, c, ldc);
#ifdef MPIPRUNE_HAVE_DNNL
    dnnl_primitive_t p = NULL;
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    matmul_mds md;
    dnnl_status_t s = matmul_mds_init(&md, m, n, k, lda, ldb, ldc);
    if (s == dnnl_success)
        s = make_matmul(&md, &p, NULL, 0);
    /* oneDNN only reads a and b through these handles; it takes void *. */
    if (s == dnnl_success)
        s = dnnl_memory_create(&ma, &md.a, bf.engine, (void *)(uintptr_t)a);
    if (s == dnnl_success)
        s = dnnl_memory_create(&mb, &md.b, bf.engine, (void *)(uintptr_t)b);
    if (s == dnnl_success)
        s = dnnl_memory_create(&mc, &md.c, bf.engine, c);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb},
                                   {DNNL_ARG_DST, mc}};
        s = dnnl_primitive_execute(p, bf.stream, 3, args);
        if (s == dnnl_success)
            s = dnnl_stream_wait(bf.stream);
    }
    if (ma)
        dnnl_memory_destroy(ma);
    if (mb)
        dnnl_memory_destroy(mb);
    if (mc)
        dnnl_memory_destroy(mc);
    if (p)
        dnnl_primitive_destroy(p);
    if (s != dnnl_success)
        return mp_error(MP_ERR_INTERNAL, "oneDNN bf16 matmul [%lld x %lld] x [%lld x %lld] "
                        "failed (dnnl status %d)", (long long)m, (long long)k, (long long)k,
                        (long long)n, (int)s);
    return MP_OK;
#else
    return gemm_emulated(m, n, k, a, lda, b, ldb, c, ldc);
#endif
}
