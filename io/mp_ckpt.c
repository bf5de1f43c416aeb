/* Linux fallocate(FALLOC_FL_KEEP_SIZE), for the space reservation below. */
#define _GNU_SOURCE

#include "mp_alloc.h"
#include "mp_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Largest chunk in bytes: HDF5 caps chunks at 4 GiB, and smaller chunks keep the checksum
 * granular. */
#define CK_CHUNK_BYTES ((int64_t)16 << 20)

/* Room reserved for a file's metadata beyond its payload (superblock, object headers, chunk
 * indexes, attributes, links): measured at under 1 KiB per dataset, so these are generous. */
#define CK_META_BYTES ((int64_t)32 << 10)
#define CK_META_PER_OBJECT ((int64_t)4 << 10)

/* HDF5 prints its error stack by default; our messages say what failed, once. */
static void ck_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Closes an id of any kind and sets it to H5I_INVALID_HID; -1 when the close failed. */
static herr_t ck_close(hid_t *id)
{
    herr_t rc = 0;
    if (*id < 0)
        return 0;
    switch (H5Iget_type(*id)) {
    case H5I_FILE: rc = H5Fclose(*id); break;
    case H5I_GROUP: rc = H5Gclose(*id); break;
    case H5I_DATASET: rc = H5Dclose(*id); break;
    case H5I_DATASPACE: rc = H5Sclose(*id); break;
    case H5I_DATATYPE: rc = H5Tclose(*id); break;
    case H5I_ATTR: rc = H5Aclose(*id); break;
    case H5I_GENPROP_LST: rc = H5Pclose(*id); break;
    default: rc = -1; break;
    }
    *id = H5I_INVALID_HID;
    return rc < 0 ? -1 : 0;
}

static mp_status ck_path(char *buf, size_t len, const char *ckpt, const char *kind, int64_t block,
                         const char *suffix)
{
    int n = kind ? snprintf(buf, len, "%s.d/%s_%05lld.h5%s", ckpt, kind, (long long)block,
                            suffix)
                 : snprintf(buf, len, "%s%s", ckpt, suffix);
    if (n < 0 || (size_t)n >= len)
        return mp_error(MP_ERR_RANGE, "%s: path too long", ckpt);
    return MP_OK;
}

/* The folder holding path ("." when it has none). */
static void ck_dirname(const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash)
        snprintf(buf, len, ".");
    else if (slash == buf)
        buf[1] = '\0';
    else
        *slash = '\0';
}

/* File access: the 1.10 file format whatever the HDF5 version (io/mp_ckpt.h promises it). */
static hid_t ck_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0)
        ck_close(&fapl);
    return fapl;
}

/* Collective open of a hidden-state file with the MPI-IO driver. */
static hid_t ck_fapl_mpio(const mp_comm *c)
{
    hid_t fapl = ck_fapl();
    if (fapl >= 0 &&
        H5Pset_fapl_mpio(fapl, *(const MPI_Comm *)mp_comm_native(c), MPI_INFO_NULL) < 0)
        ck_close(&fapl);
    return fapl;
}

/* Makes a file's data durable before it is renamed into place. */
static mp_status ck_fsync(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mp_error(MP_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return mp_error(MP_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    return MP_OK;
}

/* Makes a rename or a creation in path's folder durable. Some file systems refuse fsync on a
 * folder (EINVAL), which only weakens durability after a crash: not an error. */
static mp_status ck_fsync_dir_of(const char *path)
{
    char dir[4400];
    ck_dirname(path, dir, sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return mp_error(MP_ERR_IO, "%s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL)
        return mp_error(MP_ERR_IO, "%s: fsync failed: %s", dir, strerror(e));
    return MP_OK;
}

/* Renames a complete file into place and syncs the folder, so that the new name survives a
 * power loss (the main file and the block files sit in different folders: each is synced). */
static mp_status ck_rename(const char *from, const char *to)
{
    if (rename(from, to) != 0)
        return mp_error(MP_ERR_IO, "%s: cannot rename to %s: %s", from, to, strerror(errno));
    return ck_fsync_dir_of(to);
}

static mp_status ck_mkdir(const char *ckpt)
{
    char dir[4200];
    if (snprintf(dir, sizeof dir, "%s.d", ckpt) >= (int)sizeof dir)
        return mp_error(MP_ERR_RANGE, "%s: path too long", ckpt);
    if (mkdir(dir, 0755) == 0)
        return ck_fsync_dir_of(dir);
    if (errno != EEXIST)
        return mp_error(MP_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    return MP_OK;
}

/* Disk space for a file about to be written.
 *
 * HDF5 1.10 cannot close a file whose data or metadata failed to reach the disk: H5Fclose fails
 * half-way, the id stays registered on a half-destroyed file, and the library's shutdown in
 * MPI_Finalize crashes on it. So a checkpoint file must never meet a full disk. Before the file
 * is created, ck_space_check refuses when the file system has less room than the file needs;
 * once HDF5 has created it, ck_reserve allocates that room to the file (fallocate with
 * FALLOC_FL_KEEP_SIZE: the size HDF5 sees is unchanged), so that no later write can fail for
 * lack of space; ck_release gives back what the file did not use. Where the file system cannot
 * fallocate, the check before creation is all there is. */
static mp_status ck_space_check(const char *tmp, const char *target, int64_t bytes)
{
    char dir[4400];
    struct statvfs sv;
    ck_dirname(tmp, dir, sizeof dir);
    if (statvfs(dir, &sv) != 0)
        return MP_OK; /* the creation that follows reports the problem */
    double avail = (double)sv.f_bavail * (double)sv.f_frsize;
    if (avail < (double)bytes)
        return mp_error(MP_ERR_IO, "%s: cannot write: disk full (needs %.0f KiB, %.0f KiB free)",
                        target, (double)bytes / 1024.0, avail / 1024.0);
    return MP_OK;
}

/* *fd: the descriptor that holds the reservation, closed by ck_release. */
static mp_status ck_reserve(const char *tmp, const char *target, int64_t bytes, int *fd)
{
    *fd = open(tmp, O_WRONLY | O_CLOEXEC);
    if (*fd < 0)
        return mp_error(MP_ERR_IO, "%s: %s", tmp, strerror(errno));
#ifdef FALLOC_FL_KEEP_SIZE
    int rc;
    do
        rc = fallocate(*fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes);
    while (rc != 0 && errno == EINTR);
    if (rc != 0 && errno != EOPNOTSUPP && errno != ENOSYS)
        return mp_error(MP_ERR_IO, "%s: cannot write: %s (needs %.0f KiB)", target,
                        errno == ENOSPC ? "disk full" : strerror(errno),
                        (double)bytes / 1024.0);
#endif
    return MP_OK;
}

/* Frees the reserved room beyond the file's end (truncating to its own size does that). */
static void ck_release(int *fd)
{
    if (*fd < 0)
        return;
    struct stat sb;
    if (fstat(*fd, &sb) == 0)
        (void)ftruncate(*fd, sb.st_size);
    close(*fd);
    *fd = -1;
}

/* ---- attributes and datasets ---- */

static herr_t ck_attr_i64(hid_t loc, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    herr_t rc = sp < 0 ? -1 : 0;
    if (rc == 0 && (a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        rc = -1;
    if (rc == 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) < 0)
        rc = -1;
    rc |= ck_close(&a);
    rc |= ck_close(&sp);
    return rc;
}

static herr_t ck_attr_str(hid_t loc, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
    herr_t rc = t < 0 || H5Tset_size(t, strlen(v) + 1) < 0 ? -1 : 0;
    if (rc == 0 && (sp = H5Screate(H5S_SCALAR)) < 0)
        rc = -1;
    if (rc == 0 && (a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        rc = -1;
    if (rc == 0 && H5Awrite(a, t, v) < 0)
        rc = -1;
    rc |= ck_close(&a);
    rc |= ck_close(&sp);
    rc |= ck_close(&t);
    return rc;
}

/* An attribute that holds exactly one element of the given type class, of at most `size`
 * bytes (0: any size); its type in *type (the caller closes it) when type is not NULL. */
static hid_t ck_attr_open(hid_t loc, const char *name, H5T_class_t cls, size_t size, hid_t *type)
{
    hid_t a = H5I_INVALID_HID, sp = H5I_INVALID_HID, t = H5I_INVALID_HID;
    bool ok = false;
    if (H5Aexists(loc, name) > 0 && (a = H5Aopen(loc, name, H5P_DEFAULT)) >= 0 &&
        (sp = H5Aget_space(a)) >= 0 && (t = H5Aget_type(a)) >= 0) {
        H5S_class_t sc = H5Sget_simple_extent_type(sp);
        size_t ts = H5Tget_size(t);
        ok = (sc == H5S_SCALAR || sc == H5S_SIMPLE) && H5Sget_simple_extent_npoints(sp) == 1 &&
             H5Tget_class(t) == cls && ts > 0 && (size == 0 || ts <= size);
        if (ok && cls == H5T_STRING)
            ok = H5Tis_variable_str(t) == 0;
    }
    ck_close(&sp);
    if (ok && type)
        *type = t;
    else
        ck_close(&t);
    if (!ok)
        ck_close(&a);
    return a;
}

static mp_status ck_read_i64(hid_t loc, const char *file, const char *name, int64_t *v)
{
    hid_t a = ck_attr_open(loc, name, H5T_INTEGER, sizeof(int64_t), NULL);
    herr_t rc = a < 0 ? -1 : H5Aread(a, H5T_NATIVE_INT64, v);
    rc |= ck_close(&a);
    if (rc < 0)
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: attribute %s is missing or not "
                        "one integer", file, name);
    return MP_OK;
}

/* A fixed-length string attribute of at most len bytes (its terminating NUL included). */
static mp_status ck_read_str(hid_t loc, const char *file, const char *name, char *buf,
                             size_t len)
{
    hid_t t = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    hid_t a = ck_attr_open(loc, name, H5T_STRING, len, &t);
    herr_t rc = a < 0 ? -1 : 0;
    size_t n = rc == 0 ? H5Tget_size(t) : 0;
    if (rc == 0 && ((mt = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(mt, n) < 0 ||
                    H5Aread(a, mt, buf) < 0))
        rc = -1;
    if (rc == 0)
        buf[n - 1] = '\0';
    rc |= ck_close(&mt);
    rc |= ck_close(&t);
    rc |= ck_close(&a);
    if (rc < 0)
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: attribute %s is missing or not "
                        "a string of at most %zu bytes", file, name, len - 1);
    return MP_OK;
}

/* A chunked, Fletcher32-checked dataset of rank nd (1 to 3). */
static hid_t ck_create(hid_t loc, const char *name, hid_t type, int nd, const hsize_t *dims,
                       size_t elem)
{
    hsize_t chunk[3];
    int64_t inner = (int64_t)elem;
    for (int i = 1; i < nd; i++) {
        chunk[i] = dims[i] > 0 ? dims[i] : 1;
        inner *= (int64_t)chunk[i];
    }
    int64_t rows = CK_CHUNK_BYTES / (inner > 0 ? inner : 1);
    rows = rows < 1 ? 1 : rows;
    /* Equal chunks: an edge chunk is stored whole, so a ragged split would waste space. */
    int64_t n0 = dims[0] > 0 ? (int64_t)dims[0] : 1;
    int64_t nchunks = (n0 + rows - 1) / rows;
    chunk[0] = (hsize_t)((n0 + nchunks - 1) / nchunks);
    hid_t ds = H5I_INVALID_HID;
    hid_t sp = H5Screate_simple(nd, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (sp >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, nd, chunk) >= 0 &&
        H5Pset_fletcher32(dcpl) >= 0)
        ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if ((ck_close(&dcpl) | ck_close(&sp)) < 0)
        ck_close(&ds);
    return ds;
}

static herr_t ck_write_text(hid_t loc, const char *name, const char *text)
{
    hsize_t n = strlen(text);
    hid_t ds = ck_create(loc, name, H5T_STD_U8LE, 1, &n, 1);
    if (ds < 0)
        return -1;
    herr_t rc = n ? H5Dwrite(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) : 0;
    rc |= ck_close(&ds);
    return rc;
}

/* A dataset's shape, checked: rank nd exactly (asked before the extent is read into dims[nd]),
 * elements of class cls. */
static mp_status ck_check_shape(hid_t ds, const char *file, const char *name, int nd,
                                hsize_t *dims, H5T_class_t cls)
{
    hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
    int got = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    bool ok = got == nd && H5Sget_simple_extent_dims(sp, dims, NULL) == nd;
    H5T_class_t tc = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t ts = t >= 0 ? H5Tget_size(t) : 0;
    ck_close(&t);
    ck_close(&sp);
    if (!ok)
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: %s has rank %d, expected %d",
                        file, name, got, nd);
    if (tc != cls || (cls == H5T_INTEGER && ts != 1) || (cls == H5T_FLOAT && ts != 4))
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: %s is not %s", file, name,
                        cls == H5T_FLOAT ? "float32" : "uint8");
    return MP_OK;
}

/* An int64 dataset of rank nd: shape checked as ck_check_shape does. */
static mp_status ck_check_i64(hid_t ds, const char *file, const char *name, int nd,
                              hsize_t *dims)
{
    hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
    int got = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    bool ok = got == nd && H5Sget_simple_extent_dims(sp, dims, NULL) == nd;
    bool typed = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 8;
    ck_close(&t);
    ck_close(&sp);
    if (!ok)
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: %s has rank %d, expected %d",
                        file, name, got, nd);
    if (!typed)
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: %s is not int64", file, name);
    return MP_OK;
}

/* An int64 dataset [n] (or [n/3, 3] with rows3); an empty one is stored contiguous, since a
 * chunk cannot be larger than a fixed extent of 0. */
static herr_t ck_write_i64s(hid_t loc, const char *name, const int64_t *v, int64_t n,
                            bool rows3)
{
    hsize_t dims[2] = {(hsize_t)(rows3 ? n / 3 : n), 3};
    int nd = rows3 ? 2 : 1;
    hid_t ds = H5I_INVALID_HID;
    if (n > 0) {
        ds = ck_create(loc, name, H5T_STD_I64LE, nd, dims, sizeof(int64_t));
    } else {
        hid_t sp = H5Screate_simple(nd, dims, NULL);
        if (sp >= 0)
            ds = H5Dcreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                            H5P_DEFAULT);
        ck_close(&sp);
    }
    if (ds < 0)
        return -1;
    herr_t rc = n > 0 ? H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) : 0;
    rc |= ck_close(&ds);
    return rc;
}

/* Reads the int64 dataset `name` of exactly `want` elements (rows3: [want/3, 3]) into *out. */
static mp_status ck_read_i64s(hid_t loc, const char *file, const char *name, int64_t want,
                              bool rows3, int64_t **out)
{
    mp_status st = MP_OK;
    hid_t ds = H5I_INVALID_HID;
    hsize_t dims[2] = {0, 0};
    int64_t *v = NULL;
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0 || (ds = H5Dopen2(loc, name, H5P_DEFAULT)) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: no dataset /plan/%s", file, name);
    MP_TRY(ck_check_i64(ds, file, name, rows3 ? 2 : 1, dims));
    if ((int64_t)dims[0] * (rows3 ? 3 : 1) != want || (rows3 && dims[1] != 3))
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: /plan/%s has %llu entries, the plan "
                "needs %lld", file, name, (unsigned long long)dims[0], (long long)want);
    if (!(v = mp_malloc((size_t)want * sizeof *v)))
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate /plan/%s", file, name);
    if (want > 0 && H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: /plan/%s fails its checksum", file,
                name);
    *out = v;
    v = NULL;
done:
    ck_close(&ds);
    free(v);
    return st;
}

/* /plan: counts [n_blocks, 3] (kept KV groups, query heads per kept group, FFN neurons), then
 * the kept indices of every block, concatenated in block order: kv, q (per kept group), ffn. */
static herr_t ck_write_plan(hid_t f, const mp_plan *p)
{
    int64_t nkv = 0, nq = 0, nf = 0;
    for (int64_t b = 0; b < p->n_blocks; b++) {
        nkv += p->b[b].n_kv;
        nq += p->b[b].n_kv * p->b[b].q_per_kv;
        nf += p->b[b].n_ffn;
    }
    int64_t *counts = mp_malloc((size_t)(3 * p->n_blocks + 1) * sizeof *counts);
    int64_t *kv = mp_malloc((size_t)(nkv + 1) * sizeof *kv), *q = mp_malloc((size_t)(nq + 1) * sizeof *q);
    int64_t *ff = mp_malloc((size_t)(nf + 1) * sizeof *ff);
    herr_t rc = counts && kv && q && ff ? 0 : -1;
    for (int64_t b = 0, a = 0, c = 0, e = 0; rc == 0 && b < p->n_blocks; b++) {
        const mp_block_plan *bp = &p->b[b];
        counts[3 * b] = bp->n_kv;
        counts[3 * b + 1] = bp->q_per_kv;
        counts[3 * b + 2] = bp->n_ffn;
        memcpy(kv + a, bp->kv, (size_t)bp->n_kv * sizeof *kv);
        memcpy(q + c, bp->q, (size_t)(bp->n_kv * bp->q_per_kv) * sizeof *q);
        memcpy(ff + e, bp->ffn, (size_t)bp->n_ffn * sizeof *ff);
        a += bp->n_kv;
        c += bp->n_kv * bp->q_per_kv;
        e += bp->n_ffn;
    }
    hid_t g = rc == 0 ? H5Gcreate2(f, "plan", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    rc |= g < 0 ? -1 : 0;
    if (rc == 0) {
        rc |= ck_write_i64s(g, "counts", counts, 3 * p->n_blocks, true);
        rc |= ck_write_i64s(g, "kv", kv, nkv, false);
        rc |= ck_write_i64s(g, "q", q, nq, false);
        rc |= ck_write_i64s(g, "ffn", ff, nf, false);
    }
    rc |= ck_close(&g);
    free(counts);
    free(kv);
    free(q);
    free(ff);
    return rc;
}

static mp_status ck_read_plan(hid_t f, const char *file, int64_t n_blocks, mp_plan *p)
{
    mp_status st = MP_OK;
    int64_t *counts = NULL, *kv = NULL, *q = NULL, *ff = NULL, nkv = 0, nq = 0, nf = 0;
    hid_t g = H5I_INVALID_HID;
    memset(p, 0, sizeof *p);
    if (H5Lexists(f, "plan", H5P_DEFAULT) <= 0 || (g = H5Gopen2(f, "plan", H5P_DEFAULT)) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: no /plan", file);
    MP_TRY(ck_read_i64s(g, file, "counts", 3 * n_blocks, true, &counts));
    for (int64_t b = 0; b < n_blocks; b++) {
        int64_t a = counts[3 * b], c = counts[3 * b + 1], e = counts[3 * b + 2];
        /* Bounded like any width (mp_model.h limits), so the sums below cannot overflow. */
        if (a < 0 || c < 0 || e < 0 || a > MP_CFG_MAX_HEADS || c > MP_CFG_MAX_HEADS ||
            e > MP_CFG_MAX_WIDTH)
            MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: /plan/counts of block %lld out of "
                    "range", file, (long long)b);
        nkv += a;
        nq += a * c;
        nf += e;
    }
    MP_TRY(ck_read_i64s(g, file, "kv", nkv, false, &kv));
    MP_TRY(ck_read_i64s(g, file, "q", nq, false, &q));
    MP_TRY(ck_read_i64s(g, file, "ffn", nf, false, &ff));
    if (!(p->b = mp_calloc((size_t)n_blocks, sizeof *p->b)))
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate the plan", file);
    p->n_blocks = n_blocks;
    for (int64_t b = 0, a = 0, c = 0, e = 0; b < n_blocks; b++) {
        int64_t k = counts[3 * b], qp = counts[3 * b + 1], n = counts[3 * b + 2];
        MP_TRY(mp_plan_set_block(p, b, k, kv + a, qp, q + c, n, ff + e));
        a += k;
        c += k * qp;
        e += n;
    }
done:
    ck_close(&g);
    free(counts);
    free(kv);
    free(q);
    free(ff);
    if (st != MP_OK)
        mp_plan_free(p);
    return st;
}

static mp_status ck_read_text(hid_t loc, const char *file, const char *name, char **out)
{
    mp_status st = MP_OK;
    char *buf = NULL, what[64];
    hsize_t n = 0;
    hid_t ds = H5I_INVALID_HID;
    snprintf(what, sizeof what, "/%s", name);
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0 || (ds = H5Dopen2(loc, name, H5P_DEFAULT)) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: no dataset %s", file, what);
    MP_TRY(ck_check_shape(ds, file, what, 1, &n, H5T_INTEGER));
    /* The stored bytes (no compression, a 4-byte checksum per chunk) bound the length, so a
     * damaged extent cannot ask for an allocation the file does not back. */
    if (n > H5Dget_storage_size(ds))
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: %s claims %llu bytes but stores %llu",
                file, what, (unsigned long long)n,
                (unsigned long long)H5Dget_storage_size(ds));
    if (!(buf = mp_malloc((size_t)n + 1)))
        MP_FAIL(MP_ERR_NOMEM, "%s: cannot allocate %s", file, what);
    if (n && H5Dread(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: %s fails its checksum", file, what);
    buf[n] = '\0';
    if (strlen(buf) != (size_t)n)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: %s holds a NUL byte", file, what);
    *out = buf;
    buf = NULL;
done:
    if (ck_close(&ds) < 0 && st == MP_OK)
        st = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: cannot close %s", file, what);
    free(buf);
    return st;
}

/* The job id and block attributes every sub-file carries, checked on read. */
static mp_status ck_check_owner(hid_t f, const char *path, const char *job_id, int64_t block)
{
    char id[80];
    int64_t b = -1;
    mp_status st = ck_read_str(f, path, "job_id", id, sizeof id);
    if (st == MP_OK)
        st = ck_read_i64(f, path, "block", &b);
    if (st != MP_OK)
        return st;
    if (strcmp(id, job_id) != 0 || b != block)
        return mp_error(MP_ERR_FORMAT, "%s: belongs to another checkpoint (job %.12s, block "
                        "%lld)", path, id, (long long)b);
    return MP_OK;
}

void mp_ckpt_info_free(mp_ckpt_info *info)
{
    mp_plan_free(&info->plan);
    free(info->job_json);
    free(info->report_json);
    info->job_json = NULL;
    info->report_json = NULL;
}

/* Closes what a writer holds and gives back its reservation; on failure removes the temporary
 * file. The file is closed last, after the objects in it. */
static herr_t ck_close_file(hid_t *f, hid_t *fapl)
{
    herr_t rc = ck_close(f);
    rc |= ck_close(fapl);
    return rc;
}

mp_status mp_ckpt_write_block(const char *ckpt, int64_t block, const char *job_id, int n,
                              const char *const *names, const int64_t (*shapes)[2],
                              const float *const *data)
{
    mp_status st = MP_OK;
    char path[4300], tmp[4300] = "";
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    int resv = -1;
    ck_quiet();
    MP_TRY(ck_mkdir(ckpt));
    MP_TRY(ck_path(path, sizeof path, ckpt, "block", block, ""));
    MP_TRY(ck_path(tmp, sizeof tmp, ckpt, "block", block, ".tmp"));
    int64_t need = CK_META_BYTES + CK_META_PER_OBJECT * n;
    for (int i = 0; i < n; i++) {
        int64_t bytes = shapes[i][0] * shapes[i][1] * (int64_t)sizeof(float);
        need += bytes + bytes / 1024;
    }
    MP_TRY(ck_space_check(tmp, path, need));
    if ((fapl = ck_fapl()) < 0)
        MP_FAIL(MP_ERR_INTERNAL, "%s: cannot set up HDF5 file access", tmp);
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create", tmp);
    MP_TRY(ck_reserve(tmp, path, need, &resv));
    if (ck_attr_str(f, "job_id", job_id) < 0 || ck_attr_i64(f, "block", block) < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot write attributes", tmp);
    for (int i = 0; i < n; i++) {
        hsize_t dims[2] = {(hsize_t)shapes[i][0], (hsize_t)shapes[i][1]};
        ds = ck_create(f, names[i], H5T_IEEE_F32LE, 2, dims, sizeof(float));
        herr_t rc = ds < 0 ? -1
                           : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                      data[i]);
        rc |= ck_close(&ds);
        if (rc < 0)
            MP_FAIL(MP_ERR_IO, "%s: cannot write %s", tmp, names[i]);
    }
    herr_t rc = ck_close_file(&f, &fapl);
    ck_release(&resv);
    if (rc < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot close", tmp);
    MP_TRY(ck_fsync(tmp));
    mp_fault_point("ckpt_block_written");
    MP_TRY(ck_rename(tmp, path));
done:
    ck_close(&ds);
    ck_close_file(&f, &fapl);
    ck_release(&resv);
    if (st != MP_OK && tmp[0])
        unlink(tmp);
    return st;
}

mp_status mp_ckpt_read_block(const char *ckpt, int64_t block, const char *job_id, int n,
                             const char *const *names, const int64_t (*shapes)[2],
                             float *const *data)
{
    mp_status st = MP_OK;
    char path[4300];
    hid_t f = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    ck_quiet();
    MP_TRY(ck_path(path, sizeof path, ckpt, "block", block, ""));
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: missing or damaged checkpoint file", path);
    MP_TRY(ck_check_owner(f, path, job_id, block));
    for (int i = 0; i < n; i++) {
        if (H5Lexists(f, names[i], H5P_DEFAULT) <= 0 ||
            (ds = H5Dopen2(f, names[i], H5P_DEFAULT)) < 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: no dataset %s", path, names[i]);
        hsize_t dims[2] = {0, 0};
        MP_TRY(ck_check_shape(ds, path, names[i], 2, dims, H5T_FLOAT));
        if (dims[0] != (hsize_t)shapes[i][0] || dims[1] != (hsize_t)shapes[i][1])
            MP_FAIL(MP_ERR_FORMAT, "%s: %s has the wrong shape [%llu, %llu], expected [%lld, "
                    "%lld]", path, names[i], (unsigned long long)dims[0],
                    (unsigned long long)dims[1], (long long)shapes[i][0],
                    (long long)shapes[i][1]);
        if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data[i]) < 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: %s fails its checksum", path,
                    names[i]);
        if (ck_close(&ds) < 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: cannot close %s", path, names[i]);
    }
    if (ck_close(&f) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: cannot close", path);
done:
    ck_close(&ds);
    ck_close(&f);
    return st;
}

/* This rank's sequences [s0, s1) of [n_seq, T, d] in fsp, and the matching memory space. */
static herr_t ck_select(hid_t fsp, hid_t *msp, int64_t s0, int64_t s1, int64_t T, int64_t d)
{
    if (s1 > s0) {
        hsize_t start[3] = {(hsize_t)s0, 0, 0}, count[3] = {(hsize_t)(s1 - s0), (hsize_t)T,
                                                             (hsize_t)d};
        if (H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
            return -1;
        *msp = H5Screate_simple(3, count, NULL);
        return *msp < 0 ? -1 : 0;
    }
    /* A rank with no sequences still takes part in the collective transfer. */
    hsize_t one[3] = {1, 1, 1};
    if (H5Sselect_none(fsp) < 0 || (*msp = H5Screate_simple(3, one, NULL)) < 0)
        return -1;
    return H5Sselect_none(*msp) < 0 ? -1 : 0;
}

/* A collective transfer property list (filters, the checksum, need collective transfers in
 * parallel HDF5). */
static hid_t ck_dxpl_collective(void)
{
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (dxpl >= 0 && H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        ck_close(&dxpl);
    return dxpl;
}

/* Agrees on st across ranks: *st becomes the lowest failing rank's status (see
 * mp_comm_agree); false when the agreement itself failed (then *st holds that failure). */
static bool ck_agree(const mp_comm *c, mp_status *st)
{
    mp_status g = MP_OK;
    int who = -1;
    mp_status rc = mp_comm_agree(c, *st, &g, &who);
    *st = rc != MP_OK ? rc : g;
    return rc == MP_OK;
}

mp_status mp_ckpt_write_hidden(const mp_comm *c, const char *ckpt, int64_t block,
                               const char *job_id, int64_t n_seq, int64_t T, int64_t d,
                               int64_t s0, int64_t s1, const float *h)
{
    mp_status st = MP_OK;
    bool root = mp_comm_rank(c) == 0, created = false, agreed = true;
    char path[4300], tmp[4300] = "";
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hid_t fsp = H5I_INVALID_HID, msp = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    int resv = -1;
    ck_quiet();
    st = ck_path(path, sizeof path, ckpt, "hidden", block, "");
    if (st == MP_OK)
        st = ck_path(tmp, sizeof tmp, ckpt, "hidden", block, ".tmp");
    int64_t bytes = n_seq * T * d * (int64_t)sizeof(float);
    int64_t need = bytes + bytes / 1024 + CK_META_BYTES + CK_META_PER_OBJECT;
    /* H5Pset_fapl_mpio duplicates the communicator: every rank calls it, whatever else fails. */
    fapl = ck_fapl_mpio(c);
    dxpl = ck_dxpl_collective();
    if (st == MP_OK && (fapl < 0 || dxpl < 0))
        st = mp_error(MP_ERR_INTERNAL, "%s: cannot set up parallel HDF5 file access", tmp);
    if (st == MP_OK && root)
        st = ck_mkdir(ckpt);
    if (st == MP_OK && root)
        st = ck_space_check(tmp, path, need);
    /* Every collective step below is entered by all ranks or by none. */
    if (!(agreed = ck_agree(c, &st)) || st != MP_OK)
        goto done;
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    created = root;
    if (f < 0)
        st = mp_error(MP_ERR_IO, "%s: cannot create", tmp);
    if (st == MP_OK && root)
        st = ck_reserve(tmp, path, need, &resv);
    if (!(agreed = ck_agree(c, &st)) || st != MP_OK)
        goto done;
    hsize_t dims[3] = {(hsize_t)n_seq, (hsize_t)T, (hsize_t)d};
    if (ck_attr_str(f, "job_id", job_id) < 0 || ck_attr_i64(f, "block", block) < 0 ||
        (ds = ck_create(f, "hidden", H5T_IEEE_F32LE, 3, dims, sizeof(float))) < 0 ||
        (fsp = H5Dget_space(ds)) < 0 || ck_select(fsp, &msp, s0, s1, T, d) < 0)
        st = mp_error(MP_ERR_IO, "%s: cannot create the hidden-state snapshot", tmp);
    if (!(agreed = ck_agree(c, &st)) || st != MP_OK)
        goto done;
    float dummy = 0.0f;
    herr_t rc = H5Dwrite(ds, H5T_NATIVE_FLOAT, msp, fsp, dxpl, s1 > s0 ? h : &dummy);
    mp_fault_point("ckpt_hidden_partial");
    rc |= ck_close(&msp);
    rc |= ck_close(&fsp);
    rc |= ck_close(&ds);
    rc |= ck_close(&f);
    ck_release(&resv);
    if (rc < 0)
        st = mp_error(MP_ERR_IO, "%s: cannot write the hidden-state snapshot", tmp);
    if (!(agreed = ck_agree(c, &st)) || st != MP_OK)
        goto done;
    mp_fault_point("ckpt_hidden_written");
    if (root) {
        st = ck_fsync(tmp);
        if (st == MP_OK && rename(tmp, path) != 0)
            st = mp_error(MP_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        if (st == MP_OK)
            created = false;
        if (st == MP_OK)
            st = ck_fsync_dir_of(path);
    }
    agreed = ck_agree(c, &st);
done:
    /* After a failed agreement the ranks may stand at different steps: closing collectively
     * could hang, so only the local ids are closed. */
    ck_close(&msp);
    ck_close(&fsp);
    ck_close(&dxpl);
    if (agreed) {
        ck_close(&ds);
        ck_close(&f);
    }
    ck_close(&fapl);
    ck_release(&resv);
    if (created)
        unlink(tmp);
    return st;
}

mp_status mp_ckpt_read_hidden(const mp_comm *c, const char *ckpt, int64_t block,
                              const char *job_id, int64_t n_seq, int64_t T, int64_t d,
                              int64_t s0, int64_t s1, float *h)
{
    mp_status st = MP_OK;
    bool agreed = true;
    char path[4300];
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hid_t fsp = H5I_INVALID_HID, msp = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    ck_quiet();
    st = ck_path(path, sizeof path, ckpt, "hidden", block, "");
    /* H5Pset_fapl_mpio duplicates the communicator: every rank calls it, whatever else fails. */
    fapl = ck_fapl_mpio(c);
    dxpl = ck_dxpl_collective();
    if (st == MP_OK && (fapl < 0 || dxpl < 0))
        st = mp_error(MP_ERR_INTERNAL, "%s: cannot set up parallel HDF5 file access", path);
    if (!(agreed = ck_agree(c, &st)) || st != MP_OK)
        goto done;
    f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0)
        st = mp_error(MP_ERR_FORMAT, "%s: missing or damaged checkpoint file", path);
    if (st == MP_OK)
        st = ck_check_owner(f, path, job_id, block);
    if (st == MP_OK && (H5Lexists(f, "hidden", H5P_DEFAULT) <= 0 ||
                        (ds = H5Dopen2(f, "hidden", H5P_DEFAULT)) < 0))
        st = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: no dataset /hidden", path);
    hsize_t dims[3] = {0, 0, 0};
    if (st == MP_OK)
        st = ck_check_shape(ds, path, "/hidden", 3, dims, H5T_FLOAT);
    if (st == MP_OK && (dims[0] != (hsize_t)n_seq || dims[1] != (hsize_t)T ||
                        dims[2] != (hsize_t)d))
        st = mp_error(MP_ERR_FORMAT, "%s: /hidden has the wrong shape", path);
    if (st == MP_OK &&
        ((fsp = H5Dget_space(ds)) < 0 || ck_select(fsp, &msp, s0, s1, T, d) < 0))
        st = mp_error(MP_ERR_INTERNAL, "%s: cannot select this rank's sequences", path);
    /* Every rank must reach the collective read, or none. */
    if (!(agreed = ck_agree(c, &st)) || st != MP_OK)
        goto done;
    float dummy = 0.0f;
    if (H5Dread(ds, H5T_NATIVE_FLOAT, msp, fsp, dxpl, s1 > s0 ? h : &dummy) < 0)
        st = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: /hidden fails its checksum",
                      path);
    herr_t rc = ck_close(&msp);
    rc |= ck_close(&fsp);
    rc |= ck_close(&ds);
    rc |= ck_close(&f);
    if (rc < 0 && st == MP_OK)
        st = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: cannot close", path);
    agreed = ck_agree(c, &st);
done:
    ck_close(&msp);
    ck_close(&fsp);
    ck_close(&dxpl);
    if (agreed) {
        ck_close(&ds);
        ck_close(&f);
    }
    ck_close(&fapl);
    return st;
}

/* Removes files of CKPT.d that the main file no longer references. */
static void ck_prune_dir(const char *ckpt, const mp_ckpt_info *info)
{
    char dir[4200], path[4600];
    snprintf(dir, sizeof dir, "%s.d", ckpt);
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long long b = -1;
        char kind[16] = "";
        int used = 0;
        if (sscanf(e->d_name, "%15[a-z]_%lld.h5%n", kind, &b, &used) < 2)
            continue;
        bool keep = e->d_name[used] == '\0' &&
                    ((strcmp(kind, "block") == 0 && b < info->next_block) ||
                     (strcmp(kind, "hidden") == 0 && b == info->snapshot_block));
        if (!keep) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

mp_status mp_ckpt_write_main(const char *ckpt, const mp_ckpt_info *info)
{
    mp_status st = MP_OK;
    char tmp[4300] = "", target[64], link[64];
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    int resv = -1;
    bool renamed = false;
    ck_quiet();
    MP_TRY(ck_path(tmp, sizeof tmp, ckpt, NULL, 0, ".tmp"));
    int64_t plan_bytes = 0;
    for (int64_t b = 0; b < info->plan.n_blocks; b++)
        plan_bytes += 8 * (3 + info->plan.b[b].n_kv * (1 + info->plan.b[b].q_per_kv) +
                           info->plan.b[b].n_ffn);
    int64_t need = CK_META_BYTES + (int64_t)strlen(info->job_json) +
                   (int64_t)strlen(info->report_json) + 512 * (info->next_block + 1) +
                   2 * plan_bytes + 8192;
    MP_TRY(ck_space_check(tmp, ckpt, need));
    if ((fapl = ck_fapl()) < 0)
        MP_FAIL(MP_ERR_INTERNAL, "%s: cannot set up HDF5 file access", tmp);
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create", tmp);
    MP_TRY(ck_reserve(tmp, ckpt, need, &resv));
    const char *base = strrchr(ckpt, '/');
    base = base ? base + 1 : ckpt;
    herr_t rc = 0;
    rc |= ck_attr_i64(f, "format_version", info->format_version);
    rc |= ck_attr_str(f, "job_id", info->job_id);
    rc |= ck_attr_str(f, "mpiprune_version", info->mpiprune_version);
    rc |= ck_attr_str(f, "written_at", info->written_at);
    rc |= ck_attr_i64(f, "ranks", info->ranks);
    rc |= ck_attr_i64(f, "blas_threads", info->blas_threads);
    rc |= ck_attr_i64(f, "n_blocks", info->n_blocks);
    rc |= ck_attr_i64(f, "phase", info->phase);
    rc |= ck_attr_i64(f, "round", info->round);
    rc |= ck_attr_i64(f, "next_block", info->next_block);
    rc |= ck_attr_i64(f, "snapshot_block", info->snapshot_block);
    rc |= ck_attr_i64(f, "n_seq", info->n_seq);
    rc |= ck_attr_i64(f, "seqlen", info->seqlen);
    rc |= ck_attr_i64(f, "d", info->d);
    rc |= ck_write_text(f, "job", info->job_json);
    rc |= ck_write_text(f, "report", info->report_json);
    if (info->plan.n_blocks != info->n_blocks)
        MP_FAIL(MP_ERR_INTERNAL, "%s: a plan of %lld blocks for %lld", tmp,
                (long long)info->plan.n_blocks, (long long)info->n_blocks);
    rc |= ck_write_plan(f, &info->plan);
    grp = H5Gcreate2(f, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc |= grp < 0 ? -1 : 0;
    /* External links resolve relative to the main file's folder: "NAME.d/block_...". */
    for (int64_t b = 0; grp >= 0 && b < info->next_block; b++) {
        char file[4400];
        snprintf(target, sizeof target, "block_%05lld.h5", (long long)b);
        snprintf(link, sizeof link, "block_%05lld", (long long)b);
        snprintf(file, sizeof file, "%s.d/%s", base, target);
        rc |= H5Lcreate_external(file, "/", grp, link, H5P_DEFAULT, H5P_DEFAULT);
    }
    if (info->snapshot_block >= 0) {
        char file[4400];
        snprintf(file, sizeof file, "%s.d/hidden_%05lld.h5", base,
                 (long long)info->snapshot_block);
        rc |= H5Lcreate_external(file, "/hidden", f, "hidden", H5P_DEFAULT, H5P_DEFAULT);
    }
    rc |= ck_close(&grp);
    rc |= ck_close_file(&f, &fapl);
    ck_release(&resv);
    if (rc < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot write the checkpoint", tmp);
    MP_TRY(ck_fsync(tmp));
    mp_fault_point("ckpt_main_written");
    if (rename(tmp, ckpt) != 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot rename to %s: %s", tmp, ckpt, strerror(errno));
    renamed = true;
    MP_TRY(ck_fsync_dir_of(ckpt));
    mp_fault_point("ckpt_main_renamed");
    ck_prune_dir(ckpt, info);
done:
    ck_close(&grp);
    ck_close_file(&f, &fapl);
    ck_release(&resv);
    if (st != MP_OK && !renamed && tmp[0])
        unlink(tmp);
    return st;
}

mp_status mp_ckpt_read_main(const char *ckpt, mp_ckpt_info *info)
{
    mp_status st = MP_OK;
    struct stat sb;
    hid_t f = H5I_INVALID_HID;
    memset(info, 0, sizeof *info);
    ck_quiet();
    if (stat(ckpt, &sb) != 0)
        return mp_error(MP_ERR_NOT_FOUND, "%s: %s", ckpt, strerror(errno));
    if (!S_ISREG(sb.st_mode)) /* H5Fis_hdf5 would block on a FIFO */
        return mp_error(MP_ERR_FORMAT, "%s: not a regular file", ckpt);
    if (H5Fis_hdf5(ckpt) <= 0)
        return mp_error(MP_ERR_FORMAT, "%s: not a readable HDF5 file (truncated or damaged "
                        "checkpoint)", ckpt);
    f = H5Fopen(ckpt, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mp_error(MP_ERR_FORMAT, "%s: cannot open (truncated or damaged checkpoint)",
                        ckpt);
    if (H5Aexists(f, "format_version") <= 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: no format_version", ckpt);
    MP_TRY(ck_read_i64(f, ckpt, "format_version", &info->format_version));
    if (info->format_version == 1)
        MP_FAIL(MP_ERR_FORMAT, "%s: a format 1 checkpoint (mpiprune 0.1, no plan): this mpiprune "
                "resumes format %d only", ckpt, MP_CKPT_FORMAT_VERSION);
    if (info->format_version != MP_CKPT_FORMAT_VERSION)
        MP_FAIL(MP_ERR_FORMAT, "%s: checkpoint format version %lld, this mpiprune reads %d",
                ckpt, (long long)info->format_version, MP_CKPT_FORMAT_VERSION);
    MP_TRY(ck_read_str(f, ckpt, "job_id", info->job_id, sizeof info->job_id));
    MP_TRY(ck_read_str(f, ckpt, "mpiprune_version", info->mpiprune_version,
                       sizeof info->mpiprune_version));
    MP_TRY(ck_read_str(f, ckpt, "written_at", info->written_at, sizeof info->written_at));
    MP_TRY(ck_read_i64(f, ckpt, "ranks", &info->ranks));
    /* Written since format 2's first files; absent there, which is no damage. */
    info->blas_threads = 0;
    if (H5Aexists(f, "blas_threads") > 0) {
        MP_TRY(ck_read_i64(f, ckpt, "blas_threads", &info->blas_threads));
        if (info->blas_threads < 1)
            MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: blas_threads %lld", ckpt,
                    (long long)info->blas_threads);
    }
    MP_TRY(ck_read_i64(f, ckpt, "n_blocks", &info->n_blocks));
    MP_TRY(ck_read_i64(f, ckpt, "phase", &info->phase));
    MP_TRY(ck_read_i64(f, ckpt, "round", &info->round));
    MP_TRY(ck_read_i64(f, ckpt, "next_block", &info->next_block));
    MP_TRY(ck_read_i64(f, ckpt, "snapshot_block", &info->snapshot_block));
    MP_TRY(ck_read_i64(f, ckpt, "n_seq", &info->n_seq));
    MP_TRY(ck_read_i64(f, ckpt, "seqlen", &info->seqlen));
    MP_TRY(ck_read_i64(f, ckpt, "d", &info->d));
    if (info->next_block < 0 || info->next_block > info->n_blocks ||
        info->snapshot_block < -1 || info->snapshot_block > info->next_block)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: inconsistent progress", ckpt);
    if (info->ranks < 1 || info->n_seq < 0 || info->seqlen < 0 || info->d < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: negative sizes", ckpt);
    if ((info->phase != MP_CKPT_PHASE_PRUNE && info->phase != MP_CKPT_PHASE_SEARCH) ||
        info->round < 0 || info->n_blocks > MP_MAX_LAYERS)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: phase %lld, round %lld or %lld blocks "
                "out of range", ckpt, (long long)info->phase, (long long)info->round,
                (long long)info->n_blocks);
    MP_TRY(ck_read_plan(f, ckpt, info->n_blocks, &info->plan));
    MP_TRY(ck_read_text(f, ckpt, "job", &info->job_json));
    MP_TRY(ck_read_text(f, ckpt, "report", &info->report_json));
    if (ck_close(&f) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: cannot close", ckpt);
done:
    ck_close(&f);
    if (st != MP_OK)
        mp_ckpt_info_free(info);
    return st;
}

mp_status mp_ckpt_remove(const char *ckpt)
{
    char dir[4200], path[4600];
    snprintf(dir, sizeof dir, "%s.d", ckpt);
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
        rmdir(dir);
    }
    if (unlink(ckpt) != 0 && errno != ENOENT)
        return mp_error(MP_ERR_IO, "%s: cannot remove: %s", ckpt, strerror(errno));
    return MP_OK;
}
