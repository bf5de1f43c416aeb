#!/usr/bin/env python3
"""model.safetensors truncated while `mpiprune eval` or `prune` reads it.

Copies the fixture model to WORKDIR, starts the command on it (one rank, progress on), and as
soon as the first block is done truncates the copy to its header: every later block's weights
are gone. The command must then end with exit 3 and exactly one error line naming
model.safetensors (a memory-mapped reader would die of SIGBUS here); prune must leave neither
OUT nor OUT.tmp-*. Fails when the command finished before the truncation, because then it
tested nothing.

usage: check_truncate.py eval|prune MPIPRUNE FIXTURE_DIR WORKDIR
"""
import glob
import os
import re
import shutil
import struct
import subprocess
import sys


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("eval", "prune"):
        sys.exit("usage: check_truncate.py eval|prune MPIPRUNE FIXTURE_DIR WORKDIR")
    mode, cli, fixture, work = sys.argv[1:]
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(os.path.join(fixture, name), os.path.join(work, name))
    st = os.path.join(work, "model.safetensors")
    with open(st, "rb") as f:
        header_end = 8 + struct.unpack("<Q", f.read(8))[0]

    out_dir = os.path.join(work, "out")
    if mode == "eval":
        cmd = [cli, "eval", "--model", work, "--data", os.path.join(fixture, "eval_dev.bin"),
               "--seqlen", "256", "--max-windows", "96"]
    else:
        cmd = [cli, "prune", "--model", work, "--calib", os.path.join(fixture, "calib.bin"),
               "--seqlen", "256", "--nsamples", "128", "--method", "sparsegpt",
               "--sparsity", "0.5", "--out", out_dir]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, truncated = [], False
    for line in p.stderr:
        lines.append(line.rstrip("\n"))
        if not truncated and re.search(r"block 1/\d+ done", line):
            os.truncate(st, header_end)
            truncated = True
    out = p.stdout.read()
    rc = p.wait()
    err = "\n".join(lines)
    print("--- stderr:\n" + err)
    fail = []
    if not truncated:
        fail.append("eval printed no 'block 1/N done' line: nothing was truncated")
    if rc == 0:
        fail.append("eval succeeded after the truncation (it tested nothing): " + out)
    elif rc != 3:
        fail.append(f"exit code {rc}, expected 3")
    if re.search(r"AddressSanitizer|LeakSanitizer|runtime error:|Segmentation|Bus error", err):
        fail.append("sanitizer or crash report")
    errors = [l for l in lines if l.startswith("mpiprune: error:")]
    if len(errors) != 1:
        fail.append(f"expected exactly one error line, got {len(errors)}")
    elif not re.search(r"model\.safetensors: .*truncated", errors[0]):
        fail.append("the error line does not name model.safetensors as truncated")
    elif lines[-1] != errors[0]:
        fail.append("the error line is not the last line")
    if os.path.exists(out_dir) or glob.glob(out_dir + ".tmp-*"):
        fail.append("OUT or OUT.tmp-* left behind")
    for f in fail:
        print("FAIL: " + f)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if fail else 0


if __name__ == "__main__":
    sys.exit(main())
