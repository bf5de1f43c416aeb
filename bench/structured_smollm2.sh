#!/usr/bin/env bash
# The structured-pruning acceptance measurements on SmolLM2-135M (issue: structured pruning,
# part 6), run by hand, not in CI: at each budget (BUDGETS, kept fractions of the blocks'
# linear parameters), prunes with
#   uniform-obs   the same share of every layer, OBS scores and compensation (OSSCAR/ZipLM)
#   flap          FLAP: fluctuation scores, per-layer standardisation, one global threshold,
#                 no weight update
#   wanda-sp      Wanda-sp scores, uniform, no weight update
#   search        the full global iterative search (OBS, residual normalisation, 3 rounds)
# and evaluates each on the first MAX_WINDOWS windows of eval_c4.bin at --seqlen 512; also
# times a SparseGPT 50 % run on the same model and data for the speed ratio (part 7).
# One JSON line per run goes to OUT.jsonl (command, perplexity, seconds).
# Usage: bash bench/structured_smollm2.sh [BUILD] [OUT.jsonl]
#   env: NSAMPLES (128), MAX_WINDOWS (128), BUDGETS ("0.8 0.6"), RANKS (2), METHODS, WORK
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUTJ=${2:-bench-structured-smollm2.jsonl}
NSAMPLES=${NSAMPLES:-128}
MAX_WINDOWS=${MAX_WINDOWS:-128}
BUDGETS=${BUDGETS:-"0.8 0.6"}
RANKS=${RANKS:-2}
METHODS=${METHODS:-"uniform-obs flap wanda-sp search sparsegpt"}
WORK=${WORK:-/tmp/mpiprune-structured-smollm2}
FIX=${FIX:-/work/shared/fixtures/smollm2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OPENBLAS_NUM_THREADS=1
MPI=(mpirun --bind-to none -n "$RANKS")
mkdir -p "$WORK"
GGUF=$(bash scripts/fetch-smollm2.sh | tail -1)
HF=$WORK/smollm2-hf
[ -f "$HF/config.json" ] || "$BUILD/mpiprune" convert "$GGUF" "$HF" --dtype f32

record() { # name seconds ppl command...
  local name=$1 secs=$2 ppl=$3; shift 3
  python3 - "$OUTJ" "$name" "$secs" "$ppl" "$*" <<'PY'
import json, sys
out, name, secs, ppl, cmd = sys.argv[1:]
with open(out, "a") as f:
    f.write(json.dumps({"run": name, "seconds": float(secs), "perplexity": ppl, "command": cmd}) + "\n")
print(f"{name}: perplexity {ppl}, {float(secs):.1f} s")
PY
}
evaluate() { # dir -> prints perplexity
  "${MPI[@]}" "$BUILD/mpiprune" eval --model "$1" --data "$FIX/eval_c4.bin" --seqlen 512 \
    --max-windows "$MAX_WINDOWS" --json --quiet |
    python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["perplexity"]))'
}
prune() { # name args...
  local name=$1; shift
  local out=$WORK/$name
  rm -rf "$out"
  local cmd=("${MPI[@]}" "$BUILD/mpiprune" prune --model "$HF" --calib "$FIX/calib_c4.bin"
             --seqlen 512 --nsamples "$NSAMPLES" --out "$out" --quiet "$@")
  local t0; t0=$(date +%s.%N)
  "${cmd[@]}"
  local t1; t1=$(date +%s.%N)
  local ppl; ppl=$(evaluate "$out")
  record "$name" "$(echo "$t1 - $t0" | bc)" "$ppl" "${cmd[*]}"
}

if [ ! -f "$WORK/dense.ppl" ]; then evaluate "$HF" > "$WORK/dense.ppl"; fi
record dense 0 "$(cat "$WORK/dense.ppl")" eval "$HF"
for m in $METHODS; do
  [ "$m" = sparsegpt ] && prune sparsegpt-50 --method sparsegpt --sparsity 0.5 && continue
  for k in $BUDGETS; do
    case $m in
      uniform-obs) prune "uniform-obs-$k" --method structured --target "params=$k" \
                     --allocation uniform --rounds 1 ;;
      flap) prune "flap-$k" --method structured --target "params=$k" --score flap \
              --normalize zscore --rounds 1 --compensation none ;;
      wanda-sp) prune "wanda-sp-$k" --method structured --target "params=$k" \
                  --score wanda-sp --allocation uniform --rounds 1 --compensation none ;;
      search) prune "search-$k" --method structured --target "params=$k" ;;
      search-*) prune "$m-$k" --method structured --target "params=$k" \
                  --normalize "${m#search-}" ;;
    esac
  done
done
