#!/usr/bin/env python3
"""Writes damaged GGUF files of the bundled model for the CLI bad-input tests.

usage: gen_bad_gguf.py OUT_DIR FIXTURE_DIR

The files are serialised here byte by byte (struct only, no gguf package), so that each case can
lie in exactly one field. OUT_DIR/gguf_<case>.gguf:
  good               the valid file the others are damaged copies of (F32, Q/K permuted)
  truncated          cut in the middle of the data section
  truncated_header   cut inside the tensor infos
  bad_magic          "GGUX" instead of "GGUF"
  bad_version        version 4
  offset_range       the last tensor's offset past the data section
  offset_overlap     a tensor's offset moved onto the first tensor's bytes
  offset_misaligned  a tensor's offset not a multiple of the alignment
  size_lie           a tensor's ne[1] × 1000: its bytes exceed the data section
  type_unknown       a tensor of ggml type 99
  type_q4k           a tensor of type Q4_K (known, not read)
  huge_tensor_count  tensor count 2^60
  huge_kv_count      metadata count 2^60
  huge_string        a key's string length 2^62
  huge_array         the token array's length 2^61
  dup_key            a metadata key twice
  alignment          general.alignment = 3
  ndims              a tensor with 5 dimensions
  arch               general.architecture = gpt2
  missing_key        no llama.block_count
  shape              blk.1.attn_q.weight stored as [in, out/2] x 2 (ne swapped to a wrong shape)
  nan                one NaN in blk.0.attn_q.weight
  fifo               a FIFO (named pipe), not a file
"""
import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import load_file

U32, I32, F32, STR, ARR = 4, 5, 6, 8, 9
ALIGN = 32


def gstr(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv_bytes(key, vtype, value, key_len=None):
    out = struct.pack("<Q", len(key.encode()) if key_len is None else key_len) + key.encode()
    out += struct.pack("<I", vtype)
    if vtype == U32:
        out += struct.pack("<I", value)
    elif vtype == F32:
        out += struct.pack("<f", value)
    elif vtype == STR:
        out += gstr(value)
    elif vtype == ARR:
        et, items, n = value
        out += struct.pack("<IQ", et, len(items) if n is None else n)
        for it in items:
            out += gstr(it) if et == STR else struct.pack("<i", it)
    return out


def permute(w, n_head):
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


GG = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
      "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
      "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
      "mlp.down_proj": "ffn_down"}


def model(fixture):
    cfg = json.load(open(os.path.join(fixture, "config.json")))
    w = load_file(os.path.join(fixture, "model.safetensors"))
    toks = [t["piece"] for t in sorted(json.load(open(os.path.join(fixture, "tokenizer.json")))
                                       ["tokens"], key=lambda t: t["id"])]
    kvs = [["general.architecture", STR, "llama"], ["general.name", STR, "stories260K"],
           ["llama.block_count", U32, cfg["num_hidden_layers"]],
           ["llama.context_length", U32, cfg["max_position_embeddings"]],
           ["llama.embedding_length", U32, cfg["hidden_size"]],
           ["llama.feed_forward_length", U32, cfg["intermediate_size"]],
           ["llama.attention.head_count", U32, cfg["num_attention_heads"]],
           ["llama.attention.head_count_kv", U32, cfg["num_key_value_heads"]],
           ["llama.rope.dimension_count", U32, cfg["head_dim"]],
           ["llama.rope.freq_base", F32, cfg["rope_theta"]],
           ["llama.attention.layer_norm_rms_epsilon", F32, cfg["rms_norm_eps"]],
           ["tokenizer.ggml.model", STR, "llama"],
           ["tokenizer.ggml.tokens", ARR, (STR, toks, None)]]
    tensors = []
    for hf, a in w.items():
        a = a.astype(np.float32)
        if hf == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif hf == "model.norm.weight":
            name = "output_norm.weight"
        else:
            p = hf.split(".")
            name = f"blk.{p[2]}.{GG['.'.join(p[3:-1])]}.{p[-1]}"
            if p[-2] == "q_proj":
                a = permute(a, cfg["num_attention_heads"])
            elif p[-2] == "k_proj":
                a = permute(a, cfg["num_key_value_heads"])
        tensors.append({"name": name, "ne": list(reversed(a.shape)), "type": 0,
                        "data": np.ascontiguousarray(a).tobytes()})
    return kvs, tensors


def serialise(kvs, tensors, magic=b"GGUF", version=3, n_tensors=None, n_kv=None,
              raw_kvs=None):
    out = bytearray(magic + struct.pack("<I", version))
    out += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                       len(kvs) + len(raw_kvs or []) if n_kv is None else n_kv)
    for k in kvs:
        out += kv_bytes(*k)
    for r in raw_kvs or []:
        out += r
    off = 0
    for t in tensors:
        if "offset" not in t:
            t["offset"] = off
        off = t["offset"] + len(t["data"])
        off += (ALIGN - off % ALIGN) % ALIGN
    for t in tensors:
        out += gstr(t["name"]) + struct.pack("<I", len(t["ne"]))
        out += b"".join(struct.pack("<Q", n) for n in t["ne"])
        out += struct.pack("<IQ", t["type"], t["offset"])
    out += b"\0" * ((ALIGN - len(out) % ALIGN) % ALIGN)
    base = len(out)
    for t in sorted(tensors, key=lambda t: t.get("data_at", t["offset"])):
        at = base + t.get("data_at", t["offset"])
        if len(out) < at:
            out += b"\0" * (at - len(out))
        out[at:at + len(t["data"])] = t["data"]
    out += b"\0" * ((ALIGN - len(out) % ALIGN) % ALIGN)
    return bytes(out)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: gen_bad_gguf.py OUT_DIR FIXTURE_DIR\n")
        return 2
    out, fixture = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)

    def fresh():
        return model(fixture)

    def put(name, blob):
        with open(os.path.join(out, f"gguf_{name}.gguf"), "wb") as f:
            f.write(blob)

    kvs, ts = fresh()
    good = serialise(kvs, ts)
    put("good", good)
    data_bytes = sum(len(t["data"]) for t in ts)
    put("truncated", good[:len(good) - data_bytes // 2])
    padded = sum(len(t["data"]) + (ALIGN - len(t["data"]) % ALIGN) % ALIGN for t in ts)
    put("truncated_header", good[:len(good) - padded - 100])  # inside the tensor infos
    put("bad_magic", b"GGUX" + good[4:])
    put("bad_version", good[:4] + struct.pack("<I", 4) + good[8:])

    def with_tensors(name, fn, **kw):
        kvs, ts = fresh()
        fn(kvs, ts)
        put(name, serialise(kvs, ts, **kw))

    def offset_range(kvs, ts):
        serialise(kvs, ts)  # assign offsets
        last = max(ts, key=lambda t: t["offset"])
        last["data_at"] = last["offset"]
        last["offset"] += 1 << 20
    with_tensors("offset_range", offset_range)

    def offset_overlap(kvs, ts):
        serialise(kvs, ts)
        ts[3]["data_at"] = ts[3]["offset"]
        ts[3]["offset"] = ts[0]["offset"] + ALIGN
    with_tensors("offset_overlap", offset_overlap)

    def offset_misaligned(kvs, ts):
        serialise(kvs, ts)
        ts[2]["data_at"] = ts[2]["offset"]
        ts[2]["offset"] += 4
    with_tensors("offset_misaligned", offset_misaligned)

    def size_lie(kvs, ts):
        t = next(t for t in ts if t["name"] == "blk.2.ffn_up.weight")
        t["ne"] = [t["ne"][0], t["ne"][1] * 1000]
    with_tensors("size_lie", size_lie)

    def type_unknown(kvs, ts):
        ts[1]["type"] = 99
    with_tensors("type_unknown", type_unknown)

    def type_q4k(kvs, ts):
        t = next(t for t in ts if t["name"] == "blk.0.ffn_gate.weight")
        t["type"] = 12
    with_tensors("type_q4k", type_q4k)

    kvs, ts = fresh()
    put("huge_tensor_count", serialise(kvs, ts, n_tensors=1 << 60))
    kvs, ts = fresh()
    put("huge_kv_count", serialise(kvs, ts, n_kv=1 << 60))
    kvs, ts = fresh()
    put("huge_string", serialise(kvs, ts, raw_kvs=[kv_bytes("general.x", STR, "y",
                                                            key_len=1 << 62)]))

    def huge_array(kvs, ts):
        kvs[-1] = ["tokenizer.ggml.tokens", ARR, (STR, kvs[-1][2][1], 1 << 61)]
    with_tensors("huge_array", huge_array)

    def dup_key(kvs, ts):
        kvs.append(["llama.block_count", U32, 5])
    with_tensors("dup_key", dup_key)

    def alignment(kvs, ts):
        kvs.append(["general.alignment", U32, 3])
    with_tensors("alignment", alignment)

    def ndims(kvs, ts):
        t = next(t for t in ts if t["name"] == "output_norm.weight")
        t["ne"] = t["ne"] + [1, 1, 1, 1]
    with_tensors("ndims", ndims)

    def arch(kvs, ts):
        kvs[0][2] = "gpt2"
    with_tensors("arch", arch)

    def missing_key(kvs, ts):
        kvs[:] = [k for k in kvs if k[0] != "llama.block_count"]
    with_tensors("missing_key", missing_key)

    def shape(kvs, ts):
        t = next(t for t in ts if t["name"] == "blk.1.attn_q.weight")
        t["ne"] = [t["ne"][0] // 2, t["ne"][1] * 2]
    with_tensors("shape", shape)

    def nan(kvs, ts):
        t = next(t for t in ts if t["name"] == "blk.0.attn_q.weight")
        a = np.frombuffer(t["data"], dtype=np.float32).copy()
        a[5] = np.nan
        t["data"] = a.tobytes()
    with_tensors("nan", nan)

    fifo = os.path.join(out, "gguf_fifo.gguf")
    if os.path.lexists(fifo):
        os.remove(fifo)
    os.mkfifo(fifo)
    print("wrote the bad GGUF cases to", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
