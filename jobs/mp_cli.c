#include "mp_cli.h"

#include <stdio.h>
#include <string.h>

#include "mp_eval.h"
#include "mp_opts.h"

#ifndef MPIPRUNE_VERSION
#define MPIPRUNE_VERSION "unknown"
#endif

#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const top_usage =
    "Usage: mpiprune <command> [options]\n"
    "       mpirun -n P mpiprune <command> [options]\n"
    "\n"
    "One-shot post-training pruning of transformer language models over MPI.\n"
    "\n"
    "Commands:\n"
    "  eval      perplexity of a Hugging Face causal LM on a token file\n"
    "  version   print the version\n"
    "\n"
    "Run 'mpiprune <command> --help' for a command's options.\n"
    "Exit codes: 0 success, 1 internal or MPI failure, 2 usage error, 3 bad input,\n"
    "4 out of memory, 5 numerical failure, 75 stopped by a signal after a checkpoint.\n";

/* Prints a failure once: by the rank that recorded it (mp_comm_agree's `who`), or by rank 0
 * when every rank failed the same way. */
static int report(const mp_comm *comm, mp_status st, int who)
{
    if (st == MP_OK)
        return 0;
    if (mp_comm_rank(comm) == (who >= 0 ? who : 0))
        fprintf(stderr, "mpiprune: error: %s\n", mp_error_message());
    return mp_status_exit_code(st);
}

static int cmd_eval(int argc, char **argv, const mp_comm *comm)
{
    mp_eval_opts o = {0};
    bool json = false, quiet = false, help = false;
    const mp_opt opts[] = {
        {"model", MP_OPT_STR, &o.model, NULL, "DIR", "Hugging Face model directory", true, 0, 0,
         NULL},
        {"data", MP_OPT_STR, &o.data, NULL, "FILE", "token file (.bin + .json sidecar, or .npy)",
         true, 0, 0, NULL},
        {"seqlen", MP_OPT_INT, &o.seqlen, "2048", "N", "tokens per window", false, 2, 1 << 20,
         NULL},
        {"batch", MP_OPT_INT, &o.batch, "8", "N", "windows per matrix product", false, 1, 4096,
         NULL},
        {"max-windows", MP_OPT_INT, &o.max_windows, "0", "N", "evaluate only the first N windows "
         "(0: all)", false, 0, 1e15, NULL},
        {"json", MP_OPT_FLAG, &json, NULL, NULL, "print one JSON object on stdout", false, 0, 0,
         NULL},
        {"quiet", MP_OPT_FLAG, &quiet, NULL, NULL, "no progress lines on stderr", false, 0, 0,
         NULL},
    };
    mp_status st = mp_opts_parse("eval", opts, NOPTS(opts), argc, argv, &help, NULL, 0, NULL);
    if (st == MP_OK && help) {
        if (mp_comm_rank(comm) == 0)
            mp_opts_usage(stdout, "eval", "--model DIR --data FILE [options]",
                          "Perplexity of the model on non-overlapping windows of --seqlen tokens "
                          "(token 0 of each\nwindow is context only), the same for any number of "
                          "ranks.",
                          opts, NOPTS(opts));
        return 0;
    }
    if (st != MP_OK)
        return report(comm, st, 0);
    o.progress = !quiet;
    mp_eval_result r = {0};
    int who = -1;
    st = mp_eval_run(&o, comm, &r);
    if (st != MP_OK) {
        /* mp_eval_run agreed on the failure; the failing rank holds the real message. */
        const char *msg = mp_error_message();
        int failed_rank = -1;
        if (sscanf(msg, "rank %d failed", &failed_rank) == 1)
            who = failed_rank;
        else
            who = mp_comm_rank(comm);
        if (mp_comm_rank(comm) == who)
            fprintf(stderr, "mpiprune: error: %s\n", msg);
        return mp_status_exit_code(st);
    }
    if (mp_comm_rank(comm) == 0) {
        if (json)
            printf("{\"perplexity\": %.17g, \"mean_nll\": %.17g, \"tokens\": %lld, "
                   "\"windows\": %lld, \"predicted_tokens\": %lld, \"seqlen\": %lld, "
                   "\"ranks\": %d, \"seconds\": %.3f}\n",
                   r.perplexity, r.mean_nll, (long long)r.tokens, (long long)r.windows,
                   (long long)r.predicted, (long long)o.seqlen, mp_comm_size(comm), r.seconds);
        else
            printf("perplexity %.4f  (%lld windows of %lld tokens, %lld predicted tokens, "
                   "%d rank(s), %.2f s)\n",
                   r.perplexity, (long long)r.windows, (long long)o.seqlen,
                   (long long)r.predicted, mp_comm_size(comm), r.seconds);
        fflush(stdout);
    }
    return 0;
}

int mp_cli_main(int argc, char **argv, const mp_comm *comm)
{
    int rank = mp_comm_rank(comm);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (rank == 0)
            fputs(top_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (rank == 0)
            printf("mpiprune %s\n", MPIPRUNE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 2, argv + 2, comm);
    if (rank == 0)
        fprintf(stderr, "mpiprune: error: unknown command '%s' (see mpiprune --help)\n", cmd);
    return 2;
}
