#!/usr/bin/env python3
"""The streaming safetensors writer's files, read with the reference Python `safetensors`.

Runs `TEST_ST_STREAM write WORKDIR` (tests/test_st_stream.c) and checks WORKDIR/single (one
model.safetensors) and WORKDIR/sharded (model-0000K-of-00003.safetensors with
model.safetensors.index.json): names, dtypes, shapes and __metadata__ as written; F32 and F16
values equal to numpy's float32 and float16 (round to nearest even) of the formula; BF16 bits
equal to a round-to-nearest-even reference written here; the index's weight_map and total_size;
no temporary file left. Fails (does not skip) when safetensors or numpy is missing.

usage: check_st_stream.py TEST_ST_STREAM WORKDIR
"""
import json
import os
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
    from safetensors import safe_open
except ImportError as e:
    sys.exit(f"FAIL: {e}: install the test dependencies (bash scripts/install-deps.sh --test)")

SPECS = [  # name, dtype, shape (tests/test_st_stream.c SPECS)
    ("model.embed_tokens.weight", "F32", [64, 16]),
    ('half "q"', "F16", [24, 16]),
    ("brain", "BF16", [3, 5, 7]),
    ("ids", "I64", [5]),
    ("scalar", "F32", []),
    ("empty", "F16", [0, 4]),
    ("z.last", "BF16", [2000]),
]
META = {"format": "pt", "note": "a b"}
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def values(k, shape):
    n = int(np.prod(shape)) if shape else 1
    i = np.arange(n, dtype=np.int64)
    v = ((i * 7919 + k * 131) % 2001 - 1000).astype(np.float64) / 337.0
    return v.astype(np.float32).reshape(shape)


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (finite values)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def raw_tensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        b, e = hdr[name]["data_offsets"]
        f.seek(8 + n + b)
        return f.read(e - b)


def check_file(path, expect_names):
    with safe_open(path, framework="numpy") as f:
        if f.metadata() != META:
            fail(f"{path}: metadata {f.metadata()} != {META}")
        names = list(f.keys())
        if sorted(names) != sorted(expect_names):
            fail(f"{path}: tensors {names}, want {expect_names}")
        for k, (name, dt, shape) in enumerate(SPECS):
            if name not in expect_names:
                continue
            sl = f.get_slice(name)
            if sl.get_dtype() != dt or list(sl.get_shape()) != shape:
                fail(f"{path}: {name}: {sl.get_dtype()} {sl.get_shape()}, want {dt} {shape}")
                continue
            want = values(k, shape)
            if dt == "F32":
                ok = np.array_equal(f.get_tensor(name), want)
            elif dt == "F16":
                ok = np.array_equal(f.get_tensor(name), want.astype(np.float16))
            elif dt == "I64":
                ok = f.get_tensor(name).tolist() == [7, -1, 2**63 - 1, 0, 42]
            else:  # numpy has no bfloat16: compare the bits
                got = np.frombuffer(raw_tensor(path, name), dtype="<u2")
                ok = np.array_equal(got, bf16_bits(want).reshape(-1))
            if not ok:
                fail(f"{path}: {name}: values differ from the reference")
    return names


def main():
    exe, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    subprocess.run([exe, "write", work], check=True)
    all_names = [s[0] for s in SPECS]

    single = os.path.join(work, "single")
    if sorted(os.listdir(single)) != ["model.safetensors"]:
        fail(f"{single}: {os.listdir(single)}")
    check_file(os.path.join(single, "model.safetensors"), all_names)

    sharded = os.path.join(work, "sharded")
    files = [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
    if sorted(os.listdir(sharded)) != sorted(files + ["model.safetensors.index.json"]):
        fail(f"{sharded}: {sorted(os.listdir(sharded))}")
    with open(os.path.join(sharded, "model.safetensors.index.json")) as f:
        index = json.load(f)
    wm = index["weight_map"]
    if sorted(wm) != sorted(all_names):
        fail(f"index weight_map names {sorted(wm)}")
    if index["metadata"]["total_size"] != 9118:
        fail(f"index total_size {index['metadata']['total_size']}, want 9118")
    seen = []
    for fn in files:
        names = [n for n, v in wm.items() if v == fn]
        seen += check_file(os.path.join(sharded, fn), names)
    if sorted(seen) != sorted(all_names):
        fail(f"shards hold {sorted(seen)}")

    if failures:
        sys.exit(f"{len(failures)} failure(s)")
    print("ok: single file and 3 shards read back with safetensors "
          f"{__import__('safetensors').__version__}")


main()
