#include "mp_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_ckpt.h"
#include "mp_convert.h"
#include "mp_eval.h"
#include "mp_opts.h"
#include "mp_prune_job.h"
#include "mp_prune_state_internal.h"
#include "mp_scores.h"
#include "mp_structured.h"


#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const top_usage =
    "Usage: mpiprune <command> [options]\n"
    "       mpirun -n P mpiprune <command> [options]\n"
    "\n"
    "One-shot post-training pruning of transformer language models over MPI.\n"
    "\n"
    "Commands:\n"
    "  prune     one-shot pruning (SparseGPT, Wanda, magnitude; unstructured or N:M; structured:\n"
    "            heads, KV groups and FFN neurons removed by a global search)\n"
    "  eval      perplexity of a causal LM (Hugging Face directory or GGUF) on a token file\n"
    "  scores    gradient importance (Fisher, NViT, Taylor) of every head, KV group and FFN\n"
    "            neuron on calibration windows, as JSON\n"
    "  convert   a model from one format into another (Hugging Face directory, GGUF → GGUF)\n"
    "  status    what a prune checkpoint holds\n"
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

/* After mp_comm_agree, the ranks that did not fail hold a remote error (mp_error_remote). */
static int report_agreed(const mp_comm *comm, mp_status st)
{
    (void)comm;
    if (!mp_error_is_remote())
        fprintf(stderr, "mpiprune: error: %s\n", mp_error_message());
    return mp_status_exit_code(st);
}

static int cmd_eval(int argc, char **argv, const mp_comm *comm)
{
    mp_eval_opts o = {0};
    bool json = false, quiet = false, help = false;
    const mp_opt opts[] = {
        {"model", MP_OPT_STR, &o.model, NULL, "DIR|FILE.gguf", "Hugging Face model directory or "
         "GGUF file", true, 0, 0, NULL},
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
            mp_opts_usage(stdout, "eval", "--model DIR|FILE.gguf --data FILE [options]",
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
    st = mp_eval_run(&o, comm, &r);
    if (st != MP_OK)
        return report_agreed(comm, st);
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

static int cmd_prune(int argc, char **argv, const mp_comm *comm)
{
    mp_prune_opts o = {0};
    bool quiet = false, help = false;
    const char *nm = NULL;
    const mp_opt opts[] = {
        {"model", MP_OPT_STR, &o.model, NULL, "DIR", "Hugging Face model directory", true, 0, 0,
         NULL},
        {"calib", MP_OPT_STR, &o.calib, NULL, "FILE", "calibration tokens (.bin + .json, .npy)",
         true, 0, 0, NULL},
        {"out", MP_OPT_STR, &o.out, NULL, "DIR", "output model directory (must not exist)", true,
         0, 0, NULL},
        {"method", MP_OPT_CHOICE, &o.method_name, "sparsegpt", NULL, "pruning method "
         "(structured: remove heads, KV groups and FFN neurons by a global search; kwon: Kwon "
         "et al.'s Fisher mask search, mask rearrangement and mask tuning; both make the model "
         "smaller)", false, 0, 0, "sparsegpt|wanda|magnitude|structured|kwon"},
        {"sparsity", MP_OPT_DOUBLE, &o.sp.sparsity, "0.5", "F",
         "unstructured fraction of weights to zero", false, 0.0, 0.999, NULL},
        {"nm", MP_OPT_STR, &nm, NULL, "N:M", "semi-structured: N zeros in every M inputs (e.g. "
         "2:4); replaces --sparsity", false, 0, 0, NULL},
        {"target", MP_OPT_STR, &o.st.target_text, "params=0.8", "params=F|flops=F",
         "structured: fraction of the blocks' linear parameters (or FLOPs per token at --seqlen) "
         "kept", false, 0, 0, NULL},
        {"units", MP_OPT_STR, &o.st.units_text, "kv-groups,heads,ffn", "LIST", "structured: "
         "what may go (kv-groups, heads, ffn; sublayers lets a whole attention or FFN go)",
         false, 0, 0, NULL},
        {"ffn-multiple", MP_OPT_INT, &o.st.chain.ffn_multiple, "32", "N", "structured: FFN "
         "widths kept in multiples of N (32: GGUF quantisation blocks along down_proj's rows, "
         "and whole SIMD/tensor-core tiles)", false, 1, 1 << 20, NULL},
        {"min-keep", MP_OPT_STR, &o.st.min_keep_text, NULL, "kv=N,heads=N,ffn=N",
         "structured: floors per block (default kv=1,heads=1,ffn=--ffn-multiple)", false, 0, 0,
         NULL},
        {"score", MP_OPT_CHOICE, &o.st.score_name, "obs", NULL, "structured: importance (obs: "
         "structured OBS error with Schur downdates; flap; wanda-sp; magnitude; from a float64 "
         "backward pass each round: fisher, Kwon et al.'s Fisher of mask variables; nvit, "
         "NViT's (sum w*dL/dw)^2 per window; taylor, LLM-Pruner's |sum w*dL/dw| over the unit; "
         "taylor-element, its element-wise sum |w*dL/dw| over the unit's weights)", false, 0, 0,
         "obs|flap|wanda-sp|magnitude|fisher|nvit|taylor|taylor-element"},
        {"normalize", MP_OPT_CHOICE, &o.st.normalize_name, "auto", NULL, "structured: how "
         "scores of different layers are made comparable (auto: residual for the Hessian "
         "scorers, none for fisher, nvit and taylor, zscore for taylor-element; relative: over the layer's output "
         "energy; residual: over the residual stream's energy at the layer; zscore: per-layer "
         "standardisation; probe: a loss-calibrated scale per layer, measured in the first "
         "round)", false, 0, 0, "auto|none|relative|residual|zscore|probe"},
        {"probe-fraction", MP_OPT_DOUBLE, &o.st.probe_fraction, "0.25", "F", "structured, "
         "--normalize probe: share of each layer's cost its probe removes", false, 0.0, 1.0,
         NULL},
        {"allocation", MP_OPT_CHOICE, &o.st.allocation_name, "global", NULL, "structured: "
         "global ranking of every unit, or the same share of every layer", false, 0, 0,
         "global|uniform"},
        {"max-remove", MP_OPT_DOUBLE, &o.st.max_remove, "1", "F", "structured: the most of "
         "one layer's parameters (FLOPs) the search may remove (1: no bound beyond the floors)",
         false, 0.0, 1.0, NULL},
        {"compensation", MP_OPT_CHOICE, &o.st.compensation_name, "auto", NULL, "structured: "
         "what compensates the removals (auto: ls for structured, scale for kwon; ls: "
         "least-squares refit of o_proj/down_proj on the calibration inputs; scale: Kwon et al.'s "
         "mask tuning, one least-squares scale per kept head and neuron towards the unpruned "
         "model's outputs, --method kwon only; none)", false, 0, 0, "auto|ls|none|scale"},
        {"bias-compensation", MP_OPT_FLAG, &o.st.bias_comp, NULL, NULL, "structured: FLAP's "
         "bias compensation: o_proj/down_proj get the removed inputs' mean contribution as a "
         "bias (with --compensation ls, the refit on the inputs' covariance and its intercept)",
         false, 0, 0, NULL},
        {"rounds", MP_OPT_INT, &o.st.rounds, "3", "R", "structured: search rounds (each a pass "
         "over all blocks; shares 1/2, 3/4, ..., 1 of the budget)", false, 1, 64, NULL},
        {"loss-samples", MP_OPT_INT, &o.st.loss_samples, "4", "N", "structured: calibration "
         "sequences whose loss is traced before each round", false, 0, 1 << 24, NULL},
        {"score-ema", MP_OPT_DOUBLE, &o.st.score_ema, "0", "B", "structured, gradient "
         "scorers: a unit's score in round r is B x its score of round r-1 + (1 - B) x the new "
         "one (NViT's EMA across pruning steps; 0: each round rescored from scratch)", false, 0.0,
         0.99, NULL},
        {"then", MP_OPT_CHOICE, &o.st.then_name, NULL, NULL, "structured: prune the remaining "
         "weights in the same run (with --sparsity or --nm)", false, 0, 0, "sparsegpt"},
        {"seqlen", MP_OPT_INT, &o.seqlen, "2048", "N", "tokens per calibration sequence", false,
         2, 1 << 20, NULL},
        {"nsamples", MP_OPT_INT, &o.nsamples, "128", "N", "calibration sequences (the first N "
         "windows of --calib)", false, 1, 1 << 24, NULL},
        {"blocksize", MP_OPT_INT, &o.blocksize, "128", "B", "SparseGPT lazy-update block of "
         "columns", false, 1, 1 << 20, NULL},
        {"damp", MP_OPT_DOUBLE, &o.damp, "0.01", "F", "SparseGPT damping (and the "
         "structured OBS and refit's), fraction of mean(diag H)", false, 0.0, 1e6, NULL},
        {"blocks", MP_OPT_STR, &o.blocks, NULL, "LIST", "prune only these blocks, e.g. 0-3,7 "
         "(default: all; structured: for --then only)", false, 0, 0, NULL},
        {"layers", MP_OPT_STR, &o.layers, NULL, "LIST", "prune only these layer names, e.g. "
         "q_proj,down_proj (default: all)", false, 0, 0, NULL},
        {"batch", MP_OPT_INT, &o.batch, "16", "N", "sequences per matrix product", false, 1, 4096,
         NULL},
        {"compute", MP_OPT_CHOICE, &o.compute_name, "f32", NULL, "the calibration forwards' "
         "and Hessians' matrix products: f32, or bf16 inputs with float32 accumulation "
         "(oneDNN where the CPU has bf16 kernels, else emulated; solves, norms and attention "
         "stay float32/float64)", false, 0, 0, "f32|bf16"},
        {"scalapack-min-dim", MP_OPT_INT, &o.scalapack_min_dim, "0", "N",
         "SparseGPT layers with this many inputs or more are factored with ScaLAPACK over all "
         "ranks (0: from memory, when a serial factorisation would need half a rank's memory)",
         false, 0, 1e9, NULL},
        {"max-memory", MP_OPT_DOUBLE, &o.max_memory_gib, "0", "GIB", "memory per rank the plan "
         "may use (0: available memory / ranks)", false, 0, 1e9, NULL},
        {"checkpoint", MP_OPT_STR, &o.checkpoint, NULL, "FILE", "HDF5 checkpoint: written "
         "after every block, resumed from when it exists", false, 0, 0, NULL},
        {"restart", MP_OPT_FLAG, &o.restart, NULL, NULL, "ignore an existing --checkpoint and "
         "start over", false, 0, 0, NULL},
        {"snapshot-blocks", MP_OPT_INT, &o.snapshot_blocks, "4", "K", "save the calibration "
         "hidden states every K blocks", false, 1, 1e9, NULL},
        {"snapshot-minutes", MP_OPT_DOUBLE, &o.snapshot_minutes, "30", "M", "... or every M "
         "minutes, whichever comes first", false, 0, 1e9, NULL},
        {"pause-after-block", MP_OPT_INT, &o.pause_ms, "0", "MS", "sleep MS milliseconds after "
         "each block (to test signals and kills)", false, 0, 1e9, NULL},
        {"quiet", MP_OPT_FLAG, &quiet, NULL, NULL, "no progress lines on stderr", false, 0, 0,
         NULL},
    };
    mp_status st = mp_opts_parse("prune", opts, NOPTS(opts), argc, argv, &help, NULL, 0, NULL);
    if (st == MP_OK && help) {
        if (mp_comm_rank(comm) == 0)
            mp_opts_usage(stdout, "prune", "--model DIR --calib FILE --out DIR [options]",
                          "Prunes every linear layer of every block, one block at a time, "
                          "and writes a Hugging Face\nmodel directory with report.json. "
                          "Unstructured zeros save neither disk nor time by\nthemselves; "
                          "2:4 can be run by sparse kernels. --method structured removes\n"
                          "whole KV groups, query heads and FFN neurons by an iterative global "
                          "search under\n--target and writes a smaller model (options marked "
                          "'structured:').",
                          opts, NOPTS(opts));
        return 0;
    }
    if (st == MP_OK && nm) {
        st = mp_prune_parse_nm(nm, &o.sp);
        o.nm_text = nm;
    }
    if (st == MP_OK && !nm)
        st = mp_sparsity_check(&o.sp, 0) == MP_OK
                 ? MP_OK
                 : mp_error(MP_ERR_ARG, "mpiprune prune: --sparsity: %s", mp_error_message());
    if (st == MP_OK)
        st = mp_prune_method_parse(o.method_name, &o.method);
    if (st == MP_OK)
        st = mp_compute_parse(o.compute_name, &o.compute);
    if (st == MP_OK && o.method == MP_METHOD_STRUCTURED)
        st = mp_structured_parse(&o);
    if (st != MP_OK)
        return report(comm, st, 0);
    o.progress = !quiet;
    o.argc = argc;
    o.argv = argv;
    st = mp_prune_run(&o, comm);
    if (st != MP_OK)
        return report_agreed(comm, st);
    return 0;
}

static int cmd_convert(int argc, char **argv, const mp_comm *comm)
{
    mp_convert_opts o = {0};
    bool help = false;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    const mp_opt opts[] = {
        {"dtype", MP_OPT_CHOICE, &o.dtype, "f32", NULL, "element type of the matrices (norms "
         "stay f32; rounded to nearest even)", false, 0, 0, "f32|f16|bf16"},
    };
    mp_status st = mp_opts_parse("convert", opts, NOPTS(opts), argc, argv, &help, pos, 2, &npos);
    if (st == MP_OK && help) {
        if (mp_comm_rank(comm) == 0)
            mp_opts_usage(stdout, "convert", "IN OUT.gguf|OUTDIR [--dtype f32|f16|bf16]",
                          "Converts IN (a Hugging Face model directory or a GGUF file: F32, F16, "
                          "BF16, Q8_0, Q4_0,\nQ4_1), one tensor at a time, into the GGUF file "
                          "OUT.gguf (architecture llama when every\nblock has the same widths, "
                          "deci with per-layer arrays otherwise; a GGUF input's general.*\nand "
                          "tokenizer.* metadata carried over) or into the Hugging Face directory "
                          "OUTDIR\n(model.safetensors, config.json, per_layer_widths and "
                          "modeling_mpiprune.py when the\nblocks differ; LLaMA family). OUT "
                          "appears only when complete and is never overwritten.",
                          opts, NOPTS(opts));
        return 0;
    }
    if (st == MP_OK && npos != 2)
        st = mp_error(MP_ERR_ARG, "mpiprune convert: give IN and OUT (see mpiprune convert "
                      "--help)");
    if (st != MP_OK)
        return report(comm, st, 0);
    o.in = pos[0];
    o.out = pos[1];
    st = mp_convert_run(&o, comm);
    if (st != MP_OK)
        return report_agreed(comm, st);
    return 0;
}

static int cmd_scores(int argc, char **argv, const mp_comm *comm)
{
    mp_scores_opts o = {0};
    bool quiet = false, help = false;
    const mp_opt opts[] = {
        {"model", MP_OPT_STR, &o.model, NULL, "DIR|FILE.gguf", "Hugging Face model directory or "
         "GGUF file", true, 0, 0, NULL},
        {"data", MP_OPT_STR, &o.data, NULL, "FILE", "calibration token file (.bin + .json "
         "sidecar, or .npy)", true, 0, 0, NULL},
        {"seqlen", MP_OPT_INT, &o.seqlen, "2048", "N", "tokens per window", false, 2, 1 << 20,
         NULL},
        {"nsamples", MP_OPT_INT, &o.nsamples, "128", "N", "the first N windows (0: all)", false,
         0, 1e15, NULL},
        {"max-memory", MP_OPT_INT, &o.max_memory, "1024", "MIB", "bound on the saved block "
         "inputs of the windows backpropagated together (float64, all blocks)", false, 1, 1e9,
         NULL},
        {"element-wise", MP_OPT_FLAG, &o.element, NULL, NULL, "also taylor_element, LLM-Pruner's "
         "element-wise sum |w*dL/dw| over a unit's weights (holds every block's weight "
         "gradients in float64; depends on the rank count in float64 rounding)", false, 0, 0,
         NULL},
        {"quiet", MP_OPT_FLAG, &quiet, NULL, NULL, "no progress lines on stderr", false, 0, 0,
         NULL},
    };
    mp_status st = mp_opts_parse("scores", opts, NOPTS(opts), argc, argv, &help, NULL, 0, NULL);
    if (st == MP_OK && help) {
        if (mp_comm_rank(comm) == 0)
            mp_opts_usage(stdout, "scores", "--model DIR|FILE.gguf --data FILE [options]",
                          "Runs a float64 forward and backward pass over the windows and prints "
                          "one JSON object:\nthe mean loss and, per block, each query head's, KV "
                          "group's and FFN neuron's\nfisher (sum over windows of (dL/dm)^2 of its "
                          "mask), nvit (sum of (sum w*dL/dw)^2 over\nits weights) and taylor "
                          "(|sum over windows of sum w*dL/dw|); with --element-wise\nalso "
                          "taylor_element (sum over its weights of |w*dL/dw|). The same for any\n"
                          "number of ranks (taylor_element: to float64 rounding).",
                          opts, NOPTS(opts));
        return 0;
    }
    if (st != MP_OK)
        return report(comm, st, 0);
    o.progress = !quiet;
    st = mp_scores_run(&o, comm);
    return st != MP_OK ? report_agreed(comm, st) : 0;
}

static int cmd_status(int argc, char **argv, const mp_comm *comm)
{
    bool help = false;
    const char *pos[1] = {NULL};
    int npos = 0;
    mp_status st = mp_opts_parse("status", NULL, 0, argc, argv, &help, pos, 1, &npos);
    if (st == MP_OK && help) {
        if (mp_comm_rank(comm) == 0)
            mp_opts_usage(stdout, "status", "CKPT.h5",
                          "Prints what a prune checkpoint holds: the job, its progress, when "
                          "and by how many ranks\nit was written.",
                          NULL, 0);
        return 0;
    }
    if (st == MP_OK && npos != 1)
        st = mp_error(MP_ERR_ARG, "mpiprune status: give the checkpoint file (see mpiprune "
                      "status --help)");
    if (st != MP_OK)
        return report(comm, st, 0);
    mp_ckpt_info info;
    st = mp_ckpt_read_main(pos[0], &info);
    if (st != MP_OK)
        return report(comm, st, 0);
    /* The per-layer records too: a checkpoint that status calls whole must resume. */
    layer_rec *recs = NULL;
    int64_t nrecs = 0;
    st = mp_prune_records_parse(info.report_json, NULL, info.next_block, pos[0], &recs, &nrecs);
    free(recs);
    if (st != MP_OK) {
        mp_ckpt_info_free(&info);
        return report(comm, st, 0);
    }
    if (mp_comm_rank(comm) == 0) {
        printf("checkpoint      %s\n", pos[0]);
        printf("format version  %lld (mpiprune %s)\n", (long long)info.format_version,
               info.mpiprune_version);
        printf("written         %s by %lld rank(s)\n", info.written_at, (long long)info.ranks);
        if (info.blas_threads > 0)
            printf("blas threads    %lld per rank\n", (long long)info.blas_threads);
        if (info.phase == MP_CKPT_PHASE_SEARCH)
            printf("progress        structured search: %lld round(s) done, no block written "
                   "yet (phase %lld, round %lld)\n", (long long)info.round,
                   (long long)info.phase, (long long)info.round);
        else
            printf("progress        %lld of %lld blocks pruned%s (phase %lld, round %lld)\n",
                   (long long)info.next_block, (long long)info.n_blocks,
                   info.next_block == info.n_blocks ? " (complete)" : "",
                   (long long)info.phase, (long long)info.round);
        /* The planned widths: query heads / KV groups / FFN neurons per block. */
        printf("plan            ");
        for (int64_t b = 0; b < info.plan.n_blocks; b++) {
            const mp_block_plan *bp = &info.plan.b[b];
            printf("%s%lld/%lld/%lld", b ? " " : "", (long long)(bp->n_kv * bp->q_per_kv),
                   (long long)bp->n_kv, (long long)bp->n_ffn);
        }
        printf("  (heads/KV groups/FFN per block)\n");
        if (info.snapshot_block >= 0)
            printf("hidden states   inputs of block %lld, [%lld, %lld, %lld]\n",
                   (long long)info.snapshot_block, (long long)info.n_seq,
                   (long long)info.seqlen, (long long)info.d);
        else
            printf("hidden states   none (recomputed from the embeddings on resume)\n");
        printf("job id          %s\n", info.job_id);
        printf("job             %s\n", info.job_json);
    }
    mp_ckpt_info_free(&info);
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
    if (strcmp(cmd, "prune") == 0)
        return cmd_prune(argc - 2, argv + 2, comm);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 2, argv + 2, comm);
    if (strcmp(cmd, "scores") == 0)
        return cmd_scores(argc - 2, argv + 2, comm);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc - 2, argv + 2, comm);
    if (strcmp(cmd, "convert") == 0)
        return cmd_convert(argc - 2, argv + 2, comm);
    if (rank == 0)
        fprintf(stderr, "mpiprune: error: unknown command '%s' (see mpiprune --help)\n", cmd);
    return 2;
}
