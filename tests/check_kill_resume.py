#!/usr/bin/env python3
"""kill -9 of all ranks at random moments (and at injected points inside checkpoint writes),
then the same command again: the output must be byte-identical to an uninterrupted run with the
same rank count.

usage: check_kill_resume.py MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR P SEED0 NSEEDS [FAULTS]
  FAULTS: comma-separated MPIPRUNE_FAULT specs (fault injection points of io/mp_ckpt.c)
"""
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time

mpiexec, exe, fixture, work = sys.argv[1:5]
P, seed0, nseeds = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
faults = [f for f in (sys.argv[8] if len(sys.argv) > 8 else "").split(",") if f]
os.makedirs(work, exist_ok=True)

# A shorter job than the acceptance runs (32 sequences) so that many kills fit in the suite;
# --snapshot-blocks 2 makes resumes both load a snapshot and recompute blocks after it.
OPTS = ["prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
        "--seqlen", "256", "--nsamples", "32", "--method", "sparsegpt", "--sparsity", "0.5",
        "--snapshot-blocks", "2", "--quiet"]


def launch(out, ckpt, env=None):
    cmd = [exe] + OPTS + ["--out", out] + (["--checkpoint", ckpt] if ckpt else [])
    if P > 1:
        cmd = [mpiexec, "--bind-to", "none", "-n", str(P)] + \
              (["-x", "MPIPRUNE_FAULT"] if env and "MPIPRUNE_FAULT" in env else []) + cmd
    return subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_all(proc, marker):
    """SIGKILL to mpirun and every rank (all carry the unique output path)."""
    subprocess.run(["pkill", "-KILL", "-f", marker], check=False)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def digest(out):
    h = {}
    for name in sorted(os.listdir(out)):
        if name == "report.json":  # holds timings
            continue
        with open(os.path.join(out, name), "rb") as f:
            h[name] = hashlib.sha256(f.read()).hexdigest()
    return h


def finish(out, ckpt):
    """Runs the same command until it succeeds (a resume); at most 3 tries."""
    for _ in range(3):
        p = launch(out, ckpt)
        _, err = p.communicate()
        if p.returncode == 0:
            return
        print(f"  rerun exited {p.returncode}: {err.strip()[:300]}")
    sys.exit("FAIL: the job did not finish after a resume")


ref = os.path.join(work, f"ref_p{P}")
shutil.rmtree(ref, ignore_errors=True)
t = time.time()
p = launch(ref, None)
_, err = p.communicate()
if p.returncode != 0:
    sys.exit(f"FAIL: reference run: {err}")
duration = time.time() - t
want = digest(ref)
print(f"reference P={P}: {duration:.1f} s")

cases = [("seed", s) for s in range(seed0, seed0 + nseeds)] + [("fault", f) for f in faults]
for kind, arg in cases:
    tag = f"p{P}_{kind}_{str(arg).replace(':', '_')}"
    out, ckpt = os.path.join(work, f"out_{tag}"), os.path.join(work, f"ckpt_{tag}.h5")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(ckpt + ".d", ignore_errors=True)
    if os.path.exists(ckpt):
        os.unlink(ckpt)
    if kind == "seed":
        delay = random.Random(arg).uniform(0.1, duration * 1.05)
        proc = launch(out, ckpt)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        killed = proc.poll() is None
        kill_all(proc, out)
        what = f"kill -9 at {delay:.2f} s" + ("" if killed else " (after it had finished)")
    else:
        env = dict(os.environ, MPIPRUNE_FAULT=arg)
        proc = launch(out, ckpt, env)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pass
        kill_all(proc, out)  # a rank died: the others go down with it, as on a node failure
        what = f"SIGKILL inside a checkpoint write ({arg})"
    if os.path.exists(out) and not os.path.exists(ckpt):
        got = digest(out)  # it had completed
    else:
        # OUT beside a checkpoint: killed between the rename of OUT and the removal of the
        # checkpoint; the rerun must recognise the finished job and remove the checkpoint.
        before = digest(out) if os.path.exists(out) else None
        finish(out, ckpt)
        got = digest(out)
        if before is not None and got != before:
            sys.exit(f"FAIL: {what}: the rerun of a finished job changed OUT")
    if got != want:
        sys.exit(f"FAIL: {what}: output differs from the uninterrupted run: "
                 f"{[k for k in want if got.get(k) != want[k]]}")
    if os.path.exists(ckpt) or os.path.exists(ckpt + ".d") and os.listdir(ckpt + ".d"):
        sys.exit(f"FAIL: {what}: checkpoint left behind after success")
    leftovers = [n for n in os.listdir(work) if n.startswith(f"out_{tag}.tmp-")]
    if leftovers:
        sys.exit(f"FAIL: {what}: stale temporary output {leftovers}")
    print(f"{tag}: {what}: resumed, output byte-identical")
print("ok")
