/* Replays every kept fuzz input (tests/fuzz/regress/TARGET/ files: the crashes the fuzzers found,
 * each fixed) through the harness entry points of fuzz/mp_fuzz.c, in the normal build (no
 * clang needed). A harness aborts when a reader breaks its contract; under ASan/UBSan any
 * memory error fails the test as well. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_fuzz.h"
#include "mp_json.h"

static int replay_dir(const char *dir, mp_fuzz_fn fn, int *count)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* no inputs kept for this target */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[8192];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        FILE *f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "cannot open %s\n", path);
            closedir(d);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
        if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
            fprintf(stderr, "cannot read %s\n", path);
            fclose(f);
            free(buf);
            closedir(d);
            return 1;
        }
        fclose(f);
        printf("replay %s (%ld bytes)\n", path, n);
        fflush(stdout);
        fn(buf, (size_t)n);
        free(buf);
        (*count)++;
    }
    closedir(d);
    return 0;
}

int main(int argc, char **argv)
{
    mp_json_init();
    int count = 0;
    for (int a = 1; a < argc; a++)
        for (int i = 0; i < mp_fuzz_ntargets; i++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s", argv[a], mp_fuzz_targets[i].name);
            if (replay_dir(dir, mp_fuzz_targets[i].fn, &count) != 0)
                return 1;
        }
    printf("%d inputs replayed, every reader kept its contract\n", count);
    return 0;
}
