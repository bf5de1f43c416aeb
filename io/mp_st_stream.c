/* mp_st_stream: streaming safetensors writer (see mp_st_stream.h).
 *
 * The headers are built by hand (offsets are 64-bit integers, which cJSON would hold as
 * doubles) in the byte layout of mp_st_write. Each file is created at its temporary name,
 * header written, size reserved with ftruncate; tensors are pwritten at their offsets in
 * chunks converted through a fixed buffer.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include "mp_alloc.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_textbuf.h"
#include "mp_st_stream.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define STS_INDEX_NAME "model.safetensors.index.json"
#define STS_SINGLE_NAME "model.safetensors"
/* Sizes stay below 2^53 so that every reader's JSON numbers hold them exactly. */
#define STS_MAX_BYTES ((uint64_t)1 << 53)
/* Elements converted per pwrite. */
#define STS_CHUNK 65536

typedef struct {
    char *name;
    mp_dtype dtype;
    int ndim;
    int64_t shape[MP_ST_MAX_DIMS];
    int64_t numel;
    uint64_t nbytes;
    int file;
    uint64_t offset; /* from the start of the file */
    bool written;
} sts_tensor;

typedef struct {
    char *name;  /* final base name */
    char *path;  /* final path */
    char *tmp;   /* temporary path */
    int fd;
    bool created;
    uint64_t size;
} sts_file;

struct mp_sts {
    char *dir;
    size_t n;
    sts_tensor *t;
    size_t *by_name; /* indices sorted by name */
    int nfiles;
    sts_file *files;
    bool index;
    char *index_tmp, *index_path;
    bool index_created;
    uint64_t total;
};

/* ---------- helpers ---------- */


/* "<host>-<pid>", the host name reduced to characters safe in a file name. */
static void sts_tag(char *buf, size_t len)
{
    char host[65] = "host";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '.' || *c == '_'))
            *c = '_';
    snprintf(buf, len, "%s-%ld", host, (long)getpid());
}

static char *sts_tmp_name(const char *path)
{
    char tag[128];
    sts_tag(tag, sizeof tag);
    size_t n = strlen(path) + strlen(tag) + 8;
    char *p = mp_malloc(n);
    if (p)
        snprintf(p, n, "%s.tmp-%s", path, tag);
    return p;
}

static mp_status sts_pwrite_all(int fd, const void *data, size_t n, uint64_t off,
                                const char *path)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = pwrite(fd, p, chunk, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return mp_error(MP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        if (w == 0)
            return mp_error(MP_ERR_IO, "%s: write made no progress", path);
        p += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return MP_OK;
}

static bool sts_metadata_ok(const cJSON *meta, const char **bad)
{
    if (!cJSON_IsObject(meta))
        return false;
    for (const cJSON *it = meta->child; it; it = it->next)
        if (!cJSON_IsString(it)) {
            *bad = it->string;
            return false;
        }
    return true;
}

/* The compact form of a metadata object, checked; *out = NULL for none. */
static mp_status sts_metadata(const char *dir, const char *json, char **out)
{
    *out = NULL;
    if (!json)
        return MP_OK;
    const char *bad = NULL;
    bool oom = false;
    cJSON *m = mp_json_parse(json, NULL, &oom);
    if (!m && oom)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory reading __metadata__", dir);
    if (!m || !sts_metadata_ok(m, &bad)) {
        mp_status st = mp_error(MP_ERR_ARG,
                                "%s: __metadata__ is not a JSON object of strings%s%s%s", dir,
                                bad ? " (key '" : "", bad ? bad : "", bad ? "')" : "");
        cJSON_Delete(m);
        return st;
    }
    *out = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    return *out ? MP_OK : mp_error(MP_ERR_NOMEM, "%s: out of memory", dir);
}

static int sts_cmp_by_name(const void *a, const void *b)
{
    const sts_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

int64_t mp_sts_find(const mp_sts *w, const char *name)
{
    if (!w || !name)
        return -1;
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->t[w->by_name[mid]].name, name);
        if (c == 0)
            return (int64_t)w->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static void sts_free(mp_sts *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->t[i].name);
    for (int k = 0; k < w->nfiles; k++) {
        sts_file *f = &w->files[k];
        if (f->fd >= 0)
            close(f->fd);
        if (f->created)
            unlink(f->tmp);
        free(f->name);
        free(f->path);
        free(f->tmp);
    }
    if (w->index_created)
        unlink(w->index_tmp);
    free(w->index_tmp);
    free(w->index_path);
    free(w->files);
    free(w->t);
    free(w->by_name);
    free(w->dir);
    free(w);
}

/* ---------- create ---------- */

/* Header text of file k (padded), from the tensors' offsets relative to the data section. */
static mp_status sts_header(const mp_sts *w, int k, const char *meta, const uint64_t *rel,
                            mp_textbuf *hb)
{
    bool first = true;
    mp_tb_str(hb, "{");
    if (meta) {
        mp_tb_str(hb, "\"__metadata__\":");
        mp_tb_str(hb, meta);
        first = false;
    }
    for (size_t i = 0; i < w->n; i++) {
        const sts_tensor *t = &w->t[i];
        if (t->file != k)
            continue;
        if (!first)
            mp_tb_str(hb, ",");
        first = false;
        mp_tb_json_str(hb, t->name);
        mp_tb_str(hb, ":{\"dtype\":\"");
        mp_tb_str(hb, mp_dtype_name(t->dtype));
        mp_tb_str(hb, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d)
                mp_tb_str(hb, ",");
            mp_tb_u64(hb, (uint64_t)t->shape[d]);
        }
        mp_tb_str(hb, "],\"data_offsets\":[");
        mp_tb_u64(hb, rel[i]);
        mp_tb_str(hb, ",");
        mp_tb_u64(hb, rel[i] + t->nbytes);
        mp_tb_str(hb, "]}");
    }
    mp_tb_str(hb, "}");
    while (!hb->oom && (8 + hb->n) % 8 != 0) /* out of memory, n stops growing */
        mp_tb_str(hb, " ");
    if (hb->oom)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory for a header", w->dir);
    return MP_OK;
}

static mp_status sts_open_file(mp_sts *w, int k, const char *meta, const uint64_t *rel)
{
    mp_status st = MP_OK;
    mp_textbuf hb = {0};
    sts_file *f = &w->files[k];
    MP_TRY(sts_header(w, k, meta, rel, &hb));
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f->fd < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create %s: %s", f->path, f->tmp, strerror(errno));
    f->created = true;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)(((uint64_t)hb.n >> (8 * i)) & 0xffu);
    MP_TRY(sts_pwrite_all(f->fd, lenb, 8, 0, f->tmp));
    MP_TRY(sts_pwrite_all(f->fd, hb.p, hb.n, 8, f->tmp));
    uint64_t base = 8 + (uint64_t)hb.n, end = base;
    for (size_t i = 0; i < w->n; i++)
        if (w->t[i].file == k) {
            w->t[i].offset = base + rel[i];
            end = base + rel[i] + w->t[i].nbytes;
        }
    f->size = end;
    if (ftruncate(f->fd, (off_t)end) != 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot reserve %" PRIu64 " bytes: %s", f->tmp, end,
                strerror(errno));
done:
    free(hb.p);
    return st;
}

static mp_status sts_add_file(mp_sts *w, int k, const char *name)
{
    sts_file *f = &w->files[k];
    f->fd = -1;
    if (!name || !*name || strchr(name, '/'))
        return mp_error(MP_ERR_ARG, "%s: invalid shard name '%s'", w->dir, name ? name : "");
    f->name = mp_strdup(name);
    f->path = f->name ? mp_file_join(w->dir, name) : NULL;
    f->tmp = f->path ? sts_tmp_name(f->path) : NULL;
    if (!f->tmp)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory", w->dir);
    for (int j = 0; j < k; j++)
        if (strcmp(w->files[j].name, name) == 0)
            return mp_error(MP_ERR_ARG, "%s: shard '%s' given twice", w->dir, name);
    return MP_OK;
}

mp_status mp_sts_create(const char *dir, const mp_sts_spec *specs, size_t n,
                        const mp_sts_layout *layout, mp_sts **out)
{
    mp_status st = MP_OK;
    mp_sts *w = NULL;
    uint64_t *rel = NULL, *fill = NULL;
    char **meta = NULL;
    const sts_tensor **sorted = NULL;
    int nmeta = 0;
    *out = NULL;
    if (!dir || !*dir || !layout || (n > 0 && !specs))
        return mp_error(MP_ERR_ARG, "mp_sts_create: missing argument");
    if (layout->n_shards < 0 || (layout->n_shards > 0 && !layout->shard_names) ||
        layout->max_shard_bytes < 0)
        return mp_error(MP_ERR_ARG, "%s: invalid shard layout", dir);
    w = mp_calloc(1, sizeof *w);
    if (!w)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory", dir);
    w->dir = mp_strdup(dir);
    w->t = mp_calloc(n ? n : 1, sizeof *w->t);
    w->by_name = mp_calloc(n ? n : 1, sizeof *w->by_name);
    rel = mp_calloc(n ? n : 1, sizeof *rel);
    if (!w->dir || !w->t || !w->by_name || !rel)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", dir);

    /* Tensors: names, sizes. */
    for (size_t i = 0; i < n; i++) {
        const mp_sts_spec *s = &specs[i];
        sts_tensor *t = &w->t[i];
        if (!s->name || !*s->name || strcmp(s->name, "__metadata__") == 0)
            MP_FAIL(MP_ERR_ARG, "%s: tensor %zu has an invalid name", dir, i);
        size_t esz = mp_dtype_size(s->dtype);
        if ((int)s->dtype < 0 || s->dtype >= MP_DT_COUNT || esz == 0)
            MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has an invalid dtype", dir, s->name);
        if (s->ndim < 0 || s->ndim > MP_ST_MAX_DIMS)
            MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has %d dimensions (0 to %d allowed)", dir,
                    s->name, s->ndim, MP_ST_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < s->ndim; d++) {
            if (s->shape[d] < 0)
                MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has a negative dimension", dir, s->name);
            uint64_t dim = (uint64_t)s->shape[d];
            if (dim != 0 && numel > STS_MAX_BYTES / esz / dim)
                MP_FAIL(MP_ERR_RANGE, "%s: tensor '%s' is too large", dir, s->name);
            numel *= dim;
            t->shape[d] = s->shape[d];
        }
        t->name = mp_strdup(s->name);
        if (!t->name)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", dir);
        w->n = i + 1; /* owns the name from here */
        t->dtype = s->dtype;
        t->ndim = s->ndim;
        t->numel = (int64_t)numel;
        t->nbytes = numel * esz;
        t->file = layout->n_shards > 0 ? s->shard : 0;
        if (t->file < 0 || (layout->n_shards > 0 && t->file >= layout->n_shards))
            MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' names shard %d of %d", dir, s->name, t->file,
                    layout->n_shards);
        w->by_name[i] = i;
        if (w->total > STS_MAX_BYTES - t->nbytes)
            MP_FAIL(MP_ERR_RANGE, "%s: the model is too large at tensor '%s'", dir, s->name);
        w->total += t->nbytes;
    }
    sorted = mp_calloc(w->n ? w->n : 1, sizeof *sorted);
    if (!sorted)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", dir);
    for (size_t i = 0; i < w->n; i++)
        sorted[i] = &w->t[i];
    qsort(sorted, w->n, sizeof *sorted, sts_cmp_by_name);
    for (size_t i = 0; i < w->n; i++)
        w->by_name[i] = (size_t)(sorted[i] - w->t);
    for (size_t i = 1; i < w->n; i++)
        if (strcmp(w->t[w->by_name[i - 1]].name, w->t[w->by_name[i]].name) == 0)
            MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' given twice", dir, w->t[w->by_name[i]].name);

    /* Shards. */
    int nfiles = 1;
    if (layout->n_shards > 0) {
        nfiles = layout->n_shards;
    } else {
        uint64_t cur = 0;
        bool any = false;
        for (size_t i = 0; i < w->n && layout->max_shard_bytes > 0; i++) {
            uint64_t nb = w->t[i].nbytes;
            if (any && cur + nb > (uint64_t)layout->max_shard_bytes) {
                nfiles++;
                cur = 0;
            }
            w->t[i].file = nfiles - 1;
            cur += nb;
            any = true;
        }
        if (nfiles > 99999)
            MP_FAIL(MP_ERR_RANGE, "%s: %d shards; at most 99999 (raise the shard size)", dir,
                    nfiles);
    }
    w->files = mp_calloc((size_t)nfiles, sizeof *w->files);
    meta = mp_calloc((size_t)nfiles, sizeof *meta);
    fill = mp_calloc((size_t)nfiles, sizeof *fill);
    if (!w->files || !meta || !fill)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", dir);
    for (int k = 0; k < nfiles; k++)
        w->files[k].fd = -1;
    w->nfiles = nmeta = nfiles;
    for (int k = 0; k < w->nfiles; k++) {
        char auto_name[64];
        const char *name = NULL, *mj = NULL;
        if (layout->n_shards > 0) {
            name = layout->shard_names[k];
            mj = layout->shard_metadata ? layout->shard_metadata[k] : NULL;
        } else {
            if (w->nfiles == 1)
                snprintf(auto_name, sizeof auto_name, "%s", STS_SINGLE_NAME);
            else
                snprintf(auto_name, sizeof auto_name, "model-%05d-of-%05d.safetensors", k + 1,
                         w->nfiles);
            name = auto_name;
            mj = layout->metadata;
        }
        MP_TRY(sts_add_file(w, k, name));
        MP_TRY(sts_metadata(dir, mj, &meta[k]));
        if (strcmp(name, STS_INDEX_NAME) == 0)
            MP_FAIL(MP_ERR_ARG, "%s: a shard may not be named %s", dir, STS_INDEX_NAME);
    }
    for (size_t i = 0; i < w->n; i++) {
        rel[i] = fill[w->t[i].file];
        fill[w->t[i].file] += w->t[i].nbytes;
    }
    w->index = layout->index || w->nfiles > 1;
    if (w->index) {
        w->index_path = mp_file_join(dir, STS_INDEX_NAME);
        w->index_tmp = w->index_path ? sts_tmp_name(w->index_path) : NULL;
        if (!w->index_tmp)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", dir);
    }
    for (int k = 0; k < w->nfiles; k++)
        MP_TRY(sts_open_file(w, k, meta[k], rel));
    *out = w;
    w = NULL;
done:
    for (int k = 0; meta && k < nmeta; k++)
        free(meta[k]);
    free(meta);
    free(sorted);
    free(fill);
    free(rel);
    sts_free(w);
    return st;
}

/* ---------- put ---------- */

static mp_status sts_claim(mp_sts *w, const char *name, sts_tensor **out)
{
    if (!w)
        return mp_error(MP_ERR_ARG, "mp_sts: write to a closed writer");
    int64_t i = mp_sts_find(w, name);
    if (i < 0)
        return mp_error(MP_ERR_NOT_FOUND, "%s: no tensor '%s' in the output's header", w->dir,
                        name ? name : "(null)");
    sts_tensor *t = &w->t[i];
    if (t->written)
        return mp_error(MP_ERR_ARG, "%s: tensor '%s' written twice", w->dir, name);
    *out = t;
    return MP_OK;
}

mp_status mp_sts_put_f32(mp_sts *w, const char *name, const float *values, int64_t numel)
{
    mp_status st = MP_OK;
    sts_tensor *t = NULL;
    unsigned char *buf = NULL;
    MP_TRY(sts_claim(w, name, &t));
    if (numel != t->numel)
        MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has %" PRId64 " elements, %" PRId64 " given",
                w->dir, name, t->numel, numel);
    if (numel > 0 && !values)
        MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' without values", w->dir, name);
    if (!mp_dtype_is_float(t->dtype))
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: tensor '%s' is %s, not a float type to convert to",
                w->dir, name, mp_dtype_name(t->dtype));
    size_t esz = mp_dtype_size(t->dtype);
    sts_file *f = &w->files[t->file];
    if (t->dtype == MP_DT_F32) {
        MP_TRY(sts_pwrite_all(f->fd, values, (size_t)t->nbytes, t->offset, f->tmp));
    } else {
        buf = mp_malloc(STS_CHUNK * esz);
        if (!buf)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory converting '%s'", w->dir, name);
        for (int64_t s = 0; s < numel; s += STS_CHUNK) {
            size_t k = (size_t)(numel - s < STS_CHUNK ? numel - s : STS_CHUNK);
            MP_TRY(mp_dtype_from_f32(t->dtype, values + s, k, buf));
            MP_TRY(sts_pwrite_all(f->fd, buf, k * esz, t->offset + (uint64_t)s * esz, f->tmp));
        }
    }
    t->written = true;
done:
    free(buf);
    return st;
}

mp_status mp_sts_put_raw(mp_sts *w, const char *name, const void *bytes, size_t nbytes)
{
    mp_status st = MP_OK;
    sts_tensor *t = NULL;
    MP_TRY(sts_claim(w, name, &t));
    if ((uint64_t)nbytes != t->nbytes)
        MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has %" PRIu64 " bytes, %zu given", w->dir, name,
                t->nbytes, nbytes);
    if (nbytes > 0 && !bytes)
        MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' without data", w->dir, name);
    sts_file *f = &w->files[t->file];
    MP_TRY(sts_pwrite_all(f->fd, bytes, nbytes, t->offset, f->tmp));
    t->written = true;
done:
    return st;
}

size_t mp_sts_count(const mp_sts *w) { return w ? w->n : 0; }
const char *mp_sts_name(const mp_sts *w, size_t i)
{
    return w && i < w->n ? w->t[i].name : NULL;
}
bool mp_sts_written(const mp_sts *w, size_t i) { return w && i < w->n && w->t[i].written; }
int mp_sts_file_count(const mp_sts *w) { return w ? w->nfiles : 0; }
const char *mp_sts_file_name(const mp_sts *w, int k)
{
    return w && k >= 0 && k < w->nfiles ? w->files[k].name : NULL;
}

/* ---------- close ---------- */

/* model.safetensors.index.json as json.dumps(index, indent=2, sort_keys=True) writes it. */
static mp_status sts_write_index(mp_sts *w)
{
    mp_status st = MP_OK;
    mp_textbuf b = {0};
    const sts_tensor **sorted = mp_calloc(w->n ? w->n : 1, sizeof *sorted);
    int fd = -1;
    if (!sorted)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", w->dir);
    for (size_t i = 0; i < w->n; i++)
        sorted[i] = &w->t[i];
    qsort(sorted, w->n, sizeof *sorted, sts_cmp_by_name);
    mp_tb_str(&b, "{\n  \"metadata\": {\n    \"total_size\": ");
    mp_tb_u64(&b, w->total);
    mp_tb_str(&b, "\n  },\n  \"weight_map\": {");
    for (size_t i = 0; i < w->n; i++) {
        mp_tb_str(&b, i ? ",\n    " : "\n    ");
        mp_tb_json_str(&b, sorted[i]->name);
        mp_tb_str(&b, ": ");
        mp_tb_json_str(&b, w->files[sorted[i]->file].name);
    }
    mp_tb_str(&b, w->n ? "\n  }\n}\n" : "}\n}\n");
    if (b.oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory for the index", w->dir);
    fd = open(w->index_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create %s: %s", w->index_path, w->index_tmp,
                strerror(errno));
    w->index_created = true;
    MP_TRY(sts_pwrite_all(fd, b.p, b.n, 0, w->index_tmp));
    if (fsync(fd) != 0)
        MP_FAIL(MP_ERR_IO, "%s: fsync failed: %s", w->index_tmp, strerror(errno));
done:
    if (fd >= 0 && close(fd) != 0 && st == MP_OK)
        st = mp_error(MP_ERR_IO, "%s: close failed: %s", w->index_tmp, strerror(errno));
    free(sorted);
    free(b.p);
    return st;
}

mp_status mp_sts_close(mp_sts **wp)
{
    mp_status st = MP_OK;
    mp_sts *w = wp ? *wp : NULL;
    int renamed = 0;
    if (!w)
        return MP_OK;
    *wp = NULL;
    size_t missing = 0, first = 0;
    for (size_t i = 0; i < w->n; i++)
        if (!w->t[i].written && missing++ == 0)
            first = i;
    if (missing > 0)
        MP_FAIL(MP_ERR_INTERNAL, "%s: tensor '%s' was never written (%zu of %zu missing)",
                w->dir, w->t[first].name, missing, w->n);
    for (int k = 0; k < w->nfiles; k++) {
        sts_file *f = &w->files[k];
        if (fsync(f->fd) != 0)
            MP_FAIL(MP_ERR_IO, "%s: fsync failed: %s", f->tmp, strerror(errno));
        int rc = close(f->fd);
        f->fd = -1;
        if (rc != 0)
            MP_FAIL(MP_ERR_IO, "%s: close failed: %s", f->tmp, strerror(errno));
    }
    if (w->index)
        MP_TRY(sts_write_index(w));
    /* Refuse to replace a file: the directory is the writer's. */
    for (int k = 0; k < w->nfiles; k++)
        if (access(w->files[k].path, F_OK) == 0)
            MP_FAIL(MP_ERR_IO, "%s: already exists", w->files[k].path);
    if (w->index && access(w->index_path, F_OK) == 0)
        MP_FAIL(MP_ERR_IO, "%s: already exists", w->index_path);
    for (; renamed < w->nfiles; renamed++) {
        sts_file *f = &w->files[renamed];
        if (rename(f->tmp, f->path) != 0)
            MP_FAIL(MP_ERR_IO, "%s: cannot rename %s into place: %s", f->path, f->tmp,
                    strerror(errno));
        f->created = false;
    }
    if (w->index) {
        if (rename(w->index_tmp, w->index_path) != 0)
            MP_FAIL(MP_ERR_IO, "%s: cannot rename %s into place: %s", w->index_path,
                    w->index_tmp, strerror(errno));
        w->index_created = false;
    }
    /* The renames are durable once the directory is synced; a file system that refuses fsync
     * on a directory only weakens durability after a crash, which is not an error here. */
    int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS) {
            st = mp_error(MP_ERR_IO, "%s: fsync failed: %s", w->dir, strerror(errno));
        }
        close(dfd);
    }
done:
    if (st != MP_OK)
        /* On failure nothing is left: the files already renamed go too. */
        for (int k = 0; k < renamed; k++)
            unlink(w->files[k].path);
    sts_free(w);
    return st;
}

void mp_sts_abort(mp_sts **wp)
{
    if (!wp || !*wp)
        return;
    sts_free(*wp);
    *wp = NULL;
}
