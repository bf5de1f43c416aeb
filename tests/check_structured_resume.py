#!/usr/bin/env python3
"""A structured search stopped and resumed gives the output of an uninterrupted run, byte for
byte (weights, config.json, report.svg; report.json's plan and trace):
  - SIGTERM during the search: the job stops after the round with a checkpoint (exit 75),
    `mpiprune status` shows the search phase, and the same command resumes at the next round;
  - kill -9 of every rank during the final block pass: the same command resumes from the
    block checkpoint.
EXTRA options go to every run (--bias-compensation: the block checkpoints then carry the
o_proj/down_proj biases, which the output must have). With `kwon` first, the run is --method
kwon instead: one round (its mask search has no search checkpoint to stop at), so only the
kill -9 in the final pass is tested; its mask tuning then recomputes the unpruned model's hidden
states up to the resumed block, and must reach the same bytes.

usage: check_structured_resume.py MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR P [kwon] [EXTRA...]
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

mpiexec, exe, fixture, work = sys.argv[1:5]
P = int(sys.argv[5])
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
KWON = sys.argv[6:7] == ["kwon"]
EXTRA = sys.argv[7:] if KWON else sys.argv[6:]
METHOD = ["--method", "kwon"] if KWON else ["--method", "structured", "--rounds", "3"]
OPTS = ["prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
        "--seqlen", "256", "--nsamples", "32", "--target", "params=0.75",
        "--snapshot-blocks", "2"] + METHOD + EXTRA


def launch(out, ckpt, *extra):
    cmd = [exe] + OPTS + ["--out", out] + (["--checkpoint", ckpt] if ckpt else []) + list(extra)
    if P > 1:
        cmd = [mpiexec, "--bind-to", "none", "-n", str(P)] + cmd
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def digest(out):
    h = {}
    for name in sorted(os.listdir(out)):
        with open(os.path.join(out, name), "rb") as f:
            data = f.read()
        if name == "report.json":  # timings differ; the plan and the trace must not
            r = json.loads(data)
            data = json.dumps([r["structured"]["plan"], r["structured"]["rounds"],
                               r["structured"]["budget"]]).encode()
        h[name] = hashlib.sha256(data).hexdigest()
    return h


def wait_for(proc, marker, timeout=120):
    """Reads stderr until a line holds marker; returns the lines read."""
    t0, seen = time.time(), []
    while time.time() - t0 < timeout:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return seen
    sys.exit(f"FAIL: '{marker}' never appeared; stderr: {''.join(seen)[-2000:]}")


def rank_pids(marker):
    pids = []
    for pid in subprocess.run(["pgrep", "-f", marker], stdout=subprocess.PIPE,
                              text=True).stdout.split():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "mpiprune":
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


failures = []
ref = os.path.join(work, "ref")
p = launch(ref, None)
_, err = p.communicate()
if p.returncode != 0:
    sys.exit(f"FAIL: reference run exited {p.returncode}: {err}")
want = digest(ref)
if "--bias-compensation" in OPTS:
    with open(os.path.join(ref, "config.json")) as f:
        c = json.load(f)
    if not (c.get("o_proj_bias") and c.get("down_proj_bias")):
        sys.exit("FAIL: --bias-compensation wrote no o_proj/down_proj biases")

# SIGTERM inside the search (a structured search of 3 rounds).
if not KWON:
    out, ck = os.path.join(work, "term"), os.path.join(work, "term.h5")
    p = launch(out, ck)
    wait_for(p, "round 1/3: calibration loss")
    # To the ranks, as a batch system signals them (mpirun would kill them on its own SIGTERM).
    for pid in rank_pids(out):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _, err = p.communicate()
    print(f"SIGTERM during the search: exit {p.returncode}")
    if p.returncode != 75 or not os.path.exists(ck):
        failures.append(f"SIGTERM: exit {p.returncode} (want 75) or no checkpoint; {err[-500:]}")
    st = subprocess.run([exe, "status", ck], capture_output=True, text=True)
    print(st.stdout.strip())
    if "phase 1" not in st.stdout:
        failures.append(f"status does not show the search phase: {st.stdout}{st.stderr}")
    p = launch(out, ck)
    _, err = p.communicate()
    if p.returncode != 0 or "search rounds done" not in err:
        failures.append(f"resume after SIGTERM: exit {p.returncode}; {err[-800:]}")
    elif digest(out) != want:
        failures.append("the output resumed after SIGTERM differs from the uninterrupted run")
    else:
        print("resumed after SIGTERM: identical output")

# kill -9 inside the final block pass.
out, ck = os.path.join(work, "kill"), os.path.join(work, "kill.h5")
p = launch(out, ck, "--pause-after-block", "300")
wait_for(p, "prune: block 3/5 done")
subprocess.run(["pkill", "-KILL", "-f", out], check=False)
try:
    os.killpg(p.pid, signal.SIGKILL)
except ProcessLookupError:
    pass
p.wait()
p = launch(out, ck)
_, err = p.communicate()
if p.returncode != 0 or "blocks done" not in err:
    failures.append(f"resume after kill -9: exit {p.returncode}; {err[-800:]}")
elif digest(out) != want:
    failures.append("the output resumed after kill -9 differs from the uninterrupted run")
else:
    print("resumed after kill -9 in the block pass: identical output")

for f in failures:
    print("FAIL: " + f)
sys.exit(1 if failures else 0)
