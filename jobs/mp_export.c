/* mp_export: a model at its final widths through the streaming writer (see mp_export.h). */
#define _POSIX_C_SOURCE 200809L

#include "mp_alloc.h"
#include "mp_export.h"
#include "mp_hfconfig.h"
#include "mp_st_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* config.json files are a few KiB (mp_hfconfig.c refuses beyond 64 MiB). */
#define EX_CONFIG_MAX ((size_t)64 << 20)

struct mp_export {
    mp_sts *w;
    const mp_st_model *in;
    mp_model_config *out_cfg;
    char *dir;
    char *config_text; /* the new config.json */
    bool modeling;     /* write modeling_mpiprune.py */
};

enum { EX_OTHER, EX_WEIGHT, EX_BIAS, EX_NORM1, EX_NORM2 };

static const char *norm_name(mp_arch arch, int which)
{
    if (arch == MP_ARCH_LLAMA)
        return which == 1 ? "input_layernorm" : "post_attention_layernorm";
    return which == 1 ? "self_attn_layer_norm" : "final_layer_norm";
}

/* "model.layers.L." (OPT: "model.decoder.layers.L.") */
static void block_prefix(const mp_model_config *c, int64_t l, char *buf, size_t len)
{
    snprintf(buf, len, "%s%lld.", c->arch == MP_ARCH_LLAMA ? "model.layers." :
             "model.decoder.layers.", (long long)l);
}

/* What a tensor of the input is: a block's linear weight or bias, one of its norms (weight or
 * bias), or anything else. */
static int classify(const mp_model_config *c, const char *name, int64_t *layer, int *id)
{
    const char *pre = c->arch == MP_ARCH_LLAMA ? "model.layers." : "model.decoder.layers.";
    size_t n = strlen(pre);
    if (strncmp(name, pre, n) != 0)
        return EX_OTHER;
    char *end = NULL;
    long long l = strtoll(name + n, &end, 10);
    if (end == name + n || *end != '.' || l < 0 || l >= c->n_layers)
        return EX_OTHER;
    *layer = l;
    char buf[320];
    for (int i = 0; i < MP_LIN_COUNT; i++) {
        if (c->arch != MP_ARCH_LLAMA && i == MP_LIN_GATE)
            continue;
        char base[256];
        mp_lin_full_name(c, l, (mp_lin_id)i, base, sizeof base);
        size_t bl = strlen(base);
        if (strncmp(name, base, bl) == 0) {
            *id = i;
            if (strcmp(name + bl, ".weight") == 0)
                return EX_WEIGHT;
            if (strcmp(name + bl, ".bias") == 0)
                return EX_BIAS;
        }
    }
    char bp[64];
    block_prefix(c, l, bp, sizeof bp);
    for (int which = 1; which <= 2; which++) {
        snprintf(buf, sizeof buf, "%s%s.", bp, norm_name(c->arch, which));
        if (strncmp(name, buf, strlen(buf)) == 0)
            return which == 1 ? EX_NORM1 : EX_NORM2;
    }
    return EX_OTHER;
}

static mp_status read_text(const char *path, char **out)
{
    mp_status st = MP_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mp_error(MP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0 || (size_t)sb.st_size > EX_CONFIG_MAX)
        MP_FAIL(MP_ERR_FORMAT, "%s: not a config.json (size)", path);
    buf = mp_malloc((size_t)sb.st_size + 1);
    if (!buf)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    size_t n = fread(buf, 1, (size_t)sb.st_size, f);
    if (n != (size_t)sb.st_size)
        MP_FAIL(MP_ERR_IO, "%s: read failed", path);
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
done:
    free(buf);
    fclose(f);
    return st;
}

/* dir/name with text, under a temporary name, fsync'ed and renamed. */
static mp_status write_text(const char *dir, const char *name, const char *text)
{
    mp_status st = MP_OK;
    char path[8192], tmp[8300];
    int fd = -1;
    bool created = false;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return mp_error(MP_ERR_RANGE, "%s/%s: path too long", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    created = true;
    size_t n = strlen(text);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            MP_FAIL(MP_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        off += (size_t)w;
    }
    if (fsync(fd) != 0)
        MP_FAIL(MP_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    int rc = close(fd);
    fd = -1;
    if (rc != 0)
        MP_FAIL(MP_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    created = false;
done:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    return st;
}

static void export_free(mp_export *e)
{
    if (!e)
        return;
    mp_sts_abort(&e->w);
    free(e->out_cfg);
    free(e->dir);
    free(e->config_text);
    free(e);
}

mp_status mp_export_begin(const char *dir, const mp_st_model *in, const mp_model_config *in_cfg,
                          const mp_model_config *out_cfg, const char *config_path,
                          int64_t max_shard_bytes, mp_export **out)
{
    mp_status st = MP_OK;
    mp_export *e = NULL;
    mp_sts_spec *specs = NULL;
    const char **names = NULL, **meta = NULL;
    char *cfg_in = NULL, **added = NULL;
    size_t n = mp_st_count(in), n_added = 0;
    int nf = mp_st_file_count(in);
    *out = NULL;
    e = mp_calloc(1, sizeof *e);
    if (!e)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory", dir);
    e->in = in;
    e->out_cfg = mp_malloc(sizeof *e->out_cfg);
    e->dir = mp_strdup(dir);
    /* Room for a new o_proj and down_proj bias per block (FLAP's bias compensation). */
    specs = mp_calloc(n + 2 * (size_t)in_cfg->n_layers + 1, sizeof *specs);
    added = mp_calloc(2 * (size_t)in_cfg->n_layers + 1, sizeof *added);
    names = mp_calloc((size_t)(nf ? nf : 1), sizeof *names);
    meta = mp_calloc((size_t)(nf ? nf : 1), sizeof *meta);
    if (!e->out_cfg || !e->dir || !specs || !added || !names || !meta)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", dir);
    *e->out_cfg = *out_cfg;

    /* The config first: an output that cannot be described is refused before any work. */
    MP_TRY(read_text(config_path, &cfg_in));
    MP_TRY(mp_hfconfig_write(cfg_in, config_path, out_cfg, &e->config_text, &e->modeling));

    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const mp_st_tensor *t = mp_st_at(in, i);
        mp_sts_spec *s = &specs[k];
        s->name = t->name;
        s->dtype = t->dtype;
        s->ndim = t->ndim;
        memcpy(s->shape, t->shape, sizeof s->shape);
        s->shard = t->file;
        int64_t l = 0;
        int id = 0;
        int kind = classify(in_cfg, t->name, &l, &id);
        mp_block_shape bs = kind != EX_OTHER ? mp_layer_shape(out_cfg, l) : (mp_block_shape){0};
        if (kind == EX_WEIGHT || kind == EX_BIAS) {
            if (!mp_lin_present(out_cfg, l, (mp_lin_id)id))
                continue;
            int64_t rows = 0, cols = 0;
            mp_lin_dims(out_cfg, l, (mp_lin_id)id, &rows, &cols);
            if (t->ndim != (kind == EX_WEIGHT ? 2 : 1))
                MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' has %d dimensions", config_path,
                        t->name, t->ndim);
            s->shape[0] = rows;
            if (kind == EX_WEIGHT)
                s->shape[1] = cols;
            if (kind == EX_WEIGHT && mp_lin_has_bias(out_cfg, (mp_lin_id)id) &&
                !mp_lin_has_bias(in_cfg, (mp_lin_id)id)) {
                /* A bias the input has not: after its weight, in its shard, float32 (as
                 * mpiprune convert writes biases). */
                char base[256], bn[320];
                mp_lin_full_name(out_cfg, l, (mp_lin_id)id, base, sizeof base);
                snprintf(bn, sizeof bn, "%s.bias", base);
                if (!(added[n_added] = mp_strdup(bn)))
                    MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", dir);
                mp_sts_spec *b = &specs[++k];
                *b = *s;
                b->name = added[n_added++];
                b->dtype = MP_DT_F32;
                b->ndim = 1;
                b->shape[1] = 0;
            }
        } else if ((kind == EX_NORM1 && bs.n_heads == 0) || (kind == EX_NORM2 && bs.ffn == 0)) {
            continue;
        }
        k++;
    }
    mp_sts_layout lay = {0};
    if (max_shard_bytes > 0) {
        const char *m0 = nf > 0 ? mp_st_file_metadata(in, 0) : NULL;
        lay.metadata = m0 && strcmp(m0, "{}") != 0 ? m0 : NULL;
        lay.max_shard_bytes = max_shard_bytes;
    } else {
        for (int f = 0; f < nf; f++) {
            names[f] = mp_st_file_name(in, f);
            const char *m = mp_st_file_metadata(in, f);
            meta[f] = m && strcmp(m, "{}") != 0 ? m : NULL;
        }
        lay.n_shards = nf;
        lay.shard_names = names;
        lay.shard_metadata = meta;
        lay.index = mp_st_is_sharded(in);
    }
    MP_TRY(mp_sts_create(dir, specs, k, &lay, &e->w));
    *out = e;
    e = NULL;
done:
    for (size_t i = 0; i < n_added; i++)
        free(added[i]);
    free(added);
    free(cfg_in);
    free(specs);
    free(names);
    free(meta);
    export_free(e);
    return st;
}

mp_status mp_export_put_block(mp_export *e, const mp_block *blk)
{
    mp_status st = MP_OK;
    const mp_model_config *c = e->out_cfg;
    char base[256], name[320], bp[64];
    for (int id = 0; id < MP_LIN_COUNT; id++) {
        const mp_linear *l = &blk->lin[id];
        if (!l->present)
            continue;
        mp_lin_full_name(c, blk->index, (mp_lin_id)id, base, sizeof base);
        snprintf(name, sizeof name, "%s.weight", base);
        MP_TRY(mp_sts_put_f32(e->w, name, l->w, l->out * l->in));
        if (l->b) {
            snprintf(name, sizeof name, "%s.bias", base);
            MP_TRY(mp_sts_put_f32(e->w, name, l->b, l->out));
        }
    }
    block_prefix(c, blk->index, bp, sizeof bp);
    const float *norms[2][2] = {{blk->norm1_w, blk->norm1_b}, {blk->norm2_w, blk->norm2_b}};
    for (int which = 1; which <= 2; which++)
        for (int wb = 0; wb < 2; wb++) {
            const float *v = norms[which - 1][wb];
            if (!v)
                continue;
            snprintf(name, sizeof name, "%s%s.%s", bp, norm_name(c->arch, which),
                     wb ? "bias" : "weight");
            MP_TRY(mp_sts_put_f32(e->w, name, v, c->d));
        }
done:
    return st;
}

/* Copies tensor `name` byte for byte from the input (its shape must be unchanged). */
static mp_status copy_tensor(mp_export *e, const char *name, int *fds)
{
    mp_status st = MP_OK;
    unsigned char *buf = NULL;
    const mp_st_tensor *t = mp_st_find(e->in, name);
    if (!t)
        return mp_error(MP_ERR_INTERNAL, "%s: tensor '%s' is in no input file", e->dir, name);
    const char *path = mp_st_file_path(e->in, t->file);
    if (fds[t->file] < 0) {
        fds[t->file] = open(path, O_RDONLY | O_CLOEXEC);
        if (fds[t->file] < 0)
            return mp_error(MP_ERR_IO, "%s: %s", path, strerror(errno));
    }
    buf = mp_malloc(t->nbytes ? t->nbytes : 1);
    if (!buf)
        MP_FAIL(MP_ERR_NOMEM, "cannot allocate %zu bytes to copy %s", t->nbytes, name);
    for (size_t off = 0; off < t->nbytes;) {
        ssize_t r = pread(fds[t->file], buf + off, t->nbytes - off,
                          (off_t)(t->file_offset + (int64_t)off));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            MP_FAIL(MP_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (r == 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' is cut short", path, name);
        off += (size_t)r;
    }
    /* put_raw checks the byte count: a tensor whose shape changed was a block's to write. */
    st = mp_sts_put_raw(e->w, name, buf, t->nbytes);
    if (st != MP_OK)
        st = mp_error(MP_ERR_INTERNAL, "%s: tensor '%s' changed shape but was not written",
                      e->dir, name);
done:
    free(buf);
    return st;
}

mp_status mp_export_finish(mp_export **ep)
{
    mp_status st = MP_OK;
    mp_export *e = ep ? *ep : NULL;
    int nf = 0, *fds = NULL;
    if (!e)
        return MP_OK;
    *ep = NULL;
    nf = mp_st_file_count(e->in);
    fds = mp_malloc((size_t)(nf ? nf : 1) * sizeof *fds);
    if (!fds)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", e->dir);
    for (int f = 0; f < nf; f++)
        fds[f] = -1;
    for (size_t i = 0; i < mp_sts_count(e->w); i++)
        if (!mp_sts_written(e->w, i))
            MP_TRY(copy_tensor(e, mp_sts_name(e->w, i), fds));
    MP_TRY(mp_sts_close(&e->w));
    MP_TRY(write_text(e->dir, "config.json", e->config_text));
    if (e->modeling)
        MP_TRY(write_text(e->dir, MP_HFCONFIG_MODELING_NAME, mp_hfconfig_modeling_py));
done:
    for (int f = 0; fds && f < nf; f++)
        if (fds[f] >= 0)
            close(fds[f]);
    free(fds);
    export_free(e);
    return st;
}

void mp_export_abort(mp_export **ep)
{
    if (!ep || !*ep)
        return;
    export_free(*ep);
    *ep = NULL;
}
