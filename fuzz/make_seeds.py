#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the bundled files.

usage: make_seeds.py OUT_DIR PROJECT_ROOT [MPIPRUNE]

OUT_DIR/<target>/ for each target of fuzz/mp_fuzz.h:
  safetensors  models/stories260K/model.safetensors, the damaged copies that
               tests/gen_bad_safetensors.py makes, and small files of every dtype
  st_index     index files for the harness's two fixed shards (a, b | c), good and bad
  hfconfig     models/stories260K/config.json, the configs of tests/gen_bad_config_tokens.py
               and tests/gen_hostile_inputs.py, and a mistral, qwen2 and OPT config
  tokens_bin   sidecar length + sidecar + data: the bundled calib/eval_dev sidecars with a
               prefix of their data, and consistent small ones
  tokens_npy   a prefix of models/stories260K/calib.npy re-headed, every supported dtype
  ckpt         with MPIPRUNE: the main file of a checkpoint that a small prune left behind
               (killed by MPIPRUNE_FAULT right after writing it)
  gguf         the GGUF files of the GGUF tests (every type, llama and deci) and their damaged
               copies
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile


def st_bytes(tensors, metadata=None):
    """A safetensors file: tensors is [(name, dtype, shape, raw bytes)]."""
    hdr, off, data = {}, 0, b""
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def npy_bytes(descr, shape, raw, major=1):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (
        descr, "(%s)" % "".join("%d, " % s for s in shape) if len(shape) == 1
        else str(tuple(shape)))
    pre = 10 if major == 1 else 12
    pad = (64 - (pre + len(d) + 1) % 64) % 64
    d = (d + " " * pad + "\n").encode()
    ln = struct.pack("<H", len(d)) if major == 1 else struct.pack("<I", len(d))
    return b"\x93NUMPY" + bytes([major, 0]) + ln + d + raw


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: make_seeds.py OUT_DIR PROJECT_ROOT [MPIPRUNE]")
    out, root = sys.argv[1], sys.argv[2]
    cli = sys.argv[3] if len(sys.argv) == 4 else None
    shutil.rmtree(out, ignore_errors=True)
    fixture = os.path.join(root, "models", "stories260K")
    tests = os.path.join(root, "tests")
    rd = lambda *p: open(os.path.join(*p), "rb").read()

    with tempfile.TemporaryDirectory() as tmp:
        # safetensors
        put(out, "safetensors", "stories260K", rd(fixture, "model.safetensors"))
        subprocess.run([sys.executable, os.path.join(tests, "gen_bad_safetensors.py"),
                        os.path.join(tmp, "st"), fixture], check=True, capture_output=True)
        for case in sorted(os.listdir(os.path.join(tmp, "st"))):
            p = os.path.join(tmp, "st", case, "model.safetensors")
            if os.path.exists(p):
                put(out, "safetensors", case, rd(p))
        f32 = struct.pack("<6f", 1, -2, 0.5, 3, 0, -0.25)
        put(out, "safetensors", "small_f32", st_bytes(
            [("w", "F32", [2, 3], f32), ("b", "F32", [3], f32[:12])], {"format": "pt"}))
        put(out, "safetensors", "small_mixed", st_bytes(
            [("h", "F16", [2, 2], struct.pack("<4H", 0x3c00, 0xc000, 0x0001, 0x7bff)),
             ("bf", "BF16", [3], struct.pack("<3H", 0x3f80, 0x8000, 0x4049)),
             ("d", "F64", [1], struct.pack("<d", 2.5)), ("i", "I64", [2], b"\0" * 16),
             ("scalar", "F32", [], struct.pack("<f", 7)), ("empty", "F32", [0, 4], b"")]))
        put(out, "safetensors", "small_nan", st_bytes([("n", "F32", [2], b"\0\0\xc0\x7f" * 2)]))
        put(out, "safetensors", "empty_header", st_bytes([]))

        # st_index (shards: a, b in file 1, c in file 2)
        s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
        good = {"metadata": {"total_size": 24}, "weight_map": {"a": s1, "b": s1, "c": s2}}
        put(out, "st_index", "good", json.dumps(good, indent=2).encode())
        put(out, "st_index", "missing", json.dumps({"weight_map": {"a": s1, "c": s2}}).encode())
        put(out, "st_index", "wrong_file",
            json.dumps({"weight_map": {"a": s2, "b": s1, "c": s2}}).encode())
        put(out, "st_index", "outside", json.dumps({"weight_map": {"a": "../x"}}).encode())

        # hfconfig
        put(out, "hfconfig", "stories260K", rd(fixture, "config.json"))
        for gen, sub in (("gen_bad_config_tokens.py", "ct"), ("gen_hostile_inputs.py", "hi")):
            d = os.path.join(tmp, sub)
            subprocess.run([sys.executable, os.path.join(tests, gen), d, fixture], check=True,
                           capture_output=True)
            for case in sorted(os.listdir(d)):
                p = os.path.join(d, case, "config.json")
                if os.path.isfile(p):
                    put(out, "hfconfig", case, rd(p))
        base = json.loads(rd(fixture, "config.json"))
        put(out, "hfconfig", "mistral", json.dumps(
            dict(base, model_type="mistral", sliding_window=4096)).encode())
        put(out, "hfconfig", "qwen2", json.dumps(
            dict(base, model_type="qwen2", use_sliding_window=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0})).encode())
        put(out, "hfconfig", "opt", json.dumps({
            "model_type": "opt", "hidden_size": 64, "ffn_dim": 256, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
            "do_layer_norm_before": True, "word_embed_proj_dim": 32,
            "activation_function": "relu", "enable_bias": True}).encode())

        # tokens_bin
        def bin_seed(name, side, data):
            s = json.dumps(side).encode()
            put(out, "tokens_bin", name, struct.pack("<H", len(s)) + s + data)
        for stem in ("calib", "eval_dev"):
            side = json.loads(rd(fixture, stem + ".json"))
            bin_seed(stem + "_prefix", side, rd(fixture, stem + ".bin")[:2048])
        ids = rd(fixture, "calib.bin")[:1024]
        bin_seed("u16_count_sha", {"dtype": "uint16", "byteorder": "little", "count": 512,
                                   "sha256": hashlib.sha256(ids).hexdigest()}, ids)
        bin_seed("u32", {"dtype": "uint32", "byteorder": "little"}, ids)
        bin_seed("big_endian", {"dtype": "uint16", "byteorder": "big"}, ids[:64])

        # tokens_npy
        raw = rd(fixture, "calib.npy")
        put(out, "tokens_npy", "calib_prefix", npy_bytes("<u2", [512], raw[128:128 + 1024]))
        u = list(struct.unpack("<512H", raw[128:128 + 1024]))
        put(out, "tokens_npy", "u4_2d", npy_bytes("<u4", [2, 256], struct.pack("<512I", *u)))
        put(out, "tokens_npy", "i4", npy_bytes("<i4", [512], struct.pack("<512i", *u)))
        put(out, "tokens_npy", "i8_v2", npy_bytes("<i8", [512], struct.pack("<512q", *u), 2))
        put(out, "tokens_npy", "fortran", npy_bytes("<u2", [512], raw[128:128 + 1024]).replace(
            b"False", b"True "))

        # ckpt: the main file of a real checkpoint
        if cli:
            ck = os.path.join(tmp, "ck.h5")
            env = dict(os.environ, MPIPRUNE_FAULT="ckpt_main_renamed:2",
                       OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
            env["ASAN_OPTIONS"] = "detect_leaks=0"
            subprocess.run([cli, "prune", "--model", fixture, "--calib",
                            os.path.join(fixture, "calib.bin"), "--seqlen", "32", "--nsamples",
                            "2", "--method", "magnitude", "--sparsity", "0.5", "--out",
                            os.path.join(tmp, "ck_out"), "--checkpoint", ck, "--quiet"],
                           env=env, capture_output=True)
            if os.path.exists(ck):
                put(out, "ckpt", "main_after_block", rd(ck))
        put(out, "ckpt", "not_hdf5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
        # gguf: the tests' files of every type (llama and deci) and their damaged copies; the
        # seeds are the small ones (the fuzzer mutates what it is given).
        gg = os.path.join(tmp, "gguf")
        for script, args in (("gen_gguf.py", [gg, fixture]), ("gen_bad_gguf.py", [gg, fixture])):
            r = subprocess.run([sys.executable, os.path.join(tests, script)] + args,
                               capture_output=True)
            if r.returncode != 0:
                sys.exit(f"make_seeds: {script} failed: {r.stderr.decode()[-500:]}")
        for name in sorted(os.listdir(gg)):
            p = os.path.join(gg, name)
            if name.endswith(".gguf") and os.path.isfile(p) and os.path.getsize(p) < (2 << 20):
                put(out, "gguf", name[:-5], rd(p))
    for t in sorted(os.listdir(out)):
        print(t, len(os.listdir(os.path.join(out, t))), "seeds")


if __name__ == "__main__":
    main()
