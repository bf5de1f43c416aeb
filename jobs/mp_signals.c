#define _POSIX_C_SOURCE 200809L

#include "mp_signals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t mp_sig_received;

static void on_signal(int sig)
{
    if (!mp_sig_received)
        mp_sig_received = sig;
}

void mp_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* Restart interrupted system calls: a signal must not turn a write into an I/O error. */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int mp_signals_pending(void) { return (int)mp_sig_received; }
