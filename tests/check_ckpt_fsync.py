#!/usr/bin/env python3
"""Every checkpoint rename is durable: under strace, a prune with --checkpoint (P = 1, a
hidden-state snapshot after every block) must, after each rename of a checkpoint file into
place, fsync the folder that holds it (CKPT.d/ for block and hidden-state files, CKPT's folder
for the main file) before the next rename; and fsync each file before its rename. Exits 77
(skipped) without strace.

usage: check_ckpt_fsync.py MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR
"""
import os
import re
import shutil
import subprocess
import sys

mpiexec, exe, fixture, work = sys.argv[1:5]
strace = shutil.which("strace")
if not strace:
    print("SKIP: no strace")
    sys.exit(77)
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
ckpt, out, log = (os.path.join(work, n) for n in ("ck.h5", "out", "strace.log"))
cmd = [strace, "-f", "-y", "-qq", "-o", log, "-e", "trace=rename,renameat,renameat2,fsync",
       mpiexec, "--bind-to", "none", "-n", "1", exe, "prune", "--model", fixture,
       "--calib", os.path.join(fixture, "calib.bin"), "--seqlen", "256", "--nsamples", "8",
       "--method", "magnitude", "--sparsity", "0.5", "--snapshot-blocks", "1", "--quiet",
       "--out", out, "--checkpoint", ckpt]
# LeakSanitizer cannot run under ptrace (a sanitizer build): leaks are checked elsewhere.
env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
                   env=env)
if r.returncode != 0:
    sys.exit(f"FAIL: the prune exited {r.returncode}:\n{r.stderr}")
events = []  # ("rename", to) or ("fsync", path)
for line in open(log):
    m = re.search(r'rename(?:at2?)?\((?:[^,]*, )?"([^"]+)", (?:[^,]*, )?"([^"]+)"', line)
    if m and m.group(1).startswith(ckpt):
        events.append(("rename", m.group(1), m.group(2)))
    m = re.search(r'fsync\(\d+<([^>]+)>\)', line)
    if m:
        events.append(("fsync", m.group(1)))
renames = [e for e in events if e[0] == "rename"]
if len(renames) < 5:
    sys.exit(f"FAIL: expected the checkpoint's renames, found {len(renames)}:\n" +
             open(log).read()[-3000:])
for i, e in enumerate(events):
    if e[0] != "rename":
        continue
    src, dst = e[1], e[2]
    before = [x[1] for x in events[:i] if x[0] == "fsync"]
    if src not in before:
        sys.exit(f"FAIL: {src} renamed without an fsync of the file first")
    folder = os.path.dirname(dst)
    after = []
    for x in events[i + 1:]:
        if x[0] == "rename":
            break
        after.append(x[1])
    if folder not in after:
        sys.exit(f"FAIL: {dst}: renamed into place but {folder} not synced before the next "
                 f"rename (synced after it: {after})")
    print(f"{os.path.basename(dst)}: file synced, renamed, {folder} synced")
print("ok")
