#define _POSIX_C_SOURCE 200809L

#include "mp_signals.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t mp_sig_received;

static void on_signal(int sig)
{
    if (!mp_sig_received)
        mp_sig_received = sig;
}

mp_status mp_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* Restart interrupted system calls: a signal must not turn a write into an I/O error. */
    sa.sa_flags = SA_RESTART;
    const int sigs[] = {SIGTERM, SIGUSR1, SIGINT};
    const char *const names[] = {"SIGTERM", "SIGUSR1", "SIGINT"};
    for (int i = 0; i < 3; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return mp_error(MP_ERR_INTERNAL, "cannot install the %s handler: %s", names[i],
                            strerror(errno));
    return MP_OK;
}

int mp_signals_pending(void) { return (int)mp_sig_received; }
