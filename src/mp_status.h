/* mp_status: one enum of error codes, one string table, one message per thread.
 *
 * A fallible function returns mp_status. The function that detects a problem records a
 * one-line message naming the file or object and what is wrong with mp_error(), which
 * returns the code, so the caller writes `return mp_error(MP_ERR_FORMAT, "%s: ...", path);`.
 * Callers propagate with MP_TRY (which jumps to the function's single `done:` label).
 * Only main() turns a status into an exit code (mp_status_exit_code).
 */
#ifndef MP_STATUS_H
#define MP_STATUS_H

#include <stdarg.h>

typedef enum {
    MP_OK = 0,
    MP_ERR_ARG,         /* bad option or argument: a usage error */
    MP_ERR_IO,          /* a file could not be opened, read or written */
    MP_ERR_NOT_FOUND,   /* a file, tensor or field that must exist does not */
    MP_ERR_FORMAT,      /* a file's content is malformed or inconsistent */
    MP_ERR_UNSUPPORTED, /* well-formed input that mpiprune does not implement */
    MP_ERR_RANGE,       /* a value out of its allowed range (token id, seqlen, size) */
    MP_ERR_NOMEM,       /* allocation failed or a memory plan exceeds the limit */
    MP_ERR_NUMERIC,     /* a numerical failure (NaN, a factorisation that cannot succeed) */
    MP_ERR_MPI,         /* an MPI call failed */
    MP_ERR_INTERRUPTED, /* stopped by a signal at a safe point */
    MP_ERR_INTERNAL,    /* a bug in mpiprune */
    MP_STATUS_COUNT
} mp_status;

#if defined(__GNUC__)
#define MP_NODISCARD __attribute__((warn_unused_result))
#define MP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MP_NODISCARD
#define MP_PRINTF(a, b)
#endif

/* Short name of a code ("format error"). */
const char *mp_status_str(mp_status st);

/* Records a one-line message (newlines are replaced) for the calling thread; returns code. */
mp_status mp_error(mp_status code, const char *fmt, ...) MP_PRINTF(2, 3);
mp_status mp_verror(mp_status code, const char *fmt, va_list ap);

/* Records that the failure is another rank's, which reports it: the message becomes
 * "(reported by rank N)" and mp_error_is_remote() is true until the next mp_error. Returns
 * code. So a job prints one line, on the rank that failed. */
mp_status mp_error_remote(mp_status code, int rank);
int mp_error_is_remote(void);

/* The last message recorded by mp_error on this thread, "" if none. */
const char *mp_error_message(void);
void mp_error_clear(void);

/* Process exit code for a status; documented in the README ("Exit codes"). */
int mp_status_exit_code(mp_status st);

/* Fault injection for tests: when the environment variable MPIPRUNE_FAULT is "NAME" or
 * "NAME:K", the K-th (default first) call of mp_fault_point(NAME) in this process kills the
 * process with SIGKILL, as a node failure would at that moment. Costs one getenv otherwise. */
void mp_fault_point(const char *name);

/* Propagates a failing status to the enclosing function's `st` and jumps to `done`. */
#define MP_TRY(expr)                      \
    do {                                  \
        mp_status mp_try_st_ = (expr);    \
        if (mp_try_st_ != MP_OK) {        \
            st = mp_try_st_;              \
            goto done;                    \
        }                                 \
    } while (0)

/* Sets `st` to mp_error(...) and jumps to `done`. */
#define MP_FAIL(code, ...)                \
    do {                                  \
        st = mp_error((code), __VA_ARGS__); \
        goto done;                        \
    } while (0)

#endif
