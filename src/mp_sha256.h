/* mp_sha256: SHA-256 (FIPS 180-4), for the report's and checkpoints' input identities. */
#ifndef MP_SHA256_H
#define MP_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_status.h"

typedef struct {
    uint32_t h[8];
    uint64_t nbytes;
    uint8_t buf[64];
    size_t nbuf;
} mp_sha256;

void mp_sha256_init(mp_sha256 *s);
/* Whether the update runs on the CPU's SHA extensions (x86 SHA-NI; MPIPRUNE_SHA256=generic
 * turns them off). The digests are the same either way. */
bool mp_sha256_hw(void);
void mp_sha256_update(mp_sha256 *s, const void *data, size_t n);
/* Writes 64 lowercase hex digits and a NUL to hex[65]. */
void mp_sha256_final_hex(mp_sha256 *s, char hex[65]);
/* SHA-256 of a whole file, as hex. MP_ERR_IO (message names the file) if it cannot be read. */
MP_NODISCARD mp_status mp_sha256_file(const char *path, char hex[65]);

#endif
