/* mp_comm_internal: the mp_comm struct, shared by the files of the mp_comm module only
 * (mp_comm.c, mp_comm_scalapack.c). Nothing outside the module includes this header, so mpi.h
 * stays inside it. */
#ifndef MP_COMM_INTERNAL_H
#define MP_COMM_INTERNAL_H

#include <mpi.h>

#include "mp_comm.h"

struct mp_comm {
    MPI_Comm comm; /* private duplicate, MPI_ERRORS_RETURN */
    int rank, size;
};

#endif
