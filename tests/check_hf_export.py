#!/usr/bin/python3
"""Models with per-block widths, written by mpiprune, read back by mpiprune and by transformers.

Makes two models from the fixture (stories260K) with mpiprune's own code path
(make_pruned_model: mp_plan, mp_block_apply_plan, the streaming safetensors writer and the
config.json writer): `uniform` (every block at 2 heads, 2 KV heads, FFN 128) and `nonuniform`
(per-block query heads, KV groups and FFN widths, one block without attention, one without
FFN). For each, and for the unpruned fixture:
  - `mpiprune eval --json` (seqlen 128, 4 windows of eval_dev) equals the mean NLL of a float64
    reference forward written here (rel 1e-5);
  - mpiprune's logits of one sequence (make_pruned_model logits) equal the float64 reference
    and transformers' logits to 1e-4 (max abs difference), the uniform model loaded by stock
    LlamaForCausalLM, the non-uniform one by AutoModelForCausalLM with trust_remote_code=True,
    with no missing or unexpected weights.
Needs torch (Debian's python3-torch), transformers and safetensors (scripts/install-deps.sh
--test); fails, not skips, when they are missing. Run with /usr/bin/python3.

usage: check_hf_export.py MAKE_PRUNED_MODEL MPIPRUNE FIXTURE WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import torch
    import transformers
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM, LlamaForCausalLM
except ImportError as e:
    sys.exit(f"FAIL: {e}: the loader tests need torch, transformers and safetensors for "
             f"{sys.executable} (bash scripts/install-deps.sh --test)")

SEQLEN, WINDOWS, T_LOGITS = 128, 4, 64
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def widths(cfg, layer):
    plw = cfg.get("per_layer_widths")
    if plw is None:
        return (cfg["num_attention_heads"], cfg.get("num_key_value_heads",
                                                    cfg["num_attention_heads"]),
                cfg["intermediate_size"])
    return (plw["num_attention_heads"][layer], plw["num_key_value_heads"][layer],
            plw["intermediate_size"][layer])


class Reference:
    """A float64 LLaMA forward with per-block widths (RMSNorm, RoPE rotate_half, GQA, SwiGLU)."""

    def __init__(self, d):
        with open(os.path.join(d, "config.json")) as f:
            self.cfg = json.load(f)
        self.w = {k: v.astype(np.float64) for k, v in
                  load_file(os.path.join(d, "model.safetensors")).items()}

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.cfg["rms_norm_eps"]) * w

    def lin(self, h, name):
        """A linear layer, with its bias where the model has one."""
        y = h @ self.w[name + ".weight"].T
        return y + self.w[name + ".bias"] if name + ".bias" in self.w else y

    def attention_in(self, layer, x):
        """o_proj's input [T, H·hd] of block `layer` on the residual stream x [T, d]."""
        c, w, T = self.cfg, self.w, x.shape[0]
        hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        inv = c.get("rope_theta", 10000.0) ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        cos = np.concatenate([np.cos(ang)] * 2, axis=1)
        sin = np.concatenate([np.sin(ang)] * 2, axis=1)

        def rope(t):  # t [T, n, hd]
            rot = np.concatenate([-t[..., hd // 2:], t[..., :hd // 2]], axis=-1)
            return t * cos[:, None, :] + rot * sin[:, None, :]

        mask = np.triu(np.full((T, T), -np.inf), 1)
        p = f"model.layers.{layer}."
        H, K, _ = widths(c, layer)
        h = self.rms(x, w[p + "input_layernorm.weight"])
        q = rope(self.lin(h, p + "self_attn.q_proj").reshape(T, H, hd))
        k = rope(self.lin(h, p + "self_attn.k_proj").reshape(T, K, hd))
        v = self.lin(h, p + "self_attn.v_proj").reshape(T, K, hd)
        out = np.empty((T, H, hd))
        for i in range(H):
            j = i // (H // K)
            s = q[:, i, :] @ k[:, j, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            out[:, i, :] = (s / s.sum(axis=1, keepdims=True)) @ v[:, j, :]
        return out.reshape(T, H * hd)

    def ffn_in(self, layer, x):
        """down_proj's input [T, F] of block `layer` on the residual stream x [T, d]."""
        p = f"model.layers.{layer}."
        h = self.rms(x, self.w[p + "post_attention_layernorm.weight"])
        g = self.lin(h, p + "mlp.gate_proj")
        return g / (1 + np.exp(-g)) * self.lin(h, p + "mlp.up_proj")

    def logits(self, tokens):
        c, w = self.cfg, self.w
        x = w["model.embed_tokens.weight"][tokens]
        for layer in range(c["num_hidden_layers"]):
            p = f"model.layers.{layer}."
            H, K, F = widths(c, layer)
            if H:
                x = x + self.lin(self.attention_in(layer, x), p + "self_attn.o_proj")
            if F:
                x = x + self.lin(self.ffn_in(layer, x), p + "mlp.down_proj")
        x = self.rms(x, w["model.norm.weight"])
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        return x @ head.T

    def block0_means(self, tokens, n_seq, T, pruned):
        """Means over n_seq windows of T tokens of block 0's o_proj inputs (this model's
        attention) and down_proj inputs (this model's FFN after `pruned`'s attention)."""
        mo = mf = 0.0
        for s in range(n_seq):
            x = self.w["model.embed_tokens.weight"][tokens[s * T:(s + 1) * T]]
            mo = mo + self.attention_in(0, x).sum(axis=0)
            x = x + pruned.lin(pruned.attention_in(0, x), "model.layers.0.self_attn.o_proj")
            mf = mf + self.ffn_in(0, x).sum(axis=0)
        return mo / (n_seq * T), mf / (n_seq * T)

    def mean_nll(self, tokens):
        nlls = []
        for s in range(WINDOWS):
            win = tokens[s * SEQLEN:(s + 1) * SEQLEN]
            lg = self.logits(win)[:-1]
            m = lg.max(axis=1, keepdims=True)
            lse = (m[:, 0] + np.log(np.exp(lg - m).sum(axis=1)))
            nlls.append(np.mean(lse - lg[np.arange(SEQLEN - 1), win[1:]]))
        return float(np.mean(nlls))


def mpiprune_logits(make, d, tokens, work):
    tp, op = os.path.join(work, "tokens.u32"), os.path.join(work, "logits.f32")
    np.asarray(tokens, dtype="<u4").tofile(tp)
    subprocess.run([make, "logits", d, tp, op], check=True)
    return np.fromfile(op, dtype="<f4").reshape(len(tokens), -1)


def check_model(name, d, make, cli, tokens, work, loader):
    ref = Reference(d)
    # eval vs the float64 reference
    r = subprocess.run([cli, "eval", "--model", d, "--data", DATA, "--seqlen", str(SEQLEN),
                        "--max-windows", str(WINDOWS), "--json", "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{name}: mpiprune eval exited {r.returncode}: {r.stderr.strip()}")
        return
    got = json.loads(r.stdout)["mean_nll"]
    want = ref.mean_nll(tokens)
    rel = abs(got - want) / abs(want)
    print(f"{name}: mean NLL mpiprune {got:.9f}, float64 reference {want:.9f}, rel {rel:.2e}")
    if not rel <= 1e-5:
        fail(f"{name}: mean NLL {got} vs reference {want} (rel {rel:.2e} > 1e-5)")

    seq = tokens[:T_LOGITS]
    ours = mpiprune_logits(make, d, seq, work)
    ref_lg = ref.logits(seq)
    e_ref = float(np.max(np.abs(ours - ref_lg)))
    if loader is None:
        print(f"{name}: logits vs reference max abs {e_ref:.2e}")
        if not e_ref <= 1e-4:
            fail(f"{name}: mpiprune logits differ from the reference by {e_ref:.2e}")
        return
    model, info = loader(d)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys") and v}
    if bad:
        fail(f"{name}: loading reported {bad}")
    model.eval()
    with torch.no_grad():
        hf = model(torch.tensor([seq], dtype=torch.long)).logits[0].double().numpy()
    e_hf = float(np.max(np.abs(ours - hf)))
    print(f"{name}: {type(model).__name__}: logits max abs difference: mpiprune vs "
          f"transformers {e_hf:.2e}, mpiprune vs reference {e_ref:.2e}")
    if not e_hf <= 1e-4:
        fail(f"{name}: transformers logits differ from mpiprune's by {e_hf:.2e} (> 1e-4)")
    if not e_ref <= 1e-4:
        fail(f"{name}: mpiprune logits differ from the reference by {e_ref:.2e} (> 1e-4)")


def load_stock(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    if "auto_map" in cfg or "per_layer_widths" in cfg:
        fail(f"{d}: a uniform model's config.json has {sorted(k for k in cfg if k in ('auto_map', 'per_layer_widths'))}")
    return LlamaForCausalLM.from_pretrained(d, output_loading_info=True,
                                            torch_dtype=torch.float32)


def load_remote(d):
    if not os.path.exists(os.path.join(d, "modeling_mpiprune.py")):
        fail(f"{d}: no modeling_mpiprune.py")
    m, info = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True,
                                                   output_loading_info=True,
                                                   torch_dtype=torch.float32)
    if type(m).__name__ != "MpiPruneLlamaForCausalLM":
        fail(f"{d}: loaded as {type(m).__name__}")
    return m, info


def main():
    global DATA
    make, cli, fixture, work = sys.argv[1:5]
    DATA = os.path.join(fixture, "eval_dev.bin")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    tokens = np.fromfile(DATA, dtype="<u2").astype(np.int64)[:SEQLEN * WINDOWS]
    check_model("fixture", fixture, make, cli, tokens, work, None)
    for kind, loader in (("uniform", load_stock), ("nonuniform", load_remote)):
        d = os.path.join(work, kind)
        subprocess.run([make, "make", fixture, d, kind], check=True)
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        print(f"{kind}: widths " + ", ".join(
            f"{widths(cfg, l)}" for l in range(cfg["num_hidden_layers"])))
        check_model(kind, d, make, cli, tokens, work, loader)
    if failures:
        sys.exit(f"{len(failures)} failure(s)")
    print("ok")


if __name__ == "__main__":
    main()
