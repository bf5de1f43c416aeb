#define _POSIX_C_SOURCE 200809L

#include "mp_alloc.h"
#include "mp_outgguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mp_outgguf {
    mp_gguf *gg;
    mp_model_config cfg;
    mp_weight_source in;
    const char *dir;      /* while writing: the spool's directory */
    char **spooled;       /* names put, in order */
    size_t n, cap;
};

static bool spooled(const mp_outgguf *g, const char *name)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->spooled[i], name) == 0)
            return true;
    return false;
}

static void spool_path(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/.spool.%s.f32", dir, name);
}

mp_status mp_outgguf_open(const char *gguf_path, mp_outgguf **out)
{
    mp_status st = MP_OK;
    mp_outgguf *g = mp_calloc(1, sizeof *g);
    *out = NULL;
    if (!g)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory", gguf_path);
    MP_TRY(mp_gguf_open(gguf_path, &g->gg));
    MP_TRY(mp_gguf_model_config(g->gg, &g->cfg));
    mp_gguf_weight_source(g->gg, &g->in);
    *out = g;
    g = NULL;
done:
    mp_outgguf_close(&g);
    return st;
}

void mp_outgguf_close(mp_outgguf **gp)
{
    if (!gp || !*gp)
        return;
    mp_outgguf *g = *gp;
    mp_gguf_close(&g->gg);
    for (size_t i = 0; i < g->n; i++)
        free(g->spooled[i]);
    free(g->spooled);
    free(g);
    *gp = NULL;
}

static mp_status numel_of(const mp_outgguf *g, const char *name, int64_t *numel)
{
    char gn[160];
    const mp_gguf_tensor *t = NULL;
    if (mp_gguf_name_from_hf(name, gn, sizeof gn))
        t = mp_gguf_find_tensor(g->gg, gn);
    if (!t)
        return mp_error(MP_ERR_NOT_FOUND, "%s: no tensor for '%s' to write",
                        mp_gguf_path(g->gg), name);
    *numel = t->numel;
    return MP_OK;
}

mp_status mp_outgguf_put(mp_outgguf *g, const char *dir, const char *name, const float *values)
{
    mp_status st = MP_OK;
    char path[8192];
    int64_t numel = 0;
    int fd = -1;
    MP_TRY(numel_of(g, name, &numel));
    spool_path(path, sizeof path, dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        MP_FAIL(MP_ERR_IO, "%s: %s", path, strerror(errno));
    const char *p = (const char *)values;
    for (size_t left = (size_t)numel * sizeof(float); left > 0;) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            MP_FAIL(MP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        p += w;
        left -= (size_t)w;
    }
    if (!spooled(g, name)) {
        if (g->n == g->cap) {
            size_t nc = g->cap ? 2 * g->cap : 64;
            char **ns = mp_realloc(g->spooled, nc * sizeof *ns);
            if (!ns)
                MP_FAIL(MP_ERR_NOMEM, "out of memory");
            g->spooled = ns;
            g->cap = nc;
        }
        if (!(g->spooled[g->n] = mp_strdup(name)))
            MP_FAIL(MP_ERR_NOMEM, "out of memory");
        g->n++;
    }
done:
    if (fd >= 0 && close(fd) != 0 && st == MP_OK)
        st = mp_error(MP_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}

/* A weight source: the spooled tensor when there is one, else the input's. */
static mp_status overlay_load(void *ctx, const char *name, int ndim, const int64_t *shape,
                              float *out)
{
    mp_outgguf *g = ctx;
    if (!spooled(g, name))
        return g->in.load(g->in.ctx, name, ndim, shape, out);
    mp_status st = MP_OK;
    char path[8192];
    int64_t numel = 0;
    MP_TRY(numel_of(g, name, &numel));
    spool_path(path, sizeof path, g->dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        MP_FAIL(MP_ERR_IO, "%s: %s", path, strerror(errno));
    size_t got = fread(out, sizeof(float), (size_t)numel, f);
    fclose(f);
    if (got != (size_t)numel)
        MP_FAIL(MP_ERR_IO, "%s: short read", path);
done:
    return st;
}

static bool overlay_has(void *ctx, const char *name)
{
    mp_outgguf *g = ctx;
    return spooled(g, name) || g->in.has(g->in.ctx, name);
}

mp_status mp_outgguf_write(mp_outgguf *g, const char *dir)
{
    mp_status st = MP_OK;
    char path[8192];
    /* The matrices' type: the input's, when it is one mpiprune writes. */
    mp_dtype dt = MP_DT_F32;
    const mp_gguf_tensor *t = mp_gguf_find_tensor(g->gg, "blk.0.ffn_up.weight");
    if (!t)
        t = mp_gguf_find_tensor(g->gg, "token_embd.weight");
    if (t && t->type == MP_GGML_F16)
        dt = MP_DT_F16;
    else if (t && t->type == MP_GGML_BF16)
        dt = MP_DT_BF16;
    g->dir = dir;
    mp_weight_source src = {.ctx = g, .load = overlay_load, .has = overlay_has};
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    MP_TRY(mp_gguf_write_model(path, &g->cfg, &src, dt, g->gg));
    for (size_t i = 0; i < g->n; i++) {
        spool_path(path, sizeof path, dir, g->spooled[i]);
        if (unlink(path) != 0)
            MP_FAIL(MP_ERR_IO, "%s: %s", path, strerror(errno));
    }
done:
    return st;
}
