#!/usr/bin/env python3
"""`mpiprune prune --compute bf16` on the bundled stories260K (SparseGPT 50 %):
  P = 1 and P = 2 give byte-identical models; the report names the compute mode and what ran
  the products; the perplexity is within 1 % of the float32 run's with the same options (bf16
  rounds the calibration products' inputs, nothing else); the output differs from the float32
  run's (the mode took effect);
  a run stopped after block 2 (checkpoint, hidden states recomputed through the pruned blocks on
  resume) resumes to a byte-identical model; resuming it with --compute f32 is refused in one
  line naming the option;
  the structured search (20 %) with bf16 products: byte-identical on P = 1 and 2, within 1 % of
  the float32 search's perplexity;
  the emulation (MPIPRUNE_BF16_EMULATE=1: sgemm on bf16-rounded inputs; other summation orders)
  agrees with the default backend within 0.5 % in perplexity and says so in the report.
32 calibration sequences and 60 evaluation windows throughout, to keep it short under ASan.

usage: check_bf16.py MPIEXEC MPIPRUNE FIXTURE_DIR WORKDIR
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

mpiexec, exe, fixture, work = sys.argv[1:5]
os.makedirs(work, exist_ok=True)
NSAMPLES = 32


def cmd(p, args):
    return [exe] + args if p == 1 else [mpiexec, "--bind-to", "none", "-n", str(p), "--mca",
                                        "odls_base_sigkill_timeout", "0", exe] + args


def run(p, args, expect=0, env=None):
    r = subprocess.run(cmd(p, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env)
    if r.returncode != expect:
        sys.exit(f"FAIL: {' '.join(args)} P={p} exited {r.returncode}, expected {expect}:\n"
                 f"{r.stderr}")
    return r


def base(nsamples, compute):
    return ["prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
            "--seqlen", "256", "--nsamples", str(nsamples), "--method", "sparsegpt",
            "--sparsity", "0.5", "--compute", compute, "--snapshot-blocks", "8", "--quiet"]


def fresh(*paths):
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(p + ".d", ignore_errors=True)
        if os.path.isfile(p):
            os.unlink(p)


def prune(p, nsamples, compute, name, env=None):
    out = os.path.join(work, name)
    fresh(out)
    run(p, base(nsamples, compute) + ["--out", out], env=env)
    return out


def digest(out):
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def report(out):
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def ppl(out):
    r = run(2, ["eval", "--model", out, "--data", os.path.join(fixture, "eval_dev.bin"),
                "--seqlen", "256", "--max-windows", "60", "--json", "--quiet"])
    return json.loads(r.stdout)["perplexity"]


# 1. Rank counts, the report, the perplexity; 2. kill after block 2, resume: the same bytes;
# another --compute is refused.
a, b = prune(1, NSAMPLES, "bf16", "bf16_p1"), prune(2, NSAMPLES, "bf16", "bf16_p2")
if digest(a) != digest(b):
    sys.exit("FAIL: --compute bf16: P=1 and P=2 outputs differ")
rep = report(b)
backend = rep.get("compute_backend", "")
if rep["options"].get("compute") != "bf16" or not backend:
    sys.exit(f"FAIL: report: options.compute {rep['options'].get('compute')!r}, "
             f"compute_backend {backend!r}")
f32 = prune(2, NSAMPLES, "f32", "f32_p2")
if digest(f32) == digest(b) or report(f32)["options"].get("compute") != "f32":
    sys.exit("FAIL: --compute bf16 gave the float32 output (or the f32 report lacks compute)")
p, pf = ppl(b), ppl(f32)
rel = (p - pf) / pf
print(f"bf16 ({backend}): perplexity {p:.4f} vs float32 {pf:.4f} ({rel:+.3%}); "
      "P=1 and P=2 byte-identical")
if not abs(rel) <= 0.01:
    sys.exit(f"FAIL: bf16 perplexity {p} is {rel:+.2%} from the float32 run's")

out, ckpt = os.path.join(work, "resumed"), os.path.join(work, "ck.h5")
fresh(out, ckpt)
env = dict(os.environ, MPIPRUNE_FAULT="ckpt_main_renamed:2")
c = cmd(2, base(NSAMPLES, "bf16") + ["--out", out, "--checkpoint", ckpt])
c = c[:5] + ["-x", "MPIPRUNE_FAULT"] + c[5:]
subprocess.run(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.run(["pkill", "-KILL", "-f", out], check=False)
if not os.path.exists(ckpt) or os.path.exists(out):
    sys.exit("FAIL: could not produce a checkpoint after block 2")
r = run(2, base(NSAMPLES, "f32") + ["--out", out, "--checkpoint", ckpt], expect=3)
lines = [l for l in r.stderr.splitlines() if l.startswith("mpiprune: error:")]
if len(lines) != 1 or "compute" not in lines[0] or os.path.exists(out):
    sys.exit(f"FAIL: resume with --compute f32 not refused in one line naming it:\n{r.stderr}")
print(f"refused: {lines[0]}")
run(2, base(NSAMPLES, "bf16") + ["--out", out, "--checkpoint", ckpt])
if digest(out) != digest(b):
    sys.exit("FAIL: --compute bf16: the resumed output differs from the uninterrupted run's")
print("bf16: killed after block 2 and resumed: byte-identical")

# 3. The structured search with bf16 products: the same bytes on 1 and 2 ranks, close to f32.
def structured(p, compute, name):
    out = os.path.join(work, name)
    fresh(out)
    run(p, ["prune", "--model", fixture, "--calib", os.path.join(fixture, "calib.bin"),
            "--seqlen", "256", "--nsamples", str(NSAMPLES), "--method", "structured", "--target",
            "params=0.8", "--compute", compute, "--out", out, "--quiet"])
    return out


s1, s2, sf = (structured(1, "bf16", "st_bf16_p1"), structured(2, "bf16", "st_bf16_p2"),
              structured(2, "f32", "st_f32_p2"))
if digest(s1) != digest(s2):
    sys.exit("FAIL: structured --compute bf16: P=1 and P=2 outputs differ")
qs, qf = ppl(s2), ppl(sf)
print(f"structured 20 %: bf16 perplexity {qs:.4f}, f32 {qf:.4f}")
if not abs(qs - qf) / qf <= 0.01:
    sys.exit(f"FAIL: structured bf16 perplexity {qs} is more than 1 % from f32's {qf}")

# 4. The emulation agrees with the default backend.
emu = prune(1, NSAMPLES, "bf16", "bf16_emulated",
            env=dict(os.environ, MPIPRUNE_BF16_EMULATE="1"))
eb = report(emu).get("compute_backend", "")
pe = ppl(emu)
print(f"emulated ({eb}): perplexity {pe:.4f} vs {p:.4f}")
if not eb.startswith("emulated") or not abs(pe - p) / p <= 0.005:
    sys.exit(f"FAIL: emulated bf16: backend {eb!r}, perplexity {pe} vs {p}")
print("PASS")
