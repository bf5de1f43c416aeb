#!/usr/bin/env bash
# The demo: installs the dependencies, builds mpiprune, prunes the bundled tiny model
# (stories260K) to 50 % with SparseGPT on 2 MPI ranks, evaluates the dense and the pruned model
# on the bundled evaluation tokens, and shows the report; then prunes it structurally (heads, KV
# groups and FFN neurons by the global search) to 80 % of its block parameters, evaluates the
# smaller model and shows its plan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mpiprune_cli
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OPENBLAS_NUM_THREADS=1
M=models/stories260K
OUT=${OUT:-out/stories260K-sparsegpt50}
MPIRUN=(mpirun --bind-to none -n 2)

echo "== dense model: perplexity on eval_dev"
"${MPIRUN[@]}" build/mpiprune eval --model $M --data $M/eval_dev.bin --seqlen 256 --quiet
echo "== pruning to 50 % with SparseGPT into $OUT"
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
"${MPIRUN[@]}" build/mpiprune prune --model $M --calib $M/calib.bin --seqlen 256 \
  --nsamples 128 --method sparsegpt --sparsity 0.5 --out "$OUT"
echo "== pruned model: perplexity on eval_dev"
"${MPIRUN[@]}" build/mpiprune eval --model "$OUT" --data $M/eval_dev.bin --seqlen 256 --quiet
echo "== report ($OUT/report.json)"
python3 - "$OUT/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{'layer':44s} {'sparsity':>9s} {'rel. error':>11s}")
for l in r["layers"]:
    print(f"{l['name']:44s} {l['sparsity']:9.4f} {l['rel_recon_error']:11.2e}")
print(f"pruned layers: sparsity {r['pruned_layers_sparsity']:.4f}; "
      f"{r['seconds']:.1f} s on {r['options']['ranks']} ranks")
print("stage seconds (max over ranks):",
      ", ".join(f"{k} {v:.2f}" for k, v in r["stage_seconds_max_over_ranks"].items()))
PY
SOUT=${SOUT:-out/stories260K-structured80}
echo "== structured: keeping 80 % of the blocks' parameters (heads, KV groups, FFN neurons) into $SOUT"
rm -rf "$SOUT"
"${MPIRUN[@]}" build/mpiprune prune --model $M --calib $M/calib.bin --seqlen 256 \
  --nsamples 128 --method structured --target params=0.8 --out "$SOUT" --quiet
echo "== structured model: perplexity on eval_dev"
"${MPIRUN[@]}" build/mpiprune eval --model "$SOUT" --data $M/eval_dev.bin --seqlen 256 --quiet
echo "== report ($SOUT/report.json, plot $SOUT/report.svg)"
python3 - "$SOUT/report.json" "$M/model.safetensors" "$SOUT/model.safetensors" <<'PY'
import json, os, sys
s = json.load(open(sys.argv[1]))["structured"]
b = s["budget"]
print(f"kept {b['keep_met']:.4f} of the blocks' parameters (asked {b['keep_asked']}): "
      f"{s['block_params_before']:.0f} -> {s['block_params_after']:.0f}; model.safetensors "
      f"{os.path.getsize(sys.argv[2])} -> {os.path.getsize(sys.argv[3])} bytes")
print(f"{'block':>5s} {'heads':>9s} {'KV groups':>9s} {'FFN':>9s}")
for p in s["plan"]:
    print(f"{p['block']:5d} {p['heads']:4d}/{p['heads_before']:<4d} {p['kv_groups']:9d} "
          f"{p['ffn']:4d}/{p['ffn_before']:<4d}")
for r in s["rounds"]:
    print(f"round {r['round'] + 1}: calibration loss {r['calib_loss_before']:.4f} before it")
PY
