/* mp_alloc_keep_freed: after it, a 64 MiB block comes from malloc's heap (no mmap'd chunk)
 * and its memory stays in the heap when freed; with MPIPRUNE_MALLOC_DEFAULT set (argument
 * "default"), glibc's defaults hold: the block is mmap'd. Run in its own process (mallopt is
 * process-wide); not under the sanitizers, whose allocator replaces glibc's. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"

int main(int argc, char **argv)
{
    int want_default = argc > 1 && strcmp(argv[1], "default") == 0;
    if (want_default != (getenv("MPIPRUNE_MALLOC_DEFAULT") != NULL)) {
        fprintf(stderr, "FAIL: run with MPIPRUNE_MALLOC_DEFAULT set exactly for 'default'\n");
        return 1;
    }
    mp_alloc_keep_freed();
    size_t n = (size_t)64 << 20;
    char *p = malloc(n);
    if (!p)
        return 1;
    memset(p, 1, n);
    struct mallinfo2 m = mallinfo2();
    int mmapped = m.hblkhd >= n;
    free(p);
    struct mallinfo2 after = mallinfo2();
    printf("mmapped %zu bytes while held; heap free after %zu bytes\n", m.hblkhd,
           after.fordblks);
    if (want_default ? !mmapped : mmapped) {
        fprintf(stderr, "FAIL: the 64 MiB block was %smmap'd\n", mmapped ? "" : "not ");
        return 1;
    }
    if (!want_default && after.fordblks < n) {
        fprintf(stderr, "FAIL: freed block not kept in the heap (%zu bytes free)\n",
                after.fordblks);
        return 1;
    }
    return 0;
}
