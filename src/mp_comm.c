#include "mp_alloc.h"
#include "mp_comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "mp_comm_internal.h"

/* Set by the first failed MPI call: the ranks may no longer be in step, so main aborts the job
 * instead of finalising (which would wait for ranks stuck in a collective). */
static _Atomic int comm_broken;

int mp_comm_broken(void) { return comm_broken; }

/* Fault injection for tests: MPIPRUNE_FAULT_MPI="R:K" makes the K-th mp_comm_bcast on rank R
 * fail as an MPI error would, without calling MPI (the other ranks wait in the broadcast). */
static int fault_mpi(const mp_comm *c)
{
    static _Thread_local int calls;
    const char *spec = getenv("MPIPRUNE_FAULT_MPI");
    int r = -1, k = 0;
    if (!spec || sscanf(spec, "%3d:%6d", &r, &k) != 2 || r != c->rank)
        return 0;
    return ++calls == k;
}

mp_status mp_comm_mpi_fail(int rc, const char *what)
{
    comm_broken = 1;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        msg[0] = '\0';
    return mp_error(MP_ERR_MPI, "%s failed: %s", what, msg);
}

#define MPI_CHECK(call, what)                  \
    do {                                       \
        int rc_ = (call);                      \
        if (rc_ != MPI_SUCCESS)                \
            return mp_comm_mpi_fail(rc_, what);        \
    } while (0)

mp_status mp_comm_init(int *argc, char ***argv)
{
    int inited = 0;
    MPI_CHECK(MPI_Initialized(&inited), "MPI_Initialized");
    if (!inited)
        MPI_CHECK(MPI_Init(argc, argv), "MPI_Init");
    return MP_OK;
}

void mp_comm_finalize(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin)
        MPI_Finalize();
}

void mp_comm_abort(const mp_comm *c, int code)
{
    MPI_Abort(c ? c->comm : MPI_COMM_WORLD, code);
}

mp_status mp_comm_dup_world(mp_comm **out)
{
    mp_comm *c = mp_calloc(1, sizeof *c);
    if (!c)
        return mp_error(MP_ERR_NOMEM, "cannot allocate a communicator");
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
    if (rc != MPI_SUCCESS) {
        free(c);
        return mp_comm_mpi_fail(rc, "MPI_Comm_dup");
    }
    if ((rc = MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (rc = MPI_Comm_rank(c->comm, &c->rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(c->comm, &c->size)) != MPI_SUCCESS) {
        MPI_Comm_free(&c->comm);
        free(c);
        return mp_comm_mpi_fail(rc, "MPI communicator set-up");
    }
    *out = c;
    return MP_OK;
}

void mp_comm_free(mp_comm **c)
{
    if (!c || !*c)
        return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin)
        MPI_Comm_free(&(*c)->comm);
    free(*c);
    *c = NULL;
}

int mp_comm_rank(const mp_comm *c) { return c->rank; }
int mp_comm_size(const mp_comm *c) { return c->size; }
double mp_comm_wtime(void) { return MPI_Wtime(); }

const void *mp_comm_native(const mp_comm *c) { return &c->comm; }

mp_status mp_comm_barrier(const mp_comm *c)
{
    MPI_CHECK(MPI_Barrier(c->comm), "MPI_Barrier");
    return MP_OK;
}

mp_status mp_comm_agree(const mp_comm *c, mp_status local, mp_status *global, int *who)
{
    int mine = local != MP_OK ? c->rank : c->size, first = c->size;
    MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->comm), "MPI_Allreduce");
    if (first == c->size) {
        *global = MP_OK;
        *who = -1;
        return MP_OK;
    }
    int code = (int)local;
    MPI_CHECK(MPI_Bcast(&code, 1, MPI_INT, first, c->comm), "MPI_Bcast");
    *global = (mp_status)code;
    *who = first;
    /* One rank reports; the others point at it, so the job prints one line. */
    if (c->rank != first)
        mp_error_remote(*global, first);
    return MP_OK;
}

mp_status mp_comm_bcast(const mp_comm *c, void *buf, int64_t bytes, int root)
{
    char *p = buf;
    if (fault_mpi(c)) {
        comm_broken = 1;
        return mp_error(MP_ERR_MPI, "MPI_Bcast failed: fault injected (MPIPRUNE_FAULT_MPI)");
    }
    for (int64_t off = 0; off < bytes; off += MP_COMM_CHUNK) {
        int64_t n = bytes - off < MP_COMM_CHUNK ? bytes - off : MP_COMM_CHUNK;
        MPI_CHECK(MPI_Bcast(p + off, (int)n, MPI_BYTE, root, c->comm), "MPI_Bcast");
    }
    return MP_OK;
}

mp_status mp_comm_gatherv_f64(const mp_comm *c, const double *send, int64_t n, double *recv,
                              const int64_t *counts, int root)
{
    mp_status st = MP_OK;
    int *cnt = NULL, *disp = NULL;
    if (n > INT_MAX)
        return mp_error(MP_ERR_RANGE, "gather of %lld values exceeds MPI int counts",
                        (long long)n);
    if (c->rank == root) {
        cnt = mp_malloc((size_t)c->size * sizeof(int));
        disp = mp_malloc((size_t)c->size * sizeof(int));
        if (!cnt || !disp) {
            st = mp_error(MP_ERR_NOMEM, "cannot allocate gather counts");
            goto done;
        }
        int64_t off = 0;
        for (int r = 0; r < c->size; r++) {
            if (counts[r] > INT_MAX || off > INT_MAX) {
                st = mp_error(MP_ERR_RANGE, "gather exceeds MPI int counts");
                goto done;
            }
            cnt[r] = (int)counts[r];
            disp[r] = (int)off;
            off += counts[r];
        }
    }
    int rc = MPI_Gatherv(send, (int)n, MPI_DOUBLE, recv, cnt, disp, MPI_DOUBLE, root, c->comm);
    if (rc != MPI_SUCCESS)
        st = mp_comm_mpi_fail(rc, "MPI_Gatherv");
done:
    free(cnt);
    free(disp);
    return st;
}

mp_status mp_comm_send_f64(const mp_comm *c, const double *buf, int64_t n, int dest, int tag)
{
    for (int64_t off = 0; off < n; off += MP_COMM_CHUNK) {
        int64_t k = n - off < MP_COMM_CHUNK ? n - off : MP_COMM_CHUNK;
        MPI_CHECK(MPI_Send(buf + off, (int)k, MPI_DOUBLE, dest, tag, c->comm), "MPI_Send");
    }
    return MP_OK;
}

mp_status mp_comm_recv_f64(const mp_comm *c, double *buf, int64_t n, int src, int tag)
{
    for (int64_t off = 0; off < n; off += MP_COMM_CHUNK) {
        int64_t k = n - off < MP_COMM_CHUNK ? n - off : MP_COMM_CHUNK;
        MPI_CHECK(MPI_Recv(buf + off, (int)k, MPI_DOUBLE, src, tag, c->comm, MPI_STATUS_IGNORE),
                  "MPI_Recv");
    }
    return MP_OK;
}

mp_status mp_comm_allreduce_max_f64(const mp_comm *c, double *buf, int64_t n)
{
    for (int64_t off = 0; off < n; off += MP_COMM_CHUNK) {
        int64_t k = n - off < MP_COMM_CHUNK ? n - off : MP_COMM_CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_DOUBLE, MPI_MAX, c->comm),
                  "MPI_Allreduce");
    }
    return MP_OK;
}

mp_status mp_comm_node_bor(const mp_comm *c, unsigned char *bytes, int n, int *node_ranks)
{
    MPI_Comm node = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type");
    int rc = MPI_Comm_size(node, node_ranks);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(MPI_IN_PLACE, bytes, n, MPI_BYTE, MPI_BOR, node);
    MPI_Comm_free(&node);
    if (rc != MPI_SUCCESS)
        return mp_comm_mpi_fail(rc, "MPI_Allreduce (node)");
    return MP_OK;
}

mp_status mp_comm_allreduce_sum_i64(const mp_comm *c, int64_t *buf, int64_t n)
{
    for (int64_t off = 0; off < n; off += MP_COMM_CHUNK) {
        int64_t k = n - off < MP_COMM_CHUNK ? n - off : MP_COMM_CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_INT64_T, MPI_SUM, c->comm),
                  "MPI_Allreduce");
    }
    return MP_OK;
}
