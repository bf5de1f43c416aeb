#!/usr/bin/env python3
"""Dead inputs through `mpiprune prune --method sparsegpt` (stories260K with one channel of
block 0's input norm and one of block 1's post-attention norm set to zero, so that q/k/v of
block 0 and gate/up of block 1 each see an input that is zero on every calibration token):
  the report counts one dead input for exactly those five layers and none elsewhere; their
  pruned weights are zero in that column (as the reference zeroes them) and their kept weights
  were updated; every layer's sparsity is 0.5 within one column's share and its
  reconstruction error finite and below 1; P = 1 and P = 2 give byte-identical models.
The solve factors each group's Hessian in place and puts the zero diagonal back afterwards:
this is what would notice if it did not (the dead column and the error read it).

usage: check_dead_inputs.py MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR
"""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

mpiexec, exe, fixture, work = sys.argv[1:5]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)

DEAD = {0: ("input_layernorm", 5, ("q_proj", "k_proj", "v_proj")),
        1: ("post_attention_layernorm", 7, ("gate_proj", "up_proj"))}

model = os.path.join(work, "model")
os.makedirs(model)
shutil.copy(os.path.join(fixture, "config.json"), model)
t = load_file(os.path.join(fixture, "model.safetensors"))
for b, (norm, ch, _) in DEAD.items():
    key = f"model.layers.{b}.{norm}.weight"
    w = t[key].copy()
    w[ch] = 0.0
    t[key] = w
save_file(t, os.path.join(model, "model.safetensors"))


def prune(p):
    out = os.path.join(work, f"out{p}")
    args = [exe, "prune", "--model", model, "--calib", os.path.join(fixture, "calib.bin"),
            "--seqlen", "256", "--nsamples", "16", "--out", out, "--quiet",
            "--method", "sparsegpt", "--sparsity", "0.5"]
    if p > 1:
        args = [mpiexec, "--bind-to", "none", "-n", str(p), "--mca",
                "odls_base_sigkill_timeout", "0"] + args
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: prune P={p} exited {r.returncode}:\n{r.stderr}")
    return out


out1 = prune(1)
out2 = prune(2)
with open(os.path.join(out1, "model.safetensors"), "rb") as f1, \
        open(os.path.join(out2, "model.safetensors"), "rb") as f2:
    if f1.read() != f2.read():
        sys.exit("FAIL: P = 1 and P = 2 models differ")

rep = json.load(open(os.path.join(out1, "report.json")))
w = load_file(os.path.join(out1, "model.safetensors"))
expect = {}
for b, (_, ch, names) in DEAD.items():
    for n in names:
        expect[(b, n)] = ch
seen = 0
for l in rep["layers"]:
    b, n = l["block"], l["name"].rsplit(".", 1)[1]
    ch = expect.get((b, n))
    want = 0 if ch is None else 1
    if l["dead_inputs"] != want:
        sys.exit(f"FAIL: {l['name']}: {l['dead_inputs']} dead inputs, expected {want}")
    if not (math.isfinite(l["rel_recon_error"]) and 0.0 <= l["rel_recon_error"] < 1.0):
        sys.exit(f"FAIL: {l['name']}: reconstruction error {l['rel_recon_error']}")
    if abs(l["sparsity"] - 0.5) > 1.0 / l["cols"] + 1e-9:
        sys.exit(f"FAIL: {l['name']}: sparsity {l['sparsity']}")
    W = w[l["name"] + ".weight"]
    if ch is not None:
        if W[:, ch].any():
            sys.exit(f"FAIL: {l['name']}: the dead input's column {ch} is not zero")
        # The rest moved: the OBS update ran on the live columns.
        W0 = t[l["name"] + ".weight"]
        kept = (W != 0) & (np.arange(W.shape[1]) != ch)[None, :]
        if not np.any(W[kept] != W0[kept]):
            sys.exit(f"FAIL: {l['name']}: no kept weight was updated")
        seen += 1
if seen != len(expect):
    sys.exit(f"FAIL: {seen} of the {len(expect)} layers with a dead input reported")
print(f"OK: {len(expect)} layers with one dead input each, their columns zero, "
      f"P = 1 and 2 byte-identical")
