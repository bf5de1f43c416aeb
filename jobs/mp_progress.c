#include "mp_progress.h"

#include <stdarg.h>
#include <stdio.h>

#include "mp_comm.h"

void mp_progress_start(mp_progress *p, bool enabled, const char *what, int64_t total)
{
    p->enabled = enabled;
    p->what = what;
    p->total = total;
    p->first = 0;
    p->t0 = mp_comm_wtime();
}

void mp_progress_restart(mp_progress *p, int64_t first)
{
    p->first = first;
    p->t0 = mp_comm_wtime();
}

void mp_progress_step(mp_progress *p, int64_t done, double tokens, const char *detail)
{
    if (!p->enabled)
        return;
    double el = mp_comm_wtime() - p->t0;
    int64_t ran = done - p->first;
    double eta = ran > 0 ? el * (double)(p->total - done) / (double)ran : 0.0;
    fprintf(stderr, "%s: %s %lld/%lld done, %.0f tok/s, elapsed %.1f s, ETA %.1f s\n", p->what,
            detail ? detail : "step", (long long)done, (long long)p->total,
            el > 0 ? tokens / el : 0.0, el, eta);
    fflush(stderr);
}

void mp_progress_note(const mp_progress *p, const char *fmt, ...)
{
    if (!p->enabled)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", p->what);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}
