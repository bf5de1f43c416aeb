#define _POSIX_C_SOURCE 200809L

#include "mp_alloc.h"
#include "mp_ckpt.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest chunk in bytes: HDF5 caps chunks at 4 GiB, and smaller chunks keep the checksum
 * granular. */
#define CK_CHUNK_BYTES ((int64_t)16 << 20)

/* HDF5 prints its error stack by default; our messages say what failed, once. */
static void ck_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

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

static hid_t ck_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0)
        H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    return fapl;
}

/* Makes a file's data durable before it is renamed into place. */
static mp_status ck_fsync(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return mp_error(MP_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return mp_error(MP_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    return MP_OK;
}

static mp_status ck_rename(const char *from, const char *to)
{
    if (rename(from, to) != 0)
        return mp_error(MP_ERR_IO, "%s: cannot rename to %s: %s", from, to, strerror(errno));
    return MP_OK;
}

static mp_status ck_mkdir(const char *ckpt)
{
    char dir[4200];
    if (snprintf(dir, sizeof dir, "%s.d", ckpt) >= (int)sizeof dir)
        return mp_error(MP_ERR_RANGE, "%s: path too long", ckpt);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return mp_error(MP_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    return MP_OK;
}

static herr_t ck_attr_i64(hid_t loc, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static herr_t ck_attr_str(hid_t loc, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, v);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

static herr_t ck_read_i64(hid_t loc, const char *name, int64_t *v)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    herr_t rc = H5Aread(a, H5T_NATIVE_INT64, v);
    H5Aclose(a);
    return rc;
}

static herr_t ck_read_str(hid_t loc, const char *name, char *buf, size_t len)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t ft = H5Aget_type(a);
    herr_t rc = -1;
    size_t n = ft >= 0 ? H5Tget_size(ft) : 0;
    if (H5Tget_class(ft) == H5T_STRING && n > 0 && n <= len) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n);
        rc = H5Aread(a, mt, buf);
        buf[n - 1] = '\0';
        H5Tclose(mt);
    }
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

/* A chunked, Fletcher32-checked dataset of rank nd. */
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
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, nd, chunk);
    H5Pset_fletcher32(dcpl);
    hid_t ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
}

static herr_t ck_write_text(hid_t loc, const char *name, const char *text)
{
    hsize_t n = strlen(text);
    hid_t ds = ck_create(loc, name, H5T_STD_U8LE, 1, &n, 1);
    if (ds < 0)
        return -1;
    herr_t rc = n ? H5Dwrite(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) : 0;
    H5Dclose(ds);
    return rc;
}

static mp_status ck_read_text(hid_t loc, const char *file, const char *name, char **out)
{
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0)
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: no dataset /%s", file, name);
    hid_t sp = H5Dget_space(ds);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    H5Sclose(sp);
    char *buf = mp_malloc((size_t)n + 1);
    mp_status st = MP_OK;
    if (!buf)
        st = mp_error(MP_ERR_NOMEM, "%s: cannot allocate /%s", file, name);
    else if (n && H5Dread(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        st = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: /%s fails its checksum", file,
                      name);
    H5Dclose(ds);
    if (st != MP_OK) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    *out = buf;
    return MP_OK;
}

/* The job id and block attributes every sub-file carries, checked on read. */
static mp_status ck_check_owner(hid_t f, const char *path, const char *job_id, int64_t block)
{
    char id[80];
    int64_t b = -1;
    if (ck_read_str(f, "job_id", id, sizeof id) < 0 || ck_read_i64(f, "block", &b) < 0)
        return mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint file: missing attributes", path);
    if (strcmp(id, job_id) != 0 || b != block)
        return mp_error(MP_ERR_FORMAT, "%s: belongs to another checkpoint (job %.12s, block "
                        "%lld)", path, id, (long long)b);
    return MP_OK;
}

void mp_ckpt_info_free(mp_ckpt_info *info)
{
    free(info->job_json);
    free(info->report_json);
    info->job_json = NULL;
    info->report_json = NULL;
}

mp_status mp_ckpt_write_block(const char *ckpt, int64_t block, const char *job_id, int n,
                              const char *const *names, const int64_t (*shapes)[2],
                              const float *const *data)
{
    mp_status st = MP_OK;
    char path[4300], tmp[4300];
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID;
    ck_quiet();
    MP_TRY(ck_mkdir(ckpt));
    MP_TRY(ck_path(path, sizeof path, ckpt, "block", block, ""));
    MP_TRY(ck_path(tmp, sizeof tmp, ckpt, "block", block, ".tmp"));
    fapl = ck_fapl();
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create", tmp);
    if (ck_attr_str(f, "job_id", job_id) < 0 || ck_attr_i64(f, "block", block) < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot write attributes", tmp);
    for (int i = 0; i < n; i++) {
        hsize_t dims[2] = {(hsize_t)shapes[i][0], (hsize_t)shapes[i][1]};
        hid_t ds = ck_create(f, names[i], H5T_IEEE_F32LE, 2, dims, sizeof(float));
        herr_t rc = ds < 0 ? -1
                           : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                      data[i]);
        if (ds >= 0)
            H5Dclose(ds);
        if (rc < 0)
            MP_FAIL(MP_ERR_IO, "%s: cannot write %s (disk full?)", tmp, names[i]);
    }
    herr_t rc = H5Fclose(f);
    f = H5I_INVALID_HID;
    if (rc < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot close (disk full?)", tmp);
    MP_TRY(ck_fsync(tmp));
    mp_fault_point("ckpt_block_written");
    MP_TRY(ck_rename(tmp, path));
done:
    if (f >= 0)
        H5Fclose(f);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (st != MP_OK)
        unlink(tmp);
    return st;
}

mp_status mp_ckpt_read_block(const char *ckpt, int64_t block, const char *job_id, int n,
                             const char *const *names, const int64_t (*shapes)[2],
                             float *const *data)
{
    mp_status st = MP_OK;
    char path[4300];
    hid_t f = H5I_INVALID_HID;
    ck_quiet();
    MP_TRY(ck_path(path, sizeof path, ckpt, "block", block, ""));
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: missing or damaged checkpoint file", path);
    MP_TRY(ck_check_owner(f, path, job_id, block));
    for (int i = 0; i < n; i++) {
        hid_t ds = H5Dopen2(f, names[i], H5P_DEFAULT);
        if (ds < 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: no dataset %s", path, names[i]);
        hid_t sp = H5Dget_space(ds);
        hsize_t dims[2] = {0, 0};
        int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        herr_t rc = -1;
        if (nd == 2 && dims[0] == (hsize_t)shapes[i][0] && dims[1] == (hsize_t)shapes[i][1])
            rc = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data[i]);
        H5Dclose(ds);
        if (nd != 2 || dims[0] != (hsize_t)shapes[i][0] || dims[1] != (hsize_t)shapes[i][1])
            MP_FAIL(MP_ERR_FORMAT, "%s: %s has the wrong shape", path, names[i]);
        if (rc < 0)
            MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: %s fails its checksum", path,
                    names[i]);
    }
done:
    if (f >= 0)
        H5Fclose(f);
    return st;
}

/* Collective open of a hidden-state file with the MPI-IO driver. */
static hid_t ck_fapl_mpio(const mp_comm *c)
{
    hid_t fapl = ck_fapl();
    if (fapl >= 0)
        H5Pset_fapl_mpio(fapl, *(const MPI_Comm *)mp_comm_native(c), MPI_INFO_NULL);
    return fapl;
}

static void ck_select(hid_t fsp, hid_t *msp, int64_t s0, int64_t s1, int64_t T, int64_t d)
{
    if (s1 > s0) {
        hsize_t start[3] = {(hsize_t)s0, 0, 0}, count[3] = {(hsize_t)(s1 - s0), (hsize_t)T,
                                                             (hsize_t)d};
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
        *msp = H5Screate_simple(3, count, NULL);
    } else {
        /* A rank with no sequences still takes part in the collective transfer. */
        H5Sselect_none(fsp);
        hsize_t one[3] = {1, 1, 1};
        *msp = H5Screate_simple(3, one, NULL);
        H5Sselect_none(*msp);
    }
}

mp_status mp_ckpt_write_hidden(const mp_comm *c, const char *ckpt, int64_t block,
                               const char *job_id, int64_t n_seq, int64_t T, int64_t d,
                               int64_t s0, int64_t s1, const float *h)
{
    mp_status st = MP_OK, g = MP_OK;
    int who = -1;
    char path[4300], tmp[4300];
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hid_t fsp = H5I_INVALID_HID, msp = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    ck_quiet();
    if (mp_comm_rank(c) == 0)
        st = ck_mkdir(ckpt);
    MP_TRY(mp_comm_agree(c, st, &g, &who));
    if ((st = g) != MP_OK)
        goto done;
    MP_TRY(ck_path(path, sizeof path, ckpt, "hidden", block, ""));
    MP_TRY(ck_path(tmp, sizeof tmp, ckpt, "hidden", block, ".tmp"));
    fapl = ck_fapl_mpio(c);
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    herr_t rc = f < 0 ? -1 : 0;
    if (rc == 0)
        rc = ck_attr_str(f, "job_id", job_id) < 0 || ck_attr_i64(f, "block", block) < 0 ? -1 : 0;
    if (rc == 0) {
        hsize_t dims[3] = {(hsize_t)n_seq, (hsize_t)T, (hsize_t)d};
        ds = ck_create(f, "hidden", H5T_IEEE_F32LE, 3, dims, sizeof(float));
        rc = ds < 0 ? -1 : 0;
    }
    if (rc == 0) {
        fsp = H5Dget_space(ds);
        ck_select(fsp, &msp, s0, s1, T, d);
        dxpl = H5Pcreate(H5P_DATASET_XFER);
        /* Filters (the checksum) need collective transfers in parallel HDF5. */
        H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
        float dummy = 0.0f;
        rc = H5Dwrite(ds, H5T_NATIVE_FLOAT, msp, fsp, dxpl, s1 > s0 ? h : &dummy);
        mp_fault_point("ckpt_hidden_partial");
    }
    if (ds >= 0)
        H5Dclose(ds);
    ds = H5I_INVALID_HID;
    if (f >= 0 && H5Fclose(f) < 0)
        rc = -1;
    f = H5I_INVALID_HID;
    if (rc < 0)
        st = mp_error(MP_ERR_IO, "%s: cannot write the hidden-state snapshot (disk full?)", tmp);
    MP_TRY(mp_comm_agree(c, st, &g, &who));
    if ((st = g) != MP_OK)
        goto done;
    mp_fault_point("ckpt_hidden_written");
    if (mp_comm_rank(c) == 0) {
        st = ck_fsync(tmp);
        if (st == MP_OK)
            st = ck_rename(tmp, path);
    }
    MP_TRY(mp_comm_agree(c, st, &g, &who));
    st = g;
done:
    if (dxpl >= 0)
        H5Pclose(dxpl);
    if (msp >= 0)
        H5Sclose(msp);
    if (fsp >= 0)
        H5Sclose(fsp);
    if (ds >= 0)
        H5Dclose(ds);
    if (f >= 0)
        H5Fclose(f);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (st != MP_OK && mp_comm_rank(c) == 0)
        unlink(tmp);
    return st;
}

mp_status mp_ckpt_read_hidden(const mp_comm *c, const char *ckpt, int64_t block,
                              const char *job_id, int64_t n_seq, int64_t T, int64_t d,
                              int64_t s0, int64_t s1, float *h)
{
    mp_status st = MP_OK, g = MP_OK;
    int who = -1;
    char path[4300];
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hid_t fsp = H5I_INVALID_HID, msp = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    ck_quiet();
    MP_TRY(ck_path(path, sizeof path, ckpt, "hidden", block, ""));
    fapl = ck_fapl_mpio(c);
    f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0)
        st = mp_error(MP_ERR_FORMAT, "%s: missing or damaged checkpoint file", path);
    if (st == MP_OK)
        st = ck_check_owner(f, path, job_id, block);
    if (st == MP_OK && (ds = H5Dopen2(f, "hidden", H5P_DEFAULT)) < 0)
        st = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: no dataset /hidden", path);
    if (st == MP_OK) {
        fsp = H5Dget_space(ds);
        hsize_t dims[3] = {0, 0, 0};
        if (H5Sget_simple_extent_dims(fsp, dims, NULL) != 3 || dims[0] != (hsize_t)n_seq ||
            dims[1] != (hsize_t)T || dims[2] != (hsize_t)d)
            st = mp_error(MP_ERR_FORMAT, "%s: /hidden has the wrong shape", path);
    }
    /* Every rank must reach the collective read, or none. */
    MP_TRY(mp_comm_agree(c, st, &g, &who));
    if ((st = g) != MP_OK)
        goto done;
    ck_select(fsp, &msp, s0, s1, T, d);
    dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    float dummy = 0.0f;
    if (H5Dread(ds, H5T_NATIVE_FLOAT, msp, fsp, dxpl, s1 > s0 ? h : &dummy) < 0)
        st = mp_error(MP_ERR_FORMAT, "%s: damaged checkpoint: /hidden fails its checksum",
                      path);
    MP_TRY(mp_comm_agree(c, st, &g, &who));
    st = g;
done:
    if (dxpl >= 0)
        H5Pclose(dxpl);
    if (msp >= 0)
        H5Sclose(msp);
    if (fsp >= 0)
        H5Sclose(fsp);
    if (ds >= 0)
        H5Dclose(ds);
    if (f >= 0)
        H5Fclose(f);
    if (fapl >= 0)
        H5Pclose(fapl);
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
    char tmp[4300], target[64], link[64];
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    ck_quiet();
    MP_TRY(ck_path(tmp, sizeof tmp, ckpt, NULL, 0, ".tmp"));
    fapl = ck_fapl();
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot create", tmp);
    const char *base = strrchr(ckpt, '/');
    base = base ? base + 1 : ckpt;
    herr_t rc = 0;
    rc |= ck_attr_i64(f, "format_version", info->format_version);
    rc |= ck_attr_str(f, "job_id", info->job_id);
    rc |= ck_attr_str(f, "mpiprune_version", info->mpiprune_version);
    rc |= ck_attr_str(f, "written_at", info->written_at);
    rc |= ck_attr_i64(f, "ranks", info->ranks);
    rc |= ck_attr_i64(f, "n_blocks", info->n_blocks);
    rc |= ck_attr_i64(f, "next_block", info->next_block);
    rc |= ck_attr_i64(f, "snapshot_block", info->snapshot_block);
    rc |= ck_attr_i64(f, "n_seq", info->n_seq);
    rc |= ck_attr_i64(f, "seqlen", info->seqlen);
    rc |= ck_attr_i64(f, "d", info->d);
    rc |= ck_write_text(f, "job", info->job_json);
    rc |= ck_write_text(f, "report", info->report_json);
    grp = H5Gcreate2(f, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc |= grp < 0 ? -1 : 0;
    /* External links resolve relative to the main file's folder: "NAME.d/block_...". */
    for (int64_t b = 0; grp >= 0 && b < info->next_block; b++) {
        snprintf(target, sizeof target, "block_%05lld.h5", (long long)b);
        snprintf(link, sizeof link, "block_%05lld", (long long)b);
        char file[4400];
        snprintf(file, sizeof file, "%s.d/%s", base, target);
        rc |= H5Lcreate_external(file, "/", grp, link, H5P_DEFAULT, H5P_DEFAULT);
    }
    if (info->snapshot_block >= 0) {
        char file[4400];
        snprintf(file, sizeof file, "%s.d/hidden_%05lld.h5", base,
                 (long long)info->snapshot_block);
        rc |= H5Lcreate_external(file, "/hidden", f, "hidden", H5P_DEFAULT, H5P_DEFAULT);
    }
    if (grp >= 0)
        H5Gclose(grp);
    grp = H5I_INVALID_HID;
    if (H5Fclose(f) < 0)
        rc = -1;
    f = H5I_INVALID_HID;
    if (rc < 0)
        MP_FAIL(MP_ERR_IO, "%s: cannot write the checkpoint (disk full?)", tmp);
    MP_TRY(ck_fsync(tmp));
    mp_fault_point("ckpt_main_written");
    MP_TRY(ck_rename(tmp, ckpt));
    mp_fault_point("ckpt_main_renamed");
    ck_prune_dir(ckpt, info);
done:
    if (grp >= 0)
        H5Gclose(grp);
    if (f >= 0)
        H5Fclose(f);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (st != MP_OK)
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
    if (ck_read_i64(f, "format_version", &info->format_version) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: no format_version", ckpt);
    if (info->format_version != MP_CKPT_FORMAT_VERSION)
        MP_FAIL(MP_ERR_FORMAT, "%s: checkpoint format version %lld, this mpiprune reads %d",
                ckpt, (long long)info->format_version, MP_CKPT_FORMAT_VERSION);
    if (ck_read_str(f, "job_id", info->job_id, sizeof info->job_id) < 0 ||
        ck_read_str(f, "mpiprune_version", info->mpiprune_version,
                    sizeof info->mpiprune_version) < 0 ||
        ck_read_str(f, "written_at", info->written_at, sizeof info->written_at) < 0 ||
        ck_read_i64(f, "ranks", &info->ranks) < 0 ||
        ck_read_i64(f, "n_blocks", &info->n_blocks) < 0 ||
        ck_read_i64(f, "next_block", &info->next_block) < 0 ||
        ck_read_i64(f, "snapshot_block", &info->snapshot_block) < 0 ||
        ck_read_i64(f, "n_seq", &info->n_seq) < 0 || ck_read_i64(f, "seqlen", &info->seqlen) < 0 ||
        ck_read_i64(f, "d", &info->d) < 0)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: attributes unreadable", ckpt);
    if (info->next_block < 0 || info->next_block > info->n_blocks ||
        info->snapshot_block > info->next_block)
        MP_FAIL(MP_ERR_FORMAT, "%s: damaged checkpoint: inconsistent progress", ckpt);
    MP_TRY(ck_read_text(f, ckpt, "job", &info->job_json));
    MP_TRY(ck_read_text(f, ckpt, "report", &info->report_json));
done:
    if (f >= 0)
        H5Fclose(f);
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
