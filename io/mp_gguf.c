/* mp_gguf: strict pread-based GGUF reader, dequantisers, model config, weight source, and a
 * streaming atomic writer (see mp_gguf.h for the format).
 *
 * Reading: the header, metadata and tensor infos are read through a small buffered cursor over
 * pread; every length is checked against the bytes left in the file before anything is
 * allocated for it, so a lying count or length fails with a message instead of an allocation
 * of its size. Tensor data is read (and converted) only when asked for.
 */
#define _POSIX_C_SOURCE 200809L

#include "mp_alloc.h"
#include "mp_file.h"
#include "mp_gguf.h"

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

#define GG_MAGIC "GGUF"
#define GG_DEFAULT_ALIGN 32u
#define GG_BUF_BYTES ((size_t)1 << 20)
/* Tensor data is converted through a bounce buffer of about this many bytes. */
#define GG_CHUNK_BYTES ((size_t)8 << 20)

/* ---------- ggml tensor types ---------- */

typedef struct {
    const char *name;
    uint32_t blck;   /* elements per block */
    uint32_t size;   /* bytes per block */
} gg_type_info;

/* Every type ggml has defined (sizes from ggml's type traits), so that a file with a type that
 * mpiprune does not read is refused by name rather than as unknown. */
static const gg_type_info gg_types[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},     [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 40},     [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144},  [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110}, [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},  [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},  [39] = {"MXFP4", 32, 17},
};
#define GG_NTYPES (sizeof gg_types / sizeof gg_types[0])

static const gg_type_info *gg_type(uint32_t t)
{
    return t < GG_NTYPES && gg_types[t].name ? &gg_types[t] : NULL;
}

const char *mp_gguf_type_name(uint32_t type)
{
    const gg_type_info *ti = gg_type(type);
    return ti ? ti->name : NULL;
}

static bool gg_type_supported(uint32_t t)
{
    return t == MP_GGML_F32 || t == MP_GGML_F16 || t == MP_GGML_BF16 || t == MP_GGML_Q8_0 ||
           t == MP_GGML_Q4_0 || t == MP_GGML_Q4_1;
}

#define GG_SUPPORTED_TYPES "F32, F16, BF16, Q8_0, Q4_0, Q4_1"

/* Bytes of one element of a fixed-size value type; 0 for string and array. */
static size_t gg_vsize(uint32_t t)
{
    switch (t) {
    case MP_GGUF_U8: case MP_GGUF_I8: case MP_GGUF_BOOL: return 1;
    case MP_GGUF_U16: case MP_GGUF_I16: return 2;
    case MP_GGUF_U32: case MP_GGUF_I32: case MP_GGUF_F32: return 4;
    case MP_GGUF_U64: case MP_GGUF_I64: case MP_GGUF_F64: return 8;
    default: return 0;
    }
}

static const char *gg_vtype_name(uint32_t t)
{
    static const char *const n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                    "string", "array", "u64", "i64", "f64"};
    return t < MP_GGUF_VTYPE_COUNT ? n[t] : "unknown";
}

/* ---------- little-endian helpers ---------- */

static uint64_t gg_ld(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

static void gg_st(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((v >> (8 * i)) & 0xffu);
}

static uint16_t gg_ld16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* ---------- the handle ---------- */

struct mp_gguf {
    char *path;
    int fd;
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start;
    size_t n_kv;
    mp_gguf_kv *kv;
    size_t n_t;
    mp_gguf_tensor *t;
    mp_gguf_tensor **by_name;
    bool have_cfg;
    mp_model_config cfg;
};

/* Reads exactly n bytes at off; a short read means the file shrank under us. */
static mp_status gg_pread(const mp_gguf *g, void *dst, size_t n, uint64_t off)
{
    unsigned char *p = dst;
    while (n > 0) {
        ssize_t r = pread(g->fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return mp_error(MP_ERR_IO, "%s: read failed at byte %" PRIu64 ": %s", g->path, off,
                            strerror(errno));
        }
        if (r == 0)
            return mp_error(MP_ERR_FORMAT, "%s: truncated: the file ends at byte %" PRIu64
                            " while %zu more bytes were expected (did it shrink while being "
                            "read?)", g->path, off, n);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return MP_OK;
}

/* A buffered cursor over the header. */
typedef struct {
    mp_gguf *g;
    uint64_t pos;
    unsigned char *buf;
    uint64_t boff;
    size_t blen;
} gg_cur;

static uint64_t cur_left(const gg_cur *c) { return c->g->size - c->pos; }

static mp_status cur_read(gg_cur *c, void *dst, uint64_t n, const char *what)
{
    if (n > cur_left(c))
        return mp_error(MP_ERR_FORMAT, "%s: truncated: %s at byte %" PRIu64 " needs %" PRIu64
                        " bytes, the file has %" PRIu64 " left", c->g->path, what, c->pos, n,
                        cur_left(c));
    unsigned char *out = dst;
    while (n > 0) {
        if (c->pos >= c->boff && c->pos < c->boff + c->blen) {
            size_t k = (size_t)(c->boff + c->blen - c->pos);
            if (k > n)
                k = (size_t)n;
            memcpy(out, c->buf + (c->pos - c->boff), k);
            out += k;
            n -= k;
            c->pos += k;
            continue;
        }
        if (n >= GG_BUF_BYTES) { /* large values go straight to their destination */
            mp_status st = gg_pread(c->g, out, (size_t)n, c->pos);
            if (st != MP_OK)
                return st;
            c->pos += n;
            return MP_OK;
        }
        uint64_t want = cur_left(c) < GG_BUF_BYTES ? cur_left(c) : GG_BUF_BYTES;
        mp_status st = gg_pread(c->g, c->buf, (size_t)want, c->pos);
        if (st != MP_OK)
            return st;
        c->boff = c->pos;
        c->blen = (size_t)want;
    }
    return MP_OK;
}

static mp_status cur_u32(gg_cur *c, uint32_t *v, const char *what)
{
    unsigned char b[4];
    mp_status st = cur_read(c, b, 4, what);
    *v = (uint32_t)gg_ld(b, 4);
    return st;
}

static mp_status cur_u64(gg_cur *c, uint64_t *v, const char *what)
{
    unsigned char b[8];
    mp_status st = cur_read(c, b, 8, what);
    *v = gg_ld(b, 8);
    return st;
}

/* A growing byte buffer. */
typedef struct {
    unsigned char *p;
    size_t n, cap;
    bool oom;
} gg_buf;

static unsigned char *buf_grow(gg_buf *b, size_t add)
{
    if (b->oom)
        return NULL;
    if (add > SIZE_MAX / 2 - b->n) {
        b->oom = true;
        return NULL;
    }
    if (b->n + add > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + add)
            nc *= 2;
        unsigned char *np = mp_realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return NULL;
        }
        b->p = np;
        b->cap = nc;
    }
    unsigned char *r = b->p + b->n;
    b->n += add;
    return r;
}

static void buf_add(gg_buf *b, const void *src, size_t n)
{
    unsigned char *d = buf_grow(b, n);
    if (d && n)
        memcpy(d, src, n);
}

static void buf_u32(gg_buf *b, uint64_t v)
{
    unsigned char *d = buf_grow(b, 4);
    if (d)
        gg_st(d, v, 4);
}

static void buf_u64(gg_buf *b, uint64_t v)
{
    unsigned char *d = buf_grow(b, 8);
    if (d)
        gg_st(d, v, 8);
}

static void buf_str(gg_buf *b, const char *s)
{
    size_t n = strlen(s);
    buf_u64(b, n);
    buf_add(b, s, n);
}

/* A string from the file: its length checked against the file before anything is allocated.
 * Appends "len + bytes" to raw when raw is not NULL; returns a NUL-terminated copy in *out
 * when out is not NULL. */
static mp_status cur_string(gg_cur *c, const char *what, gg_buf *raw, char **out)
{
    mp_status st = MP_OK;
    uint64_t len;
    char *s = NULL;
    MP_TRY(cur_u64(c, &len, what));
    if (len > cur_left(c))
        MP_FAIL(MP_ERR_FORMAT, "%s: %s at byte %" PRIu64 " has length %" PRIu64 ", more than "
                "the %" PRIu64 " bytes left in the file", c->g->path, what, c->pos - 8, len,
                cur_left(c));
    s = mp_malloc((size_t)len + 1);
    if (!s)
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate %" PRIu64 " bytes for %s", c->g->path,
                len + 1, what);
    MP_TRY(cur_read(c, s, len, what));
    s[len] = '\0';
    if (raw) {
        buf_u64(raw, len);
        buf_add(raw, s, (size_t)len);
    }
    if (out) {
        *out = s;
        s = NULL;
    }
done:
    free(s);
    return st;
}

/* A key or tensor name: a string with no NUL byte inside. */
static mp_status cur_name(gg_cur *c, const char *what, char **out)
{
    mp_status st = cur_string(c, what, NULL, out);
    if (st == MP_OK && strlen(*out) == 0) {
        free(*out);
        *out = NULL;
        return mp_error(MP_ERR_FORMAT, "%s: %s at byte %" PRIu64 " is empty", c->g->path, what,
                        c->pos);
    }
    return st;
}

/* One metadata value of type `type` into kv->raw (and kv->str for a string). */
static mp_status cur_value(gg_cur *c, mp_gguf_kv *kv)
{
    mp_status st = MP_OK;
    gg_buf raw = {0};
    char what[160];
    snprintf(what, sizeof what, "the value of key '%.100s'", kv->key);
    if (kv->type >= MP_GGUF_VTYPE_COUNT)
        MP_FAIL(MP_ERR_FORMAT, "%s: key '%s' has unknown value type %" PRIu32, c->g->path,
                kv->key, kv->type);
    if (kv->type == MP_GGUF_STRING) {
        MP_TRY(cur_string(c, what, &raw, &kv->str));
    } else if (kv->type == MP_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        MP_TRY(cur_u32(c, &et, what));
        MP_TRY(cur_u64(c, &n, what));
        if (et >= MP_GGUF_VTYPE_COUNT)
            MP_FAIL(MP_ERR_FORMAT, "%s: key '%s' is an array of unknown type %" PRIu32,
                    c->g->path, kv->key, et);
        if (et == MP_GGUF_ARRAY)
            MP_FAIL(MP_ERR_UNSUPPORTED, "%s: key '%s' is an array of arrays, which ggml does "
                    "not read either", c->g->path, kv->key);
        /* Each element takes at least 8 bytes (a string's length) or its size. */
        uint64_t min_elem = et == MP_GGUF_STRING ? 8 : gg_vsize(et);
        if (n > cur_left(c) / min_elem)
            MP_FAIL(MP_ERR_FORMAT, "%s: key '%s' is an array of %" PRIu64 " %s elements, more "
                    "than the %" PRIu64 " bytes left in the file hold", c->g->path, kv->key, n,
                    gg_vtype_name(et), cur_left(c));
        kv->arr_type = et;
        kv->arr_n = n;
        buf_u32(&raw, et);
        buf_u64(&raw, n);
        if (et == MP_GGUF_STRING) {
            for (uint64_t i = 0; i < n; i++)
                MP_TRY(cur_string(c, what, &raw, NULL));
        } else {
            size_t nb = (size_t)(n * min_elem);
            unsigned char *d = buf_grow(&raw, nb);
            if (!d)
                MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate %zu bytes for key '%s'", c->g->path,
                        nb, kv->key);
            MP_TRY(cur_read(c, d, nb, what));
        }
    } else {
        size_t nb = gg_vsize(kv->type);
        unsigned char *d = buf_grow(&raw, nb);
        if (!d)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", c->g->path);
        MP_TRY(cur_read(c, d, nb, what));
        if (kv->type == MP_GGUF_BOOL && d[0] > 1)
            MP_FAIL(MP_ERR_FORMAT, "%s: key '%s' is a bool of value %u (0 or 1)", c->g->path,
                    kv->key, d[0]);
    }
    if (raw.oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate the value of key '%s'", c->g->path, kv->key);
    kv->raw = raw.p;
    kv->raw_len = raw.n;
    raw.p = NULL;
done:
    free(raw.p);
    return st;
}

static int gg_cmp_name(const void *a, const void *b)
{
    const mp_gguf_tensor *x = *(mp_gguf_tensor *const *)a, *y = *(mp_gguf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int gg_cmp_offset(const void *a, const void *b)
{
    const mp_gguf_tensor *x = *(mp_gguf_tensor *const *)a, *y = *(mp_gguf_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int gg_cmp_kv(const void *a, const void *b)
{
    const mp_gguf_kv *x = *(mp_gguf_kv *const *)a, *y = *(mp_gguf_kv *const *)b;
    return strcmp(x->key, y->key);
}

static void gg_shape_str(char *buf, size_t cap, int ndim, const int64_t *v)
{
    size_t k = 0;
    int w = snprintf(buf, cap, "[");
    k = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < ndim && k < cap; i++) {
        w = snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", v[i]);
        if (w < 0)
            break;
        k += (size_t)w;
    }
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

/* One tensor info. */
static mp_status cur_tensor(gg_cur *c, size_t idx, mp_gguf_tensor *t)
{
    mp_status st = MP_OK;
    const char *path = c->g->path;
    char what[64];
    snprintf(what, sizeof what, "tensor info %zu", idx);
    MP_TRY(cur_name(c, what, &t->name));
    uint32_t nd;
    MP_TRY(cur_u32(c, &nd, what));
    if (nd < 1 || nd > MP_GGUF_MAX_DIMS)
        MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' has %" PRIu32 " dimensions (1 to %d)", path,
                t->name, nd, MP_GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t ne;
        MP_TRY(cur_u64(c, &ne, what));
        if (ne > (uint64_t)INT64_MAX || (ne != 0 && numel > (uint64_t)INT64_MAX / ne))
            MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' has a shape whose size overflows 64 bits "
                    "(dimension %d is %" PRIu64 ")", path, t->name, i, ne);
        t->ne[i] = (int64_t)ne;
        numel *= ne;
    }
    t->numel = (int64_t)numel;
    MP_TRY(cur_u32(c, &t->type, what));
    MP_TRY(cur_u64(c, &t->offset, what));
    const gg_type_info *ti = gg_type(t->type);
    if (!ti)
        MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' has unknown ggml type %" PRIu32, path, t->name,
                t->type);
    if (!gg_type_supported(t->type))
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which mpiprune does not read "
                "(supported: " GG_SUPPORTED_TYPES ")", path, t->name, ti->name);
    if (t->ne[0] % ti->blck != 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' of type %s has ne[0] = %" PRId64 ", not a "
                "multiple of its block size %" PRIu32, path, t->name, ti->name, t->ne[0],
                ti->blck);
    /* numel / blck * size <= INT64_MAX: size <= 292 bytes per block of >= 1 element. */
    uint64_t blocks = numel / ti->blck;
    if (blocks > (uint64_t)INT64_MAX / ti->size)
        MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' has a byte size that overflows 64 bits", path,
                t->name);
    t->nbytes = blocks * ti->size;
done:
    return st;
}

bool mp_gguf_is_gguf(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char m[4];
    ssize_t r = pread(fd, m, 4, 0);
    close(fd);
    return r == 4 && memcmp(m, GG_MAGIC, 4) == 0;
}

mp_status mp_gguf_open(const char *path, mp_gguf **out)
{
    mp_status st = MP_OK;
    mp_gguf *g = NULL;
    gg_cur c = {0};
    mp_gguf_tensor **by_off = NULL;
    mp_gguf_kv **kv_sorted = NULL;
    *out = NULL;

    g = mp_calloc(1, sizeof *g);
    if (!g)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory", path);
    g->fd = -1;
    g->path = mp_strdup(path);
    c.buf = mp_malloc(GG_BUF_BYTES);
    if (!g->path || !c.buf)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    c.g = g;

    /* Refuse a FIFO, device or directory before opening it: open() on a FIFO blocks. */
    struct stat sb;
    if (stat(path, &sb) != 0)
        MP_FAIL(errno == ENOENT ? MP_ERR_NOT_FOUND : MP_ERR_IO, "%s: %s", path,
                strerror(errno));
    if (!S_ISREG(sb.st_mode))
        MP_FAIL(MP_ERR_FORMAT, "%s: not a regular file", path);
    g->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (g->fd < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(g->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        MP_FAIL(MP_ERR_FORMAT, "%s: not a regular file", path);
    g->size = (uint64_t)sb.st_size;

    unsigned char magic[4];
    if (g->size < 24)
        MP_FAIL(MP_ERR_FORMAT, "%s: %" PRIu64 " bytes, too short for a GGUF header (24)", path,
                g->size);
    MP_TRY(cur_read(&c, magic, 4, "the magic"));
    if (memcmp(magic, GG_MAGIC, 4) != 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: not a GGUF file (bad magic %02x %02x %02x %02x)", path,
                magic[0], magic[1], magic[2], magic[3]);
    MP_TRY(cur_u32(&c, &g->version, "the version"));
    if (g->version != 2 && g->version != 3)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: GGUF version %" PRIu32 " is not supported (2 and 3 "
                "are%s)", path, g->version,
                (g->version & 0xffffu) == 0 ? "; a big-endian file?" : "");
    uint64_t nt, nkv;
    MP_TRY(cur_u64(&c, &nt, "the tensor count"));
    MP_TRY(cur_u64(&c, &nkv, "the metadata count"));
    /* A KV takes at least 8 + 1 + 4 + 1 bytes, a tensor info 8 + 1 + 4 + 8 + 4 + 8. */
    if (nkv > cur_left(&c) / 14)
        MP_FAIL(MP_ERR_FORMAT, "%s: metadata count %" PRIu64 " is impossible in a file of %"
                PRIu64 " bytes", path, nkv, g->size);
    if (nt > cur_left(&c) / 33)
        MP_FAIL(MP_ERR_FORMAT, "%s: tensor count %" PRIu64 " is impossible in a file of %"
                PRIu64 " bytes", path, nt, g->size);
    g->kv = mp_calloc(nkv ? (size_t)nkv : 1, sizeof *g->kv);
    g->t = mp_calloc(nt ? (size_t)nt : 1, sizeof *g->t);
    g->by_name = mp_calloc(nt ? (size_t)nt : 1, sizeof *g->by_name);
    by_off = mp_calloc(nt ? (size_t)nt : 1, sizeof *by_off);
    kv_sorted = mp_calloc(nkv ? (size_t)nkv : 1, sizeof *kv_sorted);
    if (!g->kv || !g->t || !g->by_name || !by_off || !kv_sorted)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory for %" PRIu64 " tensors and %" PRIu64
                " keys", path, nt, nkv);

    for (uint64_t i = 0; i < nkv; i++) {
        mp_gguf_kv *kv = &g->kv[i];
        char what[64];
        snprintf(what, sizeof what, "metadata key %" PRIu64, i);
        MP_TRY(cur_name(&c, what, &kv->key));
        g->n_kv = (size_t)i + 1;
        MP_TRY(cur_u32(&c, &kv->type, what));
        MP_TRY(cur_value(&c, kv));
        kv_sorted[i] = kv;
    }
    qsort(kv_sorted, g->n_kv, sizeof *kv_sorted, gg_cmp_kv);
    for (size_t i = 1; i < g->n_kv; i++)
        if (strcmp(kv_sorted[i - 1]->key, kv_sorted[i]->key) == 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: metadata key '%s' appears twice", path,
                    kv_sorted[i]->key);

    g->alignment = GG_DEFAULT_ALIGN;
    const mp_gguf_kv *al = mp_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != MP_GGUF_U32)
            MP_FAIL(MP_ERR_FORMAT, "%s: general.alignment is a %s, not a u32", path,
                    gg_vtype_name(al->type));
        uint32_t a = (uint32_t)gg_ld(al->raw, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: general.alignment %" PRIu32 " is not a power of two",
                    path, a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < nt; i++) {
        g->n_t = (size_t)i + 1; /* so that a half-read info is freed too */
        MP_TRY(cur_tensor(&c, (size_t)i, &g->t[i]));
        g->by_name[i] = by_off[i] = &g->t[i];
    }
    qsort(g->by_name, g->n_t, sizeof *g->by_name, gg_cmp_name);
    for (size_t i = 1; i < g->n_t; i++)
        if (strcmp(g->by_name[i - 1]->name, g->by_name[i]->name) == 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' appears twice", path, g->by_name[i]->name);

    uint64_t a = g->alignment, ds = c.pos;
    if (ds % a != 0)
        ds += a - ds % a; /* cannot overflow: pos <= size < 2^63 */
    g->data_start = ds;
    if (g->n_t > 0 && ds > g->size)
        MP_FAIL(MP_ERR_FORMAT, "%s: truncated: the data section would start at byte %" PRIu64
                ", past the end of the file (%" PRIu64 " bytes)", path, ds, g->size);
    uint64_t dlen = g->n_t > 0 ? g->size - ds : 0;
    for (size_t i = 0; i < g->n_t; i++) {
        const mp_gguf_tensor *t = &g->t[i];
        if (t->offset % a != 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' has offset %" PRIu64 ", not a multiple of "
                    "the alignment %" PRIu64, path, t->name, t->offset, a);
        if (t->offset > dlen || t->nbytes > dlen - t->offset)
            MP_FAIL(MP_ERR_FORMAT, "%s: tensor '%s' bytes [%" PRIu64 ", %" PRIu64 ") exceed the "
                    "data section (%" PRIu64 " bytes): the file is truncated or the tensor's "
                    "offset or shape is wrong", path, t->name, t->offset,
                    t->offset + (t->nbytes <= UINT64_MAX - t->offset ? t->nbytes : 0), dlen);
    }
    qsort(by_off, g->n_t, sizeof *by_off, gg_cmp_offset);
    for (size_t i = 1; i < g->n_t; i++)
        if (by_off[i]->offset < by_off[i - 1]->offset + by_off[i - 1]->nbytes)
            MP_FAIL(MP_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section", path,
                    by_off[i - 1]->name, by_off[i]->name);
    *out = g;
    g = NULL;
done:
    free(c.buf);
    free(by_off);
    free(kv_sorted);
    mp_gguf_close(&g);
    return st;
}

void mp_gguf_close(mp_gguf **gp)
{
    if (!gp || !*gp)
        return;
    mp_gguf *g = *gp;
    if (g->fd >= 0)
        close(g->fd);
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].raw);
        free(g->kv[i].str);
    }
    for (size_t i = 0; i < g->n_t; i++)
        free(g->t[i].name);
    free(g->kv);
    free(g->t);
    free(g->by_name);
    free(g->path);
    free(g);
    *gp = NULL;
}

const char *mp_gguf_path(const mp_gguf *g) { return g->path; }
uint32_t mp_gguf_alignment(const mp_gguf *g) { return g->alignment; }
size_t mp_gguf_kv_count(const mp_gguf *g) { return g->n_kv; }
const mp_gguf_kv *mp_gguf_kv_at(const mp_gguf *g, size_t i)
{
    return i < g->n_kv ? &g->kv[i] : NULL;
}
size_t mp_gguf_tensor_count(const mp_gguf *g) { return g->n_t; }
const mp_gguf_tensor *mp_gguf_tensor_at(const mp_gguf *g, size_t i)
{
    return i < g->n_t ? &g->t[i] : NULL;
}

const mp_gguf_kv *mp_gguf_find_kv(const mp_gguf *g, const char *key)
{
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0)
            return &g->kv[i];
    return NULL;
}

const mp_gguf_tensor *mp_gguf_find_tensor(const mp_gguf *g, const char *name)
{
    size_t lo = 0, hi = g->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->by_name[mid]->name, name);
        if (c == 0)
            return g->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---------- dequantisation ---------- */

mp_status mp_gguf_dequantize(uint32_t type, const void *src, int64_t n, float *dst)
{
    const unsigned char *p = src;
    const gg_type_info *ti = gg_type(type);
    if (!ti || !gg_type_supported(type))
        return mp_error(MP_ERR_UNSUPPORTED, "ggml type %s (%" PRIu32 ") cannot be dequantised "
                        "(supported: " GG_SUPPORTED_TYPES ")", ti ? ti->name : "unknown", type);
    if (n < 0 || n % ti->blck != 0)
        return mp_error(MP_ERR_ARG, "dequantise %s: %" PRId64 " elements is not a whole number "
                        "of blocks", ti->name, n);
    int64_t nb = n / ti->blck;
    switch (type) {
    case MP_GGML_F32:
        return mp_dtype_to_f32(MP_DT_F32, src, (size_t)n, dst);
    case MP_GGML_F16:
        return mp_dtype_to_f32(MP_DT_F16, src, (size_t)n, dst);
    case MP_GGML_BF16:
        return mp_dtype_to_f32(MP_DT_BF16, src, (size_t)n, dst);
    case MP_GGML_Q8_0:
        for (int64_t b = 0; b < nb; b++, p += 34, dst += 32) {
            float d = mp_f16_to_f32(gg_ld16(p));
            for (int j = 0; j < 32; j++)
                dst[j] = (float)(int8_t)p[2 + j] * d;
        }
        return MP_OK;
    case MP_GGML_Q4_0:
        for (int64_t b = 0; b < nb; b++, p += 18, dst += 32) {
            float d = mp_f16_to_f32(gg_ld16(p));
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)((int)(p[2 + j] & 0x0f) - 8) * d;
                dst[j + 16] = (float)((int)(p[2 + j] >> 4) - 8) * d;
            }
        }
        return MP_OK;
    case MP_GGML_Q4_1:
        for (int64_t b = 0; b < nb; b++, p += 20, dst += 32) {
            float d = mp_f16_to_f32(gg_ld16(p)), m = mp_f16_to_f32(gg_ld16(p + 2));
            for (int j = 0; j < 16; j++) {
                float lo = (float)(p[4 + j] & 0x0f) * d, hi = (float)(p[4 + j] >> 4) * d;
                dst[j] = lo + m;
                dst[j + 16] = hi + m;
            }
        }
        return MP_OK;
    default:
        return mp_error(MP_ERR_INTERNAL, "dequantise: type %" PRIu32, type);
    }
}

mp_status mp_gguf_read_f32(const mp_gguf *g, const mp_gguf_tensor *t, float *out)
{
    mp_status st = MP_OK;
    unsigned char *buf = NULL;
    const gg_type_info *ti = gg_type(t->type);
    if (!ti)
        return mp_error(MP_ERR_INTERNAL, "%s: tensor '%s' of unknown type", g->path, t->name);
    /* Whole rows of blocks per chunk. */
    uint64_t blocks_per_chunk = GG_CHUNK_BYTES / ti->size;
    uint64_t nblocks = (uint64_t)t->numel / ti->blck;
    size_t cap = (size_t)((nblocks < blocks_per_chunk ? nblocks : blocks_per_chunk) * ti->size);
    buf = mp_malloc(cap ? cap : 1);
    if (!buf)
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate %zu bytes to read tensor '%s'", g->path, cap,
                t->name);
    uint64_t off = g->data_start + t->offset;
    for (uint64_t b = 0; b < nblocks;) {
        uint64_t k = nblocks - b < blocks_per_chunk ? nblocks - b : blocks_per_chunk;
        MP_TRY(gg_pread(g, buf, (size_t)(k * ti->size), off + b * ti->size));
        MP_TRY(mp_gguf_dequantize(t->type, buf, (int64_t)(k * ti->blck), out + b * ti->blck));
        b += k;
    }
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(out[i]))
            MP_FAIL(MP_ERR_NUMERIC, "%s: tensor '%s' has a non-finite value (%s) at element %"
                    PRId64, g->path, t->name,
                    isnan(out[i]) ? "NaN" : (out[i] > 0 ? "inf" : "-inf"), i);
done:
    free(buf);
    return st;
}

/* ---------- metadata access ---------- */

/* An integer value of any integer type at p. */
static bool gg_int_at(uint32_t type, const unsigned char *p, int64_t *v)
{
    uint64_t u;
    switch (type) {
    case MP_GGUF_U8: *v = p[0]; return true;
    case MP_GGUF_I8: *v = (int8_t)p[0]; return true;
    case MP_GGUF_U16: *v = (int64_t)gg_ld(p, 2); return true;
    case MP_GGUF_I16: *v = (int16_t)gg_ld(p, 2); return true;
    case MP_GGUF_U32: *v = (int64_t)gg_ld(p, 4); return true;
    case MP_GGUF_I32: *v = (int32_t)(uint32_t)gg_ld(p, 4); return true;
    case MP_GGUF_U64:
        u = gg_ld(p, 8);
        if (u > (uint64_t)INT64_MAX)
            return false;
        *v = (int64_t)u;
        return true;
    case MP_GGUF_I64: *v = (int64_t)gg_ld(p, 8); return true;
    default: return false;
    }
}

static mp_status gg_get_int(const mp_gguf *g, const char *key, bool required, int64_t def,
                            int64_t *out)
{
    const mp_gguf_kv *kv = mp_gguf_find_kv(g, key);
    if (!kv) {
        if (required)
            return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' is missing", g->path, key);
        *out = def;
        return MP_OK;
    }
    if (!gg_int_at(kv->type, kv->raw, out) || *out < 0)
        return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' must be a non-negative integer "
                        "(is a %s)", g->path, key, gg_vtype_name(kv->type));
    return MP_OK;
}

/* A per-layer width: one integer for every layer, or an array of n integers. */
static mp_status gg_get_layers(const mp_gguf *g, const char *key, bool required, int64_t n,
                               const int64_t *def, int64_t *vals, size_t stride)
{
    const mp_gguf_kv *kv = mp_gguf_find_kv(g, key);
#define GG_AT(i) (*(int64_t *)((char *)vals + (size_t)(i) * stride))
    if (!kv) {
        if (required)
            return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' is missing", g->path, key);
        for (int64_t i = 0; i < n; i++)
            GG_AT(i) = *(const int64_t *)((const char *)def + (size_t)i * stride);
        return MP_OK;
    }
    if (kv->type != MP_GGUF_ARRAY) {
        int64_t v;
        mp_status st = gg_get_int(g, key, true, 0, &v);
        if (st != MP_OK)
            return st;
        for (int64_t i = 0; i < n; i++)
            GG_AT(i) = v;
        return MP_OK;
    }
    size_t es = gg_vsize(kv->arr_type);
    int64_t probe;
    unsigned char zero[8] = {0};
    if (es == 0 || kv->arr_type == MP_GGUF_BOOL || !gg_int_at(kv->arr_type, zero, &probe))
        return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' must be an integer or an array of "
                        "integers (is an array of %s)", g->path, key,
                        gg_vtype_name(kv->arr_type));
    if (kv->arr_n != (uint64_t)n)
        return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' has %" PRIu64 " entries for %"
                        PRId64 " blocks", g->path, key, kv->arr_n, n);
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (!gg_int_at(kv->arr_type, kv->raw + 12 + (size_t)i * es, &v) || v < 0)
            return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' entry %" PRId64 " is negative",
                            g->path, key, i);
        GG_AT(i) = v;
    }
#undef GG_AT
    return MP_OK;
}

/* The double a float32 was most likely written from: the shortest decimal that rounds to it
 * (1e-05 for the float32 nearest 1e-5), so that a GGUF and the Hugging Face config it came
 * from give the model the same epsilon. */
static double gg_f32_to_double(float f)
{
    char s[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)f);
        double d = strtod(s, NULL);
        if ((float)d == f)
            return d;
    }
    return (double)f;
}

static mp_status gg_get_float(const mp_gguf *g, const char *key, bool required, double def,
                              double *out)
{
    const mp_gguf_kv *kv = mp_gguf_find_kv(g, key);
    if (!kv) {
        if (required)
            return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' is missing", g->path, key);
        *out = def;
        return MP_OK;
    }
    if (kv->type == MP_GGUF_F32) {
        uint32_t u = (uint32_t)gg_ld(kv->raw, 4);
        float f;
        memcpy(&f, &u, 4);
        *out = gg_f32_to_double(f);
    } else if (kv->type == MP_GGUF_F64) {
        uint64_t u = gg_ld(kv->raw, 8);
        memcpy(out, &u, 8);
    } else {
        return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' must be a float (is a %s)",
                        g->path, key, gg_vtype_name(kv->type));
    }
    if (!isfinite(*out))
        return mp_error(MP_ERR_FORMAT, "%s: metadata key '%s' is not finite", g->path, key);
    return MP_OK;
}

static const char *gg_get_str(const mp_gguf *g, const char *key)
{
    const mp_gguf_kv *kv = mp_gguf_find_kv(g, key);
    return kv && kv->type == MP_GGUF_STRING ? kv->str : NULL;
}

mp_status mp_gguf_model_config(mp_gguf *g, mp_model_config *out)
{
    mp_status st = MP_OK;
    mp_model_config *c = NULL;
    mp_block_shape *sh = NULL;
    char k[128];
    const char *path = g->path;

    const mp_gguf_kv *akv = mp_gguf_find_kv(g, "general.architecture");
    if (!akv)
        return mp_error(MP_ERR_FORMAT, "%s: metadata key 'general.architecture' is missing",
                        path);
    if (akv->type != MP_GGUF_STRING)
        return mp_error(MP_ERR_FORMAT, "%s: general.architecture is not a string", path);
    const char *arch = akv->str;
    bool deci = strcmp(arch, "deci") == 0;
    if (!deci && strcmp(arch, "llama") != 0)
        return mp_error(MP_ERR_UNSUPPORTED, "%s: architecture '%.64s' is not supported "
                        "(supported: llama, deci)", path, arch);
    c = mp_calloc(1, sizeof *c);
    sh = mp_calloc(MP_MAX_LAYERS, sizeof *sh);
    if (!c || !sh)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    c->arch = MP_ARCH_LLAMA;
    snprintf(c->model_type, sizeof c->model_type, "llama");
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    MP_TRY(gg_get_int(g, KEY("block_count"), true, 0, &c->n_layers));
    MP_TRY(gg_get_int(g, KEY("embedding_length"), true, 0, &c->d));
    MP_TRY(gg_get_int(g, KEY("context_length"), true, 0, &c->max_pos));
    if (c->n_layers < 1 || c->n_layers > MP_MAX_LAYERS)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: %s = %" PRId64 " (1 to %d supported)", path,
                KEY("block_count"), c->n_layers, MP_MAX_LAYERS);
    MP_TRY(gg_get_layers(g, KEY("attention.head_count"), true, c->n_layers, NULL, &sh[0].n_heads,
                         sizeof *sh));
    MP_TRY(gg_get_layers(g, KEY("attention.head_count_kv"), false, c->n_layers, &sh[0].n_heads,
                         &sh[0].n_kv_heads, sizeof *sh));
    MP_TRY(gg_get_layers(g, KEY("feed_forward_length"), true, c->n_layers, NULL, &sh[0].ffn,
                         sizeof *sh));
    for (int64_t l = 0; l < c->n_layers; l++) {
        if (sh[l].n_heads > 0 && sh[l].n_kv_heads == 0)
            MP_FAIL(MP_ERR_UNSUPPORTED, "%s: block %" PRId64 " has %" PRId64 " query heads and "
                    "no KV heads (deci's linear attention), which mpiprune does not implement",
                    path, l, sh[l].n_heads);
        if (sh[l].n_heads == 0 && sh[l].n_kv_heads != 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: block %" PRId64 " has no query heads but %" PRId64
                    " KV heads", path, l, sh[l].n_kv_heads);
    }
    int64_t h0 = 0;
    for (int64_t l = 0; l < c->n_layers && h0 == 0; l++)
        h0 = sh[l].n_heads;
    int64_t kl, vl, rot;
    /* llama.cpp's default key length is n_embd / n_head of layer 0. */
    MP_TRY(gg_get_int(g, KEY("attention.key_length"), sh[0].n_heads == 0, h0 ? c->d / h0 : 0,
                      &kl));
    MP_TRY(gg_get_int(g, KEY("attention.value_length"), false, kl, &vl));
    MP_TRY(gg_get_int(g, KEY("rope.dimension_count"), false, kl, &rot));
    if (vl != kl)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: key length %" PRId64 " and value length %" PRId64
                " differ, which mpiprune does not implement", path, kl, vl);
    if (rot != kl)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: %s = %" PRId64 " is not the head dimension %" PRId64
                " (partial RoPE is not implemented)", path, KEY("rope.dimension_count"), rot,
                kl);
    c->head_dim = kl;
    MP_TRY(gg_get_float(g, KEY("attention.layer_norm_rms_epsilon"), true, 0, &c->norm_eps));
    MP_TRY(gg_get_float(g, KEY("rope.freq_base"), false, 10000.0, &c->rope_theta));
    const char *rs = gg_get_str(g, KEY("rope.scaling.type"));
    if (rs && strcmp(rs, "none") != 0)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: %s = '%.32s' is not supported", path,
                KEY("rope.scaling.type"), rs);
    if (mp_gguf_find_kv(g, KEY("rope.scaling.factor"))) {
        double f;
        MP_TRY(gg_get_float(g, k, true, 1.0, &f));
        if (f != 1.0 && f != 0.0 && !(rs && strcmp(rs, "none") == 0))
            MP_FAIL(MP_ERR_UNSUPPORTED, "%s: %s = %g is not supported", path, k, f);
    }
#undef KEY
    if (mp_gguf_find_tensor(g, "rope_freqs.weight"))
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: tensor 'rope_freqs.weight' (llama3 RoPE scaling) is "
                "not supported", path);

    const mp_gguf_tensor *emb = mp_gguf_find_tensor(g, "token_embd.weight");
    if (!emb)
        MP_FAIL(MP_ERR_FORMAT, "%s: no tensor 'token_embd.weight'", path);
    if (emb->ndim != 2 || emb->ne[0] != c->d)
        MP_FAIL(MP_ERR_FORMAT, "%s: tensor 'token_embd.weight' has ne[0] = %" PRId64 ", not the "
                "embedding length %" PRId64, path, emb->ne[0], c->d);
    c->vocab = emb->ne[1];
    const mp_gguf_kv *toks = mp_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (toks && toks->type == MP_GGUF_ARRAY && toks->arr_n != (uint64_t)c->vocab)
        MP_FAIL(MP_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %" PRIu64 " tokens but "
                "token_embd.weight has %" PRId64 " rows", path, toks->arr_n, c->vocab);
    c->tie_embeddings = mp_gguf_find_tensor(g, "output.weight") == NULL;
    /* Biases: llama.cpp's llama loads them when present; the model has one switch per group. */
    for (int64_t l = 0; l < c->n_layers; l++) {
        char n[64];
        snprintf(n, sizeof n, "blk.%" PRId64 ".attn_q.bias", l);
        c->qkv_bias = c->qkv_bias || mp_gguf_find_tensor(g, n);
        snprintf(n, sizeof n, "blk.%" PRId64 ".attn_output.bias", l);
        c->o_bias = c->o_bias || mp_gguf_find_tensor(g, n);
        snprintf(n, sizeof n, "blk.%" PRId64 ".ffn_up.bias", l);
        c->mlp_bias = c->mlp_bias || mp_gguf_find_tensor(g, n);
        snprintf(n, sizeof n, "blk.%" PRId64 ".ffn_down.bias", l);
        c->down_bias = c->down_bias || mp_gguf_find_tensor(g, n);
    }
    c->down_bias = c->down_bias && !c->mlp_bias;
    c->norm_before = true;
    c->final_norm = true;
    c->word_embed_proj_dim = c->d;
    mp_model_config_set_shapes(c, sh);
    if (c->n_heads == 0 || c->ffn == 0)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: no block has %s", path,
                c->n_heads == 0 ? "attention" : "an FFN");
    MP_TRY(mp_model_config_check(c, path));
    g->cfg = *c;
    g->have_cfg = true;
    *out = *c;
done:
    free(c);
    free(sh);
    return st;
}

/* ---------- names ---------- */

static const struct {
    const char *hf, *gg;
} gg_block_names[] = {
    {"input_layernorm", "attn_norm"},   {"post_attention_layernorm", "ffn_norm"},
    {"self_attn.q_proj", "attn_q"},     {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},     {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},      {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};

bool mp_gguf_name_from_hf(const char *hf, char *buf, size_t len)
{
    int w = -1;
    if (strcmp(hf, "model.embed_tokens.weight") == 0)
        w = snprintf(buf, len, "token_embd.weight");
    else if (strcmp(hf, "model.norm.weight") == 0)
        w = snprintf(buf, len, "output_norm.weight");
    else if (strcmp(hf, "lm_head.weight") == 0)
        w = snprintf(buf, len, "output.weight");
    else if (strncmp(hf, "model.layers.", 13) == 0) {
        char *end = NULL;
        errno = 0;
        long long l = strtoll(hf + 13, &end, 10);
        if (errno || end == hf + 13 || *end != '.' || l < 0 || hf[13] == '+' || hf[13] == '-')
            return false;
        const char *rest = end + 1;
        for (size_t i = 0; i < sizeof gg_block_names / sizeof gg_block_names[0]; i++) {
            size_t n = strlen(gg_block_names[i].hf);
            if (strncmp(rest, gg_block_names[i].hf, n) == 0 &&
                (strcmp(rest + n, ".weight") == 0 || strcmp(rest + n, ".bias") == 0)) {
                w = snprintf(buf, len, "blk.%lld.%s%s", l, gg_block_names[i].gg, rest + n);
                break;
            }
        }
    }
    return w > 0 && (size_t)w < len;
}

/* For a Q or K weight or bias of block l, the head count its rows are permuted by; 0 for the
 * other tensors. */
static int64_t gg_perm_heads(const mp_model_config *c, const char *hf)
{
    long long l;
    char part[32];
    if (sscanf(hf, "model.layers.%lld.self_attn.%31[^.]", &l, part) != 2 || l < 0 ||
        l >= c->n_layers)
        return 0;
    mp_block_shape s = mp_layer_shape(c, l);
    if (strcmp(part, "q_proj") == 0)
        return s.n_heads;
    if (strcmp(part, "k_proj") == 0)
        return s.n_kv_heads;
    return 0;
}

/* w[rows, cols] with rows = n·hd. to_hf: llama.cpp row h·hd + 2i + j → HF row h·hd + j·hd/2 + i;
 * else the inverse. tmp holds hd·cols floats. */
static void gg_permute(float *w, int64_t rows, int64_t cols, int64_t n, bool to_hf, float *tmp)
{
    int64_t hd = rows / n, half = hd / 2;
    for (int64_t h = 0; h < n; h++) {
        float *head = w + h * hd * cols;
        memcpy(tmp, head, (size_t)(hd * cols) * sizeof(float));
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++) {
                int64_t gr = 2 * i + j, hr = j * half + i;
                if (to_hf)
                    memcpy(head + hr * cols, tmp + gr * cols, (size_t)cols * sizeof(float));
                else
                    memcpy(head + gr * cols, tmp + hr * cols, (size_t)cols * sizeof(float));
            }
    }
}

/* Checks that rows split into n heads of an even dimension; returns the scratch size. */
static mp_status gg_permute_check(const char *path, const char *name, int64_t rows, int64_t n)
{
    if (n <= 0 || rows % n != 0 || (rows / n) % 2 != 0)
        return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' has %" PRId64 " rows, which do not split "
                        "into %" PRId64 " heads of an even dimension", path, name, rows, n);
    return MP_OK;
}

/* ---------- weight source ---------- */

static mp_status gg_src_load(void *ctx, const char *name, int ndim, const int64_t *shape,
                             float *out)
{
    mp_gguf *g = ctx;
    mp_status st = MP_OK;
    float *tmp = NULL;
    char gn[160];
    if (!g->have_cfg)
        return mp_error(MP_ERR_INTERNAL, "%s: weight source used before the model config",
                        g->path);
    if (!mp_gguf_name_from_hf(name, gn, sizeof gn))
        return mp_error(MP_ERR_NOT_FOUND, "%s: no GGUF tensor for '%s'", g->path, name);
    const mp_gguf_tensor *t = mp_gguf_find_tensor(g, gn);
    if (!t)
        return mp_error(MP_ERR_NOT_FOUND, "%s: no tensor '%s' (%s)", g->path, gn, name);
    if (ndim > 0) {
        bool same = ndim == t->ndim && ndim <= MP_GGUF_MAX_DIMS;
        for (int i = 0; same && i < ndim; i++)
            same = shape[i] == t->ne[ndim - 1 - i];
        if (!same) {
            int64_t rev[MP_GGUF_MAX_DIMS];
            for (int i = 0; i < t->ndim; i++)
                rev[i] = t->ne[t->ndim - 1 - i];
            char have[160], want[160];
            gg_shape_str(have, sizeof have, t->ndim, rev);
            gg_shape_str(want, sizeof want, ndim > MP_GGUF_MAX_DIMS ? MP_GGUF_MAX_DIMS : ndim,
                         shape);
            return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' (%s) has shape %s but %s was "
                            "expected", g->path, gn, name, have, want);
        }
    }
    MP_TRY(mp_gguf_read_f32(g, t, out));
    int64_t n = gg_perm_heads(&g->cfg, name);
    if (n > 0) {
        int64_t rows = t->ndim == 2 ? t->ne[1] : t->ne[0], cols = t->ndim == 2 ? t->ne[0] : 1;
        MP_TRY(gg_permute_check(g->path, gn, rows, n));
        tmp = mp_malloc((size_t)(rows / n * cols) * sizeof(float));
        if (!tmp)
            MP_FAIL(MP_ERR_NOMEM, "%s: out of memory permuting '%s'", g->path, gn);
        gg_permute(out, rows, cols, n, true, tmp);
    }
done:
    free(tmp);
    return st;
}

static bool gg_src_has(void *ctx, const char *name)
{
    char gn[160];
    return mp_gguf_name_from_hf(name, gn, sizeof gn) && mp_gguf_find_tensor(ctx, gn) != NULL;
}

void mp_gguf_weight_source(mp_gguf *g, mp_weight_source *src)
{
    src->ctx = g;
    src->load = gg_src_load;
    src->has = gg_src_has;
}

/* ---------- writer ---------- */

typedef struct {
    char hf[128];
    char gg[128];
    int ndim;
    int64_t shape[2]; /* HF shape */
    uint32_t type;
    int64_t perm;     /* heads to permute by, 0 = none */
    uint64_t offset, nbytes;
} gg_out_tensor;

typedef struct {
    gg_out_tensor *t;
    size_t n, cap;
    bool oom;
} gg_plan;

static void plan_add(gg_plan *p, const char *hf, int ndim, int64_t s0, int64_t s1,
                     uint32_t mat_type, int64_t perm)
{
    if (p->oom)
        return;
    if (p->n == p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 64;
        gg_out_tensor *nt = mp_realloc(p->t, nc * sizeof *nt);
        if (!nt) {
            p->oom = true;
            return;
        }
        p->t = nt;
        p->cap = nc;
    }
    gg_out_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->hf, sizeof t->hf, "%s", hf);
    if (!mp_gguf_name_from_hf(hf, t->gg, sizeof t->gg))
        p->oom = true; /* cannot happen for the names below */
    t->ndim = ndim;
    t->shape[0] = s0;
    t->shape[1] = s1;
    t->type = ndim == 2 ? mat_type : MP_GGML_F32;
    t->perm = perm;
}

/* The tensors of cfg in llama.cpp's order: embeddings, blocks, final norm, head. */
static void plan_model(gg_plan *p, const mp_model_config *c, uint32_t mt)
{
    char n[128];
    int64_t d = c->d, hd = c->head_dim;
    plan_add(p, "model.embed_tokens.weight", 2, c->vocab, d, mt, 0);
    for (int64_t l = 0; l < c->n_layers; l++) {
        mp_block_shape s = mp_layer_shape(c, l);
        static const char *const attn[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        if (s.n_heads > 0) {
            snprintf(n, sizeof n, "model.layers.%" PRId64 ".input_layernorm.weight", l);
            plan_add(p, n, 1, d, 0, mt, 0);
            for (int i = 0; i < 4; i++) {
                int64_t heads = i == 0 ? s.n_heads : i == 3 ? 0 : s.n_kv_heads;
                int64_t out = i == 0 ? s.n_heads * hd : i == 3 ? d : s.n_kv_heads * hd;
                int64_t in = i == 3 ? s.n_heads * hd : d;
                snprintf(n, sizeof n, "model.layers.%" PRId64 ".self_attn.%s.weight", l, attn[i]);
                plan_add(p, n, 2, out, in, mt, i < 2 ? heads : 0);
                if (mp_lin_has_bias(c, (mp_lin_id)(MP_LIN_Q + i))) {
                    snprintf(n, sizeof n, "model.layers.%" PRId64 ".self_attn.%s.bias", l,
                             attn[i]);
                    plan_add(p, n, 1, out, 0, mt, i < 2 ? heads : 0);
                }
            }
        }
        if (s.ffn > 0) {
            static const char *const mlp[3] = {"gate_proj", "up_proj", "down_proj"};
            snprintf(n, sizeof n, "model.layers.%" PRId64 ".post_attention_layernorm.weight", l);
            plan_add(p, n, 1, d, 0, mt, 0);
            for (int i = 0; i < 3; i++) {
                int64_t out = i == 2 ? d : s.ffn, in = i == 2 ? s.ffn : d;
                snprintf(n, sizeof n, "model.layers.%" PRId64 ".mlp.%s.weight", l, mlp[i]);
                plan_add(p, n, 2, out, in, mt, 0);
                if (mp_lin_has_bias(c, (mp_lin_id)(MP_LIN_GATE + i))) {
                    snprintf(n, sizeof n, "model.layers.%" PRId64 ".mlp.%s.bias", l, mlp[i]);
                    plan_add(p, n, 1, out, 0, mt, 0);
                }
            }
        }
    }
    plan_add(p, "model.norm.weight", 1, d, 0, mt, 0);
    if (!c->tie_embeddings)
        plan_add(p, "lm_head.weight", 2, c->vocab, d, mt, 0);
}

static void kv_u32(gg_buf *b, const char *key, uint64_t v)
{
    buf_str(b, key);
    buf_u32(b, MP_GGUF_U32);
    buf_u32(b, v);
}

static void kv_f32(gg_buf *b, const char *key, double v)
{
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    buf_str(b, key);
    buf_u32(b, MP_GGUF_F32);
    buf_u32(b, u);
}

static void kv_string(gg_buf *b, const char *key, const char *v)
{
    buf_str(b, key);
    buf_u32(b, MP_GGUF_STRING);
    buf_str(b, v);
}

/* A width of every block: a u32 when uniform, else an i32 array (as llama.cpp's converter
 * writes per-layer lists). `which`: 0 heads, 1 KV heads, 2 FFN. */
static void kv_widths(gg_buf *b, const char *key, const mp_model_config *c, int which,
                      bool uniform)
{
    if (uniform) {
        mp_block_shape s = mp_layer_shape(c, 0);
        kv_u32(b, key, (uint64_t)(which == 0 ? s.n_heads : which == 1 ? s.n_kv_heads : s.ffn));
        return;
    }
    buf_str(b, key);
    buf_u32(b, MP_GGUF_ARRAY);
    buf_u32(b, MP_GGUF_I32);
    buf_u64(b, (uint64_t)c->n_layers);
    for (int64_t l = 0; l < c->n_layers; l++) {
        mp_block_shape s = mp_layer_shape(c, l);
        buf_u32(b, (uint64_t)(which == 0 ? s.n_heads : which == 1 ? s.n_kv_heads : s.ffn));
    }
}

/* Every block has the same widths, attention and FFN: llama.cpp's `llama` can load it. */
static bool gg_uniform(const mp_model_config *c)
{
    mp_block_shape s0 = mp_layer_shape(c, 0);
    for (int64_t l = 0; l < c->n_layers; l++) {
        mp_block_shape s = mp_layer_shape(c, l);
        if (s.n_heads == 0 || s.ffn == 0 || s.n_heads != s0.n_heads ||
            s.n_kv_heads != s0.n_kv_heads || s.ffn != s0.ffn)
            return false;
    }
    return true;
}

static bool gg_carried(const char *key)
{
    if (strncmp(key, "tokenizer.", 10) == 0)
        return true;
    if (strncmp(key, "general.", 8) != 0)
        return false;
    return strcmp(key, "general.architecture") != 0 && strcmp(key, "general.alignment") != 0 &&
           strcmp(key, "general.file_type") != 0 &&
           strcmp(key, "general.quantization_version") != 0;
}

static mp_status gg_write_all(int fd, const void *p, size_t n, const char *path)
{
    const unsigned char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return mp_error(MP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
    return MP_OK;
}

struct mp_gguf_writer {
    char *path, *tmp;
    int fd;
    bool created;
    gg_plan plan;
    size_t next;
    mp_dtype dtype;
    float *w, *scratch;
    unsigned char *cvt;
};

void mp_gguf_writer_abort(mp_gguf_writer **wp)
{
    if (!wp || !*wp)
        return;
    mp_gguf_writer *w = *wp;
    if (w->fd >= 0)
        close(w->fd);
    if (w->created)
        unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w->w);
    free(w->cvt);
    free(w->scratch);
    free(w->plan.t);
    free(w);
    *wp = NULL;
}

mp_status mp_gguf_writer_begin(const char *path, const mp_model_config *c, mp_dtype dtype,
                               const mp_gguf *meta_from, mp_gguf_writer **out)
{
    mp_status st = MP_OK;
    mp_gguf_writer *wr = NULL;
    gg_buf hb = {0}, kb = {0};
    char key[128];
    *out = NULL;

    uint32_t mt, ftype;
    if (dtype == MP_DT_F32) {
        mt = MP_GGML_F32;
        ftype = 0;
    } else if (dtype == MP_DT_F16) {
        mt = MP_GGML_F16;
        ftype = 1;
    } else if (dtype == MP_DT_BF16) {
        mt = MP_GGML_BF16;
        ftype = 32;
    } else {
        return mp_error(MP_ERR_ARG, "%s: GGUF output dtype must be f32, f16 or bf16", path);
    }
    if (c->arch != MP_ARCH_LLAMA ||
        (strcmp(c->model_type, "llama") != 0 && strcmp(c->model_type, "mistral") != 0))
        return mp_error(MP_ERR_UNSUPPORTED, "%s: writing model_type '%s' as GGUF is not "
                        "supported (llama, mistral)", path, c->model_type);
    if (c->sliding_window > 0)
        return mp_error(MP_ERR_UNSUPPORTED, "%s: a sliding window (%" PRId64 ") cannot be written "
                        "to a GGUF llama model", path, c->sliding_window);
    struct stat sb;
    if (lstat(path, &sb) == 0)
        return mp_error(MP_ERR_ARG, "%s: exists; mpiprune does not overwrite", path);

    wr = mp_calloc(1, sizeof *wr);
    if (!wr)
        return mp_error(MP_ERR_NOMEM, "%s: out of memory", path);
    wr->fd = -1;
    wr->dtype = dtype;
    wr->path = mp_strdup(path);
    size_t tl = strlen(path) + 32;
    wr->tmp = mp_malloc(tl);
    if (!wr->path || !wr->tmp)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    snprintf(wr->tmp, tl, "%s.tmp-%ld", path, (long)getpid());
    gg_plan *plan = &wr->plan;
    plan_model(plan, c, mt);
    if (plan->oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    bool uniform = gg_uniform(c);
    const char *arch = uniform ? "llama" : "deci";

    /* Metadata. */
    size_t nkv = 0;
    kv_string(&kb, "general.architecture", arch), nkv++;
    if (meta_from)
        for (size_t i = 0; i < meta_from->n_kv; i++) {
            const mp_gguf_kv *kv = &meta_from->kv[i];
            if (!gg_carried(kv->key) || strncmp(kv->key, "tokenizer.", 10) == 0)
                continue;
            buf_str(&kb, kv->key), buf_u32(&kb, kv->type), buf_add(&kb, kv->raw, kv->raw_len);
            nkv++;
        }
    kv_u32(&kb, "general.file_type", ftype), nkv++;
#define AK(s) (snprintf(key, sizeof key, "%s." s, arch), key)
    kv_u32(&kb, AK("vocab_size"), (uint64_t)c->vocab), nkv++;
    kv_u32(&kb, AK("context_length"), (uint64_t)c->max_pos), nkv++;
    kv_u32(&kb, AK("embedding_length"), (uint64_t)c->d), nkv++;
    kv_u32(&kb, AK("block_count"), (uint64_t)c->n_layers), nkv++;
    kv_widths(&kb, AK("feed_forward_length"), c, 2, uniform), nkv++;
    kv_widths(&kb, AK("attention.head_count"), c, 0, uniform), nkv++;
    kv_widths(&kb, AK("attention.head_count_kv"), c, 1, uniform), nkv++;
    kv_u32(&kb, AK("attention.key_length"), (uint64_t)c->head_dim), nkv++;
    kv_u32(&kb, AK("attention.value_length"), (uint64_t)c->head_dim), nkv++;
    kv_u32(&kb, AK("rope.dimension_count"), (uint64_t)c->head_dim), nkv++;
    kv_f32(&kb, AK("rope.freq_base"), c->rope_theta), nkv++;
    kv_f32(&kb, AK("attention.layer_norm_rms_epsilon"), c->norm_eps), nkv++;
#undef AK
    if (meta_from)
        for (size_t i = 0; i < meta_from->n_kv; i++) {
            const mp_gguf_kv *kv = &meta_from->kv[i];
            if (strncmp(kv->key, "tokenizer.", 10) != 0)
                continue;
            buf_str(&kb, kv->key), buf_u32(&kb, kv->type), buf_add(&kb, kv->raw, kv->raw_len);
            nkv++;
        }
    if (kb.oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory for the metadata", path);

    buf_add(&hb, GG_MAGIC, 4);
    buf_u32(&hb, 3);
    buf_u64(&hb, plan->n);
    buf_u64(&hb, nkv);
    buf_add(&hb, kb.p, kb.n);
    uint64_t off = 0, max_numel = 0, max_hd_cols = 0;
    for (size_t i = 0; i < plan->n; i++) {
        gg_out_tensor *t = &plan->t[i];
        int64_t numel = t->ndim == 2 ? t->shape[0] * t->shape[1] : t->shape[0];
        uint64_t es = t->type == MP_GGML_F32 ? 4 : 2;
        t->offset = off;
        t->nbytes = (uint64_t)numel * es;
        off += t->nbytes;
        off += (GG_DEFAULT_ALIGN - off % GG_DEFAULT_ALIGN) % GG_DEFAULT_ALIGN;
        max_numel = (uint64_t)numel > max_numel ? (uint64_t)numel : max_numel;
        if (t->perm > 0) {
            MP_TRY(gg_permute_check(path, t->gg, t->shape[0], t->perm));
            uint64_t hc = (uint64_t)(t->shape[0] / t->perm) *
                          (uint64_t)(t->ndim == 2 ? t->shape[1] : 1);
            max_hd_cols = hc > max_hd_cols ? hc : max_hd_cols;
        }
        buf_str(&hb, t->gg);
        buf_u32(&hb, (uint64_t)t->ndim);
        for (int k = t->ndim - 1; k >= 0; k--)
            buf_u64(&hb, (uint64_t)t->shape[k]);
        buf_u32(&hb, t->type);
        buf_u64(&hb, t->offset);
    }
    while (!hb.oom && hb.n % GG_DEFAULT_ALIGN != 0)
        buf_add(&hb, "", 1);
    if (hb.oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory for the header", path);

    wr->w = mp_malloc((size_t)(max_numel ? max_numel : 1) * sizeof(float));
    wr->cvt = mp_malloc((size_t)(max_numel ? max_numel : 1) * 4 + GG_DEFAULT_ALIGN);
    wr->scratch = mp_malloc((size_t)(max_hd_cols ? max_hd_cols : 1) * sizeof(float));
    if (!wr->w || !wr->cvt || !wr->scratch)
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate %.1f MiB for the largest tensor", path,
                (double)max_numel * 8.0 / 1048576.0);

    wr->fd = open(wr->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (wr->fd < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create temporary file %s: %s", path, wr->tmp,
                strerror(errno));
    wr->created = true;
    MP_TRY(gg_write_all(wr->fd, hb.p, hb.n, wr->tmp));
    *out = wr;
    wr = NULL;
done:
    mp_gguf_writer_abort(&wr);
    free(kb.p);
    free(hb.p);
    return st;
}

const char *mp_gguf_writer_next(const mp_gguf_writer *w, int *ndim, int64_t shape[2])
{
    if (w->next >= w->plan.n)
        return NULL;
    const gg_out_tensor *t = &w->plan.t[w->next];
    if (ndim)
        *ndim = t->ndim;
    if (shape) {
        shape[0] = t->shape[0];
        shape[1] = t->shape[1];
    }
    return t->hf;
}

/* Converts w->w (the next tensor, HF layout) and writes it. */
static mp_status gg_writer_emit(mp_gguf_writer *w)
{
    const gg_out_tensor *t = &w->plan.t[w->next];
    int64_t numel = t->ndim == 2 ? t->shape[0] * t->shape[1] : t->shape[0];
    if (t->perm > 0)
        gg_permute(w->w, t->shape[0], t->ndim == 2 ? t->shape[1] : 1, t->perm, false,
                   w->scratch);
    mp_dtype odt = t->type == MP_GGML_F32 ? MP_DT_F32 : w->dtype;
    mp_status st = mp_dtype_from_f32(odt, w->w, (size_t)numel, w->cvt);
    if (st != MP_OK)
        return st;
    size_t nb = (size_t)t->nbytes, pad = (GG_DEFAULT_ALIGN - nb % GG_DEFAULT_ALIGN) %
                                        GG_DEFAULT_ALIGN;
    memset(w->cvt + nb, 0, pad);
    st = gg_write_all(w->fd, w->cvt, nb + pad, w->tmp);
    if (st == MP_OK)
        w->next++;
    return st;
}

mp_status mp_gguf_writer_put(mp_gguf_writer *w, const char *hf_name, const float *values)
{
    const char *want = mp_gguf_writer_next(w, NULL, NULL);
    if (!want || strcmp(want, hf_name) != 0)
        return mp_error(MP_ERR_INTERNAL, "%s: tensor '%s' written out of order (next: %s)",
                        w->path, hf_name, want ? want : "none");
    const gg_out_tensor *t = &w->plan.t[w->next];
    int64_t numel = t->ndim == 2 ? t->shape[0] * t->shape[1] : t->shape[0];
    memcpy(w->w, values, (size_t)numel * sizeof(float));
    for (int64_t i = 0; i < numel; i++)
        if (!isfinite(w->w[i]))
            return mp_error(MP_ERR_NUMERIC, "%s: tensor '%s' has a non-finite value at element %"
                            PRId64, w->path, hf_name, i);
    return gg_writer_emit(w);
}

mp_status mp_gguf_writer_put_from(mp_gguf_writer *w, const mp_weight_source *src,
                                  const char *prefix)
{
    for (;;) {
        const char *name = mp_gguf_writer_next(w, NULL, NULL);
        if (!name || (prefix && strncmp(name, prefix, strlen(prefix)) != 0))
            return MP_OK;
        const gg_out_tensor *t = &w->plan.t[w->next];
        mp_status st = src->load(src->ctx, t->hf, t->ndim, t->shape, w->w);
        if (st == MP_OK)
            st = gg_writer_emit(w);
        if (st != MP_OK)
            return st;
    }
}

mp_status mp_gguf_writer_finish(mp_gguf_writer **wp)
{
    mp_status st = MP_OK;
    mp_gguf_writer *w = *wp;
    struct stat sb;
    if (w->next != w->plan.n)
        MP_FAIL(MP_ERR_INTERNAL, "%s: finished after %zu of %zu tensors", w->path, w->next,
                w->plan.n);
    if (fsync(w->fd) != 0)
        MP_FAIL(MP_ERR_IO, "%s: fsync failed: %s", w->tmp, strerror(errno));
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0)
        MP_FAIL(MP_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
    if (lstat(w->path, &sb) == 0)
        MP_FAIL(MP_ERR_ARG, "%s: appeared while it was being written; not overwritten",
                w->path);
    if (rename(w->tmp, w->path) != 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot rename %s into place: %s", w->path, w->tmp,
                strerror(errno));
    w->created = false;
    mp_file_sync_dir_of(w->path); /* make the rename durable */
done:
    mp_gguf_writer_abort(wp);
    return st;
}

mp_status mp_gguf_write_model(const char *path, const mp_model_config *c,
                              const mp_weight_source *src, mp_dtype dtype,
                              const mp_gguf *meta_from)
{
    mp_status st = MP_OK;
    mp_gguf_writer *w = NULL;
    MP_TRY(mp_gguf_writer_begin(path, c, dtype, meta_from, &w));
    MP_TRY(mp_gguf_writer_put_from(w, src, NULL));
    MP_TRY(mp_gguf_writer_finish(&w));
done:
    mp_gguf_writer_abort(&w);
    return st;
}
