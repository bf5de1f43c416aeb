/* mp_tokens: token files (.bin + .json sidecar, or .npy); see mp_tokens.h.
 *
 * Files are streamed in chunks: memory is the uint32 id array plus one chunk, and the sha256
 * of a .bin is computed over the same bytes that are decoded. Every size read from a header
 * or sidecar is checked against the file's size before anything is allocated.
 */
#define _POSIX_C_SOURCE 200809L

#include "mp_alloc.h"
#include "mp_checked.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_tokens.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_sha256.h"

#define TOK_CHUNK (1u << 20)
#define TOK_SIDECAR_MAX (16 * 1024 * 1024)
#define NPY_HEADER_MAX (1024 * 1024)

typedef enum { TOK_U16, TOK_U32, TOK_I32, TOK_I64 } tok_type;

static size_t tok_itemsize(tok_type t)
{
    switch (t) {
    case TOK_U16: return 2;
    case TOK_U32:
    case TOK_I32: return 4;
    case TOK_I64: return 8;
    }
    return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Opens a data file (a regular file only: a FIFO would block) and gets its size. */
static mp_status tok_open(const char *path, FILE **f, int64_t *size)
{
    return mp_file_fopen_regular(path, f, size);
}

static mp_status tok_read_exact(FILE *f, const char *path, void *buf, size_t n)
{
    if (n > 0 && fread(buf, 1, n, f) != n) {
        if (ferror(f))
            return mp_error(MP_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        return mp_error(MP_ERR_IO, "%s: file shorter than expected (changed while reading?)",
                        path);
    }
    return MP_OK;
}

/* Decodes n little-endian ids of type t from src into dst; first_pos is for messages. */
static mp_status tok_decode(tok_type t, const unsigned char *src, size_t n, uint32_t *dst,
                            int64_t first_pos, const char *path)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = src + i * tok_itemsize(t);
        uint64_t u = 0;
        switch (t) {
        case TOK_U16: u = (uint64_t)p[0] | (uint64_t)p[1] << 8; break;
        case TOK_U32:
        case TOK_I32:
            u = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
                (uint64_t)p[3] << 24;
            break;
        case TOK_I64:
            for (int k = 0; k < 8; k++)
                u |= (uint64_t)p[k] << (8 * k);
            break;
        }
        if ((t == TOK_I32 && (u & 0x80000000u)) || (t == TOK_I64 && (u >> 63)))
            return mp_error(MP_ERR_RANGE, "%s: negative token id at position %lld", path,
                            (long long)(first_pos + (int64_t)i));
        if (u > UINT32_MAX)
            return mp_error(MP_ERR_RANGE, "%s: token id %llu at position %lld does not fit in "
                            "32 bits", path, (unsigned long long)u,
                            (long long)(first_pos + (int64_t)i));
        dst[i] = (uint32_t)u;
    }
    return MP_OK;
}

/* Reads `count` ids of type t from f (positioned at the data); hashes the bytes if sha. */
static mp_status tok_read_ids(FILE *f, const char *path, tok_type t, int64_t count,
                              mp_sha256 *sha, uint32_t **ids_out)
{
    mp_status st = MP_OK;
    unsigned char *chunk = NULL;
    uint32_t *ids = NULL;
    size_t isz = tok_itemsize(t);

    size_t nbytes = 0;
    if (count < 0 || !mp_mul_size((size_t)count, sizeof *ids, &nbytes))
        MP_FAIL(MP_ERR_NOMEM, "%s: %lld ids do not fit in memory", path, (long long)count);
    ids = mp_malloc(nbytes);
    chunk = mp_malloc(TOK_CHUNK);
    if (ids == NULL || chunk == NULL)
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate %zu bytes for token ids", path, nbytes);
    size_t per = TOK_CHUNK / isz;
    for (int64_t done_n = 0; done_n < count;) {
        size_t n = (uint64_t)(count - done_n) < per ? (size_t)(count - done_n) : per;
        MP_TRY(tok_read_exact(f, path, chunk, n * isz));
        if (sha != NULL)
            mp_sha256_update(sha, chunk, n * isz);
        MP_TRY(tok_decode(t, chunk, n, ids + done_n, done_n, path));
        done_n += (int64_t)n;
    }
    if (fgetc(f) != EOF)
        MP_FAIL(MP_ERR_IO, "%s: file longer than expected (changed while reading?)", path);
    *ids_out = ids;
    ids = NULL;
done:
    free(chunk);
    free(ids);
    return st;
}

/* ---- .bin + .json sidecar ------------------------------------------------------------- */

typedef struct {
    tok_type type;
    bool has_count;
    int64_t count;
    bool has_sha;
    char sha[65];
} tok_sidecar;

static mp_status tok_read_sidecar(const char *bin_path, const char *sc, tok_sidecar *out)
{
    mp_status st = MP_OK;
    FILE *f = NULL;
    char *buf = NULL;
    cJSON *root = NULL;
    int64_t size = 0;

    struct stat sb;
    if (stat(sc, &sb) != 0 && errno == ENOENT)
        MP_FAIL(MP_ERR_NOT_FOUND, "%s: sidecar %s not found (it gives the dtype of a .bin)",
                bin_path, sc);
    MP_TRY(tok_open(sc, &f, &size));
    if (size > TOK_SIDECAR_MAX)
        MP_FAIL(MP_ERR_FORMAT, "%s: sidecar larger than %d bytes", sc, TOK_SIDECAR_MAX);
    buf = mp_malloc((size_t)size + 1);
    if (buf == NULL)
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate %lld bytes", sc, (long long)size + 1);
    MP_TRY(tok_read_exact(f, sc, buf, (size_t)size));
    buf[size] = '\0';
    if ((int64_t)strlen(buf) != size)
        MP_FAIL(MP_ERR_FORMAT, "%s: malformed JSON near byte %zu (NUL byte)", sc, strlen(buf));
    const char *end = NULL;
    bool oom = false;
    root = mp_json_parse(buf, &end, &oom);
    if (root == NULL && oom)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory parsing the sidecar", sc);
    if (root == NULL)
        MP_FAIL(MP_ERR_FORMAT, "%s: malformed JSON near byte %lld", sc,
                end != NULL && end >= buf ? (long long)(end - buf) : 0LL);
    if (!cJSON_IsObject(root))
        MP_FAIL(MP_ERR_FORMAT, "%s: top level must be a JSON object", sc);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (dt == NULL)
        MP_FAIL(MP_ERR_FORMAT, "%s: missing field 'dtype'", sc);
    if (!cJSON_IsString(dt))
        MP_FAIL(MP_ERR_FORMAT, "%s: field 'dtype' must be a string", sc);
    if (strcmp(dt->valuestring, "uint16") == 0)
        out->type = TOK_U16;
    else if (strcmp(dt->valuestring, "uint32") == 0)
        out->type = TOK_U32;
    else
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: field 'dtype' = '%s' is not supported (uint16, uint32)",
                sc, dt->valuestring);

    const cJSON *bo = cJSON_GetObjectItemCaseSensitive(root, "byteorder");
    if (bo == NULL)
        MP_FAIL(MP_ERR_FORMAT, "%s: missing field 'byteorder'", sc);
    if (!cJSON_IsString(bo))
        MP_FAIL(MP_ERR_FORMAT, "%s: field 'byteorder' must be a string", sc);
    if (strcmp(bo->valuestring, "little") != 0)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: field 'byteorder' = '%s' is not supported (little)", sc,
                bo->valuestring);

    const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(root, "count");
    out->has_count = cnt != NULL && !cJSON_IsNull(cnt);
    if (out->has_count) {
        double v = cJSON_IsNumber(cnt) ? cnt->valuedouble : -1.0;
        if (!(v >= 0 && v <= 9007199254740992.0) || v != (double)(int64_t)v)
            MP_FAIL(MP_ERR_FORMAT, "%s: field 'count' must be a non-negative integer", sc);
        out->count = (int64_t)v;
    }

    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(root, "sha256");
    out->has_sha = sha != NULL && !cJSON_IsNull(sha);
    if (out->has_sha) {
        bool ok = cJSON_IsString(sha) && strlen(sha->valuestring) == 64;
        for (int i = 0; ok && i < 64; i++)
            ok = isxdigit((unsigned char)sha->valuestring[i]) != 0;
        if (!ok)
            MP_FAIL(MP_ERR_FORMAT, "%s: field 'sha256' must be 64 hex digits", sc);
        for (int i = 0; i < 64; i++)
            out->sha[i] = (char)tolower((unsigned char)sha->valuestring[i]);
        out->sha[64] = '\0';
    }
done:
    if (f != NULL)
        fclose(f);
    free(buf);
    cJSON_Delete(root);
    return st;
}

static mp_status tok_load_bin(const char *path, mp_tokens *out)
{
    mp_status st = MP_OK;
    FILE *f = NULL;
    char *sc = NULL;
    int64_t size = 0;
    tok_sidecar side;
    memset(&side, 0, sizeof side);

    MP_TRY(tok_open(path, &f, &size));
    size_t n = strlen(path);
    sc = mp_malloc(n + 2);
    if (sc == NULL)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    memcpy(sc, path, n - 4);
    memcpy(sc + n - 4, ".json", 6);
    MP_TRY(tok_read_sidecar(path, sc, &side));

    if (size == 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: empty token file", path);
    int64_t isz = (int64_t)tok_itemsize(side.type);
    if (size % isz != 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: %lld bytes is not a whole number of %s ids", path,
                (long long)size, side.type == TOK_U16 ? "uint16" : "uint32");
    int64_t count = size / isz;
    if (side.has_count && side.count != count)
        MP_FAIL(MP_ERR_FORMAT, "%s: sidecar %s says count %lld but the file holds %lld ids",
                path, sc, (long long)side.count, (long long)count);

    mp_sha256 sha;
    mp_sha256_init(&sha);
    MP_TRY(tok_read_ids(f, path, side.type, count, side.has_sha ? &sha : NULL, &out->ids));
    out->count = count;
    if (side.has_sha) {
        char hex[65];
        mp_sha256_final_hex(&sha, hex);
        if (strcmp(hex, side.sha) != 0) {
            mp_tokens_free(out);
            MP_FAIL(MP_ERR_FORMAT, "%s: sha256 %s does not match sidecar %s (%s)", path, hex, sc,
                    side.sha);
        }
    }
done:
    if (f != NULL)
        fclose(f);
    free(sc);
    return st;
}

/* ---- .npy ----------------------------------------------------------------------------- */

/* A cursor over the header dict, a Python literal such as
 * {'descr': '<u2', 'fortran_order': False, 'shape': (128, 256), } */
typedef struct {
    const char *p, *end;
    const char *path;
} npy_cur;

static void npy_ws(npy_cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool npy_eat(npy_cur *c, char ch)
{
    npy_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static mp_status npy_bad(const npy_cur *c, const char *what, const char *hdr)
{
    return mp_error(MP_ERR_FORMAT, "%s: malformed .npy header: %s at header byte %lld", c->path,
                    what, (long long)(c->p - hdr));
}

/* A quoted string into buf (no escapes: none occur in a valid header). */
static bool npy_str(npy_cur *c, char *buf, size_t len)
{
    npy_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= len)
            return false;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return false;
    c->p++;
    buf[n] = '\0';
    return true;
}

static bool npy_word(npy_cur *c, const char *w)
{
    npy_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

#define NPY_MAX_DIMS 32

static mp_status npy_parse_header(const char *hdr, size_t hlen, const char *path, tok_type *type,
                                  int64_t *count)
{
    npy_cur c = {hdr, hdr + hlen, path};
    char key[32], descr[32];
    bool have_descr = false, have_fo = false, have_shape = false, fortran = false;
    int64_t shape[NPY_MAX_DIMS];
    int ndim = 0;

    if (hlen == 0 || hdr[hlen - 1] != '\n')
        return npy_bad(&c, "header does not end with a newline", hdr);
    if (!npy_eat(&c, '{'))
        return npy_bad(&c, "expected '{'", hdr);
    while (!npy_eat(&c, '}')) {
        if (!npy_str(&c, key, sizeof key))
            return npy_bad(&c, "expected a quoted key", hdr);
        if (!npy_eat(&c, ':'))
            return npy_bad(&c, "expected ':'", hdr);
        if (strcmp(key, "descr") == 0) {
            if (have_descr)
                return npy_bad(&c, "duplicate key 'descr'", hdr);
            if (!npy_str(&c, descr, sizeof descr))
                return mp_error(MP_ERR_UNSUPPORTED, "%s: .npy descr is not a simple dtype "
                                "string (structured arrays are not token files)", path);
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_fo)
                return npy_bad(&c, "duplicate key 'fortran_order'", hdr);
            if (npy_word(&c, "False"))
                fortran = false;
            else if (npy_word(&c, "True"))
                fortran = true;
            else
                return npy_bad(&c, "fortran_order must be True or False", hdr);
            have_fo = true;
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape)
                return npy_bad(&c, "duplicate key 'shape'", hdr);
            if (!npy_eat(&c, '('))
                return npy_bad(&c, "shape must be a tuple", hdr);
            while (!npy_eat(&c, ')')) {
                npy_ws(&c);
                if (c.p >= c.end || *c.p < '0' || *c.p > '9')
                    return npy_bad(&c, "shape entries must be non-negative integers", hdr);
                int64_t v = 0;
                while (c.p < c.end && *c.p >= '0' && *c.p <= '9') {
                    if (v > (INT64_MAX - 9) / 10)
                        return npy_bad(&c, "shape entry too large", hdr);
                    v = v * 10 + (*c.p++ - '0');
                }
                if (c.p < c.end && *c.p == 'L') /* Python 2 long suffix */
                    c.p++;
                if (ndim == NPY_MAX_DIMS)
                    return npy_bad(&c, "too many dimensions", hdr);
                shape[ndim++] = v;
                if (!npy_eat(&c, ',')) {
                    if (!npy_eat(&c, ')'))
                        return npy_bad(&c, "expected ',' or ')' in shape", hdr);
                    break;
                }
            }
            have_shape = true;
        } else {
            return mp_error(MP_ERR_FORMAT, "%s: malformed .npy header: unexpected key '%s'",
                            path, key);
        }
        if (!npy_eat(&c, ',')) {
            if (!npy_eat(&c, '}'))
                return npy_bad(&c, "expected ',' or '}'", hdr);
            break;
        }
    }
    npy_ws(&c);
    if (c.p != c.end)
        return npy_bad(&c, "trailing bytes after the dict", hdr);
    if (!have_descr || !have_fo || !have_shape)
        return mp_error(MP_ERR_FORMAT, "%s: malformed .npy header: missing key '%s'", path,
                        !have_descr ? "descr" : !have_fo ? "fortran_order" : "shape");
    if (strcmp(descr, "<u2") == 0)
        *type = TOK_U16;
    else if (strcmp(descr, "<u4") == 0)
        *type = TOK_U32;
    else if (strcmp(descr, "<i4") == 0)
        *type = TOK_I32;
    else if (strcmp(descr, "<i8") == 0)
        *type = TOK_I64;
    else
        return mp_error(MP_ERR_UNSUPPORTED,
                        "%s: .npy dtype '%s' is not supported (<u2, <u4, <i4, <i8)", path, descr);
    if (fortran)
        return mp_error(MP_ERR_UNSUPPORTED,
                        "%s: .npy fortran_order True is not supported (C order only)", path);
    int64_t n = 1, nbytes = 0;
    for (int i = 0; i < ndim; i++)
        if (!mp_mul_i64(n, shape[i], &n) || !mp_mul_i64(n, 8, &nbytes))
            return mp_error(MP_ERR_FORMAT, "%s: .npy shape too large", path);
    *count = n;
    return MP_OK;
}

static mp_status tok_load_npy(const char *path, mp_tokens *out)
{
    mp_status st = MP_OK;
    FILE *f = NULL;
    char *hdr = NULL;
    int64_t size = 0;
    unsigned char pre[12];

    MP_TRY(tok_open(path, &f, &size));
    if (size == 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: empty token file", path);
    if (size < 10)
        MP_FAIL(MP_ERR_FORMAT, "%s: too short for a .npy file (%lld bytes)", path,
                (long long)size);
    MP_TRY(tok_read_exact(f, path, pre, 10));
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: bad .npy magic (expected \\x93NUMPY)", path);
    int major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        MP_FAIL(MP_ERR_UNSUPPORTED, "%s: .npy format version %d.%d is not supported (1.0, 2.0, "
                "3.0)", path, major, minor);
    int64_t prefix = 10, hlen = (int64_t)pre[8] | (int64_t)pre[9] << 8;
    if (major >= 2) {
        if (size < 12)
            MP_FAIL(MP_ERR_FORMAT, "%s: too short for a .npy %d.0 file", path, major);
        MP_TRY(tok_read_exact(f, path, pre + 10, 2));
        prefix = 12;
        hlen |= (int64_t)pre[10] << 16 | (int64_t)pre[11] << 24;
    }
    if (hlen > size - prefix)
        MP_FAIL(MP_ERR_FORMAT, "%s: .npy header length %lld runs past the end of the file "
                "(%lld bytes)", path, (long long)hlen, (long long)size);
    if (hlen > NPY_HEADER_MAX)
        MP_FAIL(MP_ERR_FORMAT, "%s: .npy header length %lld is implausibly large", path,
                (long long)hlen);
    hdr = mp_malloc((size_t)hlen + 1);
    if (hdr == NULL)
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate the .npy header", path);
    MP_TRY(tok_read_exact(f, path, hdr, (size_t)hlen));
    hdr[hlen] = '\0';

    tok_type type = TOK_U16;
    int64_t count = 0;
    MP_TRY(npy_parse_header(hdr, (size_t)hlen, path, &type, &count));
    int64_t data = size - prefix - hlen;
    int64_t need = 0;
    if (!mp_mul_i64(count, (int64_t)tok_itemsize(type), &need) || need != data)
        MP_FAIL(MP_ERR_FORMAT, "%s: .npy shape needs %lld data bytes but the file has %lld",
                path, (long long)need, (long long)data);
    if (count == 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: empty token file", path);
    MP_TRY(tok_read_ids(f, path, type, count, NULL, &out->ids));
    out->count = count;
done:
    if (f != NULL)
        fclose(f);
    free(hdr);
    return st;
}

/* ---- public ----------------------------------------------------------------------------- */

mp_status mp_tokens_load(const char *path, mp_tokens *out)
{
    if (out == NULL || path == NULL)
        return mp_error(MP_ERR_INTERNAL, "mp_tokens_load: NULL argument");
    out->ids = NULL;
    out->count = 0;
    if (ends_with(path, ".bin"))
        return tok_load_bin(path, out);
    if (ends_with(path, ".npy"))
        return tok_load_npy(path, out);
    return mp_error(MP_ERR_UNSUPPORTED,
                    "%s: unknown token file type (expected NAME.bin with NAME.json, or NAME.npy)",
                    path);
}

void mp_tokens_free(mp_tokens *t)
{
    if (t == NULL)
        return;
    free(t->ids);
    t->ids = NULL;
    t->count = 0;
}

mp_status mp_tokens_check_vocab(const mp_tokens *t, int64_t vocab, const char *path)
{
    if (vocab <= 0)
        return mp_error(MP_ERR_INTERNAL, "%s: vocabulary size %lld is not positive", path,
                        (long long)vocab);
    for (int64_t i = 0; i < t->count; i++)
        if ((int64_t)t->ids[i] >= vocab)
            return mp_error(MP_ERR_RANGE,
                            "%s: token id %lu at position %lld is >= vocab_size %lld", path,
                            (unsigned long)t->ids[i], (long long)i, (long long)vocab);
    return MP_OK;
}

mp_status mp_tokens_windows(const mp_tokens *t, int64_t seqlen, const char *path,
                            int64_t *n_windows)
{
    if (seqlen <= 0)
        return mp_error(MP_ERR_ARG, "%s: seqlen must be positive, got %lld", path,
                        (long long)seqlen);
    int64_t n = t->count / seqlen;
    if (n == 0)
        return mp_error(MP_ERR_RANGE, "%s: %lld tokens hold no window of seqlen %lld", path,
                        (long long)t->count, (long long)seqlen);
    *n_windows = n;
    return MP_OK;
}
