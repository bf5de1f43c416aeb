/* mp_comm: the one module that includes mpi.h, BLACS and ScaLAPACK.
 *
 * A mp_comm wraps a private duplicate of a communicator with MPI_ERRORS_RETURN, so an MPI
 * failure is a status, not an abort. Functions are collective over the communicator unless
 * marked otherwise. Large buffers are sent in chunks below 2^31 elements.
 */
#ifndef MP_COMM_H
#define MP_COMM_H

#include <stdint.h>

#include "mp_status.h"

typedef struct mp_comm mp_comm;

/* MPI_Init / MPI_Finalize; called by main only. */
MP_NODISCARD mp_status mp_comm_init(int *argc, char ***argv);
void mp_comm_finalize(void);
/* Ends every rank of the job: main only, when ranks can no longer agree. */
void mp_comm_abort(const mp_comm *c, int code);
/* Whether an MPI call of this process has failed: the ranks may be out of step, so main must
 * abort rather than finalise. Not collective. */
int mp_comm_broken(void);

/* Collective over MPI_COMM_WORLD: a private duplicate of it. */
MP_NODISCARD mp_status mp_comm_dup_world(mp_comm **out);
void mp_comm_free(mp_comm **c);

/* Not collective. */
int mp_comm_rank(const mp_comm *c);
int mp_comm_size(const mp_comm *c);
double mp_comm_wtime(void);

MP_NODISCARD mp_status mp_comm_barrier(const mp_comm *c);

/* The underlying MPI_Comm, for a library that takes one (parallel HDF5): points at an MPI_Comm
 * owned by c. Not collective. */
const void *mp_comm_native(const mp_comm *c);

/* Every rank learns whether any rank failed: *global is the status of the lowest failing rank
 * (MP_OK if none) and *who that rank (-1 if none). That rank keeps its message; every other
 * rank records it as remote (mp_error_remote), so the caller prints it where rank == *who. */
MP_NODISCARD mp_status mp_comm_agree(const mp_comm *c, mp_status local, mp_status *global,
                                     int *who);

MP_NODISCARD mp_status mp_comm_bcast(const mp_comm *c, void *buf, int64_t bytes, int root);

/* Root receives counts[r] doubles from each rank r, in rank order, into recv. */
MP_NODISCARD mp_status mp_comm_gatherv_f64(const mp_comm *c, const double *send, int64_t n,
                                           double *recv, const int64_t *counts, int root);

/* Sends / receives n doubles to / from one rank (point to point, not collective). */
MP_NODISCARD mp_status mp_comm_send_f64(const mp_comm *c, const double *buf, int64_t n, int dest,
                                        int tag);
MP_NODISCARD mp_status mp_comm_recv_f64(const mp_comm *c, double *buf, int64_t n, int src,
                                        int tag);

/* Element-wise reductions in place over all ranks. */
MP_NODISCARD mp_status mp_comm_allreduce_max_f64(const mp_comm *c, double *buf, int64_t n);
MP_NODISCARD mp_status mp_comm_allreduce_sum_i64(const mp_comm *c, int64_t *buf, int64_t n);

/* Over the ranks of c on this node (shared memory): the bitwise OR of every rank's bytes[n],
 * in place, and *node_ranks their count. Collective over c. */
MP_NODISCARD mp_status mp_comm_node_bor(const mp_comm *c, unsigned char *bytes, int n,
                                        int *node_ranks);

/* Every rank receives every rank's n values, in rank order, into recv, which must hold the sum
 * of n over all ranks; *total is that sum. Counts are exchanged inside; n may differ between
 * ranks and may be 0. Totals above 2^31 - 1 go rank by rank in chunks. */
MP_NODISCARD mp_status mp_comm_allgatherv_f32(const mp_comm *c, const float *send, int64_t n,
                                              float *recv, int64_t *total);

/* ScaLAPACK: the upper Cholesky factor of the inverse of an SPD matrix, on a BLACS grid of all
 * ranks of c. Collective.
 *   A[n, n]  symmetric, row-major, identical on all ranks (already damped); only its row-major
 *            upper triangle is read.
 *   nb       block size of the block-cyclic distribution (nb >= 1).
 *   U[n, n]  out, row-major, on every rank: the upper triangle holds U with A⁻¹ = UᵀU, the
 *            strict lower triangle is zero (mp_obs_prepare's convention, in double). U may be
 *            the same buffer as A.
 *   info     out, the same on all ranks: 0 on success, > 0 when a factorisation found the
 *            matrix (or its inverse) not positive definite; U is then unspecified.
 * Notes: the grid is near-square (nprow <= npcol, nprow * npcol = size), created from c's
 * communicator and freed before return. pdpotrf('L'), pdpotri('L'), pdpotrf('L') on the
 * column-major view of A, which is A itself (symmetric) with its row-major upper triangle as
 * the column-major lower one. The factor is assembled on every rank with an allgather of each
 * rank's lower-triangle part (n(n+1)/2 doubles in all). A ScaLAPACK info < 0 is
 * MP_ERR_INTERNAL. */
MP_NODISCARD mp_status mp_comm_chol_inv_chol(const mp_comm *c, const double *A, int64_t n,
                                             int nb, double *U, int *info);

#endif
