#!/usr/bin/env python3
"""Writes bad model directories and token files for the CLI bad-input tests.

usage: gen_bad_config_tokens.py OUT_DIR FIXTURE_DIR

OUT_DIR/cfg_missing_field/   the fixture model, config.json without hidden_size
OUT_DIR/cfg_model_type/      the fixture model, model_type "gpt2"
OUT_DIR/tok_oov.bin + .json  eval_dev tokens with id 600 (>= vocab 512) at position 1234,
                             sidecar with the right count and sha256
OUT_DIR/tok_empty.bin + .json  0 bytes, sidecar count 0
"""
import hashlib
import json
import os
import shutil
import sys

OOV_POS = 1234
OOV_ID = 600


def model_dir(out, fixture, name, edit):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(fixture, "config.json")) as f:
        cfg = json.load(f)
    edit(cfg)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copyfile(os.path.join(fixture, "model.safetensors"),
                    os.path.join(d, "model.safetensors"))


def token_file(out, stem, data, sidecar):
    with open(os.path.join(out, stem + ".bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump(sidecar, f, indent=2)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_bad_config_tokens.py OUT_DIR FIXTURE_DIR")
    out, fixture = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)

    model_dir(out, fixture, "cfg_missing_field", lambda c: c.pop("hidden_size"))
    model_dir(out, fixture, "cfg_model_type", lambda c: c.update(model_type="gpt2"))

    with open(os.path.join(fixture, "eval_dev.bin"), "rb") as f:
        data = bytearray(f.read())
    data[2 * OOV_POS:2 * OOV_POS + 2] = OOV_ID.to_bytes(2, "little")
    token_file(out, "tok_oov", bytes(data), {
        "dtype": "uint16", "byteorder": "little", "count": len(data) // 2,
        "sha256": hashlib.sha256(data).hexdigest(), "vocab": 512,
        "note": "eval_dev with id %d at position %d" % (OOV_ID, OOV_POS)})

    token_file(out, "tok_empty", b"", {"dtype": "uint16", "byteorder": "little", "count": 0})


if __name__ == "__main__":
    main()
