/* bench_logits: the logits mpiprune computes for the first T tokens of a token file, written as
 * raw little-endian float32 [T, vocab], to compare with another engine (bench/llamacpp_check.sh
 * compares them with llama.cpp's on the same GGUF files).
 *
 * Usage: bench_logits MODEL TOKENS T OUT
 *   MODEL  a Hugging Face model directory or a GGUF file (as `mpiprune eval --model`)
 *   TOKENS a token file (as `mpiprune eval --data`); its first T ids are one sequence. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "mp_model.h"
#include "mp_modeldir.h"
#include "mp_status.h"
#include "mp_tokens.h"

int main(int argc, char **argv)
{
    mp_status st = MP_OK;
    mp_modeldir md = {0};
    mp_tokens tok = {0};
    mp_head *head = NULL;
    mp_block *blk = NULL;
    float *h = NULL, *logits = NULL;
    FILE *f = NULL;
    if (argc != 5) {
        fprintf(stderr, "usage: bench_logits MODEL TOKENS T OUT\n");
        return 2;
    }
    int64_t T = atoll(argv[3]);
    MP_TRY(mp_modeldir_open(argv[1], &md));
    MP_TRY(mp_tokens_load(argv[2], &tok));
    if (T < 1 || T > tok.count || T > md.cfg.max_pos)
        MP_FAIL(MP_ERR_ARG, "T = %lld is out of range", (long long)T);
    const mp_model_config *c = &md.cfg;
    h = malloc((size_t)(T * c->d) * sizeof(float));
    logits = malloc((size_t)(T * c->vocab) * sizeof(float));
    if (!h || !logits)
        MP_FAIL(MP_ERR_NOMEM, "out of memory");
    MP_TRY(mp_head_load(c, &md.src, &head));
    MP_TRY(mp_embed_forward(c, head, tok.ids, 1, T, h));
    for (int64_t l = 0; l < c->n_layers; l++) {
        MP_TRY(mp_block_load(c, &md.src, l, &blk));
        MP_TRY(mp_block_forward(c, blk, h, 1, T, NULL));
        mp_block_free(&blk);
    }
    MP_TRY(mp_head_logits(c, head, h, 1, T, logits));
    f = fopen(argv[4], "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)(T * c->vocab), f) != (size_t)(T * c->vocab))
        MP_FAIL(MP_ERR_IO, "%s: cannot write", argv[4]);
done:
    if (f && fclose(f) != 0 && st == MP_OK)
        st = mp_error(MP_ERR_IO, "%s: cannot write", argv[4]);
    if (st != MP_OK)
        fprintf(stderr, "bench_logits: error: %s\n", mp_error_message());
    mp_block_free(&blk);
    mp_head_free(&head);
    free(h);
    free(logits);
    mp_tokens_free(&tok);
    mp_modeldir_close(&md);
    return st == MP_OK ? 0 : mp_status_exit_code(st);
}
