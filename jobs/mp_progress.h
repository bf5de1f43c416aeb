/* mp_progress: one progress line per step on stderr (blocks done, tokens/s, ETA), printed by
 * the rank that was told to (rank 0) and only when enabled. Not collective. */
#ifndef MP_PROGRESS_H
#define MP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    bool enabled;
    const char *what;
    int64_t total;
    int64_t first;  /* steps already done when the clock started (a resumed job) */
    double t0;
} mp_progress;

void mp_progress_start(mp_progress *p, bool enabled, const char *what, int64_t total);
/* Restarts the clock with `first` steps already done (rates and ETA count from there). */
void mp_progress_restart(mp_progress *p, int64_t first);
/* `done` of `total` steps finished; `tokens` processed so far by this rank's job share. */
void mp_progress_step(mp_progress *p, int64_t done, double tokens, const char *detail);
/* An informational line, same gating. */
void mp_progress_note(const mp_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
