#!/usr/bin/env python3
"""Writes corrupted copies of a model directory for the CLI bad-input tests.

usage: gen_bad_safetensors.py OUT_DIR FIXTURE_DIR

Each case is OUT_DIR/<case>/ holding the fixture's config.json and a damaged
model.safetensors (stdlib only: struct, json, os, shutil):
  st_truncated        the file cut in the middle of the data section
  st_hdrlen           the 8-byte header length points past the end of the file
  st_offsets_range    the last tensor's data_offsets moved past the data section
  st_offsets_overlap  a tensor's data_offsets moved onto the first tensor's bytes
  st_dtype            a tensor with an unknown dtype
  st_shape            a shape whose size disagrees with its data_offsets
  st_missing_tensor   model.layers.2.mlp.up_proj.weight dropped (header and data consistent)
  st_nan              one NaN in model.layers.0.self_attn.q_proj.weight
"""
import json
import os
import shutil
import struct
import sys

MISSING = "model.layers.2.mlp.up_proj.weight"
NAN_TENSOR = "model.layers.0.self_attn.q_proj.weight"


def read_st(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    return header, raw[8 + n:]


def encode(header, data, hlen=None):
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    n = len(text) if hlen is None else hlen
    return struct.pack("<Q", n) + text + data


def tensors_by_offset(header):
    items = [(k, v) for k, v in header.items() if k != "__metadata__"]
    return sorted(items, key=lambda kv: tuple(kv[1]["data_offsets"]))


def case_dir(out, name, fixture):
    d = os.path.join(out, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    shutil.copyfile(os.path.join(fixture, "config.json"), os.path.join(d, "config.json"))
    return os.path.join(d, "model.safetensors")


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: gen_bad_safetensors.py OUT_DIR FIXTURE_DIR\n")
        return 2
    out, fixture = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    src = os.path.join(fixture, "model.safetensors")
    header, data = read_st(src)
    good = encode(header, data)
    ordered = tensors_by_offset(header)

    # truncated: half the data section is gone
    hdr_bytes = len(good) - len(data)
    write(case_dir(out, "st_truncated", fixture), good[:hdr_bytes + len(data) // 2])

    # header length beyond the end of the file
    write(case_dir(out, "st_hdrlen", fixture), encode(header, data, hlen=len(good) + 1000))

    # the last tensor's range moved past the data section
    h = json.loads(json.dumps(header))
    last = ordered[-1][0]
    b, e = h[last]["data_offsets"]
    h[last]["data_offsets"] = [b + len(data), e + len(data)]
    write(case_dir(out, "st_offsets_range", fixture), encode(h, data))

    # a small tensor moved onto the first tensor's bytes
    h = json.loads(json.dumps(header))
    first = ordered[0][0]
    small = min(ordered[1:], key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
    b, e = small[1]["data_offsets"]
    fb = h[first]["data_offsets"][0]
    h[small[0]]["data_offsets"] = [fb, fb + (e - b)]
    write(case_dir(out, "st_offsets_overlap", fixture), encode(h, data))

    # unknown dtype
    h = json.loads(json.dumps(header))
    h[ordered[1][0]]["dtype"] = "Q4_K"
    write(case_dir(out, "st_dtype", fixture), encode(h, data))

    # shape disagreeing with the byte range
    h = json.loads(json.dumps(header))
    shape = h[first]["shape"]
    shape[-1] -= 1
    write(case_dir(out, "st_shape", fixture), encode(h, data))

    # a tensor the model needs, dropped; the rest repacked
    if MISSING not in header:
        sys.stderr.write("%s: no tensor %s to drop\n" % (src, MISSING))
        return 1
    h = {}
    if "__metadata__" in header:
        h["__metadata__"] = header["__metadata__"]
    parts = []
    pos = 0
    for name, info in ordered:
        if name == MISSING:
            continue
        b, e = info["data_offsets"]
        h[name] = {"dtype": info["dtype"], "shape": info["shape"],
                   "data_offsets": [pos, pos + e - b]}
        parts.append(data[b:e])
        pos += e - b
    write(case_dir(out, "st_missing_tensor", fixture), encode(h, b"".join(parts)))

    # one NaN in a weight
    info = header[NAN_TENSOR]
    if info["dtype"] != "F32":
        sys.stderr.write("%s: %s is %s, expected F32\n" % (src, NAN_TENSOR, info["dtype"]))
        return 1
    pos = info["data_offsets"][0] + 4 * 7
    bad = bytearray(data)
    bad[pos:pos + 4] = struct.pack("<f", float("nan"))
    write(case_dir(out, "st_nan", fixture), encode(header, bytes(bad)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
