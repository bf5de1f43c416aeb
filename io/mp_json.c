#include "mp_json.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

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
