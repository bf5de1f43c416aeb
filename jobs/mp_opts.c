#include "mp_opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static mp_status set_value(const char *cmd, const mp_opt *o, const char *val)
{
    char *end = NULL;
    switch (o->type) {
    case MP_OPT_STR:
        if (val[0] == '\0')
            return mp_error(MP_ERR_ARG, "mpiprune %s: --%s needs a non-empty value", cmd,
                            o->name);
        *(const char **)o->dst = val;
        return MP_OK;
    case MP_OPT_CHOICE: {
        size_t len = strlen(val);
        const char *p = o->choices;
        while (p && *p) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            if (n == len && strncmp(p, val, n) == 0) {
                *(const char **)o->dst = val;
                return MP_OK;
            }
            p = bar ? bar + 1 : NULL;
        }
        return mp_error(MP_ERR_ARG, "mpiprune %s: --%s: '%s' is not one of %s", cmd, o->name,
                        val, o->choices);
    }
    case MP_OPT_INT: {
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end != '\0')
            return mp_error(MP_ERR_ARG, "mpiprune %s: --%s: '%s' is not an integer", cmd, o->name,
                            val);
        if ((double)v < o->min || (double)v > o->max)
            return mp_error(MP_ERR_ARG, "mpiprune %s: --%s: %lld is outside [%.0f, %.0f]", cmd,
                            o->name, v, o->min, o->max);
        *(int64_t *)o->dst = v;
        return MP_OK;
    }
    case MP_OPT_DOUBLE: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end != '\0' || !isfinite(v))
            return mp_error(MP_ERR_ARG, "mpiprune %s: --%s: '%s' is not a number", cmd, o->name,
                            val);
        if (v < o->min || v > o->max)
            return mp_error(MP_ERR_ARG, "mpiprune %s: --%s: %g is outside [%g, %g]", cmd, o->name,
                            v, o->min, o->max);
        *(double *)o->dst = v;
        return MP_OK;
    }
    case MP_OPT_FLAG:
        *(bool *)o->dst = true;
        return MP_OK;
    }
    return mp_error(MP_ERR_INTERNAL, "mpiprune %s: option type", cmd);
}

mp_status mp_opts_parse(const char *cmd, const mp_opt *opts, size_t n, int argc, char **argv,
                        bool *help, const char **positional, int max_pos, int *n_pos)
{
    mp_status st;
    bool seen[64] = {false};
    if (n > 64)
        return mp_error(MP_ERR_INTERNAL, "too many options");
    *help = false;
    if (n_pos)
        *n_pos = 0;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *help = true;
            return MP_OK;
        }
    for (size_t k = 0; k < n; k++) {
        if (opts[k].type == MP_OPT_FLAG)
            *(bool *)opts[k].dst = false;
        else if (opts[k].def && (st = set_value(cmd, &opts[k], opts[k].def)) != MP_OK)
            return st;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            if (n_pos && *n_pos < max_pos) {
                positional[(*n_pos)++] = a;
                continue;
            }
            return mp_error(MP_ERR_ARG, "mpiprune %s: unexpected argument '%s'", cmd, a);
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        size_t k = 0;
        while (k < n && !(strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0))
            k++;
        if (k == n)
            return mp_error(MP_ERR_ARG, "mpiprune %s: unknown option '--%.*s' (see mpiprune %s "
                            "--help)", cmd, (int)len, name, cmd);
        const char *val = NULL;
        if (opts[k].type == MP_OPT_FLAG) {
            if (eq)
                return mp_error(MP_ERR_ARG, "mpiprune %s: --%s takes no value", cmd,
                                opts[k].name);
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return mp_error(MP_ERR_ARG, "mpiprune %s: --%s needs a value", cmd, opts[k].name);
        }
        if ((st = set_value(cmd, &opts[k], val)) != MP_OK)
            return st;
        seen[k] = true;
    }
    for (size_t k = 0; k < n; k++)
        if (opts[k].required && !seen[k])
            return mp_error(MP_ERR_ARG, "mpiprune %s: --%s is required (see mpiprune %s --help)",
                            cmd, opts[k].name, cmd);
    return MP_OK;
}

void mp_opts_usage(FILE *f, const char *cmd, const char *synopsis, const char *summary,
                   const mp_opt *opts, size_t n)
{
    fprintf(f, "Usage: mpiprune %s %s\n\n%s\n\nOptions:\n", cmd, synopsis, summary);
    for (size_t k = 0; k < n; k++) {
        char left[64];
        const mp_opt *o = &opts[k];
        if (o->type == MP_OPT_FLAG)
            snprintf(left, sizeof left, "--%s", o->name);
        else if (o->type == MP_OPT_CHOICE)
            snprintf(left, sizeof left, "--%s %s", o->name, o->choices);
        else
            snprintf(left, sizeof left, "--%s %s", o->name, o->metavar ? o->metavar : "X");
        fprintf(f, "  %-26s %s", left, o->help);
        if (o->required)
            fprintf(f, " (required)");
        else if (o->def)
            fprintf(f, " (default: %s)", o->def);
        fputc('\n', f);
    }
    fprintf(f, "  %-26s %s\n", "-h, --help", "show this help");
}
