/* mp_comm_internal: the mp_comm struct, shared by the files of the mp_comm module only
 * (mp_comm.c, mp_comm_scalapack.c). Nothing outside the module includes this header, so mpi.h
 * stays inside it. */
#ifndef MP_COMM_INTERNAL_H
#define MP_COMM_INTERNAL_H

#include <mpi.h>

#include "mp_comm.h"

/* Largest element count per MPI call: MPI counts are int. */
#define MP_COMM_CHUNK ((int64_t)1 << 30)

/* MP_ERR_MPI with the MPI error string of rc: "WHAT failed: ...". */
mp_status mp_comm_mpi_fail(int rc, const char *what);

struct mp_comm {
    MPI_Comm comm; /* private duplicate, MPI_ERRORS_RETURN */
    int rank, size;
};

#endif
