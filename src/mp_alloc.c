#include "mp_alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

void mp_alloc_keep_freed(void)
{
#ifdef __GLIBC__
    if (getenv("MPIPRUNE_MALLOC_DEFAULT"))
        return;
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, -1);
#endif
}

/* -1: the environment not read yet. */
static _Atomic int64_t fail_at = -1;
static _Atomic int64_t count;

static int fails(void)
{
    int64_t at = atomic_load(&fail_at);
    if (at < 0) {
        const char *e = getenv("MPIPRUNE_FAIL_ALLOC");
        char *end = NULL;
        long long v = e ? strtoll(e, &end, 10) : 0;
        at = (e && end != e && *end == '\0' && v > 0) ? (int64_t)v : 0;
        atomic_store(&fail_at, at);
    }
    int64_t n = atomic_fetch_add(&count, 1) + 1;
    return at > 0 && n >= at;
}

void *mp_malloc(size_t n)
{
    return fails() ? NULL : malloc(n ? n : 1);
}

void *mp_calloc(size_t count_, size_t size)
{
    return fails() ? NULL : calloc(count_ ? count_ : 1, size ? size : 1);
}

void *mp_realloc(void *p, size_t n)
{
    return fails() ? NULL : realloc(p, n ? n : 1);
}

char *mp_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = mp_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void mp_alloc_fail_at(int64_t n)
{
    atomic_store(&count, 0);
    atomic_store(&fail_at, n > 0 ? n : 0);
}

int64_t mp_alloc_count(void)
{
    return atomic_load(&count);
}
