/* bench_ckpt: checkpoint write and read time and bytes per block for a synthetic LLaMA block
 * (d = 2048, ffn = 5632 by default), and for the hidden-state snapshot [n_seq, T, d] written
 * collectively by all ranks. Run as `mpirun -n P bench_ckpt [d] [ffn] [n_seq] [T] [dir]`.
 * Prints figures; asserts nothing. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_ckpt.h"
#include "mp_comm.h"

static double file_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (double)sb.st_size : 0.0;
}

int main(int argc, char **argv)
{
    mp_comm *c = NULL;
    if (mp_comm_init(&argc, &argv) != MP_OK || mp_comm_dup_world(&c) != MP_OK)
        return 1;
    int64_t d = argc > 1 ? atoll(argv[1]) : 2048, ffn = argc > 2 ? atoll(argv[2]) : 5632;
    int64_t n_seq = argc > 3 ? atoll(argv[3]) : 32, T = argc > 4 ? atoll(argv[4]) : 512;
    const char *dir = argc > 5 ? argv[5] : "/tmp";
    int rank = mp_comm_rank(c), P = mp_comm_size(c);
    char ckpt[4096], path[4200];
    snprintf(ckpt, sizeof ckpt, "%s/bench_ckpt_%d.h5", dir, (int)getpid());
    /* Rank 0's name holds for all. */
    if (mp_comm_bcast(c, ckpt, sizeof ckpt, 0) != MP_OK)
        return 1;
    const char *job = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const char *names[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                            "down_proj"};
    int64_t shapes[7][2] = {{d, d}, {d, d}, {d, d}, {d, d}, {ffn, d}, {ffn, d}, {d, ffn}};
    float *data[7];
    double nfloat = 0;
    for (int i = 0; i < 7; i++) {
        size_t n = (size_t)(shapes[i][0] * shapes[i][1]);
        data[i] = malloc(n * sizeof(float));
        if (!data[i])
            return 1;
        for (size_t k = 0; k < n; k++)
            data[i][k] = (float)((k * 2654435761u) % 1000) * 1e-3f;
        nfloat += (double)n;
    }
    int64_t s0 = n_seq * rank / P, s1 = n_seq * (rank + 1) / P;
    float *h = malloc((size_t)((s1 - s0) * T * d + 1) * sizeof(float));
    for (int64_t k = 0; k < (s1 - s0) * T * d; k++)
        h[k] = (float)(k % 977) * 1e-3f;
    mp_status st = MP_OK;
    double tw = 0, tr = 0, thw = 0, thr = 0;
    if (rank == 0) {
        double t = mp_comm_wtime();
        st = mp_ckpt_write_block(ckpt, 0, job, 7, names, (const int64_t(*)[2])shapes,
                                 (const float *const *)data);
        tw = mp_comm_wtime() - t;
        t = mp_comm_wtime();
        if (st == MP_OK)
            st = mp_ckpt_read_block(ckpt, 0, job, 7, names, (const int64_t(*)[2])shapes, data);
        tr = mp_comm_wtime() - t;
    }
    if (mp_comm_barrier(c) != MP_OK)
        return 1;
    double t = mp_comm_wtime();
    if (st == MP_OK)
        st = mp_ckpt_write_hidden(c, ckpt, 1, job, n_seq, T, d, s0, s1, h);
    thw = mp_comm_wtime() - t;
    t = mp_comm_wtime();
    if (st == MP_OK)
        st = mp_ckpt_read_hidden(c, ckpt, 1, job, n_seq, T, d, s0, s1, h);
    thr = mp_comm_wtime() - t;
    if (st != MP_OK)
        fprintf(stderr, "bench_ckpt: %s\n", mp_error_message());
    if (rank == 0 && st == MP_OK) {
        snprintf(path, sizeof path, "%s.d/block_00000.h5", ckpt);
        double bb = file_bytes(path);
        snprintf(path, sizeof path, "%s.d/hidden_00001.h5", ckpt);
        double hb = file_bytes(path);
        printf("bench_ckpt: P=%d, block d=%lld ffn=%lld (%.0f floats), hidden [%lld, %lld, "
               "%lld]\n", P, (long long)d, (long long)ffn, nfloat, (long long)n_seq,
               (long long)T, (long long)d);
        printf("%-24s %10s %10s %10s\n", "what", "MB", "seconds", "MB/s");
        printf("%-24s %10.1f %10.3f %10.0f\n", "block weights write", bb / 1e6, tw,
               bb / 1e6 / tw);
        printf("%-24s %10.1f %10.3f %10.0f\n", "block weights read", bb / 1e6, tr,
               bb / 1e6 / tr);
        printf("%-24s %10.1f %10.3f %10.0f\n", "hidden snapshot write", hb / 1e6, thw,
               hb / 1e6 / thw);
        printf("%-24s %10.1f %10.3f %10.0f\n", "hidden snapshot read", hb / 1e6, thr,
               hb / 1e6 / thr);
        printf("bytes per block on disk: %.0f (float32 payload %.0f, overhead %.2f %%)\n", bb,
               nfloat * 4, 100.0 * (bb - nfloat * 4) / (nfloat * 4));
        if (mp_ckpt_remove(ckpt) != MP_OK)
            fprintf(stderr, "bench_ckpt: %s\n", mp_error_message());
    }
    for (int i = 0; i < 7; i++)
        free(data[i]);
    free(h);
    mp_comm_free(&c);
    mp_comm_finalize();
    return st == MP_OK ? 0 : 1;
}
