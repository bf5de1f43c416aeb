#include "mp_json.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"

/* Allocations cJSON asked for and did not get, on this thread. */
static _Thread_local unsigned long json_failed;

static void *json_malloc(size_t n)
{
    void *p = mp_malloc(n);
    if (!p)
        json_failed++;
    return p;
}

void mp_json_init(void)
{
    cJSON_Hooks h = {.malloc_fn = json_malloc, .free_fn = free};
    cJSON_InitHooks(&h);
}

cJSON *mp_json_parse(const char *text, const char **end, bool *oom)
{
    unsigned long before = json_failed;
    const char *e = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &e, 1);
    *oom = root == NULL && json_failed != before;
    if (end)
        *end = e;
    return root;
}

struct cJSON *mp_json_f64_bits(const double *v, int64_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n < 0 || (uint64_t)n > (SIZE_MAX - 1) / 16)
        return NULL;
    char *t = mp_malloc((size_t)n * 16 + 1);
    if (!t)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, &v[i], sizeof u);
        for (int k = 0; k < 16; k++)
            t[i * 16 + k] = hex[(u >> (60 - 4 * k)) & 0xfu];
    }
    t[n * 16] = '\0';
    cJSON *s = cJSON_CreateString(t);
    free(t);
    return s;
}

bool mp_json_f64_unbits(const struct cJSON *s, double *v, int64_t n)
{
    const char *t = cJSON_IsString(s) ? s->valuestring : NULL;
    if (!t || n < 0 || strlen(t) != (size_t)n * 16)
        return false;
    for (int64_t i = 0; i < n; i++) {
        uint64_t u = 0;
        for (int k = 0; k < 16; k++) {
            char c = t[i * 16 + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return false;
            u = u << 4 | (uint64_t)d;
        }
        memcpy(&v[i], &u, sizeof u);
    }
    return true;
}
