/* mp_safetensors: strict reader and atomic writer (see mp_safetensors.h).
 *
 * Reading: each file is opened once (refused unless it is a regular file, checked before
 * anything blocks: a FIFO would hang); its header is read with pread, parsed with cJSON and
 * validated completely (dtype, shape, offsets, coverage of the data section) before any tensor
 * is exposed. Tensor data is read with pread and converted to float32 only on request. pread,
 * not mmap: a file truncated under a run then gives a short read, reported as one error line,
 * where a mapping would kill the process with SIGBUS (bench/bench_st_read measures the cost).
 * Writing: the header is built by hand (offsets are 64-bit integers, which cJSON would hold as
 * doubles), written with the data to "<path>.tmp.<pid>", fsync'ed and renamed into place.
 */
#define _POSIX_C_SOURCE 200809L

#include "mp_alloc.h"
#include "mp_textbuf.h"
#include "mp_checked.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"
/* Largest integer a JSON number (a double in cJSON) holds exactly. */
#define ST_JSON_INT_MAX 9007199254740992.0
/* An index file is a small JSON map; anything larger is not one. */
#define ST_INDEX_MAX_BYTES ((size_t)256 << 20)
/* The reference implementation refuses headers over 100 MB. */
#define ST_HEADER_MAX_BYTES ((uint64_t)100000000)
/* Non-float32 tensors are read and converted in chunks of this many bytes. */
#define ST_READ_CHUNK ((size_t)1 << 20)

typedef struct {
    char *path;
    const char *name; /* base name, inside path */
    int fd;           /* open for the model's lifetime; -1 when not open */
    size_t size;
    size_t data_off; /* first byte after the header */
    size_t data_len;
    char *metadata; /* "__metadata__" as compact JSON, "{}" if none */
} st_file;

struct mp_st_model {
    char *msg_path; /* the file (single) or index (sharded) named in "not found" messages */
    bool sharded;
    int nfiles;
    st_file *files;
    size_t n, cap;
    mp_st_tensor *t;           /* names are owned (allocated) strings */
    const mp_st_tensor **sorted; /* by name, for mp_st_find */
};

/* A tensor while its file's header is validated, with its offsets. */
typedef struct {
    mp_st_tensor t;
    uint64_t begin, end;
} st_entry;

/* ---------- small helpers ---------- */


static const char *st_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static uint64_t st_ld64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool st_json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= ST_JSON_INT_MAX))
        return false;
    uint64_t u = (uint64_t)d;
    if ((double)u != d)
        return false;
    *out = u;
    return true;
}

static void st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = 0;
    int w = snprintf(buf, cap, "[");
    k = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < ndim && k < cap; i++) {
        w = snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (w < 0)
            break;
        k += (size_t)w;
    }
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

/* True when the "__metadata__" value is an object of strings. */
static bool st_metadata_ok(const cJSON *meta, const char **bad_key)
{
    *bad_key = NULL;
    if (!cJSON_IsObject(meta))
        return false;
    for (const cJSON *c = meta->child; c; c = c->next) {
        if (!cJSON_IsString(c)) {
            *bad_key = c->string;
            return false;
        }
    }
    return true;
}

static int st_cmp_offset(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static int st_cmp_name(const void *a, const void *b)
{
    const mp_st_tensor *x = *(const mp_st_tensor *const *)a;
    const mp_st_tensor *y = *(const mp_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Reads n bytes at offset off; a short read means the file changed under the run. */
static mp_status st_pread_exact(int fd, const char *path, void *buf, size_t n, size_t off)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return mp_error(MP_ERR_IO, "%s: read failed at byte %zu: %s", path, off + got,
                            strerror(errno));
        }
        if (r == 0)
            return mp_error(MP_ERR_IO, "%s: no data at byte %zu, the file should hold at "
                            "least %zu bytes (truncated while being read?)", path, off + got,
                            off + n);
        got += (size_t)r;
    }
    return MP_OK;
}

/* ---------- one file ---------- */

/* Parses one tensor entry of `path`'s header into e (e->t.name is set by the caller). */
static mp_status st_parse_entry(const char *path, const char *name, const cJSON *obj,
                                st_entry *e)
{
    if (!cJSON_IsObject(obj))
        return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' is not a JSON object", path, name);
    const cJSON *jdt = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    const cJSON *jshape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *joff = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (!cJSON_IsString(jdt))
        return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' has no dtype string", path, name);
    if (!mp_dtype_parse(jdt->valuestring, &e->t.dtype))
        return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", path, name,
                        jdt->valuestring);
    if (!cJSON_IsArray(jshape))
        return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' has no shape array", path, name);
    int ndim = cJSON_GetArraySize(jshape);
    if (ndim > MP_ST_MAX_DIMS)
        return mp_error(MP_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (at most %d)",
                        path, name, ndim, MP_ST_MAX_DIMS);
    e->t.ndim = ndim;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *c = jshape->child; c; c = c->next, i++) {
        uint64_t dim;
        if (!st_json_uint(c, &dim))
            return mp_error(MP_ERR_FORMAT,
                            "%s: tensor '%s' shape entry %d is not a non-negative integer",
                            path, name, i);
        e->t.shape[i] = (int64_t)dim;
        if (!mp_mul_u64(numel, dim, &numel) || numel > (uint64_t)INT64_MAX)
            return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' shape overflows 64 bits", path,
                            name);
    }
    e->t.numel = (int64_t)numel;
    if (!cJSON_IsArray(joff) || cJSON_GetArraySize(joff) != 2 ||
        !st_json_uint(joff->child, &e->begin) || !st_json_uint(joff->child->next, &e->end))
        return mp_error(MP_ERR_FORMAT,
                        "%s: tensor '%s' data_offsets is not a pair of non-negative integers",
                        path, name);
    if (e->end < e->begin)
        return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64
                        "] end before they begin", path, name, e->begin, e->end);
    size_t esz = mp_dtype_size(e->t.dtype);
    char sh[160];
    st_shape_str(sh, sizeof sh, ndim, e->t.shape);
    uint64_t nbytes = 0;
    if (!mp_mul_u64(numel, esz, &nbytes) || nbytes != e->end - e->begin)
        return mp_error(MP_ERR_FORMAT,
                        "%s: tensor '%s' shape %s of %s does not match data_offsets [%" PRIu64
                        ", %" PRIu64 "] (%" PRIu64 " bytes)",
                        path, name, sh, mp_dtype_name(e->t.dtype), e->begin, e->end,
                        e->end - e->begin);
    return MP_OK;
}

static mp_status st_push(mp_st_model *m, const mp_st_tensor *t)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        mp_st_tensor *nt = mp_realloc(m->t, cap * sizeof *nt);
        if (!nt)
            return mp_error(MP_ERR_NOMEM, "safetensors: out of memory for the tensor table");
        m->t = nt;
        m->cap = cap;
    }
    m->t[m->n++] = *t;
    return MP_OK;
}

/* Maps and validates one file; appends its tensors (by offset) to m as file index fi. */
static mp_status st_load_file(mp_st_model *m, int fi, const char *path)
{
    mp_status st = MP_OK;
    st_file *f = &m->files[fi];
    int fd = -1;
    char *hdr = NULL;
    cJSON *root = NULL;
    st_entry *ent = NULL;
    size_t nent = 0;

    f->path = mp_strdup(path);
    if (!f->path)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    f->name = st_basename(f->path);
    int64_t fsize = 0;
    MP_TRY(mp_file_open_regular(path, &fd, &fsize)); /* a FIFO is refused, never waited on */
    size_t size = (size_t)fsize;
    if (size < 8)
        MP_FAIL(MP_ERR_FORMAT, "%s: file is truncated (%zu bytes, shorter than the 8-byte "
                "header length)", path, size);
    f->size = size;

    unsigned char lenb[8];
    MP_TRY(st_pread_exact(fd, path, lenb, sizeof lenb, 0));
    uint64_t hlen = st_ld64(lenb);
    if (hlen > size - 8)
        MP_FAIL(MP_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the file (%zu bytes "
                "after the 8-byte length)", path, hlen, size - 8);
    if (hlen > ST_HEADER_MAX_BYTES)
        MP_FAIL(MP_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the limit of %" PRIu64
                " bytes", path, hlen, ST_HEADER_MAX_BYTES);
    f->data_off = 8 + (size_t)hlen;
    f->data_len = size - 8 - (size_t)hlen;
    hdr = mp_malloc((size_t)hlen + 1);
    if (!hdr)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory for a %" PRIu64 "-byte header", path, hlen);
    MP_TRY(st_pread_exact(fd, path, hdr, (size_t)hlen, 8));
    if (memchr(hdr, '\0', (size_t)hlen))
        MP_FAIL(MP_ERR_FORMAT, "%s: header contains a NUL byte", path);
    hdr[hlen] = '\0';
    const char *end = NULL;
    bool oom = false;
    root = mp_json_parse(hdr, &end, &oom);
    if (!root && oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory parsing the %" PRIu64 "-byte header", path,
                hlen);
    if (!root)
        MP_FAIL(MP_ERR_FORMAT, "%s: header is not valid JSON (error at byte %td of %" PRIu64
                ")", path, end ? end - hdr : (ptrdiff_t)0, hlen);
    if (!cJSON_IsObject(root))
        MP_FAIL(MP_ERR_FORMAT, "%s: header is not a JSON object", path);

    size_t nkeys = (size_t)cJSON_GetArraySize(root);
    ent = mp_calloc(nkeys ? nkeys : 1, sizeof *ent);
    if (!ent)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory for %zu header entries", path, nkeys);
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            const char *bad = NULL;
            if (f->metadata)
                MP_FAIL(MP_ERR_FORMAT, "%s: header has __metadata__ twice", path);
            if (!st_metadata_ok(c, &bad)) {
                if (bad)
                    MP_FAIL(MP_ERR_FORMAT, "%s: __metadata__ value '%s' is not a string", path,
                            bad);
                MP_FAIL(MP_ERR_FORMAT, "%s: __metadata__ is not a JSON object", path);
            }
            f->metadata = cJSON_PrintUnformatted(c);
            if (!f->metadata)
                MP_FAIL(MP_ERR_NOMEM, "%s: out of memory for __metadata__", path);
            continue;
        }
        if (c->string[0] == '\0')
            MP_FAIL(MP_ERR_FORMAT, "%s: header has a tensor with an empty name", path);
        st_entry *e = &ent[nent];
        MP_TRY(st_parse_entry(path, c->string, c, e));
        e->t.name = c->string; /* replaced by an owned copy below */
        e->t.file = fi;
        nent++;
    }
    if (!f->metadata) {
        f->metadata = mp_strdup("{}");
        if (!f->metadata)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    }

    /* Every range inside the data section (checked first, in header order, so that a
     * truncated file is reported as such rather than as a hole), then the ranges sorted by
     * offset must tile [0, data_len) exactly. */
    for (size_t i = 0; i < nent; i++) {
        const st_entry *e = &ent[i];
        if (e->end > f->data_len)
            MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64
                    "] exceed the data section (%zu bytes)", path, e->t.name, e->begin, e->end,
                    f->data_len);
    }
    qsort(ent, nent, sizeof *ent, st_cmp_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < nent; i++) {
        const st_entry *e = &ent[i];
        if (e->begin < pos)
            MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64
                    "] overlap tensor '%s' [%" PRIu64 ", %" PRIu64 "]", path, e->t.name,
                    e->begin, e->end, ent[i - 1].t.name, ent[i - 1].begin, ent[i - 1].end);
        if (e->begin > pos)
            MP_FAIL(MP_ERR_FORMAT, "%s: data section has a hole: bytes [%" PRIu64 ", %" PRIu64
                    ") before tensor '%s' belong to no tensor", path, pos, e->begin, e->t.name);
        pos = e->end;
    }
    if (pos != f->data_len)
        MP_FAIL(MP_ERR_FORMAT, "%s: data section has %zu bytes but the tensors cover only %"
                PRIu64, path, f->data_len, pos);

    for (size_t i = 0; i < nent; i++) {
        mp_st_tensor t = ent[i].t;
        t.file_offset = (int64_t)(f->data_off + ent[i].begin);
        t.nbytes = (size_t)(ent[i].end - ent[i].begin);
        char *nm = mp_strdup(ent[i].t.name);
        if (!nm)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
        t.name = nm;
        st = st_push(m, &t);
        if (st != MP_OK) {
            free(nm);
            goto done;
        }
    }
    f->fd = fd; /* kept for the tensor reads */
    fd = -1;
done:
    cJSON_Delete(root);
    free(hdr);
    free(ent);
    if (fd >= 0)
        close(fd);
    return st;
}

/* Builds the name index and refuses a name that appears twice. */
static mp_status st_index_names(mp_st_model *m)
{
    m->sorted = mp_malloc((m->n ? m->n : 1) * sizeof *m->sorted);
    if (!m->sorted)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory for the tensor index", m->msg_path);
    for (size_t i = 0; i < m->n; i++)
        m->sorted[i] = &m->t[i];
    qsort(m->sorted, m->n, sizeof *m->sorted, st_cmp_name);
    for (size_t i = 1; i < m->n; i++) {
        const mp_st_tensor *a = m->sorted[i - 1], *b = m->sorted[i];
        if (strcmp(a->name, b->name) == 0) {
            if (a->file == b->file)
                return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' appears twice in the header",
                                m->files[a->file].path, a->name);
            return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' is also in %s",
                            m->files[a->file].path, a->name, m->files[b->file].path);
        }
    }
    return MP_OK;
}

static mp_status st_read_small(const char *path, char **out)
{
    mp_status st = MP_OK;
    char *buf = NULL;
    FILE *f = NULL;
    int64_t size = 0;
    MP_TRY(mp_file_fopen_regular(path, &f, &size));
    if ((uint64_t)size > ST_INDEX_MAX_BYTES)
        MP_FAIL(MP_ERR_FORMAT, "%s: larger than %zu bytes, not an index", path,
                ST_INDEX_MAX_BYTES);
    size_t n = (size_t)size;
    buf = mp_malloc(n + 1);
    if (!buf)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    if (fread(buf, 1, n, f) != n)
        MP_FAIL(MP_ERR_IO, "%s: short read", path);
    buf[n] = '\0';
    if (strlen(buf) != n)
        MP_FAIL(MP_ERR_FORMAT, "%s: contains a NUL byte", path);
    *out = buf;
    buf = NULL;
done:
    free(buf);
    if (f)
        fclose(f);
    return st;
}

static mp_status st_open_sharded(mp_st_model *m, const char *dir, const char *index_path)
{
    mp_status st = MP_OK;
    char *text = NULL;
    cJSON *root = NULL;
    const char **names = NULL;
    char *fpath = NULL;

    MP_TRY(st_read_small(index_path, &text));
    const char *end = NULL;
    bool oom = false;
    root = mp_json_parse(text, &end, &oom);
    if (!root && oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory parsing the index", index_path);
    if (!root)
        MP_FAIL(MP_ERR_FORMAT, "%s: not valid JSON (error at byte %td)", index_path,
                end ? end - text : (ptrdiff_t)0);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm))
        MP_FAIL(MP_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
    int nmap = cJSON_GetArraySize(wm);
    if (nmap == 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: \"weight_map\" is empty", index_path);
    names = mp_calloc((size_t)nmap, sizeof *names);
    if (!names)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", index_path);
    int nf = 0;
    for (const cJSON *c = wm->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            MP_FAIL(MP_ERR_FORMAT, "%s: weight_map entry '%s' is not a string", index_path,
                    c->string);
        const char *fn = c->valuestring;
        if (fn[0] == '\0' || strchr(fn, '/') || strcmp(fn, ".") == 0 || strcmp(fn, "..") == 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: weight_map entry '%s' names '%s', not a file in the "
                    "model directory", index_path, c->string, fn);
        int k = 0;
        while (k < nf && strcmp(names[k], fn) != 0)
            k++;
        if (k == nf)
            names[nf++] = fn;
    }
    m->files = mp_calloc((size_t)nf, sizeof *m->files);
    if (!m->files)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", index_path);
    for (int i = 0; i < nf; i++)
        m->files[i].fd = -1;
    for (int i = 0; i < nf; i++) {
        free(fpath);
        fpath = mp_file_join(dir, names[i]);
        if (!fpath)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", index_path);
        size_t first = m->n;
        m->nfiles = i + 1;
        MP_TRY(st_load_file(m, i, fpath));
        for (size_t j = first; j < m->n; j++) {
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(wm, m->t[j].name);
            if (!w)
                MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' is not in the weight_map of %s", fpath,
                        m->t[j].name, index_path);
            if (strcmp(w->valuestring, names[i]) != 0)
                MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' is here but %s puts it in %s", fpath,
                        m->t[j].name, index_path, w->valuestring);
        }
    }
    MP_TRY(st_index_names(m));
    for (const cJSON *c = wm->child; c; c = c->next)
        if (!mp_st_find(m, c->string))
            MP_FAIL(MP_ERR_NOT_FOUND, "%s: tensor '%s' listed in the weight_map is missing "
                    "from %s", index_path, c->string, c->valuestring);
done:
    free(fpath);
    free(names);
    cJSON_Delete(root);
    free(text);
    return st;
}

mp_status mp_st_open(const char *path, mp_st_model **out)
{
    mp_status st = MP_OK;
    mp_st_model *m = NULL;
    char *index_path = NULL, *single_path = NULL;
    *out = NULL;
    if (!path || !*path)
        return mp_error(MP_ERR_ARG, "safetensors: no model path given");

    struct stat sb;
    if (stat(path, &sb) != 0)
        return mp_error(errno == ENOENT ? MP_ERR_NOT_FOUND : MP_ERR_IO, "%s: cannot open: %s",
                        path, strerror(errno));
    m = mp_calloc(1, sizeof *m);
    if (!m)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory", path);
    if (S_ISDIR(sb.st_mode)) {
        index_path = mp_file_join(path, ST_INDEX_NAME);
        single_path = mp_file_join(path, ST_SINGLE_NAME);
        if (!index_path || !single_path)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
        struct stat ib;
        if (stat(index_path, &ib) == 0) {
            m->sharded = true;
            m->msg_path = index_path;
            index_path = NULL;
            MP_TRY(st_open_sharded(m, path, m->msg_path));
            goto done;
        }
        if (stat(single_path, &ib) != 0)
            MP_FAIL(MP_ERR_NOT_FOUND, "%s: neither %s nor %s in the directory", path,
                    ST_INDEX_NAME, ST_SINGLE_NAME);
        m->msg_path = single_path;
        single_path = NULL;
    } else {
        m->msg_path = mp_strdup(path);
        if (!m->msg_path)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    }
    m->files = mp_calloc(1, sizeof *m->files);
    if (!m->files)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    m->files[0].fd = -1;
    m->nfiles = 1;
    MP_TRY(st_load_file(m, 0, m->msg_path));
    MP_TRY(st_index_names(m));
done:
    free(index_path);
    free(single_path);
    if (st != MP_OK)
        mp_st_close(&m);
    *out = m;
    return st;
}

void mp_st_close(mp_st_model **mp)
{
    if (!mp || !*mp)
        return;
    mp_st_model *m = *mp;
    for (size_t i = 0; i < m->n; i++)
        free((char *)m->t[i].name);
    free(m->t);
    free(m->sorted);
    for (int i = 0; i < m->nfiles; i++) {
        st_file *f = &m->files[i];
        if (f->fd >= 0)
            close(f->fd);
        free(f->path);
        free(f->metadata);
    }
    free(m->files);
    free(m->msg_path);
    free(m);
    *mp = NULL;
}

size_t mp_st_count(const mp_st_model *m) { return m ? m->n : 0; }

const mp_st_tensor *mp_st_at(const mp_st_model *m, size_t i)
{
    return (m && i < m->n) ? &m->t[i] : NULL;
}

const mp_st_tensor *mp_st_find(const mp_st_model *m, const char *name)
{
    if (!m || !name || !m->sorted)
        return NULL;
    mp_st_tensor key = {.name = name};
    const mp_st_tensor *kp = &key;
    const mp_st_tensor **hit = bsearch(&kp, m->sorted, m->n, sizeof *m->sorted, st_cmp_name);
    return hit ? *hit : NULL;
}

int mp_st_file_count(const mp_st_model *m) { return m ? m->nfiles : 0; }

const char *mp_st_file_path(const mp_st_model *m, int file)
{
    return (m && file >= 0 && file < m->nfiles) ? m->files[file].path : NULL;
}

const char *mp_st_file_name(const mp_st_model *m, int file)
{
    return (m && file >= 0 && file < m->nfiles) ? m->files[file].name : NULL;
}

const char *mp_st_file_metadata(const mp_st_model *m, int file)
{
    return (m && file >= 0 && file < m->nfiles) ? m->files[file].metadata : NULL;
}

bool mp_st_is_sharded(const mp_st_model *m) { return m && m->sharded; }

/* The bytes of t, converted to float32 into out[numel]. */
static mp_status st_read_data(const st_file *f, const mp_st_tensor *t, float *out)
{
    size_t off = (size_t)t->file_offset;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (t->dtype == MP_DT_F32) /* the file's bytes are the values: no copy */
        return st_pread_exact(f->fd, f->path, out, t->nbytes, off);
#endif
    mp_status st = MP_OK;
    size_t esz = mp_dtype_size(t->dtype);
    size_t per = ST_READ_CHUNK / esz;
    unsigned char *chunk = mp_malloc(t->nbytes < ST_READ_CHUNK ? t->nbytes : ST_READ_CHUNK);
    if (!chunk)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory reading tensor '%s'", f->path, t->name);
    for (size_t i = 0, n = (size_t)t->numel; i < n; i += per) {
        size_t k = n - i < per ? n - i : per;
        MP_TRY(st_pread_exact(f->fd, f->path, chunk, k * esz, off + i * esz));
        MP_TRY(mp_dtype_to_f32(t->dtype, chunk, k, out + i));
    }
done:
    free(chunk);
    return st;
}

mp_status mp_st_read_f32(const mp_st_model *m, const char *name, int ndim,
                         const int64_t *shape, float *out)
{
    const mp_st_tensor *t = mp_st_find(m, name);
    if (!t)
        return mp_error(MP_ERR_NOT_FOUND, "%s: no tensor '%s'", m ? m->msg_path : "safetensors",
                        name ? name : "(null)");
    const char *fpath = m->files[t->file].path;
    if (ndim < 0)
        return mp_error(MP_ERR_ARG, "%s: tensor '%s' requested with %d dimensions", fpath,
                        name, ndim);
    if (ndim > 0) {
        bool same = ndim == t->ndim;
        for (int i = 0; same && i < ndim; i++)
            same = shape[i] == t->shape[i];
        if (!same) {
            char have[160], want[160];
            st_shape_str(have, sizeof have, t->ndim, t->shape);
            st_shape_str(want, sizeof want, ndim > MP_ST_MAX_DIMS ? MP_ST_MAX_DIMS : ndim,
                         shape);
            return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' has shape %s but %s was expected",
                            fpath, name, have, want);
        }
    }
    if (!mp_dtype_is_float(t->dtype))
        return mp_error(MP_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, which cannot be "
                        "read as float32", fpath, name, mp_dtype_name(t->dtype));
    mp_status st = st_read_data(&m->files[t->file], t, out);
    if (st != MP_OK)
        return st;
    for (size_t i = 0; i < (size_t)t->numel; i++) {
        if (!isfinite(out[i]))
            return mp_error(MP_ERR_NUMERIC, "%s: tensor '%s' has a non-finite value (%s) at "
                            "element %zu", fpath, name,
                            isnan(out[i]) ? "NaN" : (out[i] > 0 ? "inf" : "-inf"), i);
    }
    return MP_OK;
}

static mp_status st_src_load(void *ctx, const char *name, int ndim, const int64_t *shape,
                             float *out)
{
    return mp_st_read_f32(ctx, name, ndim, shape, out);
}

static bool st_src_has(void *ctx, const char *name) { return mp_st_find(ctx, name) != NULL; }

void mp_st_weight_source(mp_st_model *m, mp_weight_source *src)
{
    src->ctx = m;
    src->load = st_src_load;
    src->has = st_src_has;
}

/* ---------- writing ---------- */

static mp_status st_write_all(int fd, const void *data, size_t n, const char *path)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return mp_error(MP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return MP_OK;
}

static int st_cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

mp_status mp_st_write(const char *path, const mp_st_entry *entries, size_t n,
                      const char *metadata_json)
{
    mp_status st = MP_OK;
    mp_textbuf hb = {0};
    cJSON *meta = NULL;
    char *meta_txt = NULL;
    uint64_t *sizes = NULL;
    const char **names = NULL;
    char *tmp = NULL;
    int fd = -1;
    bool created = false;

    if (!path || !*path)
        return mp_error(MP_ERR_ARG, "safetensors: mp_st_write without a path");
    if (n > 0 && !entries)
        return mp_error(MP_ERR_ARG, "%s: %zu entries but no entry array", path, n);
    sizes = mp_calloc(n ? n : 1, sizeof *sizes);
    names = mp_calloc(n ? n : 1, sizeof *names);
    if (!sizes || !names)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);

    mp_tb_str(&hb, "{");
    bool first = true;
    if (metadata_json) {
        const char *bad = NULL;
        bool oom = false;
        meta = mp_json_parse(metadata_json, NULL, &oom);
        if (!meta && oom)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory parsing the metadata", path);
        if (!meta || !st_metadata_ok(meta, &bad))
            MP_FAIL(MP_ERR_ARG, "%s: metadata is not a JSON object of strings%s%s%s", path,
                    bad ? " (key '" : "", bad ? bad : "", bad ? "')" : "");
        meta_txt = cJSON_PrintUnformatted(meta);
        if (!meta_txt)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
        mp_tb_str(&hb, "\"__metadata__\":");
        mp_tb_str(&hb, meta_txt);
        first = false;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const mp_st_entry *e = &entries[i];
        if (!e->name || !*e->name || strcmp(e->name, "__metadata__") == 0)
            MP_FAIL(MP_ERR_ARG, "%s: entry %zu has an invalid name", path, i);
        names[i] = e->name;
        size_t esz = mp_dtype_size(e->dtype);
        if (esz == 0)
            MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has an invalid dtype", path, e->name);
        if (e->ndim < 0 || e->ndim > MP_ST_MAX_DIMS)
            MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has %d dimensions (0 to %d allowed)", path,
                    e->name, e->ndim, MP_ST_MAX_DIMS);
        uint64_t nb = esz;
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0)
                MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has a negative dimension", path, e->name);
            uint64_t dim = (uint64_t)e->shape[d];
            if (dim != 0 && nb > ((uint64_t)1 << 53) / dim)
                MP_FAIL(MP_ERR_RANGE, "%s: tensor '%s' is too large", path, e->name);
            nb *= dim;
        }
        if (nb > 0 && !e->data)
            MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' has no data", path, e->name);
        if (off > ((uint64_t)1 << 53) - nb)
            MP_FAIL(MP_ERR_RANGE, "%s: data section too large at tensor '%s'", path, e->name);
        sizes[i] = nb;
        if (!first)
            mp_tb_str(&hb, ",");
        first = false;
        mp_tb_json_str(&hb, e->name);
        mp_tb_str(&hb, ":{\"dtype\":\"");
        mp_tb_str(&hb, mp_dtype_name(e->dtype));
        mp_tb_str(&hb, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            if (d)
                mp_tb_str(&hb, ",");
            mp_tb_u64(&hb, (uint64_t)e->shape[d]);
        }
        mp_tb_str(&hb, "],\"data_offsets\":[");
        mp_tb_u64(&hb, off);
        mp_tb_str(&hb, ",");
        mp_tb_u64(&hb, off + nb);
        mp_tb_str(&hb, "]}");
        off += nb;
    }
    mp_tb_str(&hb, "}");
    while (!hb.oom && (8 + hb.n) % 8 != 0) /* out of memory, n stops growing */
        mp_tb_str(&hb, " ");
    if (hb.oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory for the header", path);
    qsort(names, n, sizeof *names, st_cmp_cstr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            MP_FAIL(MP_ERR_ARG, "%s: tensor '%s' given twice", path, names[i]);

    size_t tl = strlen(path) + 32;
    tmp = mp_malloc(tl);
    if (!tmp)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp,
                strerror(errno));
    created = true;
    unsigned char lenb[8];
    uint64_t hl = hb.n;
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)((hl >> (8 * i)) & 0xffu);
    MP_TRY(st_write_all(fd, lenb, sizeof lenb, tmp));
    MP_TRY(st_write_all(fd, hb.p, hb.n, tmp));
    for (size_t i = 0; i < n; i++)
        MP_TRY(st_write_all(fd, entries[i].data, (size_t)sizes[i], tmp));
    if (fsync(fd) != 0)
        MP_FAIL(MP_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    int rc = close(fd);
    fd = -1;
    if (rc != 0)
        MP_FAIL(MP_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    created = false;
    mp_file_sync_dir_of(path); /* make the rename durable */
done:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    free(tmp);
    free(names);
    free(sizes);
    free(meta_txt);
    cJSON_Delete(meta);
    free(hb.p);
    return st;
}
