#!/usr/bin/env python3
"""A run killed after OUT was renamed into place, before its checkpoint was removed.

Prunes the fixture with --checkpoint and MPIPRUNE_FAULT=out_committed (SIGKILL right after the
rename of OUT): OUT is complete and the checkpoint is still there. The same command again must
recognise the finished job (OUT/report.json has the same identity), say so, exit 0, remove the
checkpoint and leave OUT untouched; once more (no checkpoint) exit 0 as well. The command with
another option that changes the result must still be refused: OUT already exists (exit 2).

usage: check_finished_job.py MPIPRUNE MODEL CALIB WORKDIR
"""
import hashlib
import os
import shutil
import subprocess
import sys

exe, model, calib, work = sys.argv[1:5]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
out, ckpt = os.path.join(work, "out"), os.path.join(work, "ck.h5")
base = [exe, "prune", "--model", model, "--calib", calib, "--seqlen", "256", "--nsamples", "8",
        "--method", "wanda", "--out", out, "--checkpoint", ckpt]


def digest(d):
    return {n: hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest()
            for n in sorted(os.listdir(d))}


def run(args, env=None):
    r = subprocess.run(base + args, capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    print(f"$ ... {' '.join(args)} -> {r.returncode}\n{r.stderr}", end="", flush=True)
    return r


r = run(["--sparsity", "0.5"], {"MPIPRUNE_FAULT": "out_committed"})
if r.returncode != -9 or not os.path.isdir(out) or not os.path.exists(ckpt):
    sys.exit(f"FAIL: the fault did not leave OUT and the checkpoint (exit {r.returncode}, "
             f"OUT {os.path.isdir(out)}, checkpoint {os.path.exists(ckpt)})")
before = digest(out)
r = run(["--sparsity", "0.5"])
if r.returncode != 0 or "already holds the result of this job" not in r.stderr \
        or "removed the stale checkpoint" not in r.stderr:
    sys.exit("FAIL: the finished job was not recognised")
if os.path.exists(ckpt) or os.path.exists(ckpt + ".d") or digest(out) != before:
    sys.exit("FAIL: the checkpoint was left behind or OUT changed")
r = run(["--sparsity", "0.5"])
if r.returncode != 0 or "nothing to do" not in r.stderr or digest(out) != before:
    sys.exit("FAIL: a rerun of the finished job without its checkpoint")
r = run(["--sparsity", "0.6"])
if r.returncode != 2 or "already exists" not in r.stderr or digest(out) != before:
    sys.exit("FAIL: another job's OUT must be refused")
print("ok")
