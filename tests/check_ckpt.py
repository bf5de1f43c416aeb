#!/usr/bin/env python3
"""Checkpoint tests beyond kill -9 (see check_kill_resume.py):
  resume on another rank count (2 -> 1, 1 -> 3): perplexity equal to the uninterrupted run's
  within 1e-4 relative, the same per-layer sparsity, a warning that the last bits can differ,
  the BLAS threads in `mpiprune status`;
  a flipped byte (in the hidden snapshot, in a block's weights, in the main file's report),
  a truncated main file, and a checkpoint of another job: each refused with one line that says
  why, nothing overwritten (every checkpoint file byte-identical before and after, no OUT);
  --restart then starts over; `mpiprune status` describes the checkpoint; h5py reads it.
Needs h5py (Debian's python3-h5py): run with /usr/bin/python3.

usage: check_ckpt.py MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py

mpiexec, exe, fixture, work = sys.argv[1:5]
os.makedirs(work, exist_ok=True)
BASE = ["prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
        "--seqlen", "256", "--nsamples", "32", "--method", "sparsegpt", "--sparsity", "0.5",
        "--snapshot-blocks", "2", "--quiet"]
EVAL_WINDOWS = "60"


# Every rank of these runs leaves by itself (an error, a fault's own exit, a signal sent to each
# rank): mpiexec need not wait its default second before it SIGKILLs the ranks it saw exit.
def cmd(p, args):
    exe_args = [exe] + args
    return exe_args if p == 1 else [mpiexec, "--bind-to", "none", "-n", str(p), "--mca",
                                    "odls_base_sigkill_timeout", "0"] + exe_args


def run(p, args, expect=0):
    r = subprocess.run(cmd(p, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != expect:
        sys.exit(f"FAIL: {' '.join(args[:1])} P={p} exited {r.returncode}, expected {expect}:"
                 f"\n{r.stderr}")
    return r


def ppl(out):
    r = run(2, ["eval", "--model", out, "--data", os.path.join(fixture, "eval_dev.bin"),
                "--seqlen", "256", "--json", "--quiet", "--max-windows", EVAL_WINDOWS])
    return json.loads(r.stdout)["perplexity"]


def sparsities(out):
    with open(os.path.join(out, "report.json")) as f:
        return [(l["name"], l["sparsity"]) for l in json.load(f)["layers"]]


def fresh(*paths):
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(p + ".d", ignore_errors=True)
        if os.path.isfile(p):
            os.unlink(p)


def stop_after_block2(p, out, ckpt, extra=()):
    """The checkpoint after block 2, deterministically: the run is killed right after it renames
    its second main file into place (a signal would land at a timing-dependent block)."""
    fresh(out, ckpt)
    env = dict(os.environ, MPIPRUNE_FAULT="ckpt_main_renamed:2")
    c = cmd(p, BASE + list(extra) + ["--out", out, "--checkpoint", ckpt])
    if p > 1:
        c = c[:5] + ["-x", "MPIPRUNE_FAULT"] + c[5:]
    subprocess.run(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["pkill", "-KILL", "-f", out], check=False)
    if not os.path.exists(ckpt) or os.path.exists(out):
        sys.exit("FAIL: could not produce a checkpoint after block 2")


def files_digest(ckpt):
    paths = [ckpt] + [os.path.join(ckpt + ".d", n) for n in sorted(os.listdir(ckpt + ".d"))]
    return {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}


def one_line_refusal(r, *needles):
    lines = [l for l in r.stderr.splitlines() if l.startswith("mpiprune: error:")]
    if len(lines) != 1:
        sys.exit(f"FAIL: expected one error line, got:\n{r.stderr}")
    for n in needles:
        if n not in lines[0]:
            sys.exit(f"FAIL: error line lacks '{n}': {lines[0]}")
    print(f"  refused: {lines[0]}")


# 1. Resume on another rank count.
for p_from, p_to in ((2, 1), (1, 3)):
    ref = os.path.join(work, f"ref_p{p_from}")
    fresh(ref)
    run(p_from, BASE + ["--out", ref])
    out, ckpt = os.path.join(work, f"out_{p_from}to{p_to}"), os.path.join(work, "ck_move.h5")
    stop_after_block2(p_from, out, ckpt)
    st = run(1, ["status", ckpt]).stdout
    # The tests run with OPENBLAS_NUM_THREADS=1: the checkpoint records it.
    if ("2 of 5 blocks pruned" not in st or f"by {p_from} rank(s)" not in st or
            "blas threads    1 per rank" not in st):
        sys.exit(f"FAIL: status output:\n{st}")
    # Without --quiet: the resume warns that another rank count changes the last bits.
    r = run(p_to, [a for a in BASE if a != "--quiet"] + ["--out", out, "--checkpoint", ckpt])
    warn = (f"warning: the checkpoint was written by {p_from} rank(s) with 1 BLAS thread(s) "
            f"each, this run has {p_to} with 1")
    if warn not in r.stderr:
        sys.exit(f"FAIL: resume {p_from} -> {p_to} did not warn '{warn}':\n{r.stderr}")
    a, b = ppl(ref), ppl(out)
    rel = abs(a - b) / a
    print(f"resume {p_from} -> {p_to}: perplexity {b:.6f} vs uninterrupted {a:.6f} "
          f"(rel {rel:.1e})")
    if not rel <= 1e-4:
        sys.exit(f"FAIL: resume {p_from} -> {p_to}: relative difference {rel:.2e}")
    if sparsities(ref) != sparsities(out):
        sys.exit(f"FAIL: resume {p_from} -> {p_to}: per-layer sparsity differs")
    if os.path.exists(ckpt):
        sys.exit("FAIL: checkpoint left after success")

# 2. Damaged checkpoints and a checkpoint of another job are refused, nothing overwritten.
out, ckpt = os.path.join(work, "out_dmg"), os.path.join(work, "ck_dmg.h5")


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def chunk_offset(path, dset):
    with h5py.File(path, "r") as f:
        info = f[dset].id.get_chunk_info(0)
        return info.byte_offset + info.size // 2


cases = [
    ("hidden snapshot", lambda: flip(os.path.join(ckpt + ".d", "hidden_00002.h5"),
                                     chunk_offset(os.path.join(ckpt + ".d", "hidden_00002.h5"),
                                                  "hidden")), ["hidden_00002.h5", "checksum"]),
    ("block weights", lambda: flip(os.path.join(ckpt + ".d", "block_00001.h5"),
                                   chunk_offset(os.path.join(ckpt + ".d", "block_00001.h5"),
                                                "o_proj")), ["block_00001.h5", "checksum"]),
    ("main report", lambda: flip(ckpt, chunk_offset(ckpt, "report")), ["ck_dmg.h5"]),
    ("truncated", lambda: os.truncate(ckpt, os.path.getsize(ckpt) // 2), ["ck_dmg.h5"]),
]
for name, damage, needles in cases:
    stop_after_block2(2, out, ckpt)
    damage()
    before = files_digest(ckpt)
    tmp_before = {n for n in os.listdir(work) if n.startswith("out_dmg.tmp-")}
    r = run(2, BASE + ["--out", out, "--checkpoint", ckpt], expect=3)
    print(f"{name}:")
    one_line_refusal(r, *needles)
    if files_digest(ckpt) != before or os.path.exists(out):
        sys.exit(f"FAIL: {name}: the checkpoint was changed or an output written")
    if {n for n in os.listdir(work) if n.startswith("out_dmg.tmp-")} - tmp_before:
        sys.exit(f"FAIL: {name}: the refused run left a temporary output behind")

stop_after_block2(2, out, ckpt)
before = files_digest(ckpt)
other = [a if a != "0.5" else "0.6" for a in BASE]
r = run(2, other + ["--out", out, "--checkpoint", ckpt], expect=3)
print("another job:")
one_line_refusal(r, "another job", "sparsity")
if files_digest(ckpt) != before or os.path.exists(out):
    sys.exit("FAIL: another job: the checkpoint was changed or an output written")

# h5py reads the checkpoint (external links followed) and finds the documented layout.
with h5py.File(ckpt, "r") as f:
    assert f.attrs["format_version"] == 2 and f.attrs["next_block"] == 2, dict(f.attrs)
    assert f.attrs["phase"] == 0 and f.attrs["round"] == 0, dict(f.attrs)
    assert f["hidden"].shape == (32, 256, 64), f["hidden"].shape
    assert f["weights/block_00001/q_proj"].shape == (64, 64)
    job = json.loads(bytes(f["job"][()]).decode())
    assert job["format"] == 2 and job["mpiprune_version"] == f.attrs["mpiprune_version"].decode()
    # The plan of one-pass pruning keeps everything: 4 KV groups of 2 heads, 172 neurons.
    counts = f["plan/counts"][()]
    assert counts.shape == (5, 3) and (counts == [4, 2, 172]).all(), counts
    assert list(f["plan/kv"][()]) == [0, 1, 2, 3] * 5
    assert list(f["plan/q"][()]) == [0, 1] * 20
    assert list(f["plan/ffn"][()]) == list(range(172)) * 5
print("h5py reads the checkpoint layout (format 2, with its plan)")

# A format 1 checkpoint (no plan) and a plan that names a neuron the model lacks are refused
# with one line, and left untouched.
for name, edit, needles in (
        ("format 1", lambda f: f.attrs.modify("format_version", 1), ("format 1", "resumes format 2")),
        ("bad plan", lambda f: f["plan/ffn"].__setitem__(3, 999), ("damaged checkpoint",
                                                                    "FFN neurons"))):
    stop_after_block2(2, out, ckpt)
    with h5py.File(ckpt, "r+") as f:
        edit(f)
    before = files_digest(ckpt)
    r = run(2, BASE + ["--out", out, "--checkpoint", ckpt], expect=3)
    print(f"{name}:")
    one_line_refusal(r, *needles)
    if files_digest(ckpt) != before or os.path.exists(out):
        sys.exit(f"FAIL: {name}: the checkpoint was changed or an output written")

# Signals: SIGUSR1 to every rank, then SIGTERM and SIGINT while they stop and checkpoint; the
# job exits 75 once, the checkpoint is whole, and the same command resumes to the same bytes as
# an uninterrupted run.
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


ref2 = os.path.join(work, "ref_p2_sig")
fresh(ref2)
run(2, BASE + ["--out", ref2])
out_sig, ck_sig = os.path.join(work, "out_sig"), os.path.join(work, "ck_sig.h5")
fresh(out_sig, ck_sig)
proc = subprocess.Popen(cmd(2, BASE + ["--out", out_sig, "--checkpoint", ck_sig,
                                       "--pause-after-block", "700"]),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 120
while not os.path.exists(ck_sig) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.05)
for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
    for pid in rank_pids(out_sig):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    time.sleep(0.02)
_, err = proc.communicate(timeout=300)
lines = [l for l in err.splitlines() if l.startswith("mpiprune: error:")]
if proc.returncode != 75 or len(lines) != 1 or "stopped by a signal" not in lines[0]:
    sys.exit(f"FAIL: signals: exit {proc.returncode}, expected 75 and one line:\n{err}")
print(f"signals: {lines[0]}")
st = run(1, ["status", ck_sig]).stdout
run(2, BASE + ["--out", out_sig, "--checkpoint", ck_sig])
for name in ("model.safetensors", "config.json"):
    a = hashlib.sha256(open(os.path.join(ref2, name), "rb").read()).hexdigest()
    b = hashlib.sha256(open(os.path.join(out_sig, name), "rb").read()).hexdigest()
    if a != b:
        sys.exit(f"FAIL: signals: {name} differs from the uninterrupted run after resume")
print("signals: resumed to a byte-identical output")

# --restart starts over and succeeds; the result equals the uninterrupted P=2 run.
run(2, other + ["--out", out, "--checkpoint", ckpt, "--restart"])
if os.path.exists(ckpt) or not os.path.exists(out):
    sys.exit("FAIL: --restart did not complete")
print("ok")
