/* mp_signals: SIGTERM, SIGUSR1 and SIGINT ask the job to stop at its next safe point (a block
 * boundary), where the ranks agree, write a checkpoint and exit with code 75. The handler only
 * sets a flag, so a second signal during a checkpoint write changes nothing. Not collective. */
#ifndef MP_SIGNALS_H
#define MP_SIGNALS_H

#include <stdbool.h>

#include "mp_status.h"

/* Installs the handlers (idempotent); MP_ERR_INTERNAL when sigaction refuses. */
MP_NODISCARD mp_status mp_signals_install(void);
/* The signal number received first, 0 if none. */
int mp_signals_pending(void);

#endif
