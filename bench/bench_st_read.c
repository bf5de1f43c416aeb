/* bench_st_read: safetensors tensor reading (mp_st_read_f32) throughput, F32 and BF16, and
 * the SHA-256 of the same file (mp_sha256_file: what every prune start spends on the job
 * identity) with the CPU's SHA extensions and without them.
 *
 * Usage: bench_st_read [mib] [reps] [tmpdir]
 *   mib    size of each synthetic file in MiB (default 256), 1024 x 1024 float32 (or bf16)
 *          matrices
 *   reps   passes over every tensor (default 3); the best pass is reported
 *   tmpdir where the two files are written and removed (default /tmp)
 * The files are written with mp_st_write and read back once before timing, so the figure is
 * the page-cache read and conversion rate (what eval and prune see on a warm file), in GB/s of
 * float32 output, beside memcpy of the same bytes. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mp_safetensors.h"
#include "mp_sha256.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(const char *dir, mp_dtype dt, int ntens, int reps)
{
    enum { R = 1024, C = 1024 };
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_st_read_%s_%ld.safetensors", dir, mp_dtype_name(dt),
             (long)getpid());
    size_t esz = mp_dtype_size(dt);
    unsigned char *raw = malloc((size_t)R * C * esz);
    float *vals = malloc((size_t)R * C * sizeof(float));
    mp_st_entry *e = calloc((size_t)ntens, sizeof *e);
    char(*names)[32] = calloc((size_t)ntens, sizeof *names);
    if (!raw || !vals || !e || !names)
        return 1;
    for (size_t i = 0; i < (size_t)R * C; i++)
        vals[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    if (mp_dtype_from_f32(dt, vals, (size_t)R * C, raw) != MP_OK)
        return 1;
    for (int i = 0; i < ntens; i++) {
        snprintf(names[i], sizeof names[i], "w.%d", i);
        e[i] =
            (mp_st_entry){.name = names[i], .dtype = dt, .ndim = 2, .shape = {R, C}, .data = raw};
    }
    if (mp_st_write(path, e, (size_t)ntens, NULL) != MP_OK) {
        fprintf(stderr, "bench_st_read: %s\n", mp_error_message());
        return 1;
    }
    mp_st_model *m = NULL;
    if (mp_st_open(path, &m) != MP_OK) {
        fprintf(stderr, "bench_st_read: %s\n", mp_error_message());
        return 1;
    }
    double best = 1e30, bestcpy = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        for (int i = 0; i < ntens; i++)
            if (mp_st_read_f32(m, names[i], 0, NULL, vals) != MP_OK) {
                fprintf(stderr, "bench_st_read: %s\n", mp_error_message());
                return 1;
            }
        double t = now() - t0;
        if (r > 0 && t < best) /* pass 0 warms the page cache */
            best = t;
        t0 = now();
        for (int i = 0; i < ntens; i++)
            memcpy(vals, raw, (size_t)R * C * esz);
        t = now() - t0;
        if (t < bestcpy)
            bestcpy = t;
    }
    double out_gb = (double)ntens * R * C * 4.0 / 1e9, in_gb = (double)ntens * R * C * esz / 1e9;
    printf("%-4s %4d tensors %6.0f MB on disk: read_f32 %6.2f GB/s of float32 (%.3f s), memcpy "
           "of the file bytes %6.2f GB/s\n",
           mp_dtype_name(dt), ntens, in_gb * 1e3, out_gb / best, best, in_gb / bestcpy);
    /* The file's SHA-256, best of reps, with and without the SHA extensions. */
    double sha[2] = {1e30, 1e30};
    char hex[2][65];
    for (int g = 0; g < 2; g++) {
        if (g == 1)
            setenv("MPIPRUNE_SHA256", "generic", 1);
        bool hw = mp_sha256_hw();
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            if (mp_sha256_file(path, hex[g]) != MP_OK) {
                fprintf(stderr, "bench_st_read: %s\n", mp_error_message());
                return 1;
            }
            double t = now() - t0;
            if (t < sha[g])
                sha[g] = t;
        }
        if (g == 0 && !hw)
            sha[0] = NAN;
    }
    unsetenv("MPIPRUNE_SHA256");
    printf("%-4s sha256 of the file: %6.2f GB/s with the SHA extensions, %6.2f GB/s without%s\n",
           mp_dtype_name(dt), in_gb / sha[0], in_gb / sha[1],
           strcmp(hex[0], hex[1]) == 0 ? "" : " (DIGESTS DIFFER)");
    mp_st_close(&m);
    unlink(path);
    free(raw);
    free(vals);
    free(e);
    free(names);
    return 0;
}

int main(int argc, char **argv)
{
    int mib = argc > 1 ? atoi(argv[1]) : 256;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *dir = argc > 3 ? argv[3] : "/tmp";
    if (mib < 4 || reps < 1) {
        fprintf(stderr, "usage: bench_st_read [mib >= 4] [reps >= 1] [tmpdir]\n");
        return 2;
    }
    if (run(dir, MP_DT_F32, mib / 4, reps) != 0 || run(dir, MP_DT_BF16, mib / 2, reps) != 0)
        return 1;
    return 0;
}
