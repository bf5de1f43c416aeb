/* mp_cli: `mpiprune <command> [options]`. Collective: every rank runs the same command. */
#ifndef MP_CLI_H
#define MP_CLI_H

#include "mp_comm.h"
#include "mp_status.h"

/* Runs the command in argv; returns the process exit code (README "Exit codes"). Errors are
 * printed as one line on stderr by one rank. */
int mp_cli_main(int argc, char **argv, const mp_comm *comm);

#endif
