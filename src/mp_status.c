#include "mp_status.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-thread like errno: the message travels with the status up to main without a context
 * argument on every numerical kernel. */
static _Thread_local char mp_errbuf[1024];
static _Thread_local int mp_err_remote;

static const char *const mp_status_names[MP_STATUS_COUNT] = {
    [MP_OK] = "ok",
    [MP_ERR_ARG] = "usage error",
    [MP_ERR_IO] = "I/O error",
    [MP_ERR_NOT_FOUND] = "not found",
    [MP_ERR_FORMAT] = "format error",
    [MP_ERR_UNSUPPORTED] = "unsupported",
    [MP_ERR_RANGE] = "out of range",
    [MP_ERR_NOMEM] = "out of memory",
    [MP_ERR_NUMERIC] = "numerical failure",
    [MP_ERR_MPI] = "MPI error",
    [MP_ERR_INTERRUPTED] = "interrupted",
    [MP_ERR_INTERNAL] = "internal error",
};

const char *mp_status_str(mp_status st)
{
    if ((int)st < 0 || st >= MP_STATUS_COUNT)
        return "unknown status";
    return mp_status_names[st];
}

mp_status mp_verror(mp_status code, const char *fmt, va_list ap)
{
    /* Formatted aside first: an argument may be the current message itself
     * (mp_error(st, "%s: %s", layer, mp_error_message())), and vsnprintf into its own source
     * is undefined behaviour. */
    char tmp[sizeof mp_errbuf];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    memcpy(mp_errbuf, tmp, sizeof tmp);
    mp_err_remote = 0;
    for (char *p = mp_errbuf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return code;
}

mp_status mp_error(mp_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_verror(code, fmt, ap);
    va_end(ap);
    return code;
}

mp_status mp_error_remote(mp_status code, int rank)
{
    mp_error(code, "(reported by rank %d)", rank);
    mp_err_remote = 1;
    return code;
}

int mp_error_is_remote(void) { return mp_err_remote; }

const char *mp_error_message(void) { return mp_errbuf; }

void mp_error_clear(void) { mp_errbuf[0] = '\0'; }

int mp_status_exit_code(mp_status st)
{
    switch (st) {
    case MP_OK: return 0;
    case MP_ERR_ARG: return 2;
    case MP_ERR_IO:
    case MP_ERR_NOT_FOUND:
    case MP_ERR_FORMAT:
    case MP_ERR_UNSUPPORTED:
    case MP_ERR_RANGE: return 3;
    case MP_ERR_NOMEM: return 4;
    case MP_ERR_NUMERIC: return 5;
    case MP_ERR_INTERRUPTED: return 75; /* EX_TEMPFAIL: checkpointed, run again to resume */
    case MP_ERR_MPI:
    case MP_ERR_INTERNAL:
    default: return 1;
    }
}

void mp_fault_point(const char *name)
{
    static _Thread_local int hits;
    const char *spec = getenv("MPIPRUNE_FAULT");
    if (!spec)
        return;
    size_t n = strlen(name);
    if (strncmp(spec, name, n) != 0 || (spec[n] != '\0' && spec[n] != ':'))
        return;
    int k = spec[n] == ':' ? atoi(spec + n + 1) : 1;
    if (++hits == (k > 0 ? k : 1))
        raise(SIGKILL);
}
