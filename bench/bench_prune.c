/* bench_prune: end-to-end one-shot pruning (mp_prune_run, in-process) of a synthetic LLaMA
 * model, SparseGPT and Wanda, with wall time, tokens/s and the stage times of report.json,
 * each beside its FLOP floor at the sgemm rate measured in the same run (see floors()).
 *
 * SparseGPT runs twice, in float32 and with --compute bf16 (then each stage's speedup is
 * printed), Wanda once in float32.
 *
 * Usage: mpirun -n P bench_prune [nsamples] [seqlen] [tmpbase] [d] [ffn] [layers]
 *   nsamples  calibration sequences (default 16)
 *   seqlen    tokens per sequence (default 256; at most max_pos 2048)
 *   tmpbase   directory under which the work directory is made with mkdtemp (default /tmp);
 *             the work directory (model, tokens, outputs) is removed at the end.
 *   d, ffn, layers  the model's shape (default 1024, 2816, 2; d a multiple of 128)
 * Model (rank 0 writes it with mp_st_write; every rank reads it): model_type llama, d,
 * d / 128 heads of 128, as many KV heads, ffn, layers, vocab 1000, max_pos 2048, untied head
 * (lm_head.weight present); matrices N(0, 0.02²) from splitmix64 + Box-Muller, norms 1.
 * Tokens: nsamples × seqlen uniform ids in [0, 1000), calib.bin (uint16 little-endian) with
 * its calib.json sidecar. Options as `mpiprune prune` with its defaults: sparsity 0.5
 * unstructured, blocksize 128, damp 0.01, batch 16, no progress lines.
 * Wall time is rank 0's, between barriers around mp_prune_run (it includes reading the model,
 * the output directory and report.json); tokens/s = nsamples·seqlen / wall. The stage times are
 * report.json's stage_seconds_max_over_ranks. The BLAS thread count is OpenBLAS's
 * (OPENBLAS_NUM_THREADS); the kernel set OpenBLAS picked is printed. */
#define _XOPEN_SOURCE 700
#include <cblas.h>
#include <errno.h>
#include <stdbool.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_bf16.h"
#include "mp_blasinfo.h"
#include "mp_comm.h"
#include "mp_prune_job.h"
#include "mp_safetensors.h"
#include "mp_status.h"

enum { HEAD_DIM = 128, VOCAB = 1000, MAX_POS = 2048, MAX_LAYERS = 64 };

/* The model's shape (arguments 4..6); heads = d / HEAD_DIM, as many KV heads. */
static int D = 1024, FFN = 2816, N_LAYERS = 2, N_HEADS = 8;

/* splitmix64 */
static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]. */
static double unif(uint64_t *s) { return ((double)(sm64(s) >> 11) + 1.0) * 0x1.0p-53; }

/* N(0, sd²) by Box-Muller. */
static void fill_normal(uint64_t seed, float *x, int64_t n, double sd)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(unif(&s))), th = 6.283185307179586 * unif(&s);
        x[i] = (float)(sd * r * cos(th));
        if (i + 1 < n)
            x[i + 1] = (float)(sd * r * sin(th));
    }
}

static mp_status write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return mp_error(MP_ERR_IO, "%s: %s", path, strerror(errno));
    size_t len = strlen(text);
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fclose(f) != 0;
    return bad ? mp_error(MP_ERR_IO, "%s: write failed", path) : MP_OK;
}

/* The synthetic model directory: config.json and model.safetensors. */
static mp_status write_model(const char *dir)
{
    mp_status st = MP_OK;
    enum { MAXT = 4 + 9 * MAX_LAYERS };
    mp_st_entry e[MAXT];
    float *data[MAXT] = {0};
    size_t ne = 0;
    char names[MAXT][96];
    char path[4200];
    static const char *const lin[7] = {"self_attn.q_proj", "self_attn.k_proj",
                                       "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                                       "mlp.up_proj",      "mlp.down_proj"};
    const int64_t lin_shape[7][2] = {{N_HEADS * HEAD_DIM, D}, {N_HEADS * HEAD_DIM, D},
                                     {N_HEADS * HEAD_DIM, D}, {D, N_HEADS * HEAD_DIM},
                                     {FFN, D},                {FFN, D},
                                     {D, FFN}};
    /* name, rows, cols (cols 0: a norm vector of ones) */
    struct {
        int64_t r, c;
    } shp[MAXT];
    snprintf(names[ne], sizeof names[ne], "model.embed_tokens.weight");
    shp[ne].r = VOCAB, shp[ne].c = D, ne++;
    for (int l = 0; l < N_LAYERS; l++) {
        snprintf(names[ne], sizeof names[ne], "model.layers.%d.input_layernorm.weight", l);
        shp[ne].r = D, shp[ne].c = 0, ne++;
        snprintf(names[ne], sizeof names[ne], "model.layers.%d.post_attention_layernorm.weight",
                 l);
        shp[ne].r = D, shp[ne].c = 0, ne++;
        for (int k = 0; k < 7; k++) {
            snprintf(names[ne], sizeof names[ne], "model.layers.%d.%s.weight", l, lin[k]);
            shp[ne].r = lin_shape[k][0], shp[ne].c = lin_shape[k][1], ne++;
        }
    }
    snprintf(names[ne], sizeof names[ne], "model.norm.weight");
    shp[ne].r = D, shp[ne].c = 0, ne++;
    snprintf(names[ne], sizeof names[ne], "lm_head.weight");
    shp[ne].r = VOCAB, shp[ne].c = D, ne++;
    for (size_t i = 0; i < ne; i++) {
        int64_t n = shp[i].r * (shp[i].c ? shp[i].c : 1);
        data[i] = malloc((size_t)n * sizeof(float));
        if (!data[i])
            MP_FAIL(MP_ERR_NOMEM, "cannot allocate tensor %s", names[i]);
        if (shp[i].c == 0)
            for (int64_t j = 0; j < n; j++)
                data[i][j] = 1.0f;
        else
            fill_normal(1000 + i, data[i], n, 0.02);
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = names[i];
        e[i].dtype = MP_DT_F32;
        e[i].ndim = shp[i].c ? 2 : 1;
        e[i].shape[0] = shp[i].r;
        e[i].shape[1] = shp[i].c;
        e[i].data = data[i];
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    MP_TRY(mp_st_write(path, e, ne, "{\"format\": \"pt\"}"));
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
             "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
             "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n  \"vocab_size\": %d,\n"
             "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": 1e-05,\n"
             "  \"rope_theta\": 10000.0,\n  \"hidden_act\": \"silu\",\n"
             "  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"float32\"\n}\n",
             D, FFN, N_LAYERS, N_HEADS, N_HEADS, HEAD_DIM, VOCAB, MAX_POS);
    snprintf(path, sizeof path, "%s/config.json", dir);
    MP_TRY(write_text(path, cfg));
done:
    for (size_t i = 0; i < ne; i++)
        free(data[i]);
    return st;
}

/* calib.bin (uint16 little-endian ids) and calib.json. */
static mp_status write_tokens(const char *dir, int64_t count)
{
    mp_status st = MP_OK;
    char path[4200], side[256];
    unsigned char *b = malloc((size_t)count * 2);
    FILE *f = NULL;
    if (!b)
        return mp_error(MP_ERR_NOMEM, "cannot allocate %lld tokens", (long long)count);
    uint64_t s = 7;
    for (int64_t i = 0; i < count; i++) {
        unsigned v = (unsigned)(sm64(&s) % VOCAB);
        b[2 * i] = (unsigned char)(v & 0xff);
        b[2 * i + 1] = (unsigned char)(v >> 8);
    }
    snprintf(path, sizeof path, "%s/calib.bin", dir);
    f = fopen(path, "wb");
    if (!f)
        MP_FAIL(MP_ERR_IO, "%s: %s", path, strerror(errno));
    int bad = fwrite(b, 2, (size_t)count, f) != (size_t)count;
    bad |= fclose(f) != 0;
    f = NULL;
    if (bad)
        MP_FAIL(MP_ERR_IO, "%s: write failed", path);
    snprintf(side, sizeof side,
             "{\"dtype\": \"uint16\", \"byteorder\": \"little\", \"count\": %lld}\n",
             (long long)count);
    snprintf(path, sizeof path, "%s/calib.json", dir);
    MP_TRY(write_text(path, side));
done:
    free(b);
    return st;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "bench_prune: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void rm_tree(const char *dir)
{
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "bench_prune: cannot walk %s: %s\n", dir, strerror(errno));
}

/* A whole file as a NUL-terminated string (NULL on failure). */
static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    while (s) {
        if (len + 1 == cap) {
            char *t = realloc(s, cap * 2);
            if (!t) {
                free(s);
                s = NULL;
                break;
            }
            s = t, cap *= 2;
        }
        size_t got = fread(s + len, 1, cap - 1 - len, f);
        if (got == 0)
            break;
        len += got;
    }
    fclose(f);
    if (s)
        s[len] = '\0';
    return s;
}

/* report.json's stage_seconds_max_over_ranks (flat "name": number pairs, cJSON's printout):
 * the value of each stage of mp_stage_names' order, NAN when missing; false when unreadable. */
static const char *const stage_names[] = {"forward", "hessian", "reduction", "solve",
                                          "broadcast", "write", "checkpoint"};
enum { N_STAGES = 7 };

static bool read_stages(const char *out, double stages[N_STAGES], double *sparsity)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/report.json", out);
    char *s = read_all(path);
    if (!s)
        return false;
    for (int k = 0; k < N_STAGES; k++)
        stages[k] = NAN;
    const char *p = strstr(s, "\"stage_seconds_max_over_ranks\"");
    p = p ? strchr(p, '{') : NULL;
    const char *end = p ? strchr(p, '}') : NULL;
    while (p && end && (p = strchr(p + 1, '"')) != NULL && p < end) {
        const char *q = strchr(p + 1, '"');
        if (!q || q > end)
            break;
        const char *colon = strchr(q, ':');
        double v = colon ? strtod(colon + 1, NULL) : NAN;
        for (int k = 0; k < N_STAGES; k++)
            if ((size_t)(q - p - 1) == strlen(stage_names[k]) &&
                strncmp(p + 1, stage_names[k], (size_t)(q - p - 1)) == 0)
                stages[k] = v;
        p = colon ? colon : q;
    }
    const char *sp = strstr(s, "\"pruned_layers_sparsity\":");
    *sparsity = sp ? strtod(sp + 25, NULL) : NAN;
    free(s);
    return true;
}

/* The FLOP floor of each stage: the minimal work at the sgemm rate measured in this run, the
 * ranks sharing it evenly. forward: two passes over every block but the last (whose update
 * pass is skipped), linear layers plus causal attention (QKᵀ and AV over the positions before
 * each token: 2·seqlen·d per token on average); hessian: one ssyrk per input group and block
 * (n(n+1) per token: q/k/v share one, gate/up share one); solve (SparseGPT): per block each
 * group's factor (potrf + trtri, 2n³/3) and each layer's OBS sweep (rows·cols²); Wanda's solve
 * is O(rows·cols), no floor. Communication and files (reduction, broadcast, write,
 * checkpoint) have no FLOP floor. */
static void floors(bool sparsegpt, int64_t ntok, int64_t seqlen, int P, double rate,
                   double fl[N_STAGES])
{
    double d = D, f = FFN, L = N_LAYERS, N = (double)ntok;
    double per_tok = 2.0 * (4.0 * d * d + 3.0 * d * f) + 2.0 * (double)seqlen * d;
    double fwd = (2.0 * L - 1.0) * N * per_tok;
    double hes = L * N * (3.0 * d * (d + 1.0) + f * (f + 1.0));
    double slv = sparsegpt ? L * (2.0 / 3.0 * (3.0 * d * d * d + f * f * f) +
                                  4.0 * d * d * d + 2.0 * f * d * d + d * f * f)
                           : 0.0;
    for (int k = 0; k < N_STAGES; k++)
        fl[k] = 0.0;
    double flops_s = (double)P * rate * 1e9;
    fl[0] = fwd / flops_s;
    fl[1] = hes / flops_s;
    fl[3] = slv / flops_s;
}

static void print_report(const char *out, bool sparsegpt, int64_t ntok, int64_t seqlen, int P,
                         double rate, double wall)
{
    double stages[N_STAGES], fl[N_STAGES], sparsity = NAN;
    if (!read_stages(out, stages, &sparsity)) {
        printf("  (cannot read %s/report.json)\n", out);
        return;
    }
    floors(sparsegpt, ntok, seqlen, P, rate, fl);
    printf("  %-11s %9s %9s %7s\n", "stage", "seconds", "floor s", "ratio");
    double sum = 0.0, fsum = 0.0;
    for (int k = 0; k < N_STAGES; k++) {
        double v = isnan(stages[k]) ? 0.0 : stages[k];
        sum += v;
        fsum += fl[k];
        if (fl[k] > 0.0)
            printf("  %-11s %9.3f %9.3f %6.2fx\n", stage_names[k], v, fl[k], v / fl[k]);
        else
            printf("  %-11s %9.3f %9s %7s\n", stage_names[k], v, "-", "-");
    }
    printf("  %-11s %9.3f %9.3f %6.2fx   (wall %.3f s: %.2fx the floor; sparsity %.4f)\n",
           "sum", sum, fsum, sum / fsum, wall, wall / fsum, sparsity);
}

/* Each stage of SparseGPT in float32 over the same with bf16 products, and end to end. */
static void print_speedup(const char *dir, const double *walls)
{
    char a[1200], b[1200];
    double sa[N_STAGES], sb[N_STAGES], sp = NAN;
    snprintf(a, sizeof a, "%s/out-sparsegpt-f32", dir);
    snprintf(b, sizeof b, "%s/out-sparsegpt-bf16", dir);
    if (!read_stages(a, sa, &sp) || !read_stages(b, sb, &sp)) {
        printf("  (cannot read the two SparseGPT reports)\n");
        return;
    }
    printf("  bf16 speedup (f32 seconds / bf16 seconds):");
    for (int k = 0; k < N_STAGES; k++)
        if (sa[k] > 0.0 && sb[k] > 0.0)
            printf(" %s %.2fx", stage_names[k], sa[k] / sb[k]);
    printf("; end to end %.2fx\n", walls[0] / walls[1]);
}

/* sgemm GFLOP/s of this rank (C[2048, D] += A[2048, D] · B[D, D], best of 3 after a warm-up),
 * every rank at once as in the run; NAN when out of memory. */
static double sgemm_rate(void)
{
    const int M = 2048;
    float *a = malloc((size_t)M * (size_t)D * sizeof(float));
    float *b = malloc((size_t)D * (size_t)D * sizeof(float));
    float *c = malloc((size_t)M * (size_t)D * sizeof(float));
    double best = INFINITY;
    if (a && b && c) {
        fill_normal(5, a, (int64_t)M * D, 1.0);
        fill_normal(6, b, (int64_t)D * D, 1.0);
        memset(c, 0, (size_t)M * (size_t)D * sizeof(float));
        for (int r = 0; r < 4; r++) {
            double t0 = mp_comm_wtime();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, D, D, 1.0f, a, D, b, D,
                        0.0f, c, D);
            double t = mp_comm_wtime() - t0;
            if (r > 0 && t < best)
                best = t;
        }
    }
    free(a);
    free(b);
    free(c);
    return isfinite(best) ? 2.0 * M * (double)D * (double)D / best / 1e9 : NAN;
}

int main(int argc, char **argv)
{
    mp_alloc_keep_freed(); /* as the CLI does */
    mp_status st = MP_OK;
    mp_comm *comm = NULL;
    int64_t nsamples = 16, seqlen = 256;
    const char *base = "/tmp";
    if (argc > 1)
        nsamples = strtoll(argv[1], NULL, 10);
    if (argc > 2)
        seqlen = strtoll(argv[2], NULL, 10);
    if (argc > 3)
        base = argv[3];
    if (argc > 4)
        D = (int)strtol(argv[4], NULL, 10);
    if (argc > 5)
        FFN = (int)strtol(argv[5], NULL, 10);
    if (argc > 6)
        N_LAYERS = (int)strtol(argv[6], NULL, 10);
    N_HEADS = D / HEAD_DIM;
    if (mp_comm_init(&argc, &argv) != MP_OK || mp_comm_dup_world(&comm) != MP_OK) {
        fprintf(stderr, "bench_prune: %s\n", mp_error_message());
        return 1;
    }
    mp_blas_fit_threads(comm, NULL, 0); /* as the CLI does */
    int rank = mp_comm_rank(comm), P = mp_comm_size(comm), rc = 0, made = 0;
    char dir[1024] = {0};
    if (nsamples < 1 || seqlen < 2 || seqlen > MAX_POS || D < HEAD_DIM || D % HEAD_DIM != 0 ||
        D > 16384 || FFN < 1 || FFN > 65536 || N_LAYERS < 1 || N_LAYERS > MAX_LAYERS) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -n P bench_prune [nsamples>=1] [seqlen 2..%d] "
                    "[tmpbase] [d: a multiple of %d] [ffn] [layers 1..%d]\n", MAX_POS,
                    HEAD_DIM, MAX_LAYERS);
        mp_comm_free(&comm);
        mp_comm_finalize();
        return 2;
    }
    mp_status local = MP_OK, global = MP_OK;
    int who = -1;
    double tgen = mp_comm_wtime();
    if (rank == 0) {
        if (strlen(base) > 900) {
            local = mp_error(MP_ERR_ARG, "tmpbase %s too long", base);
        } else {
            snprintf(dir, sizeof dir, "%s/bench_prune.XXXXXX", base);
            if (!mkdtemp(dir))
                local = mp_error(MP_ERR_IO, "mkdtemp %s: %s", dir, strerror(errno));
            else
                made = 1;
        }
        if (local == MP_OK)
            local = write_model(dir);
        if (local == MP_OK)
            local = write_tokens(dir, nsamples * seqlen);
    }
    st = mp_comm_agree(comm, local, &global, &who);
    if (st == MP_OK && global != MP_OK)
        st = global;
    if (st == MP_OK)
        st = mp_comm_bcast(comm, dir, (int64_t)sizeof dir, 0);
    tgen = mp_comm_wtime() - tgen;
    if (st != MP_OK) {
        if (who == rank || who < 0)
            fprintf(stderr, "bench_prune: rank %d: %s\n", rank, mp_error_message());
        rc = 1;
        goto done;
    }
    if (rank == 0) {
        printf("bench_prune: P=%d ranks, BLAS threads=%d core=%s: %s\n", P,
               openblas_get_num_threads(), openblas_get_corename(), mp_blas_threads_note());
        char bw[256];
        if (mp_blas_kernel_warning(bw, sizeof bw))
            printf("warning: %s\n", bw);
        printf("model: llama d=%d heads=%d head_dim=%d kv_heads=%d ffn=%d layers=%d vocab=%d "
               "(synthetic, written in %.2f s to %s)\n", D, N_HEADS, HEAD_DIM, N_HEADS, FFN,
               N_LAYERS, VOCAB, tgen, dir);
        printf("calib: nsamples=%lld seqlen=%lld (%lld tokens); sparsity 0.5 unstructured, "
               "blocksize 128, damp 0.01, batch 16\n", (long long)nsamples, (long long)seqlen,
               (long long)(nsamples * seqlen));
        fflush(stdout);
    }
    /* The sgemm rate of every rank at once, the floors' yardstick; their mean. */
    double rate = NAN;
    {
        double mine = sgemm_rate(), *all = malloc((size_t)P * sizeof(double));
        int64_t *counts = malloc((size_t)P * sizeof(int64_t));
        mp_status g = all && counts ? mp_comm_barrier(comm) : MP_ERR_NOMEM;
        for (int r = 0; counts && r < P; r++)
            counts[r] = 1;
        if (g == MP_OK)
            g = mp_comm_gatherv_f64(comm, &mine, 1, all, counts, 0);
        if (g == MP_OK && rank == 0) {
            rate = 0.0;
            for (int r = 0; r < P; r++)
                rate += all[r] / P;
        }
        free(all);
        free(counts);
        if (g != MP_OK) {
            fprintf(stderr, "bench_prune: rank %d: cannot measure the sgemm rate\n", rank);
            rc = 1;
            goto done;
        }
    }
    if (rank == 0) {
        printf("sgemm: %.1f GFLOP/s per rank (mean of %d ranks running at once, C[2048, %d] = "
               "A[2048, %d] B[%d, %d]); the floors below are FLOPs at this rate\n\n", rate, P,
               D, D, D, D);
        fflush(stdout);
    }
    /* SparseGPT in float32 and with bf16 products (--compute bf16), then Wanda. */
    static const char *const methods[3] = {"sparsegpt", "sparsegpt", "wanda"};
    static const mp_compute computes[3] = {MP_COMPUTE_F32, MP_COMPUTE_BF16, MP_COMPUTE_F32};
    double walls[3] = {0};
    for (int m = 0; m < 3; m++) {
        char model[1024], calib[1200], out[1200];
        snprintf(model, sizeof model, "%s", dir);
        snprintf(calib, sizeof calib, "%s/calib.bin", dir);
        snprintf(out, sizeof out, "%s/out-%s-%s", dir, methods[m], mp_compute_name(computes[m]));
        mp_prune_opts o;
        memset(&o, 0, sizeof o);
        o.model = model;
        o.calib = calib;
        o.out = out;
        o.method_name = methods[m];
        o.method = m < 2 ? MP_METHOD_SPARSEGPT : MP_METHOD_WANDA;
        o.compute = computes[m];
        o.compute_name = mp_compute_name(computes[m]);
        o.sp.sparsity = 0.5;
        o.nm_text = NULL;
        o.seqlen = seqlen;
        o.nsamples = nsamples;
        o.blocksize = 128;
        o.batch = 16;
        o.damp = 0.01;
        o.blocks = NULL;
        o.layers = NULL;
        o.scalapack_min_dim = 0;
        o.max_memory_gib = 0.0;
        o.progress = false;
        o.argc = argc;
        o.argv = argv;
        st = mp_comm_barrier(comm);
        double t0 = mp_comm_wtime();
        if (st == MP_OK)
            st = mp_prune_run(&o, comm);
        if (st == MP_OK)
            st = mp_comm_barrier(comm);
        double wall = mp_comm_wtime() - t0;
        if (st != MP_OK) {
            if (mp_error_message()[0])
                fprintf(stderr, "bench_prune: %s, rank %d: %s\n", methods[m], rank,
                        mp_error_message());
            rc = 1;
            goto done;
        }
        walls[m] = wall;
        if (rank == 0) {
            printf("%-9s P=%d  --compute %s  wall %.3f s  %.1f tokens/s\n", methods[m], P,
                   mp_compute_name(computes[m]), wall, (double)(nsamples * seqlen) / wall);
            if (computes[m] == MP_COMPUTE_BF16)
                printf("  bf16 products: %s\n", mp_bf16_backend());
            print_report(out, m < 2, nsamples * seqlen, seqlen, P, rate, wall);
            if (m == 1)
                print_speedup(dir, walls);
            fflush(stdout);
        }
    }
done:
    /* Every rank is done with the directory before rank 0 removes it. */
    if (mp_comm_barrier(comm) != MP_OK)
        rc = 1;
    if (rank == 0 && made)
        rm_tree(dir);
    mp_comm_free(&comm);
    mp_comm_finalize();
    return rc;
}
