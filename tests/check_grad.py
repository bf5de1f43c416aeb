"""`mpiprune scores` on the bundled stories260K against a float64 reference: Hugging Face
transformers in float64, with a mask variable on every query head's attention output and on
every FFN neuron, per-window losses backpropagated by autograd. Checks the loss and every
head's, KV group's and neuron's fisher, nvit, taylor and (--element-wise) taylor_element score,
and every embedding channel's nvit and taylor saliency (relative 1e-6), on 1 and 2 ranks (which must agree bit for bit, but for taylor_element, whose
weight gradients are summed over ranks: to 1e-12).

usage: check_grad.py MPIEXEC MPIPRUNE MODEL_DIR CALIB WORK
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

TOL = 1e-6
N, T = 4, 128


def run_scores(mpiexec, cli, model, calib, ranks):
    cmd = [cli, "scores", "--model", model, "--data", calib, "--seqlen", str(T),
           "--nsamples", str(N), "--element-wise", "--quiet"]
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks), "--bind-to", "none"] + cmd
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def true_float64():
    """Hugging Face's LLaMA computes RMSNorm and the attention softmax in float32 even in a
    float64 model; a float64 reference must not (its RoPE cos/sin stay float32, as ours)."""
    from transformers.models.llama import modeling_llama

    def rms(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)
                                              + self.variance_epsilon))
    modeling_llama.LlamaRMSNorm.forward = rms
    orig = torch.nn.functional.softmax

    def softmax(x, dim=None, dtype=None, **kw):
        return orig(x, dim=dim) if x.dtype == torch.float64 else orig(x, dim=dim, dtype=dtype)
    torch.nn.functional.softmax = softmax

    # RoPE: the angles in float32 as Hugging Face computes them, their cos/sin rounded to
    # float32 from the exact values (torch's float32 cos is within 1 ulp of that, which moves
    # the gradients by ~1e-6 relative; mpiprune rounds the exact value).
    def rotary(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1).double()
        return (emb.cos().float().to(x.dtype) * self.attention_scaling,
                emb.sin().float().to(x.dtype) * self.attention_scaling)
    modeling_llama.LlamaRotaryEmbedding.forward = rotary


def reference(model_dir, calib):
    torch.set_grad_enabled(True)
    true_float64()
    m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float64)
    m.eval()
    cfg = m.config
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // nh
    G = nh // nkv
    side = json.load(open(os.path.splitext(calib)[0] + ".json"))
    dt = {"uint16": np.uint16, "uint32": np.uint32, "int32": np.int32}[side.get("dtype", "uint32")]
    ids = np.fromfile(calib, dtype=dt).astype(np.int64)
    layers = m.model.layers
    hmask = [torch.ones(nh, dtype=torch.float64, requires_grad=True) for _ in layers]
    fmask = [torch.ones(l.mlp.down_proj.in_features, dtype=torch.float64, requires_grad=True)
             for l in layers]
    for i, l in enumerate(layers):
        def o_pre(mod, args, i=i):
            x = args[0]
            sh = x.shape
            return (x.view(*sh[:-1], nh, hd) * hmask[i].view(nh, 1)).view(sh),
        def d_pre(mod, args, i=i):
            return (args[0] * fmask[i],)
        l.self_attn.o_proj.register_forward_pre_hook(o_pre)
        l.mlp.down_proj.register_forward_pre_hook(d_pre)
    per = []  # per window: [block] -> dict of per-unit numbers
    losses = []
    gsum = None  # every weight's gradient of the whole loss (Σ over windows)
    chan = []  # per window: Σ w·g over every weight on each residual channel (NViT's saliency)
    emb = m.model.embed_tokens.weight
    head = m.lm_head.weight
    extra = [emb, m.model.norm.weight] + [w for l in layers for w in
                                         (l.input_layernorm.weight,
                                          l.post_attention_layernorm.weight)]
    if head.data_ptr() != emb.data_ptr():
        extra.append(head)
    for s in range(N):
        x = torch.tensor(ids[s * T:(s + 1) * T]).view(1, T)
        logits = m(x).logits[0, :-1]
        loss = torch.nn.functional.cross_entropy(logits, x[0, 1:])
        params = []
        for l in layers:
            a, f = l.self_attn, l.mlp
            params += [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, a.o_proj.weight,
                       f.gate_proj.weight, f.up_proj.weight, f.down_proj.weight]
        grads = torch.autograd.grad(loss, hmask + fmask + params + extra)
        gh, gf = grads[:len(layers)], grads[len(layers):2 * len(layers)]
        gp = grads[2 * len(layers):2 * len(layers) + len(params)]
        ge = grads[2 * len(layers) + len(params):]
        e = (extra[0] * ge[0]).sum(0) + extra[1] * ge[1]  # embedding columns, final norm
        for w, g in zip(extra[2:2 + 2 * len(layers)], ge[2:2 + 2 * len(layers)]):
            e = e + w * g  # the blocks' norms
        if len(extra) > 2 + 2 * len(layers):
            e = e + (extra[-1] * ge[-1]).sum(0)  # an untied lm_head's columns
        for b in range(len(layers)):
            wq, wk, wv, wo, wg, wu, wd = params[7 * b:7 * b + 7]
            dq, dk, dv, do, dg, du, dd = gp[7 * b:7 * b + 7]
            e = e + (wq * dq).sum(0) + (wk * dk).sum(0) + (wv * dv).sum(0) + (wo * do).sum(1)
            e = e + (wg * dg).sum(0) + (wu * du).sum(0) + (wd * dd).sum(1)
        chan.append(e.detach())
        gsum = [g.detach().clone() for g in gp] if gsum is None else \
            [a + g.detach() for a, g in zip(gsum, gp)]
        rows = []
        for b, l in enumerate(layers):
            wq, wk, wv, wo, wg, wu, wd = params[7 * b:7 * b + 7]
            dq, dk, dv, do, dg, du, dd = gp[7 * b:7 * b + 7]
            q_rows = (wq * dq).sum(1).view(nh, hd).sum(1)
            o_cols = (wo * do).sum(0).view(nh, hd).sum(1)
            kv_rows = ((wk * dk).sum(1) + (wv * dv).sum(1)).view(nkv, hd).sum(1)
            head_wg = q_rows + o_cols
            kv_wg = kv_rows + head_wg.view(nkv, G).sum(1)
            ffn_wg = (wg * dg).sum(1) + (wu * du).sum(1) + (wd * dd).sum(0)
            rows.append({"gm_head": gh[b].detach(), "gm_ffn": gf[b].detach(),
                         "head_wg": head_wg.detach(), "kv_wg": kv_wg.detach(),
                         "ffn_wg": ffn_wg.detach(), "o_cols": o_cols.detach()})
        per.append(rows)
        losses.append(loss.item())
    out = []
    for b in range(len(layers)):
        r = [p[b] for p in per]
        gmh = torch.stack([x["gm_head"] for x in r])
        gmf = torch.stack([x["gm_ffn"] for x in r])
        hw = torch.stack([x["head_wg"] for x in r])
        kw = torch.stack([x["kv_wg"] for x in r])
        fw = torch.stack([x["ffn_wg"] for x in r])
        # the o_proj columns' Σ w·g equals the mask gradient (a sanity check of the hooks)
        oc = torch.stack([x["o_cols"] for x in r])
        assert torch.allclose(oc, gmh, rtol=1e-9, atol=1e-14), "hook/mask mismatch"
        a, f = layers[b].self_attn, layers[b].mlp
        ws = [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, a.o_proj.weight,
              f.gate_proj.weight, f.up_proj.weight, f.down_proj.weight]
        eq, ek, ev, eo, eg, eu, ed = [(w.detach() * g).abs()
                                      for w, g in zip(ws, gsum[7 * b:7 * b + 7])]
        he = eq.sum(1).view(nh, hd).sum(1) + eo.sum(0).view(nh, hd).sum(1)
        ke = (ek.sum(1) + ev.sum(1)).view(nkv, hd).sum(1) + he.view(nkv, G).sum(1)
        fe = eg.sum(1) + eu.sum(1) + ed.sum(0)
        out.append({
            "heads": {"fisher": (gmh ** 2).sum(0), "nvit": (hw ** 2).sum(0),
                      "taylor": hw.sum(0).abs(), "taylor_element": he},
            "kv_groups": {"fisher": (gmh ** 2).sum(0).view(nkv, G).sum(1),
                          "nvit": (kw ** 2).sum(0), "taylor": kw.sum(0).abs(),
                          "taylor_element": ke},
            "ffn": {"fisher": (gmf ** 2).sum(0), "nvit": (fw ** 2).sum(0),
                    "taylor": fw.sum(0).abs(), "taylor_element": fe},
        })
    ch = torch.stack(chan)
    return float(np.mean(losses)), out, {"nvit": (ch ** 2).sum(0), "taylor": ch.sum(0).abs()}


def main():
    mpiexec, cli, model, calib, work = sys.argv[1:6]
    os.makedirs(work, exist_ok=True)
    got1 = run_scores(mpiexec, cli, model, calib, 1)
    got2 = run_scores(mpiexec, cli, model, calib, 2)
    for k in ("seconds", "ranks"):
        got1.pop(k)
        got2.pop(k)
    # taylor_element sums weight gradients over ranks (float64 rounding may differ)
    strip = [{u: {k: v for k, v in kinds.items() if k != "taylor_element"}
              for u, kinds in blk.items()} for blk in got1["blocks"]]
    strip2 = [{u: {k: v for k, v in kinds.items() if k != "taylor_element"}
               for u, kinds in blk.items()} for blk in got2["blocks"]]
    if strip != strip2 or got1["loss"] != got2["loss"]:
        sys.exit("FAIL: scores differ between 1 and 2 ranks")
    for b1, b2 in zip(got1["blocks"], got2["blocks"]):
        for u in b1:
            e1, e2 = np.array(b1[u]["taylor_element"]), np.array(b2[u]["taylor_element"])
            if np.abs(e1 - e2).max() > 1e-12 * np.abs(e1).max():
                sys.exit(f"FAIL: taylor_element of {u} differs between 1 and 2 ranks beyond "
                         "1e-12")
    loss, ref, ref_chan = reference(model, calib)
    fails = 0
    if abs(got1["loss"] - loss) > TOL * abs(loss):
        print(f"FAIL: loss {got1['loss']!r} vs reference {loss!r}")
        fails += 1
    worst = 0.0
    for b, rb in enumerate(ref):
        for unit, kinds in rb.items():
            for kind, want in kinds.items():
                want = want.numpy()
                have = np.array(got1["blocks"][b][unit][kind])
                if have.shape != want.shape:
                    sys.exit(f"FAIL: block {b} {unit} {kind}: shape {have.shape} vs {want.shape}")
                # relative to each value, floored at 1e-3 of the array's largest
                scale = np.maximum(np.abs(want), 1e-3 * np.abs(want).max())
                rel = np.abs(have - want) / scale
                worst = max(worst, float(rel.max()))
                if rel.max() > TOL:
                    i = int(rel.argmax())
                    print(f"FAIL: block {b} {unit} {kind}[{i}]: {have[i]!r} vs {want[i]!r} "
                          f"(rel {rel[i]:.3g})")
                    fails += 1
    for kind, want in ref_chan.items():
        want = want.numpy()
        have = np.array(got1["embedding_channels"][kind])
        scale = np.maximum(np.abs(want), 1e-3 * np.abs(want).max())
        rel = np.abs(have - want) / scale
        worst = max(worst, float(rel.max()))
        if rel.max() > TOL:
            i = int(rel.argmax())
            print(f"FAIL: embedding channel {kind}[{i}]: {have[i]!r} vs {want[i]!r}")
            fails += 1
    print(f"loss {got1['loss']:.12f} (reference {loss:.12f}); worst relative error {worst:.3g}")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
