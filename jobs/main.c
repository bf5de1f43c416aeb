/* mpiprune: initialise MPI, run one command, finalise. */
#include <stdio.h>

#include "mp_cli.h"
#include "mp_comm.h"

int main(int argc, char **argv)
{
    mp_comm *comm = NULL;
    if (mp_comm_init(&argc, &argv) != MP_OK || mp_comm_dup_world(&comm) != MP_OK) {
        fprintf(stderr, "mpiprune: error: %s\n", mp_error_message());
        return 1;
    }
    int code = mp_cli_main(argc, argv, comm);
    if (mp_comm_broken()) {
        /* Other ranks may wait in a collective this rank left: end them all. */
        fflush(stderr);
        mp_comm_abort(comm, code ? code : 1);
    }
    mp_comm_free(&comm);
    mp_comm_finalize();
    return code;
}
