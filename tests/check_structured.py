#!/usr/bin/python3
"""Structured pruning of the bundled stories260K, end to end (--method structured).

  search (P = 1)  --target params=0.8, the default global iterative search:
    - the budget is met to one unit: removed >= asked, and the overshoot is less than the
      largest unit that could go (an FFN bucket, a KV group or a head slot);
    - config.json, the safetensors shapes and report.json's plan agree, the model is
      physically smaller, and the report's parameter counts are those of the tensors;
    - `mpiprune eval` of the output equals a float64 reference forward (rel 1e-5) and
      transformers loads it (stock LlamaForCausalLM when the widths come out uniform,
      trust_remote_code otherwise) with logits equal to mpiprune's (1e-4);
    - report.svg is SVG with one bar per block and kind, and the trace has one entry a round;
  search (P = 2)  byte-identical weights, the same plan;
  uniform         --allocation uniform --rounds 1 (the OSSCAR/ZipLM uniform setting) at the same
                  target: the search's evaluation perplexity is lower, at no more parameters;
  flops           --target flops=0.8: the report's FLOPs per token after / before equal the
                  budget met (one cost model);
  then            --then sparsegpt --nm 2:4: the smaller model's linear weights are 2:4 sparse
                  (and no damping had to be raised: the Hessians have the cut widths);
  flap-bias       FLAP (--score flap, zscore, --compensation none) with --bias-compensation:
                  every o_proj/down_proj has a bias, config.json says so (o_proj_bias,
                  down_proj_bias), the kept weights are the dense ones, block 0's biases are
                  W[:, removed] · mean(x[removed]) of a float64 forward on the calibration
                  sequences (rel 1e-5), and the model passes the checks of the search above;
                  `mpiprune convert` to GGUF (deci, with attn_output.bias and ffn_down.bias)
                  and back evaluates bit for bit as the output;
  fisher          --score fisher (a float64 gradient pass per round): the same plan and bytes
                  on 1 and 2 ranks, no normalisation, the budget met, a sane perplexity;
  taylor-element  --score taylor-element on 2 ranks (every weight's gradient): the budget met,
                  a sane perplexity;
  kwon            --method kwon (Kwon et al.'s Fisher mask search, mask rearrangement, mask
                  tuning): the same plan and bytes on 1 and 2 ranks, the budget met to one
                  unit, one round in the trace, every layer's rearranged Fisher loss at most
                  its diagonal choice's with some swaps made, mask tuning (--compensation
                  scale, the default) below no compensation in perplexity, and the model passes
                  the float64-reference and transformers checks of the search above.
Needs torch, transformers and safetensors (scripts/install-deps.sh --test); run with
/usr/bin/python3.

usage: check_structured.py MPIEXEC MPIPRUNE MAKE_PRUNED_MODEL FIXTURE WORKDIR
"""
import concurrent.futures
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_hf_export as hx  # noqa: E402  (the float64 reference and the loaders)
import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

mpiexec, cli, make, fixture, work = sys.argv[1:6]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
hx.DATA = os.path.join(fixture, "eval_dev.bin")
BASE = ["prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
        "--seqlen", "256", "--nsamples", "64", "--method", "structured", "--quiet"]
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


# Every prune of this script is independent of the others' results, so all of them start up
# front on two CPU slots (a 2-rank run takes both) in the order below, and prune() waits for its
# own: the single-rank runs go two at a time while the checks read earlier outputs.
RUNS = [
    ("search_p1", 1, "--target", "params=0.8"),
    ("uniform", 1, "--target", "params=0.8", "--allocation", "uniform", "--rounds", "1"),
    ("search_p2", 2, "--target", "params=0.8"),
    ("flops", 1, "--target", "flops=0.8"),
    ("then", 1, "--target", "params=0.8", "--then", "sparsegpt", "--nm", "2:4"),
    ("flap_bias", 1, "--target", "params=0.8", "--score", "flap", "--normalize", "zscore",
     "--rounds", "1", "--compensation", "none", "--bias-compensation"),
    ("flap", 1, "--target", "params=0.8", "--score", "flap", "--normalize", "zscore",
     "--rounds", "1", "--compensation", "none"),
    ("fisher_p1", 1, "--target", "params=0.8", "--score", "fisher", "--nsamples", "16"),
    ("kwon_p1", 1, "--method", "kwon", "--target", "params=0.8", "--nsamples", "16"),
    ("fisher_p2", 2, "--target", "params=0.8", "--score", "fisher", "--nsamples", "16"),
    ("taylor_element", 2, "--target", "params=0.8", "--score", "taylor-element",
     "--nsamples", "16"),
    ("kwon_p2", 2, "--method", "kwon", "--target", "params=0.8", "--nsamples", "16"),
    ("kwon_none", 2, "--method", "kwon", "--target", "params=0.8", "--nsamples", "16",
     "--compensation", "none"),
]
SLOTS = 2
free = threading.Condition()
free_slots = [SLOTS]
ticket = [0]  # runs take slots in RUNS order, so a 2-rank run is not overtaken forever
aborted = [False]  # a failed run: the runs not yet started never start
started = {}


def run_one(i, name, P, extra):
    with free:
        free.wait_for(lambda: aborted[0] or (ticket[0] == i and
                                             free_slots[0] >= min(P, SLOTS)))
        if aborted[0]:
            return None, None
        free_slots[0] -= min(P, SLOTS)
        ticket[0] += 1
        free.notify_all()
    try:
        out = os.path.join(work, name)
        cmd = [cli] + BASE + ["--out", out] + list(extra)
        if P > 1:
            cmd = [mpiexec, "--bind-to", "none", "-n", str(P)] + cmd
        return out, subprocess.run(cmd, capture_output=True, text=True)
    finally:
        with free:
            free_slots[0] += min(P, SLOTS)
            free.notify_all()


pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(RUNS))
for i, (name, P, *extra) in enumerate(RUNS):
    started[name] = ((P,) + tuple(extra), pool.submit(run_one, i, name, P, extra))


def prune(name, P, *extra):
    args, fut = started[name]
    if args != (P,) + tuple(extra):
        sys.exit(f"FAIL: {name}: asked {(P,) + extra} but RUNS has {args}")
    out, r = fut.result()
    if r.returncode != 0:
        with free:
            aborted[0] = True
            free.notify_all()
        sys.exit(f"FAIL: {name}: prune exited {r.returncode}: {r.stderr.strip()}")
    if "warning" in r.stderr:
        fail(f"{name}: {r.stderr.strip()}")
    with open(os.path.join(out, "report.json")) as f:
        return out, json.load(f)


ppl = {}


def perplexities(*dirs):
    """Evaluation perplexity of each model (a directory or GGUF file), the new ones evaluated at
    once, each model once per script (the dense model is asked for by several checks)."""
    todo = [d for d in dict.fromkeys(dirs) if d not in ppl]
    procs = [(d, subprocess.Popen([cli, "eval", "--model", d, "--data", hx.DATA, "--seqlen",
                                   "256", "--json", "--quiet"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)) for d in todo]
    for d, pr in procs:
        so, se = pr.communicate()
        if pr.returncode != 0:
            sys.exit(f"FAIL: eval {d} exited {pr.returncode}: {se.strip()}")
        ppl[d] = json.loads(so)["perplexity"]
    return [ppl[d] for d in dirs]


def perplexity(d):
    return perplexities(d)[0]


with open(os.path.join(fixture, "config.json")) as f:
    cfg0 = json.load(f)
d, hd, L = cfg0["hidden_size"], cfg0["head_dim"], cfg0["num_hidden_layers"]
H0, KV0, F0 = (cfg0["num_attention_heads"], cfg0["num_key_value_heads"],
               cfg0["intermediate_size"])
G = H0 // KV0

# ---- the search, P = 1 ----
out1, rep1 = prune("search_p1", 1, "--target", "params=0.8")
s = rep1["structured"]
b = s["budget"]
largest = max(32 * 3 * d, G * 2 * hd * d + 2 * hd * d, KV0 * 2 * hd * d)
print(f"search: kept {b['keep_met']:.4f} of {b['before']:.0f} parameters "
      f"(asked {b['keep_asked']}), removed {b['removed']:.0f} for {b['remove_asked']:.0f}")
if not (b["removed"] >= b["remove_asked"] - 1e-6 and
        b["removed"] - b["remove_asked"] < largest):
    fail(f"budget not met to one unit: removed {b['removed']} for {b['remove_asked']} "
         f"(largest unit {largest})")
with open(os.path.join(out1, "config.json")) as f:
    cfg1 = json.load(f)
w1 = load_file(os.path.join(out1, "model.safetensors"))
params = 0
for l, p in enumerate(s["plan"]):
    heads, kvh, ffn = hx.widths(cfg1, l)
    if (heads, kvh, ffn) != (p["heads"], p["kv_groups"], p["ffn"]):
        fail(f"block {l}: config.json widths {(heads, kvh, ffn)} vs plan "
             f"{(p['heads'], p['kv_groups'], p['ffn'])}")
    if p["heads"] != p["kv_groups"] * p["heads_per_group"]:
        fail(f"block {l}: heads {p['heads']} are not kv_groups x heads_per_group")
    pre = f"model.layers.{l}."
    want = {"self_attn.q_proj.weight": (heads * hd, d), "self_attn.k_proj.weight": (kvh * hd, d),
            "self_attn.v_proj.weight": (kvh * hd, d), "self_attn.o_proj.weight": (d, heads * hd),
            "mlp.gate_proj.weight": (ffn, d), "mlp.up_proj.weight": (ffn, d),
            "mlp.down_proj.weight": (d, ffn)}
    for k, shp in want.items():
        if pre + k in w1:
            if w1[pre + k].shape != shp:
                fail(f"{pre + k}: shape {w1[pre + k].shape}, want {shp}")
            params += w1[pre + k].size
        elif 0 not in shp:
            fail(f"{pre + k} missing")
if params != s["block_params_after"]:
    fail(f"tensors hold {params} block parameters, the report says {s['block_params_after']}")
size_in = os.path.getsize(os.path.join(fixture, "model.safetensors"))
size_out = os.path.getsize(os.path.join(out1, "model.safetensors"))
print(f"model.safetensors: {size_in} -> {size_out} bytes")
if not size_out < size_in:
    fail("the structured model is not smaller on disk")
if len(s["rounds"]) != 3 or not all(r["removed"] for r in s["rounds"][:1]):
    fail(f"trace: {len(s['rounds'])} rounds, want 3 with removals in the first")
svg = ET.parse(os.path.join(out1, "report.svg")).getroot()
rects = [e for e in svg.iter() if e.tag.endswith("rect")]
if len(rects) != 1 + 2 * L:
    fail(f"report.svg has {len(rects)} rects, want {1 + 2 * L} (background + 2 per block)")
tokens = np.fromfile(hx.DATA, dtype="<u2").astype(np.int64)[:hx.SEQLEN * hx.WINDOWS]
loader = hx.load_remote if "per_layer_widths" in cfg1 else hx.load_stock
hx.check_model("search", out1, make, cli, tokens, work, loader)
failures += hx.failures

# ---- P = 2: the same plan, the same bytes ----
out2, rep2 = prune("search_p2", 2, "--target", "params=0.8")
if rep2["structured"]["plan"] != s["plan"]:
    fail("P = 2 gives another plan than P = 1")
with open(os.path.join(out1, "model.safetensors"), "rb") as f1, \
        open(os.path.join(out2, "model.safetensors"), "rb") as f2:
    same = f1.read() == f2.read()
print(f"P = 2: plan {'equal' if rep2['structured']['plan'] == s['plan'] else 'differs'}, "
      f"weights {'byte-identical' if same else 'differ'}")
if not same:
    fail("P = 2 weights differ from P = 1")

# ---- the uniform allocation at the same target ----
outu, repu = prune("uniform", 1, "--target", "params=0.8", "--allocation", "uniform",
                   "--rounds", "1")
ps, pu, pd = perplexities(out1, outu, fixture)
ks, ku = s["budget"]["keep_met"], repu["structured"]["budget"]["keep_met"]
print(f"eval_dev perplexity: search {ps:.4f} (kept {ks:.4f}), uniform obs {pu:.4f} "
      f"(kept {ku:.4f}), dense {perplexity(fixture):.4f}")
if not (ps < pu and ks <= ku + 0.005):
    fail(f"the search ({ps}, kept {ks}) does not beat the uniform allocation ({pu}, kept {ku})")

# ---- a FLOPs budget: one cost model ----
outf, repf = prune("flops", 1, "--target", "flops=0.8")
sf = repf["structured"]
ratio = sf["block_flops_per_token_after"] / sf["block_flops_per_token_before"]
print(f"flops: kept {sf['budget']['keep_met']:.6f} by the cost model, {ratio:.6f} by "
      f"mp_block_flops")
if sf["budget"]["kind"] != "flops" or abs(ratio - sf["budget"]["keep_met"]) > 1e-9:
    fail(f"FLOPs after/before {ratio} differs from the budget met {sf['budget']['keep_met']}")

# ---- then SparseGPT 2:4 in the same run ----
outt, rept = prune("then", 1, "--target", "params=0.8", "--then", "sparsegpt", "--nm", "2:4")
wt = load_file(os.path.join(outt, "model.safetensors"))
nlin = 0
for k, v in wt.items():
    if k.startswith("model.layers.") and k.endswith("proj.weight"):
        nlin += 1
        z = (v.reshape(v.shape[0], -1, 4) == 0).sum(axis=2)
        if (z < 2).any():
            fail(f"then: {k} is not 2:4 sparse")
if rept["structured"]["plan"] != s["plan"] or nlin == 0 or not rept["layers"]:
    fail("then: another plan than the search alone, or no pruned layers reported")
print(f"then sparsegpt 2:4: {nlin} linear layers 2:4 sparse, plan as the search's")

# ---- FLAP with its bias compensation ----
outb, repb = prune("flap_bias", 1, "--target", "params=0.8", "--score", "flap", "--normalize",
                   "zscore", "--rounds", "1", "--compensation", "none", "--bias-compensation")
sb = repb["structured"]
with open(os.path.join(outb, "config.json")) as f:
    cfgb = json.load(f)
wb = load_file(os.path.join(outb, "model.safetensors"))
w0 = {k: v.astype(np.float64) for k, v in load_file(os.path.join(fixture,
                                                                   "model.safetensors")).items()}
if not (cfgb.get("o_proj_bias") and cfgb.get("down_proj_bias")):
    fail("flap-bias: config.json lacks o_proj_bias / down_proj_bias")
nb, params = 0, 0
for k, v in wb.items():
    if k.startswith("model.layers.") and (k.endswith("proj.weight") or k.endswith("proj.bias")):
        params += v.size
    if k.endswith("o_proj.weight") or k.endswith("down_proj.weight"):
        nb += 1
        if k[:-len("weight")] + "bias" not in wb:
            fail(f"flap-bias: {k} has no bias")
if params != sb["block_params_after"]:
    fail(f"flap-bias: tensors hold {params} block parameters (biases included), the report "
         f"says {sb['block_params_after']}")
bb = sb["budget"]
if not (bb["removed"] >= bb["remove_asked"] - 1e-6 and bb["removed"] - bb["remove_asked"] < largest):
    fail(f"flap-bias: budget not met to one unit: removed {bb['removed']} for "
         f"{bb['remove_asked']}")


def kept_cols(p0, attn):
    """Block 0's kept input columns of o_proj (attn) or down_proj, from the report's plan."""
    if attn:
        return np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in p0["kept_heads"]])
    return np.array(p0["kept_neurons"])


# Block 0's inputs are the embeddings in every model: a float64 forward of its dense attention
# gives the o_proj input means; that of the pruned attention (its bias included) then the
# down_proj input means of the dense FFN.
ref0, refb = hx.Reference(fixture), hx.Reference(outb)
calib = np.fromfile(os.path.join(fixture, "calib.bin"), dtype="<u2").astype(np.int64)
p0 = sb["plan"][0]
if "kept_neurons" not in p0:
    fail(f"flap-bias: the plan of block 0 has no kept_neurons: {sorted(p0)}")
else:
    mo, md = ref0.block0_means(calib, 64, 256, refb)
    pre = "model.layers.0."
    for name, mean, attn in (("self_attn.o_proj", mo, True), ("mlp.down_proj", md, False)):
        W = w0[pre + name + ".weight"]
        keep = np.zeros(W.shape[1], dtype=bool)
        keep[kept_cols(p0, attn)] = True
        want = W[:, ~keep] @ mean[~keep]
        got = wb[pre + name + ".bias"].astype(np.float64)
        rel = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        same = np.array_equal(wb[pre + name + ".weight"], W[:, keep].astype(np.float32))
        print(f"flap-bias: block 0 {name}.bias vs float64 W[:, removed] mean(x[removed]): "
              f"rel {rel:.2e}; kept weights {'unchanged' if same else 'CHANGED'}")
        if not rel <= 1e-5:
            fail(f"flap-bias: block 0 {name}.bias differs from the FLAP bias (rel {rel:.2e})")
        if not same:
            fail(f"flap-bias: block 0 {name} kept weights changed without --compensation ls")
hx.failures.clear()
hx.check_model("flap-bias", outb, make, cli, tokens, work, hx.load_remote)
failures += hx.failures
gg, back = os.path.join(work, "flap_bias.gguf"), os.path.join(work, "flap_bias_back")
subprocess.run([cli, "convert", outb, gg, "--dtype", "f32"], check=True)
subprocess.run([cli, "convert", gg, back, "--dtype", "f32"], check=True)
with open(os.path.join(back, "config.json")) as f:
    cback = json.load(f)
pb, pg, pk = perplexities(outb, gg, back)
print(f"flap-bias: perplexity {pb!r}, as GGUF {pg!r}, back to Hugging Face {pk!r}")
if not (pb == pg == pk) or not (cback.get("o_proj_bias") and cback.get("down_proj_bias")):
    fail("flap-bias: the GGUF conversion and back do not keep the model and its biases")
print(f"flap-bias: {nb} o_proj/down_proj biases; eval_dev perplexity {perplexity(outb):.4f}, "
      f"without the biases {perplexity(prune('flap', 1, '--target', 'params=0.8', '--score', 'flap', '--normalize', 'zscore', '--rounds', '1', '--compensation', 'none')[0]):.4f}")

# ---- a gradient scorer: --score fisher (a float64 backward pass per round) ----
# The same plan and bytes on 1 and 2 ranks (the per-window numbers are summed on rank 0 in window
# order), no normalisation by default, the budget met, and a working model.
# 16 windows keep the float64 gradient passes short (the sanitizer build is slow).
outf1, repf1 = prune("fisher_p1", 1, "--target", "params=0.8", "--score", "fisher",
                     "--nsamples", "16")
outf2, repf2 = prune("fisher_p2", 2, "--target", "params=0.8", "--score", "fisher",
                     "--nsamples", "16")
sf = repf1["structured"]
if repf1["options"]["structured"]["normalize"] != "none":
    fail(f"fisher: --normalize auto gave {repf1['options']['structured']['normalize']!r}, "
         "not none")
if sf["plan"] != repf2["structured"]["plan"]:
    fail("fisher: the plan differs between 1 and 2 ranks")
with open(os.path.join(outf1, "model.safetensors"), "rb") as f1, \
        open(os.path.join(outf2, "model.safetensors"), "rb") as f2:
    if f1.read() != f2.read():
        fail("fisher: the weights differ between 1 and 2 ranks")
bf = sf["budget"]
if not (bf["removed"] >= bf["remove_asked"] - 1e-6 and
        bf["removed"] - bf["remove_asked"] < largest):
    fail(f"fisher: budget not met to one unit: removed {bf['removed']} for "
         f"{bf['remove_asked']}")
pf = perplexity(outf1)
print(f"fisher: kept {bf['keep_met']:.4f}, eval_dev perplexity {pf:.4f} (dense "
      f"{perplexity(fixture):.4f})")
if not (math.isfinite(pf) and pf < 3 * perplexity(fixture)):
    fail(f"fisher: perplexity {pf} of the pruned model is not sane")

# ---- --score taylor-element: every weight's gradient, summed over ranks ----
outte, repte = prune("taylor_element", 2, "--target", "params=0.8", "--score", "taylor-element",
                     "--nsamples", "16")
bte = repte["structured"]["budget"]
pte = perplexity(outte)
print(f"taylor-element: kept {bte['keep_met']:.4f}, eval_dev perplexity {pte:.4f}")
if not (bte["removed"] >= bte["remove_asked"] - 1e-6 and
        bte["removed"] - bte["remove_asked"] < largest):
    fail(f"taylor-element: budget not met to one unit: removed {bte['removed']}")
if not (math.isfinite(pte) and pte < 3 * perplexity(fixture)):
    fail(f"taylor-element: perplexity {pte} of the pruned model is not sane")

# ---- --method kwon: Kwon et al.'s post-training pipeline ----
outk1, repk1 = prune("kwon_p1", 1, "--method", "kwon", "--target", "params=0.8",
                     "--nsamples", "16")
outk2, repk2 = prune("kwon_p2", 2, "--method", "kwon", "--target", "params=0.8",
                     "--nsamples", "16")
outkn, repkn = prune("kwon_none", 2, "--method", "kwon", "--target", "params=0.8",
                     "--nsamples", "16", "--compensation", "none")
sk = repk1["structured"]
if repk1["options"]["structured"]["compensation"] != "scale":
    fail(f"kwon: --compensation auto gave {repk1['options']['structured']['compensation']!r}")
if sk["plan"] != repk2["structured"]["plan"] or sk["plan"] != repkn["structured"]["plan"]:
    fail("kwon: the plan differs between 1 and 2 ranks, or with the compensation")
with open(os.path.join(outk1, "model.safetensors"), "rb") as f1, \
        open(os.path.join(outk2, "model.safetensors"), "rb") as f2:
    if f1.read() != f2.read():
        fail("kwon: the weights differ between 1 and 2 ranks")
bk = sk["budget"]
if not (bk["removed"] >= bk["remove_asked"] - 1e-6 and
        bk["removed"] - bk["remove_asked"] < largest):
    fail(f"kwon: budget not met to one unit: removed {bk['removed']} for "
         f"{bk['remove_asked']}")
rk = sk["rounds"]
if len(rk) != 1 or rk[0].get("method") != "kwon" or len(rk[0]["removed"]) != 2 * L:
    fail(f"kwon: trace {rk!r:.300} is not one kwon round with a record per sub-block")
else:
    swaps = sum(x["swaps"] for x in rk[0]["removed"])
    worse = [x for x in rk[0]["removed"]
             if x["fisher_loss_rearranged"] > x["fisher_loss_diagonal"] * (1 + 1e-12)]
    print(f"kwon: kept {bk['keep_met']:.4f}, {swaps} units swapped by the rearrangement")
    if worse or swaps == 0:
        fail(f"kwon: rearrangement raised the Fisher loss in {worse!r:.300} or swapped nothing")
pk, pn = perplexities(outk1, outkn)
print(f"kwon: eval_dev perplexity {pk:.4f} with mask tuning, {pn:.4f} without")
if not (pk < pn):
    fail(f"kwon: mask tuning ({pk}) does not beat no compensation ({pn})")
cfgk = json.load(open(os.path.join(outk1, "config.json")))
hx.failures.clear()
hx.check_model("kwon", outk1, make, cli, tokens, work,
               hx.load_remote if "per_layer_widths" in cfgk else hx.load_stock)
failures += hx.failures

if failures:
    sys.exit(f"{len(failures)} failure(s)")
print("ok")
