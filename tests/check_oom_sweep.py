#!/usr/bin/env python3
"""Allocation-failure sweep (libuv's test-loop-oom, SQLite's habit).

Runs one small mpiprune command (one rank) with MPIPRUNE_FAIL_ALLOC=N, which fails the N-th
allocation of the process and every one after it, for N from 1 to the number of allocations
the command makes (found first: MPIPRUNE_ALLOC_COUNT makes mpiprune print it). Every run must
either succeed or exit 4 with exactly one error line, with no crash (exit >= 128 or a signal),
no sanitizer report and, under ASan, no leak (LeakSanitizer prints a report on stderr and
changes the exit code). For prune, a failed run leaves neither OUT nor OUT.tmp-*. When the
command makes more than MAX_RUNS allocations, the first MAX_RUNS/4 N are run and the rest
strided (the stride and the number of runs are printed). MPIPRUNE_OOM_RUNS in the environment
overrides MAX_RUNS (0: every N), for a full sweep by hand.

usage: check_oom_sweep.py eval|prune|structured|gradient|kwon MPIPRUNE FIXTURE_DIR WORKDIR MAX_RUNS
"""
import glob
import os
import re
import queue
import shutil
import concurrent.futures
import subprocess
import sys
import time

SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|Segmentation|Bus error")


def command(mode, cli, fixture, out):
    if mode == "eval":
        return [cli, "eval", "--model", fixture, "--data",
                os.path.join(fixture, "eval_dev.bin"), "--seqlen", "64", "--max-windows", "2",
                "--quiet"]
    if mode == "gradient":  # the structured search with a gradient scorer: the backward pass
        return [cli, "prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
                "--seqlen", "32", "--nsamples", "2", "--method", "structured", "--target",
                "params=0.7", "--rounds", "1", "--score", "fisher", "--out", out, "--quiet"]
    if mode == "kwon":  # Kwon et al.'s pipeline: mask search, rearrangement, mask tuning
        return [cli, "prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
                "--seqlen", "32", "--nsamples", "2", "--method", "kwon", "--target",
                "params=0.7", "--out", out, "--quiet"]
    if mode == "structured":
        return [cli, "prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
                "--seqlen", "32", "--nsamples", "2", "--method", "structured", "--target",
                "params=0.7", "--rounds", "2", "--loss-samples", "1", "--out", out, "--quiet"]
    # SparseGPT with bf16 products: every allocation of the float32 run and the bf16 copies.
    return [cli, "prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
            "--seqlen", "32", "--nsamples", "2", "--method", "sparsegpt", "--sparsity", "0.5",
            "--compute", "bf16", "--out", out, "--quiet"]


def run(mode, cli, fixture, work, n, count=False):
    out = os.path.join(work, "out")
    for p in [out] + glob.glob(out + ".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    env = dict(os.environ)
    env.pop("MPIPRUNE_FAIL_ALLOC", None)
    if n > 0:
        env["MPIPRUNE_FAIL_ALLOC"] = str(n)
    if count:
        env["MPIPRUNE_ALLOC_COUNT"] = "1"
    try:
        p = subprocess.run(command(mode, cli, fixture, out), env=env, capture_output=True,
                           text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "timed out (hang)", False, False
    left_out = os.path.exists(out)
    left_tmp = bool(glob.glob(out + ".tmp-*"))
    return p.returncode, p.stderr, left_out, left_tmp


def check(mode, n, rc, err, left_out, left_tmp):
    """A list of what is wrong with run n."""
    bad = []
    if rc is None:
        return [err]
    if SANITIZER.search(err):
        bad.append("sanitizer report")
    if rc == 0:
        if mode != "eval" and not left_out:
            bad.append("exit 0 but no OUT")
        return bad
    if rc != 4:
        bad.append(f"exit {rc}, expected 0 or 4")
    lines = [l for l in err.splitlines() if l.strip()]
    if len(lines) != 1 or not lines[0].startswith("mpiprune: error: "):
        bad.append(f"expected exactly one error line, got {len(lines)}")
    if mode != "eval" and (left_out or left_tmp):
        bad.append("a failed prune left " + ("OUT" if left_out else "OUT.tmp-*"))
    return bad


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: check_oom_sweep.py eval|prune|structured|gradient|kwon MPIPRUNE FIXTURE_DIR WORKDIR MAX_RUNS")
    mode, cli, fixture, work, max_runs = sys.argv[1:5] + [int(sys.argv[5])]
    max_runs = int(os.environ.get("MPIPRUNE_OOM_RUNS", max_runs)) or 1 << 40
    shutil.rmtree(work, ignore_errors=True)
    for k in range(2):
        os.makedirs(os.path.join(work, f"w{k}"))
    t0 = time.time()

    # Every run in a folder of the same length as w0, so paths do not change the count.
    rc, err, _, _ = run(mode, cli, fixture, os.path.join(work, "w0"), 0, count=True)
    m = re.search(r"^mpiprune: (\d+) allocations$", err, re.M)
    if rc != 0 or not m:
        print(err)
        sys.exit(f"FAIL: the command fails without fault injection (exit {rc})")
    total = int(m.group(1))
    # Just past the last allocation the run must succeed (a check of the count).
    rc, err, _, _ = run(mode, cli, fixture, os.path.join(work, "w0"), total + 1)
    if rc != 0:
        print(err)
        sys.exit(f"FAIL: MPIPRUNE_FAIL_ALLOC={total + 1} (past the {total} allocations) fails")
    if total <= max_runs:
        ns, how = list(range(1, total + 1)), "every N"
    else:
        dense = max_runs // 4
        stride = -(-(total - dense) // (max_runs - dense))
        # Phase varies along the sweep so that strided runs do not all hit one residue.
        ns = list(range(1, dense + 1)) + [
            min(total, dense + 1 + i * stride + (i * 7) % stride)
            for i in range((total - dense + stride - 1) // stride)]
        ns = sorted(set(ns))
        how = f"N = 1..{dense} and then every {stride}th (phase rotating)"
    print(f"{mode}: {total} allocations; {len(ns)} runs: {how}", flush=True)

    # Two runs at a time, each in its own folder: a run of the normal build spends most of its
    # time waiting on MPI's start-up and exit, not on a core.
    folders = queue.Queue()
    for k in range(2):
        folders.put(os.path.join(work, f"w{k}"))

    def one(n):
        w = folders.get()
        try:
            return n, run(mode, cli, fixture, w, n)
        finally:
            folders.put(w)

    failures, outcomes = [], {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, ns))
    for n, (rc, err, left_out, left_tmp) in results:
        bad = check(mode, n, rc, err, left_out, left_tmp)
        outcomes[rc] = outcomes.get(rc, 0) + 1
        if bad:
            failures.append(n)
            print(f"FAIL at N={n}: {'; '.join(bad)}\n--- stderr:\n{err[-3000:]}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{mode}: exit codes {dict(sorted(outcomes.items(), key=lambda kv: str(kv[0])))}; "
          f"{len(failures)} failing N; {time.time() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
