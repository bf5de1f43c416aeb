/* mp_alloc: every allocation of mpiprune goes through these, so that a test can make the N-th
 * one fail (SQLite's and libuv's habit) and check that each failure ends in a clean error, no
 * leak and no crash. Memory they return is released with free().
 *
 * Fault injection: when the environment variable MPIPRUNE_FAIL_ALLOC is N > 0, the N-th
 * allocation of the process (counted from the first call) and every one after it fail
 * (return NULL). mp_alloc_fail_at() sets the same from a unit test (0: never fail) and resets
 * the count. With MPIPRUNE_ALLOC_COUNT set, mpiprune prints the number of allocations it made
 * on stderr before it exits (the N a sweep goes up to). */
#ifndef MP_ALLOC_H
#define MP_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *mp_malloc(size_t n);
void *mp_calloc(size_t count, size_t size);
void *mp_realloc(void *p, size_t n);
/* A copy of s, or NULL. */
char *mp_strdup(const char *s);

/* Makes glibc's malloc serve large blocks from its heap and keep freed memory there (no mmap
 * per block, no trimming), for the whole process: each block of a model allocates the same
 * Hessians, factors and buffers again, and fresh pages from the kernel are faulted in and
 * zeroed (7 % of the CPU time of bench_prune at d = 2048; the Hessian stage 1.67x -> 1.32x its
 * floor). The resident size then stays at its peak between blocks. Does nothing when
 * MPIPRUNE_MALLOC_DEFAULT is set, or without glibc. Call before any allocation and thread. */
void mp_alloc_keep_freed(void);

void mp_alloc_fail_at(int64_t n);
/* Allocations counted so far (the N of the last one made or refused). */
int64_t mp_alloc_count(void);

#endif
