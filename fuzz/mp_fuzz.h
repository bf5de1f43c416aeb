/* mp_fuzz: the entry points of the fuzz harnesses, one per parser.
 *
 * Each takes an arbitrary byte string, feeds it to a reader of mpiprune through the same path
 * a user's file takes (written to a temporary file where the reader takes a path), and checks
 * the reader's contract: it returns MP_OK or an error whose message is one line naming the
 * file; anything else aborts (so libFuzzer reports it). The libFuzzer executables
 * (fuzz_<target>.c, clang -fsanitize=fuzzer) call them, and so does tests/test_fuzz_regress.c,
 * built with any compiler, which replays the kept crash inputs and the seeds. */
#ifndef MP_FUZZ_H
#define MP_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* A .safetensors file: header and data (every float tensor is read). */
int mp_fuzz_safetensors(const uint8_t *data, size_t size);
/* model.safetensors.index.json of a sharded model whose two shards are fixed. */
int mp_fuzz_st_index(const uint8_t *data, size_t size);
/* config.json (mp_hfconfig_parse, then the sizes the model derives from it). */
int mp_fuzz_hfconfig(const uint8_t *data, size_t size);
/* A .bin token file and its .json sidecar: 2-byte little-endian sidecar length L, L bytes of
 * sidecar, the rest is the .bin. */
int mp_fuzz_tokens_bin(const uint8_t *data, size_t size);
/* A .npy token file. */
int mp_fuzz_tokens_npy(const uint8_t *data, size_t size);
/* A checkpoint main file (mp_ckpt_read_main, what `mpiprune status` runs). */
int mp_fuzz_ckpt(const uint8_t *data, size_t size);
/* A GGUF file: header, metadata, tensor infos, every small tensor decoded, the config, the
 * head and the first blocks through the weight source. */
int mp_fuzz_gguf(const uint8_t *data, size_t size);

/* Target names and entry points, for the replay test. */
typedef int (*mp_fuzz_fn)(const uint8_t *, size_t);
typedef struct {
    const char *name;
    mp_fuzz_fn fn;
} mp_fuzz_target;
extern const mp_fuzz_target mp_fuzz_targets[];
extern const int mp_fuzz_ntargets;

#endif
