/* mp_opts: command-line options parsed once into a typed struct, validated, with defaults shown
 * in --help. Parsing is deterministic, so every rank parses the same argv to the same result
 * and only rank 0 needs to print. Not collective. */
#ifndef MP_OPTS_H
#define MP_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mp_status.h"

typedef enum { MP_OPT_STR, MP_OPT_INT, MP_OPT_DOUBLE, MP_OPT_FLAG, MP_OPT_CHOICE } mp_opt_type;

typedef struct {
    const char *name;    /* without the leading "--" */
    mp_opt_type type;
    void *dst;           /* const char **, int64_t *, double *, bool *, const char ** */
    const char *def;     /* default as text (NULL: none); shown in --help */
    const char *metavar; /* e.g. "DIR", "N" */
    const char *help;
    bool required;
    double min, max;     /* inclusive range for INT / DOUBLE */
    const char *choices; /* MP_OPT_CHOICE: "a|b|c" */
} mp_opt;

/* Parses argv[0..argc) (argv[0] is the first option, not the command). Sets *help when --help
 * or -h is given (nothing else is then checked). A bad value, unknown option or missing
 * required option is MP_ERR_ARG with a message naming the option. Positional arguments go to
 * positional[0..max_pos) when max_pos > 0; more are an error. */
MP_NODISCARD mp_status mp_opts_parse(const char *cmd, const mp_opt *opts, size_t n, int argc,
                                     char **argv, bool *help, const char **positional,
                                     int max_pos, int *n_pos);

/* Prints usage: "Usage: mpiprune CMD [options]", the summary, and one line per option with its
 * default. */
void mp_opts_usage(FILE *f, const char *cmd, const char *synopsis, const char *summary,
                   const mp_opt *opts, size_t n);

#endif
