#!/usr/bin/env python3
"""GGUF reading, dequantisation, writing and conversion against the PyPI gguf package.

usage: check_gguf.py MPIEXEC MPIPRUNE GGUF_DIR FIXTURE_DIR DATA_FILE WORK_DIR

GGUF_DIR is what gen_gguf.py wrote. Checks:
 1. eval on each GGUF file equals eval on the Hugging Face reference directory of the weights
    it decodes to (numpy dequantisation): bit-identical for F32/F16/BF16 and the deci files,
    relative 1e-5 on the mean NLL for the quantised ones; llama F32 equals the original model
    bit for bit (the Q/K permutation undone correctly); P = 2 equals P = 1.
 2. dequantisation: `convert X.gguf --dtype f32` of each quantised file holds, tensor by
    tensor, exactly gguf.quants.dequantize of the input (so dequantiser, permutation and its
    inverse round-trip).
 3. written files read back with gguf.GGUFReader: architecture, widths, key/value length,
    epsilon, file type, general.name and the tokenizer carried over, tensor names and shapes,
    values (F32 exact, F16 = numpy float16, BF16 = round-to-nearest-even of the F32 values);
    HF directory -> GGUF F32 equals the gguf-package file written with convert_hf_to_gguf's
    permutation; deci in, deci out with the same per-layer arrays; eval on the converted files
    equals eval on their inputs.
 4. an existing OUT is refused (exit 2) and left alone.
 5. prune on a GGUF input writes OUT/model.gguf (+ report.json) whose eval equals that of the
    prune of the Hugging Face reference directory with the same weights, bit for bit.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

mpiexec, exe, gdir, fixture, data, work = sys.argv[1:7]
os.makedirs(work, exist_ok=True)
failures = []


def fail(msg):
    print("FAIL:", msg)
    failures.append(msg)


def ev(model, ranks=1):
    args = [exe, "eval", "--model", model, "--data", data, "--seqlen", "256", "--json",
            "--quiet", "--max-windows", "40"]
    cmd = args if ranks == 1 else [mpiexec, "--bind-to", "none", "-n", str(ranks)] + args
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        fail(f"eval {model} (P={ranks}) exited {r.returncode}: {r.stderr.strip()}")
        return float("nan")
    return json.loads(r.stdout)["mean_nll"]


def convert(src, dst, dtype):
    if os.path.exists(dst):
        os.remove(dst)
    r = subprocess.run([exe, "convert", src, dst, "--dtype", dtype], stderr=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        fail(f"convert {src} {dst} exited {r.returncode}: {r.stderr.strip()}")
    return dst


# 1. eval equals the reference
exact = ["f32", "f16", "bf16", "deci_f32"]
quant = ["q8_0", "q4_0", "q4_1", "deci_q8_0"]
nll_orig = ev(fixture)
for case in exact + quant:
    a, b = ev(os.path.join(gdir, case + ".gguf")), ev(os.path.join(gdir, "ref_" + case))
    rel = abs(a - b) / abs(b)
    same = a.hex() == b.hex()
    print(f"{case}: mean NLL gguf {a!r} reference {b!r} rel {rel:.1e}{' (bit-identical)' if same else ''}")
    if case in exact and not same:
        fail(f"{case}: not bit-identical to the reference")
    if not rel <= 1e-5:
        fail(f"{case}: relative difference {rel:.2e} > 1e-5")
f32 = ev(os.path.join(gdir, "f32.gguf"))
if f32.hex() != nll_orig.hex():
    fail(f"f32.gguf gives {f32!r}, the original model {nll_orig!r}")
p2 = ev(os.path.join(gdir, "q4_1.gguf"), ranks=2)
if p2.hex() != ev(os.path.join(gdir, "q4_1.gguf")).hex():
    fail("q4_1.gguf: P=2 differs from P=1")


def tensors(path):
    r = gguf.GGUFReader(path)
    return r, {t.name: t for t in r.tensors}


def field(r, key):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def as_f32(t):
    if t.tensor_type in (Q.F32, Q.F16):
        return np.asarray(t.data).astype(np.float32).reshape(-1)
    return gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)


def bf16_round(x):
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32)


# 2. dequantisation: convert to f32 and compare with gguf.quants.dequantize
for case in quant:
    src = os.path.join(gdir, case + ".gguf")
    out = convert(src, os.path.join(work, case + "_as_f32.gguf"), "f32")
    _, ti = tensors(src)
    _, to = tensors(out)
    bad = [n for n in ti if n not in to or
           not np.array_equal(as_f32(ti[n]).view(np.uint32), np.asarray(to[n].data).reshape(-1).view(np.uint32))]
    types = sorted({ti[n].tensor_type.name for n in ti})
    print(f"{case}: {len(ti)} tensors ({', '.join(types)}) dequantised, {len(bad)} differ")
    if bad:
        fail(f"{case}: dequantised tensors differ from gguf.quants.dequantize: {bad[:3]}")

# 3. written files read back
def check_written(src, out, dtype, arch):
    ri, ti = tensors(src)
    ro, to = tensors(out)
    if field(ro, "general.architecture") != arch:
        fail(f"{out}: architecture {field(ro, 'general.architecture')}, expected {arch}")
    want_ft = {"f32": 0, "f16": 1, "bf16": 32}[dtype]
    if field(ro, "general.file_type") != want_ft:
        fail(f"{out}: general.file_type {field(ro, 'general.file_type')}")
    ia = field(ri, "general.architecture")
    for k in ("block_count", "embedding_length", "context_length", "feed_forward_length",
              "attention.head_count", "attention.head_count_kv"):
        a, b = field(ri, f"{ia}.{k}"), field(ro, f"{arch}.{k}")
        if a != b:
            fail(f"{out}: {k} {b}, input {a}")
    for k in ("attention.key_length", "attention.value_length", "rope.dimension_count"):
        if field(ro, f"{arch}.{k}") != 8:
            fail(f"{out}: {k} = {field(ro, f'{arch}.{k}')}")
    for k in ("attention.layer_norm_rms_epsilon", "rope.freq_base"):
        if np.float32(field(ro, f"{arch}.{k}")) != np.float32(field(ri, f"{ia}.{k}")):
            fail(f"{out}: {k} differs")
    for k in ("general.name", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
              "tokenizer.ggml.bos_token_id"):
        if field(ri, k) is not None and field(ro, k) != field(ri, k):
            fail(f"{out}: {k} not carried over")
    if sorted(ti) != sorted(to):
        fail(f"{out}: tensor names differ from the input's")
    for n, t in ti.items():
        o = to.get(n)
        if o is None:
            continue
        if list(o.shape) != list(t.shape):
            fail(f"{out}: {n} shape {list(o.shape)}, input {list(t.shape)}")
        x = as_f32(t)
        if len(o.shape) == 1 or dtype == "f32":
            want, got = x, np.asarray(o.data).reshape(-1)
            if o.tensor_type != Q.F32:
                fail(f"{out}: {n} is {o.tensor_type.name}")
        elif dtype == "f16":
            want, got = x.astype(np.float16), np.asarray(o.data).reshape(-1)
        else:
            want = bf16_round(x)
            got = (np.asarray(o.data).reshape(-1).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        if not np.array_equal(np.asarray(want).view(np.uint8), np.asarray(got).view(np.uint8)):
            fail(f"{out}: {n} values differ")
    print(f"{out}: {len(to)} tensors, metadata and values checked")


for src, dtype, arch in (("f32", "f32", "llama"), ("f32", "f16", "llama"), ("f32", "bf16", "llama"),
                         ("q4_1", "f16", "llama"), ("deci_f32", "f32", "deci"),
                         ("deci_q8_0", "bf16", "deci")):
    s = os.path.join(gdir, src + ".gguf")
    o = convert(s, os.path.join(work, f"{src}_{dtype}.gguf"), dtype)
    check_written(s, o, dtype, arch)
# eval of a converted file equals eval of its input (f32 out: the same float32 weights)
for src in ("f32", "deci_f32", "q4_1"):
    a = ev(os.path.join(gdir, src + ".gguf"))
    b = ev(os.path.join(work, f"{src}_f32.gguf") if os.path.exists(os.path.join(work, f"{src}_f32.gguf"))
           else convert(os.path.join(gdir, src + ".gguf"), os.path.join(work, f"{src}_f32.gguf"), "f32"))
    if a.hex() != b.hex():
        fail(f"{src}: eval after convert {b!r} differs from {a!r}")
# Hugging Face directory -> GGUF: the same bytes as the gguf-package file for every tensor
o = convert(fixture, os.path.join(work, "hf_f32.gguf"), "f32")
_, th = tensors(o)
_, tg = tensors(os.path.join(gdir, "f32.gguf"))
if sorted(th) != sorted(tg):
    fail("HF -> GGUF: tensor names differ from the gguf-package file")
for n in tg:
    if n in th and (list(th[n].shape) != list(tg[n].shape) or
                    not np.array_equal(np.asarray(th[n].data), np.asarray(tg[n].data))):
        fail(f"HF -> GGUF: {n} differs from the gguf-package file (Q/K permutation?)")
if ev(o).hex() != nll_orig.hex():
    fail("HF -> GGUF: eval differs from the HF directory")
# HF directory with per_layer_widths -> deci GGUF
o = convert(os.path.join(gdir, "ref_deci_f32"), os.path.join(work, "hf_deci.gguf"), "f32")
rd, _ = tensors(o)
if field(rd, "general.architecture") != "deci" or \
        field(rd, "deci.attention.head_count") != [8, 4, 0, 6, 2]:
    fail("HF per-layer directory -> GGUF: not deci with the per-layer head counts")
if ev(o).hex() != ev(os.path.join(gdir, "deci_f32.gguf")).hex():
    fail("HF per-layer directory -> GGUF: eval differs")

# 4. an existing OUT is refused and left as it was
dst = os.path.join(work, "exists.gguf")
with open(dst, "w") as f:
    f.write("keep me")
r = subprocess.run([exe, "convert", os.path.join(gdir, "f32.gguf"), dst], stderr=subprocess.PIPE,
                   text=True)
if r.returncode != 2 or open(dst).read() != "keep me" or "exists" not in r.stderr:
    fail(f"convert onto an existing OUT: exit {r.returncode}, {r.stderr.strip()}")

# 5. prune of a GGUF input equals prune of the same weights as a HF directory
def prune(model, out):
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([exe, "prune", "--model", model, "--calib", os.path.join(fixture, "calib.bin"),
                        "--seqlen", "256", "--nsamples", "16", "--method", "sparsegpt",
                        "--sparsity", "0.5", "--out", out, "--quiet"], stderr=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        fail(f"prune {model} exited {r.returncode}: {r.stderr.strip()}")
    return out


pg = prune(os.path.join(gdir, "q4_1.gguf"), os.path.join(work, "pruned_gguf"))
ph = prune(os.path.join(gdir, "ref_q4_1"), os.path.join(work, "pruned_hf"))
if sorted(os.listdir(pg)) != ["model.gguf", "report.json"]:
    fail(f"prune of a GGUF input wrote {sorted(os.listdir(pg))}")
a, b = ev(os.path.join(pg, "model.gguf")), ev(ph)
print(f"pruned q4_1.gguf: mean NLL {a!r}, pruned HF reference {b!r}")
if a.hex() != b.hex():
    fail("prune of q4_1.gguf differs from prune of its HF reference")
rp, _ = tensors(os.path.join(pg, "model.gguf"))
if field(rp, "general.name") != "stories260K q4_1" or field(rp, "tokenizer.ggml.tokens") is None:
    fail("pruned GGUF lost the input's metadata")

if failures:
    sys.exit(f"{len(failures)} failure(s)")
print("ok")
