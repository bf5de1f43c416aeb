/* bench_forward: throughput of one LLaMA-style block forward (mp_block_forward) against the
 * sgemm rate of the BLAS on a comparable product, to see how much of the machine the block
 * forward uses.
 *
 * Usage: bench_forward [T] [reps] [d...]
 *   T     tokens per sequence (default 256; n_seq = 1)
 *   reps  timed runs per size after one warm-up; the best is reported (default 3)
 *   d...  hidden sizes (default 1024 2048 4096); n_heads = d/128, n_kv_heads = n_heads,
 *         head_dim 128, ffn = 8d/3 rounded to the nearest multiple of 256.
 * Weights are synthetic (splitmix64, seeded by the tensor name) and served by an in-memory
 * weight source. The BLAS thread count is OpenBLAS's (OPENBLAS_NUM_THREADS). The kernel set
 * OpenBLAS picked is printed: a CPU newer than the OpenBLAS build is run with the generic
 * Prescott (SSE3) kernels unless OPENBLAS_CORETYPE names one (e.g. Cooperlake, SkylakeX). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mp_blasinfo.h"
#include "mp_model.h"
#include "mp_status.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64 */
static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void fill(uint64_t seed, float *x, int64_t n, float scale)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * (float)((double)(sm64(&s) >> 40) * 0x1.0p-23 - 1.0);
}

/* FNV-1a of the tensor name: each tensor gets its own stream. */
static uint64_t name_seed(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = name; *p; p++) h = (h ^ (uint64_t)(unsigned char)*p) * 0x100000001b3ULL;
    return h;
}

/* Synthetic source: norms are 1, matrices uniform in ±1/sqrt(in); no biases. */
static mp_status syn_load(void *ctx, const char *name, int ndim, const int64_t *shape, float *out)
{
    (void)ctx;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (ndim == 1) {
        for (int64_t i = 0; i < n; i++) out[i] = 1.0f;
    } else {
        fill(name_seed(name), out, n, (float)(1.0 / sqrt((double)shape[ndim - 1])));
    }
    return MP_OK;
}

static bool syn_has(void *ctx, const char *name)
{
    (void)ctx;
    return strstr(name, ".bias") == NULL && strcmp(name, "lm_head.weight") != 0;
}

static mp_model_config llama_like(int64_t d)
{
    mp_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = MP_ARCH_LLAMA;
    strcpy(c.model_type, "llama");
    c.vocab = 32000;
    c.d = d;
    c.n_layers = 1;
    c.head_dim = 128;
    c.n_heads = d / 128;
    c.n_kv_heads = c.n_heads;
    c.ffn = ((8 * d / 3 + 128) / 256) * 256;
    c.max_pos = 4096;
    c.norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.tie_embeddings = true;
    c.norm_before = true;
    c.final_norm = true;
    c.word_embed_proj_dim = d;
    return c;
}

/* Best seconds of C[M,N] = A[M,K] Bᵀ (B [N,K], as a linear layer) over reps after a warm-up. */
static double time_sgemm(int64_t M, int64_t N, int64_t K, int reps)
{
    float *a = malloc((size_t)(M * K) * sizeof *a), *b = malloc((size_t)(N * K) * sizeof *b);
    float *cm = malloc((size_t)(M * N) * sizeof *cm);
    if (!a || !b || !cm) {
        free(a), free(b), free(cm);
        return NAN;
    }
    fill(1, a, M * K, 1.0f);
    fill(2, b, N * K, 1.0f);
    double best = INFINITY;
    for (int r = 0; r <= reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, a,
                    (int)K, b, (int)K, 0.0f, cm, (int)N);
        double t = now_s() - t0;
        if (r > 0 && t < best) best = t;
    }
    free(a), free(b), free(cm);
    return best;
}

int main(int argc, char **argv)
{
    int64_t T = 256;
    int reps = 3;
    int64_t ds[16] = {1024, 2048, 4096};
    int nd = 3;
    if (argc > 1) T = strtoll(argv[1], NULL, 10);
    if (argc > 2) reps = (int)strtol(argv[2], NULL, 10);
    if (argc > 3) {
        nd = 0;
        for (int i = 3; i < argc && nd < 16; i++) ds[nd++] = strtoll(argv[i], NULL, 10);
    }
    if (T < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_forward [T>=1] [reps>=1] [d (multiple of 128)...]\n");
        return 2;
    }
    mp_weight_source src = {.ctx = NULL, .load = syn_load, .has = syn_has};
    printf("bench_forward: T=%lld n_seq=1 reps=%d (best of) BLAS threads=%d core=%s\n",
           (long long)T, reps, openblas_get_num_threads(), openblas_get_corename());
    char bw[256];
    if (mp_blas_kernel_warning(bw, sizeof bw))
        printf("warning: %s\n", bw);
    double sq = time_sgemm(4096, 4096, 4096, 1); /* once, after a warm-up */
    double sq_gf = 2.0 * 4096.0 * 4096.0 * 4096.0 / sq * 1e-9;
    printf("sgemm 4096x4096x4096: %.3f s, %.1f GFLOP/s\n\n", sq, sq_gf);
    printf("%6s %5s %6s %10s %10s %10s %12s %12s %8s %8s\n", "d", "heads", "ffn", "GFLOP",
           "block s", "tok/s", "block GF/s", "sgemm GF/s", "blk/mm", "blk/sq");
    int rc = 0;
    for (int i = 0; i < nd; i++) {
        mp_model_config c = llama_like(ds[i]);
        mp_status st = mp_model_config_check(&c, "bench");
        if (st != MP_OK) {
            fprintf(stderr, "d=%lld: %s\n", (long long)ds[i], mp_error_message());
            rc = 1;
            continue;
        }
        mp_block *blk = NULL;
        st = mp_block_load(&c, &src, 0, &blk);
        if (st != MP_OK) {
            fprintf(stderr, "d=%lld: %s\n", (long long)ds[i], mp_error_message());
            rc = 1;
            continue;
        }
        int64_t n = T * c.d;
        float *h0 = malloc((size_t)n * sizeof *h0), *h = malloc((size_t)n * sizeof *h);
        if (!h0 || !h) {
            fprintf(stderr, "out of memory\n");
            free(h0), free(h);
            mp_block_free(&blk);
            return 1;
        }
        fill(77, h0, n, 1.0f);
        double best = INFINITY;
        for (int r = 0; r <= reps && st == MP_OK; r++) {
            memcpy(h, h0, (size_t)n * sizeof *h);
            double t0 = now_s();
            st = mp_block_forward(&c, blk, h, 1, T, NULL);
            double t = now_s() - t0;
            if (r > 0 && t < best) best = t;
        }
        if (st != MP_OK) {
            fprintf(stderr, "d=%lld: %s\n", (long long)ds[i], mp_error_message());
            rc = 1;
        } else {
            double fl = mp_block_flops(&c, 0, 1, T);
            double gf = fl / best * 1e-9;
            double mm = time_sgemm(T, c.ffn, c.d, reps);
            double mm_gf = 2.0 * (double)T * (double)c.ffn * (double)c.d / mm * 1e-9;
            printf("%6lld %5lld %6lld %10.2f %10.4f %10.1f %12.1f %12.1f %7.0f%% %7.0f%%\n",
                   (long long)c.d, (long long)c.n_heads, (long long)c.ffn, fl * 1e-9, best,
                   (double)T / best, gf, mm_gf, 100.0 * gf / mm_gf, 100.0 * gf / sq_gf);
        }
        free(h0), free(h);
        mp_block_free(&blk);
    }
    printf("\nblk/mm: block GFLOP/s over sgemm M=T N=ffn K=d; blk/sq: over square 4096 sgemm."
           " Target >= 60%%.\n");
    return rc;
}
