/* mp_tokens: token files.
 *
 * Two formats:
 *   NAME.bin + NAME.json: a flat array of little-endian uint16 or uint32 ids; the JSON sidecar
 *     (same stem) gives "dtype" ("uint16" | "uint32"), "byteorder" ("little"), and optionally
 *     "count" (checked against the file size) and "sha256" (checked against the file).
 *   NAME.npy: NumPy format 1.0/2.0/3.0, C order, dtype <u2, <u4, <i4 or <i8 (negative ids are
 *     refused), any shape (flattened in C order).
 * Ids are held as uint32.
 */
#ifndef MP_TOKENS_H
#define MP_TOKENS_H

#include <stdint.h>

#include "mp_status.h"

typedef struct {
    uint32_t *ids;
    int64_t count;
} mp_tokens;

/* Loads `path` (.bin with its .json sidecar, or .npy). An empty file is MP_ERR_FORMAT. */
MP_NODISCARD mp_status mp_tokens_load(const char *path, mp_tokens *out);
void mp_tokens_free(mp_tokens *t);

/* MP_ERR_RANGE naming `path`, the position and the id when an id is >= vocab. */
MP_NODISCARD mp_status mp_tokens_check_vocab(const mp_tokens *t, int64_t vocab,
                                             const char *path);

/* Number of whole windows of seqlen tokens; MP_ERR_RANGE naming `path` when there is none. */
MP_NODISCARD mp_status mp_tokens_windows(const mp_tokens *t, int64_t seqlen, const char *path,
                                         int64_t *n_windows);

#endif
