/* mpiprune: initialise MPI, run one command, finalise. */
#include <stdio.h>
#include <stdlib.h>

#include "mp_alloc.h"
#include "mp_blasinfo.h"
#include "mp_cli.h"
#include "mp_comm.h"
#include "mp_json.h"

int main(int argc, char **argv)
{
    mp_comm *comm = NULL;
    mp_alloc_keep_freed();
    mp_json_init(); /* cJSON allocates through mp_alloc, before any thread exists */
    mp_status st = mp_comm_init(&argc, &argv);
    if (st != MP_OK) {
        fprintf(stderr, "mpiprune: error: %s\n", mp_error_message());
        return 1;
    }
    st = mp_comm_dup_world(&comm);
    if (st != MP_OK) {
        fprintf(stderr, "mpiprune: error: %s\n", mp_error_message());
        mp_comm_finalize();
        return mp_status_exit_code(st);
    }
    mp_blas_fit_threads(comm, NULL, 0);
    int code = mp_cli_main(argc, argv, comm);
    /* For the allocation-failure sweep (tests/check_oom_sweep.py): how many N to try. */
    if (getenv("MPIPRUNE_ALLOC_COUNT"))
        fprintf(stderr, "mpiprune: %lld allocations\n", (long long)mp_alloc_count());
    if (mp_comm_broken()) {
        /* Other ranks may wait in a collective this rank left: end them all. */
        fflush(stderr);
        mp_comm_abort(comm, code ? code : 1);
    }
    mp_comm_free(&comm);
    mp_comm_finalize();
    return code;
}
