#!/usr/bin/env python3
"""Crafted checkpoints: each one a valid checkpoint (stopped after block 2) with one thing
changed with h5py, shaped to overflow a reader that trusts the file: attributes with several
elements, of another type or too long; /job and /report of rank 2 or 3, or of another type;
/report records of an unknown layer (the old enum numbers 99 and -1 included), of a block not
done, or malformed; block datasets and the hidden-state snapshot of another rank. Each must be
refused by `mpiprune status CKPT` (main-file cases) and by a resume of the prune with exit 3
and exactly one line `mpiprune: error: FILE: ...` naming the damaged file, no sanitizer
report, and no OUT. Also: every checkpoint file is in the HDF5 1.10 format (superblock
version 3).
Needs h5py (Debian's python3-h5py): run with /usr/bin/python3.

usage: check_ckpt_crafted.py MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

mpiexec, exe, fixture, work = sys.argv[1:5]
os.makedirs(work, exist_ok=True)
NP = 2
BASE = ["prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
        "--seqlen", "256", "--nsamples", "32", "--method", "sparsegpt", "--sparsity", "0.5",
        "--snapshot-blocks", "2", "--quiet"]
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation")


# Every resume here is refused and all ranks leave by themselves: mpiexec need not wait its
# default second before the SIGKILL of ranks it has already seen exit (2 s a case).
def mpi(args):
    return [mpiexec, "--bind-to", "none", "-n", str(NP), "--mca", "odls_base_sigkill_timeout",
            "0", exe] + args


def rm(*paths):
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.unlink(p)


# A valid checkpoint after block 2 (killed right after its second main file is in place).
pristine = os.path.join(work, "pristine", "ck.h5")
rm(os.path.dirname(pristine))
os.makedirs(os.path.dirname(pristine))
env = dict(os.environ, MPIPRUNE_FAULT="ckpt_main_renamed:2")
c = mpi(BASE + ["--out", os.path.join(work, "pristine_out"), "--checkpoint", pristine])
subprocess.run(c[:5] + ["-x", "MPIPRUNE_FAULT"] + c[5:], env=env, stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL)
# The killed run leaves its staging directory (OUT.tmp) as any killed run does.
rm(os.path.join(work, "pristine_out"), os.path.join(work, "pristine_out.tmp"))
if subprocess.run([exe, "status", pristine], stdout=subprocess.DEVNULL).returncode != 0:
    sys.exit("FAIL: could not produce a checkpoint after block 2")
files = [pristine] + [os.path.join(pristine + ".d", n) for n in os.listdir(pristine + ".d")]
for p in files:
    with open(p, "rb") as f:
        head = f.read(9)
    if head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] != 3:
        sys.exit(f"FAIL: {p}: superblock version {head[8]}, expected 3 (the 1.10 format)")
print(f"{len(files)} checkpoint files in the 1.10 format")


def replace_dataset(f, name, data):
    del f[name]
    f.create_dataset(name, data=data)


def text(f, name):
    return bytes(f[name][()]).decode()


def set_text(f, name, s):
    replace_dataset(f, name, np.frombuffer(s.encode(), dtype=np.uint8))


def edit_report(fn):
    def edit(main, d):
        with h5py.File(main, "r+") as f:
            recs = json.loads(text(f, "report"))
            set_text(f, "report", json.dumps(fn(recs)))
    return edit


def with_main(fn):
    def edit(main, d):
        with h5py.File(main, "r+") as f:
            fn(f)
    return edit


def with_file(rel, fn):
    def edit(main, d):
        with h5py.File(os.path.join(d, rel), "r+") as f:
            fn(f)
    return edit


def rec0(key, value):
    def fn(recs):
        recs[0][key] = value
        return recs
    return fn


def legacy(layer_id):
    """A record as the previous mpiprune wrote it: the layer as an enum number."""
    def fn(recs):
        recs[0] = {"block": 0, "id": layer_id, "owner": 0, "dist": False, "rows": 64,
                   "cols": 64, "sparsity": 0.5, "err": 0.1, "damp": 0.01, "seconds": 0.1,
                   "escalations": 0, "dead": 0}
        return recs
    return fn


def attr(name, value):
    return lambda f: f.attrs.__setitem__(name, value)


def reshape(name, shape):
    return lambda f: replace_dataset(f, name, np.resize(f[name][()], shape))


vlen = h5py.string_dtype()
# (case, edit, file the error must name ("main" or a file of CKPT.d), status must refuse)
cases = [
    ("format_version of 3 elements", with_main(attr("format_version", np.ones(3, "i8"))),
     "main", True),
    ("n_blocks of 4 elements", with_main(attr("n_blocks", np.full(4, 5, "i8"))), "main", True),
    ("next_block a float", with_main(attr("next_block", np.float64(2))), "main", True),
    ("job_id of 3 strings", with_main(attr("job_id", np.array([b"a" * 64] * 3))), "main", True),
    ("job_id of 200 characters", with_main(attr("job_id", np.bytes_(b"a" * 200))), "main",
     True),
    ("job_id variable-length", with_main(lambda f: f.attrs.create("job_id", "a" * 64,
                                                                  dtype=vlen)), "main", True),
    ("written_at an integer", with_main(attr("written_at", np.int64(7))), "main", True),
    ("/job of rank 2", with_main(lambda f: replace_dataset(
        f, "job", np.resize(f["job"][()], (2, f["job"].shape[0])))), "main", True),
    ("/report of rank 2", with_main(lambda f: replace_dataset(
        f, "report", np.resize(f["report"][()], (3, f["report"].shape[0])))), "main", True),
    ("/report of rank 3", with_main(lambda f: replace_dataset(
        f, "report", np.resize(f["report"][()], (2, 2, f["report"].shape[0])))), "main", True),
    ("/job of float32", with_main(lambda f: replace_dataset(
        f, "job", f["job"][()].astype("f4"))), "main", True),
    ("/report record of layer id 99", edit_report(legacy(99)), "main", True),
    ("/report record of layer id -1", edit_report(legacy(-1)), "main", True),
    ("/report record of an unknown layer",
     edit_report(rec0("name", "model.layers.0.self_attn.x_proj")), "main", True),
    ("/report record of a block not done", edit_report(rec0("block", 7)), "main", True),
    ("/report record of block -1", edit_report(rec0("block", -1)), "main", True),
    ("/report record naming another block's layer",
     edit_report(rec0("name", "model.layers.1.self_attn.q_proj")), "main", True),
    ("/report record with sparsity 2", edit_report(rec0("sparsity", 2)), "main", True),
    ("/report record not an object", edit_report(lambda r: r[:1] + [17] + r[1:]), "main",
     True),
    ("/report not an array", edit_report(lambda r: {"layers": r}), "main", True),
    ("block q_proj of rank 3", with_file("block_00001.h5", reshape("q_proj", (64, 64, 2))),
     "block_00001.h5", False),
    ("block q_proj of rank 1", with_file("block_00001.h5", reshape("q_proj", (4096,))),
     "block_00001.h5", False),
    ("block q_proj of float64", with_file("block_00000.h5", lambda f: replace_dataset(
        f, "q_proj", f["q_proj"][()].astype("f8"))), "block_00000.h5", False),
    ("block attribute of 5 elements", with_file("block_00001.h5", attr("block",
                                                                       np.ones(5, "i8"))),
     "block_00001.h5", False),
    ("block job_id of 3 strings", with_file("block_00000.h5", attr(
        "job_id", np.array([b"b" * 64] * 3))), "block_00000.h5", False),
    ("hidden of rank 4", with_file("hidden_00002.h5", reshape("hidden", (32, 256, 64, 1))),
     "hidden_00002.h5", False),
    ("hidden of rank 2", with_file("hidden_00002.h5", reshape("hidden", (32, 256 * 64))),
     "hidden_00002.h5", False),
]


def refused(what, cmd, needle):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=300)
    lines = [l for l in r.stderr.splitlines() if l.startswith("mpiprune: error:")]
    bad = []
    if r.returncode != 3:
        bad.append(f"exit {r.returncode}, expected 3")
    if len(lines) != 1:
        bad.append(f"{len(lines)} error lines, expected one")
    elif not lines[0].startswith("mpiprune: error: /") or needle not in lines[0]:
        bad.append(f"the error line does not name {needle}")
    if any(s in r.stderr for s in SANITIZER):
        bad.append("sanitizer or crash report")
    if bad:
        sys.exit(f"FAIL: {what}: " + "; ".join(bad) + f"\n--- stderr:\n{r.stderr}")
    return lines[0]


for i, (name, edit, where, by_status) in enumerate(cases):
    case = os.path.join(work, f"case{i:02d}")
    rm(case)
    os.makedirs(case)
    main = os.path.join(case, "ck.h5")
    shutil.copy(pristine, main)
    shutil.copytree(pristine + ".d", main + ".d")
    edit(main, main + ".d")
    needle = main if where == "main" else os.path.join(main + ".d", where)
    print(f"{name}:")
    if by_status:
        print("  status: " + refused(f"{name} (status)", [exe, "status", main], needle))
    out = os.path.join(case, "out")
    print("  resume: " + refused(f"{name} (resume)",
                                 mpi(BASE + ["--out", out, "--checkpoint", main]), needle))
    if os.path.exists(out):
        sys.exit(f"FAIL: {name}: the refused resume left {out}")
    rm(case)
print("ok")
