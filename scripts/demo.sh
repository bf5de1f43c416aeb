#!/usr/bin/env bash
# The demo: installs the dependencies, builds mpiprune, prunes the bundled tiny model
# (stories260K) to 50 % with SparseGPT on 2 MPI ranks, evaluates the dense and the pruned model
# on the bundled evaluation tokens, and shows the report.
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
