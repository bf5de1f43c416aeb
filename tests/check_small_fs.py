#!/usr/bin/env python3
"""A prune on a nearly full file system fails cleanly.

Mounts a small tmpfs (SIZE_KIB) under a fresh temporary folder and, for each amount of free
room in turn, fills it to leave that room and runs `mpiprune prune` on the fixture with P
ranks, writing there:
  ckpt  the --checkpoint (CKPT on the tmpfs, OUT beside the work folder): every run must stop
        at some checkpoint write (the room is smaller than the checkpoint needs);
  out   the --out directory (no checkpoint): the room is smaller than the output.
Each run must exit non-zero but below 128 (no crash, no abort), print exactly one line
`mpiprune: error: FILE: ...` naming a file on the tmpfs, trip no sanitizer, and leave nothing
half-written: no *.tmp* file anywhere on the tmpfs, no OUT and no OUT.tmp-*; a checkpoint left
from the blocks before the failure must still read (`mpiprune status`). The tmpfs is unmounted
whatever happens. Needs root (mount); exits 77 (skipped) when it cannot mount.

usage: check_small_fs.py MODE MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR NP
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

SIZE_KIB = 5120
mode, mpiexec, exe, fixture, work, np_ = sys.argv[1:7]
if mode not in ("ckpt", "out"):
    sys.exit(__doc__)
NP = int(np_)
os.makedirs(work, exist_ok=True)
BASE = ["prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
        "--seqlen", "256", "--nsamples", "32", "--method", "sparsegpt", "--sparsity", "0.5",
        "--snapshot-blocks", "2", "--quiet"]
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation")


def prune_cmd(args):
    c = [exe] + BASE + args
    return c if NP == 1 else [mpiexec, "--bind-to", "none", "-n", str(NP)] + c


def free_kib(mnt):
    s = os.statvfs(mnt)
    return s.f_bavail * s.f_frsize // 1024


def fill(mnt, leave_kib):
    """Fills the tmpfs so that leave_kib KiB stay free."""
    for p in glob.glob(os.path.join(mnt, "*")):
        shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    n = (free_kib(mnt) - leave_kib) * 1024
    if n > 0:
        with open(os.path.join(mnt, "fill"), "wb") as f:
            os.posix_fallocate(f.fileno(), 0, n)
    if abs(free_kib(mnt) - leave_kib) > 8:
        sys.exit(f"FAIL: could not leave {leave_kib} KiB free (left {free_kib(mnt)})")


def tree_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def error_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("mpiprune: error:")]


def check_run(name, mnt, out, ckpt):
    r = subprocess.run(prune_cmd(["--out", out] + (["--checkpoint", ckpt] if ckpt else [])),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    problems = []
    if r.returncode == 0:
        problems.append("exited 0 although the room is too small")
    if r.returncode >= 128 or r.returncode < 0:
        problems.append(f"crashed (exit {r.returncode})")
    lines = error_lines(r.stderr)
    if len(lines) != 1:
        problems.append(f"{len(lines)} error lines, expected one")
    elif not lines[0].startswith(f"mpiprune: error: {mnt}/") or ": " not in lines[0][17:]:
        problems.append(f"the error line names no file on the tmpfs: {lines[0]}")
    if any(s in r.stderr for s in SANITIZER):
        problems.append("sanitizer or crash report")
    left = [os.path.join(d, f) for d, _, fs in os.walk(mnt) for f in fs if ".tmp" in f]
    left += [d for d, _, _ in os.walk(mnt) if ".tmp" in os.path.basename(d)]
    if left:
        problems.append(f"left behind: {left}")
    if os.path.exists(out) or glob.glob(out + ".tmp-*"):
        problems.append("OUT or OUT.tmp-* left behind")
    if ckpt and os.path.exists(ckpt):
        s = subprocess.run([exe, "status", ckpt], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if s.returncode != 0:
            problems.append(f"the checkpoint left behind does not read: {s.stderr.strip()}")
    if problems:
        sys.exit(f"FAIL: {name}: " + "; ".join(problems) + f"\n--- stderr:\n{r.stderr}")
    print(f"{name}: exit {r.returncode}: {lines[0]}")


top = tempfile.mkdtemp(prefix="mp_small_fs_", dir=work)
mnt = os.path.join(top, "mnt")
os.makedirs(mnt)
if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_KIB}k", "tmpfs", mnt]).returncode:
    print("SKIP: cannot mount a tmpfs (needs root)")
    shutil.rmtree(top, ignore_errors=True)
    sys.exit(77)
try:
    if mode == "ckpt":
        out = os.path.join(top, "out")
        ckpt = os.path.join(mnt, "ck.h5")
        # 0: the first block file; 384: a later block file (the outside report); 600 and
        # 1000: the first hidden-state snapshot (2 MiB); 2500 and 3300: a block file and a
        # snapshot after a snapshot has been written.
        for kib in (0, 100, 384, 600, 1000, 2500, 3300):
            fill(mnt, kib)
            check_run(f"checkpoint with {kib} KiB free", mnt, out, ckpt)
    else:
        # The room the output needs, measured by a run elsewhere.
        ref = os.path.join(top, "ref")
        subprocess.run(prune_cmd(["--out", ref]), check=True)
        need = tree_bytes(ref) // 1024
        shutil.rmtree(ref)
        out = os.path.join(mnt, "out")
        for kib in sorted({0, 384, need // 2, need - 96, need - 48, need - 12}):
            fill(mnt, kib)
            check_run(f"output with {kib} KiB free (needs {need})", mnt, out, None)
finally:
    subprocess.run(["umount", "-l", mnt])
    shutil.rmtree(top, ignore_errors=True)
print("ok")
