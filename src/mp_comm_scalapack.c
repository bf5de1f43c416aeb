/* mp_comm_scalapack: the distributed factorisation (BLACS, ScaLAPACK) and the all-gathers it
 * and the distributed OBS sweep need. Part of the mp_comm module: the only other file that
 * sees struct mp_comm and mpi.h is mp_comm.c. */
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_comm.h"
#include "mp_comm_internal.h"

/* BLACS C interface and ScaLAPACK (Fortran ABI; Debian ships no headers). BLACS ints are int
 * (LP64 build). A Fortran character argument carries a trailing hidden length. */
extern int Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ctxt);
extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc,
                   const int *nprocs);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
                      const int *irsrc, const int *icsrc, const int *ictxt, const int *lld,
                      int *info);
extern void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
                     const int *desca, int *info, size_t uplo_len);
extern void pdpotri_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
                     const int *desca, int *info, size_t uplo_len);


#define MPI_TRY(call, what)                 \
    do {                                    \
        int rc_ = (call);                   \
        if (rc_ != MPI_SUCCESS) {           \
            st = mp_comm_mpi_fail(rc_, what);       \
            goto done;                      \
        }                                   \
    } while (0)

/* Collective: turns a local status into one every rank shares, so that no rank enters a
 * collective that another has left. A rank that did not fail gets the first failing rank's
 * code with a message naming that rank. */
static mp_status agree(const mp_comm *c, mp_status local, const char *what)
{
    mp_status global = MP_OK;
    int who = -1;
    mp_status st = mp_comm_agree(c, local, &global, &who);
    if (st != MP_OK)
        return st;
    if (global == MP_OK || local != MP_OK)
        return local;
    return mp_error(global, "%s failed on rank %d", what, who);
}

/* All-gather of n elements of `type` (esize bytes) per rank, counts exchanged inside. */
static mp_status allgatherv_any(const mp_comm *c, const void *send, int64_t n,
                                MPI_Datatype type, size_t esize, void *recv, int64_t *total)
{
    mp_status st = MP_OK;
    int64_t *counts = mp_malloc((size_t)c->size * sizeof(int64_t));
    int *cnt = mp_malloc((size_t)c->size * sizeof(int));
    int *disp = mp_malloc((size_t)c->size * sizeof(int));
    st = agree(c, counts && cnt && disp ? MP_OK
                                        : mp_error(MP_ERR_NOMEM, "cannot allocate gather counts"),
               "allocating gather counts");
    if (st != MP_OK)
        goto done;
    MPI_TRY(MPI_Allgather(&n, 1, MPI_INT64_T, counts, 1, MPI_INT64_T, c->comm), "MPI_Allgather");
    int64_t sum = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] < 0) {
            st = mp_error(MP_ERR_INTERNAL, "negative gather count on rank %d", r);
            goto done;
        }
        sum += counts[r];
    }
    *total = sum;
    if (sum <= INT_MAX) {
        int64_t off = 0;
        for (int r = 0; r < c->size; r++) {
            cnt[r] = (int)counts[r];
            disp[r] = (int)off;
            off += counts[r];
        }
        MPI_TRY(MPI_Allgatherv(send, (int)n, type, recv, cnt, disp, type, c->comm),
                "MPI_Allgatherv");
        goto done;
    }
    /* Large count: each rank broadcasts its part in chunks. */
    char *out = recv;
    int64_t off = 0;
    for (int r = 0; r < c->size; r++) {
        if (r == c->rank && n > 0)
            memcpy(out + (size_t)off * esize, send, (size_t)n * esize);
        for (int64_t o = 0; o < counts[r]; o += MP_COMM_CHUNK) {
            int64_t k = counts[r] - o < MP_COMM_CHUNK ? counts[r] - o : MP_COMM_CHUNK;
            MPI_TRY(MPI_Bcast(out + (size_t)(off + o) * esize, (int)k, type, r, c->comm),
                    "MPI_Bcast");
        }
        off += counts[r];
    }
done:
    free(counts);
    free(cnt);
    free(disp);
    return st;
}

mp_status mp_comm_allgatherv_f32(const mp_comm *c, const float *send, int64_t n, float *recv,
                                 int64_t *total)
{
    return allgatherv_any(c, send, n, MPI_FLOAT, sizeof(float), recv, total);
}

/* Global index of local index l on process coordinate p of np, block size nb (0-based). */
static inline int64_t global_index(int64_t l, int nb, int p, int np)
{
    return ((l / nb) * np + p) * nb + l % nb;
}

/* Collective: one info for all ranks: the most negative if any rank has info < 0, else the
 * smallest positive, else 0. */
static mp_status agree_info(const mp_comm *c, int local, int *global)
{
    mp_status st = MP_OK;
    int v[2] = {local < 0 ? local : 0, local > 0 ? local : INT_MAX};
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MIN, c->comm), "MPI_Allreduce");
    *global = v[0] < 0 ? v[0] : v[1] < INT_MAX ? v[1] : 0;
done:
    return st;
}

mp_status mp_comm_chol_inv_chol(const mp_comm *c, const double *A, int64_t n, int nb, double *U,
                                int *info)
{
    mp_status st = MP_OK;
    int handle = -1, ctxt = -1;
    double *loc = NULL, *pack = NULL, *all = NULL;
    int64_t *coords = NULL;
    *info = 0;
    if (n <= 0 || n > INT_MAX || nb <= 0)
        return mp_error(MP_ERR_RANGE, "ScaLAPACK dimension %lld / block size %d out of range",
                        (long long)n, nb);

    int nprow = (int)sqrt((double)c->size);
    while (nprow > 1 && c->size % nprow != 0)
        nprow--;
    int npcol = c->size / nprow;
    handle = Csys2blacs_handle(c->comm);
    ctxt = handle;
    Cblacs_gridinit(&ctxt, "Row", nprow, npcol);
    int gr = 0, gc = 0, myrow = -1, mycol = -1;
    Cblacs_gridinfo(ctxt, &gr, &gc, &myrow, &mycol);
    if (gr != nprow || gc != npcol || myrow < 0 || mycol < 0) {
        ctxt = -1; /* not a grid member: nothing to exit */
        st = mp_error(MP_ERR_INTERNAL, "BLACS grid %dx%d not created on rank %d", nprow, npcol,
                      c->rank);
    }
    MP_TRY(agree(c, st, "BLACS grid creation"));

    int N = (int)n, zero = 0, one = 1, desc_info = 0, desc[9];
    int mloc = numroc_(&N, &nb, &myrow, &zero, &nprow);
    int nloc = numroc_(&N, &nb, &mycol, &zero, &npcol);
    int lld = mloc > 1 ? mloc : 1;
    descinit_(desc, &N, &N, &nb, &nb, &zero, &zero, &ctxt, &lld, &desc_info);
    if (desc_info != 0)
        st = mp_error(MP_ERR_INTERNAL, "descinit argument %d invalid", -desc_info);
    int64_t nlocal = (int64_t)mloc * nloc;
    /* Lower-triangle entries held here. */
    int64_t npack = 0;
    for (int64_t lj = 0; lj < nloc; lj++) {
        int64_t gj = global_index(lj, nb, mycol, npcol);
        for (int64_t li = 0; li < mloc; li++)
            npack += global_index(li, nb, myrow, nprow) >= gj;
    }
    int64_t ntri = n * (n + 1) / 2;
    loc = mp_malloc((size_t)(nlocal > 0 ? nlocal : 1) * sizeof(double));
    pack = mp_malloc((size_t)(npack > 0 ? npack : 1) * sizeof(double));
    all = mp_malloc((size_t)ntri * sizeof(double));
    coords = mp_malloc((size_t)c->size * 2 * sizeof(int64_t));
    if (st == MP_OK && (!loc || !pack || !all || !coords))
        st = mp_error(MP_ERR_NOMEM, "cannot allocate ScaLAPACK workspace for n = %lld",
                      (long long)n);
    MP_TRY(agree(c, st, "ScaLAPACK setup"));

    /* Local block-cyclic part of the column-major view of A: element (gi, gj) is A[gj*n + gi]
     * (the row-major array read as column-major). Only the lower triangle is referenced. */
    for (int64_t lj = 0; lj < nloc; lj++) {
        int64_t gj = global_index(lj, nb, mycol, npcol);
        for (int64_t li = 0; li < mloc; li++) {
            int64_t gi = global_index(li, nb, myrow, nprow);
            loc[lj * lld + li] = A[gj * n + gi];
        }
    }
    /* From here on A is not read, so U may alias it. */

    int linfo = 0;
    pdpotrf_("L", &N, loc, &one, &one, desc, &linfo, 1);
    MP_TRY(agree_info(c, linfo, info));
    if (*info == 0) {
        pdpotri_("L", &N, loc, &one, &one, desc, &linfo, 1);
        MP_TRY(agree_info(c, linfo, info));
    }
    if (*info == 0) {
        pdpotrf_("L", &N, loc, &one, &one, desc, &linfo, 1);
        MP_TRY(agree_info(c, linfo, info));
    }
    if (*info < 0)
        MP_FAIL(MP_ERR_INTERNAL, "ScaLAPACK argument %d invalid", -*info);
    if (*info > 0)
        goto done;

    /* Assemble: every rank's lower-triangle entries, in (local column, local row) order. */
    int64_t k = 0;
    for (int64_t lj = 0; lj < nloc; lj++) {
        int64_t gj = global_index(lj, nb, mycol, npcol);
        for (int64_t li = 0; li < mloc; li++)
            if (global_index(li, nb, myrow, nprow) >= gj)
                pack[k++] = loc[lj * lld + li];
    }
    int64_t mine[2] = {myrow, mycol};
    MPI_TRY(MPI_Allgather(mine, 2, MPI_INT64_T, coords, 2, MPI_INT64_T, c->comm),
            "MPI_Allgather");
    int64_t total = 0;
    MP_TRY(allgatherv_any(c, pack, npack, MPI_DOUBLE, sizeof(double), all, &total));
    if (total != ntri)
        MP_FAIL(MP_ERR_INTERNAL, "ScaLAPACK gather holds %lld of %lld entries",
                (long long)total, (long long)ntri);
    memset(U, 0, (size_t)(n * n) * sizeof(double));
    k = 0;
    for (int r = 0; r < c->size; r++) {
        int pr = (int)coords[2 * r], pc = (int)coords[2 * r + 1];
        int rm = numroc_(&N, &nb, &pr, &zero, &nprow);
        int rn = numroc_(&N, &nb, &pc, &zero, &npcol);
        for (int64_t lj = 0; lj < rn; lj++) {
            int64_t gj = global_index(lj, nb, pc, npcol);
            for (int64_t li = 0; li < rm; li++) {
                int64_t gi = global_index(li, nb, pr, nprow);
                /* Column-major lower (gi, gj) is row-major upper: row gj, column gi. */
                if (gi >= gj)
                    U[gj * n + gi] = all[k++];
            }
        }
    }
done:
    if (ctxt >= 0)
        Cblacs_gridexit(ctxt);
    if (handle >= 0)
        Cfree_blacs_system_handle(handle);
    free(loc);
    free(pack);
    free(all);
    free(coords);
    return st;
}
