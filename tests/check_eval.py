#!/usr/bin/env python3
"""Perplexity of the bundled model on eval_dev at seqlen 256: equal to the independent PyTorch
measurement (4.1959, fixture README) within 1e-4 relative, and bit-identical for P = 1
(singleton, no mpirun), 2 and 3.

usage: check_eval.py MPIEXEC MPIPRUNE MODEL_DIR DATA_FILE
"""
import json
import subprocess
import sys

REFERENCE = 4.1959  # fixture README, measured with a plain-torch HF-convention forward
RTOL = 1e-4

mpiexec, exe, model, data = sys.argv[1:5]
args = [exe, "eval", "--model", model, "--data", data, "--seqlen", "256", "--json", "--quiet"]
results = {}
for p in (1, 2, 3):
    cmd = args if p == 1 else [mpiexec, "--bind-to", "none", "-n", str(p)] + args
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    r = json.loads(out)
    print(f"P={p}: {out.strip()}")
    assert r["windows"] == 306, r
    assert r["tokens"] == 306 * 256, r
    assert r["ranks"] == p, r
    results[p] = r["perplexity"]

ppl = results[1]
rel = abs(ppl - REFERENCE) / REFERENCE
print(f"perplexity {ppl!r}, reference {REFERENCE}, relative difference {rel:.2e}")
if not rel <= RTOL:
    sys.exit(f"FAIL: relative difference {rel:.2e} > {RTOL}")
for p in (2, 3):
    if results[p].hex() != ppl.hex():
        sys.exit(f"FAIL: P={p} gives {results[p]!r}, P=1 gives {ppl!r} (not bit-identical)")
# The .npy copy of the same tokens gives the same windows, bit for bit (first 20 windows).
def first20(path):
    out = subprocess.run([exe, "eval", "--model", model, "--data", path, "--seqlen", "256",
                          "--json", "--quiet", "--max-windows", "20"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)["perplexity"]
a, b = first20(data), first20(data[:-4] + ".npy")
if a.hex() != b.hex():
    sys.exit(f"FAIL: .bin gives {a!r}, .npy gives {b!r}")
print("ok")
