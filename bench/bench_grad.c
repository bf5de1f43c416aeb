/* bench_grad: the cost of the gradient pass (src/mp_grad) beside one forward pass, per block.
 *
 * Usage: bench_grad [T] [reps] [d nh nkv hd ffn]
 *   defaults: T = 512, reps = 3, SmolLM2-135M's block (d 576, 9 heads, 3 KV heads, head_dim
 *   64, ffn 1536).
 * Prints, for one sequence of T tokens through one block: the float32 forward the prune job
 * runs (mp_block_forward), the float64 forward (mp_gblock_forward), and the float64 backward
 * (mp_gblock_backward, which recomputes the block's forward from its input and leaves the
 * per-unit numbers), with their ratios. The gradient pass costs one float64 forward plus one
 * backward per block and sequence; the floor of a backward is about 2 forwards' FLOPs. Weights
 * are synthetic (splitmix64, seeded by the tensor name). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mp_blasinfo.h"
#include "mp_grad.h"
#include "mp_model.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

static uint64_t name_seed(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint64_t)(unsigned char)*p) * 0x100000001b3ULL;
    return h;
}

static mp_status syn_load(void *ctx, const char *name, int ndim, const int64_t *shape, float *out)
{
    (void)ctx;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    if (ndim == 1)
        for (int64_t i = 0; i < n; i++)
            out[i] = 1.0f;
    else
        fill(name_seed(name), out, n, (float)(1.0 / sqrt((double)shape[ndim - 1])));
    return MP_OK;
}

static bool syn_has(void *ctx, const char *name)
{
    (void)ctx;
    return strstr(name, ".bias") == NULL;
}

typedef struct {
    const mp_model_config *c;
    mp_block *blk;
    mp_gblock *g;
    float *hf;
    double *hd, *x, *dh;
    mp_grad_stats *st;
    int64_t T;
} ctx;

static mp_status run_f32(ctx *x)
{
    return mp_block_forward(x->c, x->blk, x->hf, 1, x->T, NULL);
}
static mp_status run_f64(ctx *x)
{
    memcpy(x->hd, x->x, (size_t)(x->T * x->c->d) * sizeof(double));
    return mp_gblock_forward(x->g, x->hd, x->T);
}
static mp_status run_bwd(ctx *x)
{
    for (int64_t i = 0; i < x->T * x->c->d; i++)
        x->dh[i] = 1e-3 * x->x[i];
    mp_grad_stats_zero(x->st);
    return mp_gblock_backward(x->g, x->x, x->dh, x->T, x->st);
}

static double best_of(mp_status (*f)(ctx *), ctx *x, int reps, mp_status *st)
{
    double best = INFINITY;
    for (int r = 0; r <= reps && *st == MP_OK; r++) {
        double t0 = now_s();
        *st = f(x);
        double t = now_s() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    int64_t T = argc > 1 ? strtoll(argv[1], NULL, 10) : 512;
    int reps = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 3;
    mp_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = MP_ARCH_LLAMA;
    strcpy(c.model_type, "llama");
    c.vocab = 49152;
    c.d = 576;
    c.n_layers = 1;
    c.n_heads = 9;
    c.n_kv_heads = 3;
    c.head_dim = 64;
    c.ffn = 1536;
    if (argc > 7) {
        c.d = strtoll(argv[3], NULL, 10);
        c.n_heads = strtoll(argv[4], NULL, 10);
        c.n_kv_heads = strtoll(argv[5], NULL, 10);
        c.head_dim = strtoll(argv[6], NULL, 10);
        c.ffn = strtoll(argv[7], NULL, 10);
    }
    c.max_pos = T > 8192 ? T : 8192;
    c.norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.tie_embeddings = true;
    c.norm_before = true;
    c.final_norm = true;
    c.word_embed_proj_dim = c.d;
    if (T < 2 || reps < 1 || mp_model_config_check(&c, "bench_grad") != MP_OK) {
        fprintf(stderr, "usage: bench_grad [T>=2] [reps>=1] [d nh nkv hd ffn] (%s)\n",
                mp_error_message());
        return 2;
    }
    printf("bench_grad: T=%lld d=%lld heads=%lld/%lld head_dim=%lld ffn=%lld reps=%d (best of) "
           "BLAS threads=%d core=%s\n", (long long)T, (long long)c.d, (long long)c.n_heads,
           (long long)c.n_kv_heads, (long long)c.head_dim, (long long)c.ffn, reps,
           openblas_get_num_threads(), openblas_get_corename());
    char bw[256];
    if (mp_blas_kernel_warning(bw, sizeof bw))
        printf("warning: %s\n", bw);
    mp_weight_source src = {.ctx = NULL, .load = syn_load, .has = syn_has};
    mp_block *blk = NULL;
    mp_gblock g = {0};
    mp_grad_stats gs = {0};
    int64_t n = T * c.d;
    ctx x = {.c = &c, .T = T};
    mp_status st = mp_block_load(&c, &src, 0, &blk);
    if (st == MP_OK)
        st = mp_gblock_make(&c, blk, NULL, NULL, &g);
    if (st == MP_OK)
        st = mp_grad_stats_alloc(&blk->shape, &gs);
    x.blk = blk;
    x.g = &g;
    x.st = &gs;
    x.hf = malloc((size_t)n * sizeof(float));
    x.hd = malloc((size_t)n * sizeof(double));
    x.x = malloc((size_t)n * sizeof(double));
    x.dh = malloc((size_t)n * sizeof(double));
    if (st == MP_OK && (!x.hf || !x.hd || !x.x || !x.dh)) {
        fprintf(stderr, "bench_grad: out of memory\n");
        st = MP_ERR_NOMEM;
    }
    double tf = NAN, td = NAN, tb = NAN;
    if (st == MP_OK) {
        fill(77, x.hf, n, 1.0f);
        for (int64_t i = 0; i < n; i++)
            x.x[i] = x.hf[i];
        tf = best_of(run_f32, &x, reps, &st);
        td = best_of(run_f64, &x, reps, &st);
        tb = best_of(run_bwd, &x, reps, &st);
    }
    if (st != MP_OK) {
        fprintf(stderr, "bench_grad: %s\n", mp_error_message());
    } else {
        double fl = mp_block_flops(&c, 0, 1, T);
        printf("%-34s %10s %10s %12s\n", "one block, one sequence", "seconds", "GFLOP/s",
               "/ f32 fwd");
        printf("%-34s %10.4f %10.2f %12.2f\n", "forward, float32 (prune job)", tf,
               fl / tf * 1e-9, 1.0);
        printf("%-34s %10.4f %10.2f %12.2f\n", "forward, float64", td, fl / td * 1e-9, td / tf);
        printf("%-34s %10.4f %10.2f %12.2f\n", "backward, float64 (recompute incl.)", tb,
               3.0 * fl / tb * 1e-9, tb / tf);
        printf("%-34s %10.4f %10s %12.2f\n", "gradient pass (f64 fwd + bwd)", td + tb, "",
               (td + tb) / tf);
        printf("backward over float64 forward: %.2f (floor: 1 recompute + 2 forwards' FLOPs = "
               "3)\n", tb / td);
    }
    mp_grad_stats_free(&gs);
    mp_gblock_free(&g);
    mp_block_free(&blk);
    free(x.hf);
    free(x.hd);
    free(x.x);
    free(x.dh);
    return st == MP_OK ? 0 : 1;
}
