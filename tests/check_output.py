#!/usr/bin/env python3
"""The output directory of `mpiprune prune`, read back with the reference `safetensors` package.

Prunes MODEL with the given prune options on NP ranks into a fresh directory under WORKDIR and
checks, against the input model directory:
  - model.safetensors: the same tensor names, shapes, dtypes and __metadata__ (and the same
    header bytes: the output is a byte copy whose pruned tensors are overwritten in place);
    the selected linear weights changed and every other tensor byte-identical;
  - the sparsity pattern: N:M in every group of M consecutive inputs of every row (--nm), or at
    least floor(cols * s) zeros in every row (--method wanda) / in the matrix (otherwise);
  - config.json, the tokenizer files and the other companions copied byte-identical, nothing
    else in OUT but report.json, and no OUT.tmp-* left next to OUT;
  - report.json: options, inputs_sha256 (equal to hashlib's), one record per pruned layer whose
    sparsity matches the zeros in the tensor, stage times, peak memory of every rank, version.
Fails (does not skip) when safetensors or numpy is missing: run scripts/install-deps.sh --test.

usage: check_output.py [--expect-pruned K] MPIEXEC MPIPRUNE MODEL CALIB WORKDIR NP
                       [prune options...]
  --expect-pruned K: the number of tensors the selection must prune (also derived from
  --blocks/--layers and the model; K guards that derivation)
  prune options: --method M, --nm N:M or --sparsity F, --blocks LIST, --layers LIST, ... (passed
  to mpiprune as given; --model, --calib, --out, --seqlen 256, --nsamples 128, --quiet added)
"""
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError as e:  # a missing reader is a failure, not a skip
    sys.exit(f"FAIL: {e}: the output checks need safetensors and numpy "
             "(bash scripts/install-deps.sh --test)")

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STAGES = ("forward", "hessian", "reduction", "solve", "broadcast")
WEIGHTS = "model.safetensors"

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def raw_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return f.read(n)


def parse_blocks(text, n):
    """--blocks "1-2,4" as a set of block indices; all n blocks when not given."""
    if text is None:
        return set(range(n))
    out = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def main():
    args = sys.argv[1:]
    expect_k = None
    if args[:1] == ["--expect-pruned"]:
        expect_k = int(args[1])
        args = args[2:]
    if len(args) < 6:
        sys.exit(__doc__)
    mpiexec, exe, model, calib, work, np_ = args[:6]
    nprocs = int(np_)
    popts = args[6:]
    opt = {popts[i]: popts[i + 1] for i in range(0, len(popts) - 1, 2)
           if popts[i].startswith("--")}
    method = opt.get("--method", "sparsegpt")
    nm = tuple(map(int, opt["--nm"].split(":"))) if "--nm" in opt else None
    sparsity = float(opt.get("--sparsity", "0.5")) if nm is None else nm[0] / nm[1]

    os.makedirs(work, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="out_", dir=work)
    out = os.path.join(tmp, "pruned")
    cmd = [exe, "prune", "--model", model, "--calib", calib, "--out", out, "--seqlen", "256",
           "--nsamples", "128", "--quiet"] + popts
    if nprocs > 1:
        cmd = [mpiexec, "--bind-to", "none", "-n", str(nprocs)] + cmd
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: prune exited {r.returncode}\n{r.stderr}")
    if r.stderr.strip():
        fail(f"--quiet prune wrote to stderr: {r.stderr.strip()!r}")

    # --- directory contents ---------------------------------------------------------------
    leftovers = [e for e in os.listdir(tmp) if e != "pruned"]
    if leftovers:
        fail(f"left next to OUT: {leftovers}")
    in_files = sorted(os.listdir(model))
    out_files = sorted(os.listdir(out))
    for must in ("config.json", "tokenizer.json", "tok512.bin", WEIGHTS, "report.json"):
        if must not in out_files:
            fail(f"{must} missing from OUT")
    for name in out_files:
        if name == "report.json" or name == WEIGHTS:
            continue
        if name not in in_files:
            fail(f"OUT has {name}, which the input model directory does not")
        elif read_bytes(os.path.join(out, name)) != read_bytes(os.path.join(model, name)):
            fail(f"{name} differs from the input's")
    for name in in_files:  # companions (prefix list of mp_outdir) must all come along
        if name.startswith(("config.json", "tokenizer", "tok", "README", "LICENSE")) and \
                name not in out_files:
            fail(f"{name} of the input was not copied")

    # --- model.safetensors ----------------------------------------------------------------
    src_path, dst_path = os.path.join(model, WEIGHTS), os.path.join(out, WEIGHTS)
    if raw_header(src_path) != raw_header(dst_path):
        fail("the safetensors header differs from the input's")
    if os.path.getsize(src_path) != os.path.getsize(dst_path):
        fail("model.safetensors has a different size from the input's")
    with safe_open(src_path, framework="numpy") as fi, safe_open(dst_path, framework="numpy") as fo:
        if fi.metadata() != fo.metadata():
            fail(f"__metadata__ {fo.metadata()} != input's {fi.metadata()}")
        if list(fi.keys()) != list(fo.keys()):
            fail(f"tensor names differ: {sorted(set(fi.keys()) ^ set(fo.keys()))}")
        for k in fi.keys():
            if k not in fo.keys():
                continue
            a, b = fi.get_slice(k), fo.get_slice(k)
            if a.get_shape() != b.get_shape() or a.get_dtype() != b.get_dtype():
                fail(f"{k}: {b.get_dtype()}{b.get_shape()} != input {a.get_dtype()}"
                     f"{a.get_shape()}")
    src, dst = load_file(src_path), load_file(dst_path)

    n_layers = 1 + max(int(k.split(".")[2]) for k in src if k.startswith("model.layers."))
    blocks = parse_blocks(opt.get("--blocks"), n_layers)
    layers = set(opt["--layers"].split(",")) if "--layers" in opt else set(LINEAR)
    expect_pruned = {k for k in src
                     if k.startswith("model.layers.") and k.endswith(".weight")
                     and k.split(".")[-2] in layers and int(k.split(".")[2]) in blocks}
    all_linear = {k for k in src if k.endswith(".weight") and k.split(".")[-2] in LINEAR}
    if not expect_pruned <= all_linear:
        fail(f"test bug: {sorted(expect_pruned - all_linear)} are not linear weights")
    print(f"{len(expect_pruned)} pruned tensors expected of {len(src)}")
    if expect_k is not None and len(expect_pruned) != expect_k:
        sys.exit(f"FAIL: test bug: the selection gives {len(expect_pruned)} tensors, "
                 f"not {expect_k}")

    zeros_of = {}
    for k in src:
        a, b = src[k], dst[k]
        if k not in expect_pruned:
            if a.tobytes() != b.tobytes():
                fail(f"{k} is not selected for pruning but changed")
            continue
        if a.tobytes() == b.tobytes():
            fail(f"{k} is selected for pruning but unchanged")
        if not np.all(np.isfinite(b)):
            fail(f"{k} has non-finite values")
        rows, cols = b.shape
        zero = b == 0
        zeros_of[k] = int(zero.sum())
        if nm is not None:
            n, m = nm
            if cols % m:
                fail(f"{k}: {cols} inputs are not a multiple of {m}")
                continue
            per_group = zero.reshape(rows, cols // m, m).sum(axis=2)
            bad = np.argwhere(per_group < n)
            if bad.size:
                r_, g_ = bad[0]
                fail(f"{k}: {len(bad)} groups of {m} with fewer than {n} zeros, first row "
                     f"{r_} inputs {g_ * m}-{g_ * m + m - 1}: {b[r_, g_ * m:(g_ + 1) * m]}")
        elif method == "wanda":
            need = int(cols * sparsity)
            per_row = zero.sum(axis=1)
            if per_row.min() < need:
                fail(f"{k}: row {int(per_row.argmin())} has {per_row.min()} zeros, "
                     f"wanda {sparsity} needs {need} per row")
        else:
            need = int(rows * cols * sparsity)
            if zeros_of[k] < need:
                fail(f"{k}: {zeros_of[k]} zeros, {method} {sparsity} needs at least {need}")

    # --- report.json ----------------------------------------------------------------------
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    o = rep.get("options")
    if not isinstance(o, dict):
        fail("report.json: no options object")
        o = {}
    want_opts = {"method": method, "ranks": nprocs, "seqlen": 256, "nsamples": 128,
                 "blocks": opt.get("--blocks", "all"), "layers": opt.get("--layers", "all"),
                 "out": out, "model": model, "calib": calib}
    if nm is not None:
        want_opts["nm"] = f"{nm[0]}:{nm[1]}"
    else:
        want_opts["sparsity"] = sparsity
    for key, v in want_opts.items():
        if o.get(key) != v:
            fail(f"report.json options.{key} = {o.get(key)!r}, expected {v!r}")

    sums = rep.get("inputs_sha256")
    if not isinstance(sums, dict):
        fail("report.json: no inputs_sha256 object")
        sums = {}
    for key, path in (("config.json", os.path.join(model, "config.json")),
                      (WEIGHTS, src_path), ("calib", calib)):
        if sums.get(key) != sha256(path):
            fail(f"report.json inputs_sha256[{key!r}] = {sums.get(key)!r}, hashlib gives "
                 f"{sha256(path)}")

    recs = rep.get("layers")
    if not isinstance(recs, list):
        fail("report.json: no layers array")
        recs = []
    if len(recs) != len(expect_pruned):
        fail(f"report.json has {len(recs)} layers, expected {len(expect_pruned)}")
    fields = ["name", "sparsity", "rel_recon_error", "seconds"]
    if method == "sparsegpt":
        fields.append("damp")
    seen = set()
    for rec in recs:
        missing = [x for x in fields if x not in rec]
        if missing:
            fail(f"report.json layer {rec.get('name')!r} lacks {missing}")
            continue
        name = rec["name"] + ".weight"
        if name not in expect_pruned:
            fail(f"report.json reports {rec['name']}, which was not to be pruned")
            continue
        if name in seen:
            fail(f"report.json reports {rec['name']} twice")
        seen.add(name)
        numel = dst[name].size
        if round(rec["sparsity"] * numel) != zeros_of[name]:
            fail(f"{rec['name']}: report sparsity {rec['sparsity']} is "
                 f"{round(rec['sparsity'] * numel)} zeros, the tensor has {zeros_of[name]}")
        if not (0.0 <= rec["rel_recon_error"] < 1.0):
            fail(f"{rec['name']}: rel_recon_error {rec['rel_recon_error']}")
        if not (rec["seconds"] >= 0.0):
            fail(f"{rec['name']}: seconds {rec['seconds']}")
        if "damp" in fields and not (rec["damp"] > 0.0 and math.isfinite(rec["damp"])):
            fail(f"{rec['name']}: damp {rec['damp']}")

    st = rep.get("stage_seconds_max_over_ranks")
    if not isinstance(st, dict):
        fail("report.json: no stage_seconds_max_over_ranks object")
        st = {}
    for s in STAGES:
        v = st.get(s)
        if not (isinstance(v, (int, float)) and v >= 0.0 and math.isfinite(v)):
            fail(f"report.json stage_seconds_max_over_ranks.{s} = {v!r}")
    peak = rep.get("peak_memory_bytes_per_rank")
    if not (isinstance(peak, list) and len(peak) == nprocs and
            all(isinstance(x, (int, float)) and x > 0 for x in peak)):
        fail(f"report.json peak_memory_bytes_per_rank = {peak!r}, expected {nprocs} sizes")
    # Leak checking is not what this call is for (LeakSanitizer's tracer sometimes crashes at
    # the exit of a singleton MPI process): the version string is.
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    ver = subprocess.run([exe, "version"], stdout=subprocess.PIPE, text=True,
                         env=env).stdout.split()
    want_ver = ver[1] if len(ver) == 2 else None
    if not rep.get("mpiprune_version") or rep.get("mpiprune_version") != want_ver:
        fail(f"report.json mpiprune_version {rep.get('mpiprune_version')!r}, "
             f"'mpiprune version' says {want_ver!r}")

    if failures:
        print(f"{len(failures)} failure(s); output kept in {out}")
        sys.exit(1)
    shutil.rmtree(tmp)
    print("ok")


if __name__ == "__main__":
    main()
