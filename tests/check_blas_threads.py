#!/usr/bin/env python3
"""OpenBLAS's threads per rank (mp_blas_fit_threads), as `eval` reports them on stderr:
  without OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS and OMP_NUM_THREADS, one rank takes every CPU
  it may run on; P unbound ranks (--bind-to none) share the node's CPUs, max(1, CPUs // P)
  each; P ranks bound to a core each take 1; a variable the user set is left as it is.
The perplexity of a rank count agrees within 1e-6 relative whatever the thread count (OpenBLAS
splits a product differently among threads, so the last bits can differ: the bits are those of a
rank count and a thread count).

usage: check_blas_threads.py MPIEXEC MPIPRUNE FIXTURE_DIR
"""
import os
import re
import subprocess
import sys

mpiexec, exe, fixture = sys.argv[1:4]
ncpu = len(os.sched_getaffinity(0))
base = {k: v for k, v in os.environ.items()
        if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}


def run(mpi_args, env):
    cmd = [exe, "eval", "--model", fixture, "--data", os.path.join(fixture, "eval_dev.bin"),
           "--seqlen", "64", "--max-windows", "8", "--json"]
    if mpi_args is not None:
        cmd = [mpiexec] + mpi_args + cmd
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}: {r.stderr}")
    m = re.search(r"eval: (\d+) BLAS thread\(s\)[^\n]*", r.stderr)
    if not m:
        sys.exit(f"FAIL: no BLAS thread note in the stderr of {' '.join(cmd)}:\n{r.stderr}")
    return int(m.group(1)), m.group(0), r.stdout


ppl = {}  # rank count -> the perplexities printed


def keep(p, out):
    ppl.setdefault(p, set()).add(re.search(r'"perplexity":\s*([0-9.eE+-]+)', out).group(1))


t, note, out = run(None, base)
print(note)
if t != ncpu:
    sys.exit(f"FAIL: one rank on {ncpu} CPU(s) runs {t} BLAS thread(s)")
keep(1, out)
for p in (2, 3):
    t, note, out = run(["--bind-to", "none", "-n", str(p)], base)
    print(note)
    if t != max(1, ncpu // p) or "shared by %d rank(s)" % p not in note:
        sys.exit(f"FAIL: {p} unbound ranks on {ncpu} CPU(s): {note}")
    keep(p, out)
# Bound to a core each (Open MPI's default for 2 ranks): one thread, each its own core.
if ncpu >= 2:
    t, note, out = run(["--bind-to", "core", "-n", "2"], base)
    print(note)
    if t != 1 or "bound to its own 1 CPU" not in note:
        sys.exit(f"FAIL: 2 ranks bound to a core each: {note}")
    keep(2, out)
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    env = dict(base, **{var: "1"})
    t, note, out = run(["--bind-to", "none", "-n", "1"], env)
    print(note)
    if t != 1 or f"({var})" not in note:
        sys.exit(f"FAIL: {var}=1 set by the user: {note}")
    keep(1, out)
for p, v in ppl.items():
    v = [float(x) for x in v]
    if max(v) - min(v) > 1e-6 * min(v):
        sys.exit(f"FAIL: on {p} rank(s) the perplexity differs between thread counts: {v}")
print("OK")
