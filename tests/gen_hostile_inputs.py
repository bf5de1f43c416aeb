#!/usr/bin/env python3
"""Writes the hostile inputs of the bad-input tests in tests/hostile_input.cmake.

usage: gen_hostile_inputs.py OUT_DIR FIXTURE_DIR

OUT_DIR/cfg_<field>_<value>/  the fixture model with one absurd size in config.json
OUT_DIR/fifo_weights/         config.json, and a FIFO as model.safetensors
OUT_DIR/fifo_config/          model.safetensors, and a FIFO as config.json
OUT_DIR/fifo_index/           a FIFO as model.safetensors.index.json
OUT_DIR/fifo_tok.bin          a FIFO token file (with a good sidecar fifo_tok.json)
OUT_DIR/fifo_side.bin         a good token file whose sidecar fifo_side.json is a FIFO
OUT_DIR/fifo_tok.npy          a FIFO .npy token file
OUT_DIR/fifo_ckpt.h5          a FIFO as the argument of `mpiprune status`
"""
import json
import os
import shutil
import sys

# field -> value; each must be refused by the limits of mp_model_config_check (src/mp_model.h)
# before any product of sizes is formed.
ABSURD = {
    "hidden_size": 2**52,
    "num_attention_heads": 2**40,
    "num_key_value_heads": 2**40,
    "head_dim": 2**40,
    "intermediate_size": 2**52,
    "num_hidden_layers": 2**40,
    "vocab_size": 2**52,
    "max_position_embeddings": 2**52,
}


def fifo(path):
    if os.path.lexists(path):
        os.unlink(path)
    os.mkfifo(path)


def model_dir(out, fixture, name, edit=None, weights=True, config=True):
    d = os.path.join(out, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    if config:
        with open(os.path.join(fixture, "config.json")) as f:
            cfg = json.load(f)
        if edit:
            edit(cfg)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
    if weights:
        shutil.copyfile(os.path.join(fixture, "model.safetensors"),
                        os.path.join(d, "model.safetensors"))
    return d


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_hostile_inputs.py OUT_DIR FIXTURE_DIR")
    out, fixture = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)

    for field, value in ABSURD.items():
        model_dir(out, fixture, f"cfg_{field}_{value}", lambda c: c.update({field: value}))
    # Within the limits but not the weights': refused before the model allocates from it.
    model_dir(out, fixture, "cfg_big_consistent",
              lambda c: c.update(hidden_size=2**20, vocab_size=2**24, head_dim=2**17,
                                 intermediate_size=2**20))
    # Each within its own limit, the product over it.
    model_dir(out, fixture, "cfg_heads_x_head_dim",
              lambda c: c.update(num_attention_heads=2**14, num_key_value_heads=2**14,
                                 head_dim=2**20))

    fifo(os.path.join(model_dir(out, fixture, "fifo_weights", weights=False),
                      "model.safetensors"))
    fifo(os.path.join(model_dir(out, fixture, "fifo_config", config=False), "config.json"))
    fifo(os.path.join(model_dir(out, fixture, "fifo_index", weights=False),
                      "model.safetensors.index.json"))
    fifo(os.path.join(out, "fifo_tok.bin"))
    shutil.copyfile(os.path.join(fixture, "eval_dev.json"), os.path.join(out, "fifo_tok.json"))
    shutil.copyfile(os.path.join(fixture, "eval_dev.bin"), os.path.join(out, "fifo_side.bin"))
    fifo(os.path.join(out, "fifo_side.json"))
    fifo(os.path.join(out, "fifo_tok.npy"))
    fifo(os.path.join(out, "fifo_ckpt.h5"))


if __name__ == "__main__":
    main()
