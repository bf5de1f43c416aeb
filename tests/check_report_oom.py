#!/usr/bin/env python3
"""Out of memory at the end of a prune (report.json and the output's commit) fails the run.

Runs `mpiprune prune` (P = 1) with MPIPRUNE_FAIL_ALLOC=N, which makes the N-th allocation and
every later one fail (cJSON's included). A bisection finds the number of allocations A of the
whole run; then N is set to each of the last allocations (A, A-1, ... and a spread over the last
1500, where report.json is built). Each run must exit non-zero but below 128, print
exactly one `mpiprune: error:` line, trip no sanitizer, and leave neither OUT nor OUT.tmp-*;
one of them at least must name report.json. Before cJSON's builders were checked, such a run
exited 0 with a partial report.json.

usage: check_report_oom.py MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR
"""
import glob
import os
import shutil
import subprocess
import sys

mpiexec, exe, fixture, work = sys.argv[1:5]
os.makedirs(work, exist_ok=True)
out = os.path.join(work, "out")
# The failing runs exit by themselves: mpiexec need not wait its default second to SIGKILL them.
CMD = [mpiexec, "--bind-to", "none", "-n", "1", "--mca", "odls_base_sigkill_timeout", "0",
       "-x", "MPIPRUNE_FAIL_ALLOC", exe, "prune",
       "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"), "--seqlen", "256",
       "--nsamples", "8", "--method", "sparsegpt", "--sparsity", "0.5", "--quiet",
       "--out", out]
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation")


def clean():
    for p in [out] + glob.glob(out + ".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


def run(n):
    clean()
    env = dict(os.environ, MPIPRUNE_FAIL_ALLOC=str(n))
    return subprocess.run(CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=300)


# Bisection: the run succeeds exactly when N is past its last allocation.
lo, hi = 1, 1 << 12
while run(hi).returncode != 0:
    lo, hi = hi, hi * 2
    if hi > 1 << 24:
        sys.exit("FAIL: the run fails without an allocation failure")
while hi - lo > 1:
    mid = (lo + hi) // 2
    if run(mid).returncode == 0:
        hi = mid
    else:
        lo = mid
total = lo
print(f"the run makes {total} allocations")
ns = sorted({total - k for k in (0, 1, 2, 4, 9, 12, 40, 160, 600, 1200, 1500) if total - k > 0},
            reverse=True)
named_report = False
for n in ns:
    r = run(n)
    lines = [l for l in r.stderr.splitlines() if l.startswith("mpiprune: error:")]
    bad = []
    if r.returncode == 0 or r.returncode >= 128 or r.returncode < 0:
        bad.append(f"exit {r.returncode}")
    if len(lines) != 1:
        bad.append(f"{len(lines)} error lines, expected one")
    if any(s in r.stderr for s in SANITIZER):
        bad.append("sanitizer or crash report")
    if os.path.exists(out) or glob.glob(out + ".tmp-*"):
        bad.append("OUT or OUT.tmp-* left behind")
    if bad:
        sys.exit(f"FAIL: allocation {n} of {total} fails: " + "; ".join(bad) +
                 f"\n--- stderr:\n{r.stderr}")
    named_report = named_report or "report.json" in lines[0]
    print(f"allocation {n}: exit {r.returncode}: {lines[0]}")
clean()
if not named_report:
    sys.exit("FAIL: no allocation failure was met while building report.json")
print("ok")
