#!/usr/bin/env python3
"""Writes GGUF files of the bundled model with the PyPI `gguf` package, and the Hugging Face
reference directories they must evaluate like.

usage: gen_gguf.py OUT_DIR FIXTURE_DIR

OUT_DIR/<case>.gguf for case in f32 f16 bf16 q8_0 q4_0 q4_1 (architecture llama) and
deci_f32, deci_q8_0 (architecture deci, per-layer widths made by dropping KV groups with their
query heads, FFN neurons, a whole attention and a whole FFN sub-block, see SHAPES), each with
the Q and K rows permuted as llama.cpp's convert_hf_to_gguf does
(reshape(n_head, 2, hd/2, in).swapaxes(1, 2)). A matrix whose input width is not a multiple of
the quantisation block (32) stays F32 in the quantised files, as llama-quantize falls back.

OUT_DIR/ref_<case>/: a Hugging Face directory (config.json, float32 model.safetensors) holding
exactly the weights the GGUF file decodes to, computed with numpy: gguf.quants.dequantize for
the quantised types, float16/bfloat16 rounding, the permutation undone. For llama f32 this is
the original model itself. The deci references carry config.json "per_layer_widths".
"""
import json
import os
import shutil
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file, save_file

# (query heads, KV heads, FFN) per block for the deci files; the fixture has 8 heads, 4 KV
# heads (2 query heads per group), FFN 172.
SHAPES = [(8, 4, 172), (4, 2, 96), (0, 0, 172), (6, 3, 0), (2, 1, 64)]
QTYPES = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0,
          "q4_1": Q.Q4_1}


def permute(w, n_head):
    """convert_hf_to_gguf's LlamaModel.permute: HF rotate_half rows -> llama.cpp rows."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


GG_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
            "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
            "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    layer, rest, suffix = parts[2], ".".join(parts[3:-1]), parts[-1]
    return f"blk.{layer}.{GG_NAMES[rest]}.{suffix}"


def shrink(weights, cfg):
    """Drops KV groups (with their query heads) and FFN neurons to the widths of SHAPES."""
    hd = cfg["head_dim"]
    group = cfg["num_attention_heads"] // cfg["num_key_value_heads"]
    out = {k: v for k, v in weights.items() if not k.startswith("model.layers.")}
    for l, (nh, nkv, ffn) in enumerate(SHAPES):
        p = f"model.layers.{l}."
        if nh > 0:
            # keep KV groups 0, 2, 1, 3 in that order of preference (so dropped ones vary)
            groups = sorted([0, 2, 1, 3][:nkv])
            kv_rows = np.concatenate([np.arange(g * hd, (g + 1) * hd) for g in groups])
            q_heads = [g * group + i for g in groups for i in range(group)]
            q_rows = np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in q_heads])
            out[p + "input_layernorm.weight"] = weights[p + "input_layernorm.weight"]
            out[p + "self_attn.q_proj.weight"] = weights[p + "self_attn.q_proj.weight"][q_rows]
            out[p + "self_attn.k_proj.weight"] = weights[p + "self_attn.k_proj.weight"][kv_rows]
            out[p + "self_attn.v_proj.weight"] = weights[p + "self_attn.v_proj.weight"][kv_rows]
            out[p + "self_attn.o_proj.weight"] = weights[p + "self_attn.o_proj.weight"][:, q_rows]
        if ffn > 0:
            keep = np.sort(np.argsort(-np.abs(weights[p + "mlp.up_proj.weight"]).sum(1),
                                      kind="stable")[:ffn])
            out[p + "post_attention_layernorm.weight"] = weights[p + "post_attention_layernorm.weight"]
            out[p + "mlp.gate_proj.weight"] = weights[p + "mlp.gate_proj.weight"][keep]
            out[p + "mlp.up_proj.weight"] = weights[p + "mlp.up_proj.weight"][keep]
            out[p + "mlp.down_proj.weight"] = weights[p + "mlp.down_proj.weight"][:, keep]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def heads_of(hf, shapes):
    parts = hf.split(".")
    if len(parts) > 4 and parts[3] == "self_attn" and parts[4] in ("q_proj", "k_proj"):
        nh, nkv, _ = shapes[int(parts[2])]
        return nh if parts[4] == "q_proj" else nkv
    return 0


def tokens(fixture):
    tok = json.load(open(os.path.join(fixture, "tokenizer.json")))
    toks = sorted(tok["tokens"], key=lambda t: t["id"])
    assert [t["id"] for t in toks] == list(range(len(toks)))
    return [t["piece"] for t in toks]


def write_case(out, name, arch, weights, cfg, shapes, qtype, toks):
    """Writes OUT/name.gguf and OUT/ref_name/ (the weights it decodes to)."""
    path = os.path.join(out, name + ".gguf")
    w = gguf.GGUFWriter(path, arch)
    w.add_name("stories260K " + name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    uniform = arch == "llama"
    w.add_feed_forward_length(shapes[0][2] if uniform else [s[2] for s in shapes])
    w.add_head_count(shapes[0][0] if uniform else [s[0] for s in shapes])
    w.add_head_count_kv(shapes[0][1] if uniform else [s[1] for s in shapes])
    if not uniform:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(int(qtype))
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    ref = {}
    for hf, arr in weights.items():
        arr = arr.astype(np.float32)
        n = heads_of(hf, shapes)
        g = permute(arr, n) if n else arr
        t = qtype
        if arr.ndim == 1 or (t not in (Q.F32, Q.F16, Q.BF16) and
                             g.shape[-1] % gguf.GGML_QUANT_SIZES[t][0] != 0):
            t = Q.F32
        if t == Q.F32:
            data, dec = g, g
        elif t == Q.F16:
            data = g.astype(np.float16)
            dec = data.astype(np.float32)
        else:
            data = gguf.quants.quantize(g, t)
            dec = gguf.quants.dequantize(data, t).reshape(g.shape).astype(np.float32)
        if t in (Q.F32, Q.F16):
            w.add_tensor(gguf_name(hf), np.ascontiguousarray(data))
        else:
            w.add_tensor(gguf_name(hf), data, raw_dtype=t)
        ref[hf] = np.ascontiguousarray(unpermute(dec, n) if n else dec)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    rdir = os.path.join(out, "ref_" + name)
    if os.path.isdir(rdir):
        shutil.rmtree(rdir)
    os.makedirs(rdir)
    rcfg = dict(cfg)
    if not uniform:
        rcfg["per_layer_widths"] = {"num_attention_heads": [s[0] for s in shapes],
                                    "num_key_value_heads": [s[1] for s in shapes],
                                    "intermediate_size": [s[2] for s in shapes]}
    with open(os.path.join(rdir, "config.json"), "w") as f:
        json.dump(rcfg, f, indent=1)
    save_file(ref, os.path.join(rdir, "model.safetensors"))


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: gen_gguf.py OUT_DIR FIXTURE_DIR\n")
        return 2
    out, fixture = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    cfg = json.load(open(os.path.join(fixture, "config.json")))
    weights = load_file(os.path.join(fixture, "model.safetensors"))
    toks = tokens(fixture)
    assert len(toks) == cfg["vocab_size"]
    full = [(cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"])] * \
        cfg["num_hidden_layers"]
    for name, qt in QTYPES.items():
        write_case(out, name, "llama", weights, cfg, full, qt, toks)
    small = shrink(weights, cfg)
    write_case(out, "deci_f32", "deci", small, cfg, SHAPES, Q.F32, toks)
    write_case(out, "deci_q8_0", "deci", small, cfg, SHAPES, Q.Q8_0, toks)
    print("wrote", ", ".join(list(QTYPES) + ["deci_f32", "deci_q8_0"]), "to", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
