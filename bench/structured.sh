#!/usr/bin/env bash
# The structured-pruning acceptance measurements, run by hand, not in CI: on SmolLM2-135M by
# default (its GGUF from scripts/fetch-smollm2.sh, converted to a Hugging Face directory), or
# on any Hugging Face directory MODEL with CALIB, EVAL and SEQLEN. At each budget (BUDGETS, kept fractions of the blocks'
# linear parameters), prunes with
#   uniform-obs   the same share of every layer, OBS scores and compensation (OSSCAR/ZipLM)
#   flap          FLAP: fluctuation scores, per-layer standardisation, one global threshold,
#                 no weight update, bias compensation (flap-nobias: without it)
#   wanda-sp      Wanda-sp scores, uniform, no weight update
#   search        the full global iterative search (OBS, residual normalisation, 3 rounds)
# and evaluates each on the first MAX_WINDOWS windows of EVAL (eval_c4.bin) at SEQLEN; also
# times a SparseGPT 50 % run on the same model and data for the speed ratio (part 7).
# One JSON line per run goes to OUT.jsonl (command, perplexity, seconds).
# Usage: bash bench/structured.sh [BUILD] [OUT.jsonl]
#   env: NSAMPLES (128), MAX_WINDOWS (128), BUDGETS ("0.8 0.6"), RANKS (2), METHODS, WORK,
#        MODEL, CALIB, EVAL, SEQLEN (512); METHODS may also name search-NORM (e.g.
#        search-zscore, search-probe), search-rounds-N (N rounds), search-bias (the search
#        with --bias-compensation), flap-nobias and search-fisher, search-nvit, search-taylor
#        search-taylor-element (the search with a gradient scorer, no normalisation),
#        search-ema-fisher,
#        search-ema-nvit, search-ema-taylor (the same with --score-ema 0.5); kwon (Kwon et al.'s mask
#        search, rearrangement and mask tuning: --method kwon), kwon-ls and kwon-none (its plan
#        with the least-squares refit, or no compensation)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUTJ=${2:-bench-structured.jsonl}
NSAMPLES=${NSAMPLES:-128}
MAX_WINDOWS=${MAX_WINDOWS:-128}
BUDGETS=${BUDGETS:-"0.8 0.6"}
RANKS=${RANKS:-2}
METHODS=${METHODS:-"uniform-obs flap wanda-sp search sparsegpt"}
WORK=${WORK:-/tmp/mpiprune-structured}
FIX=${FIX:-/work/shared/fixtures/smollm2}
CALIB=${CALIB:-$FIX/calib_c4.bin}
EVAL=${EVAL:-$FIX/eval_c4.bin}
SEQLEN=${SEQLEN:-512}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OPENBLAS_NUM_THREADS=1
MPI=(mpirun --bind-to none -n "$RANKS")
mkdir -p "$WORK"
if [ -n "${MODEL:-}" ]; then
  HF=$MODEL
else
  GGUF=$(bash scripts/fetch-smollm2.sh | tail -1)
  HF=$WORK/smollm2-hf
  [ -f "$HF/config.json" ] || "$BUILD/mpiprune" convert "$GGUF" "$HF" --dtype f32
fi

record() { # name seconds ppl report|- command...
  local name=$1 secs=$2 ppl=$3 rep=$4; shift 4
  python3 - "$OUTJ" "$name" "$secs" "$ppl" "$rep" "$*" <<'PY'
import json, sys
out, name, secs, ppl, rep, cmd = sys.argv[1:]
row = {"run": name, "seconds": round(float(secs), 1), "perplexity": float(ppl), "command": cmd}
if rep != "-":
    r = json.load(open(rep))
    s = r.get("structured")
    if s:
        row["kept"] = s["budget"]["keep_met"]
        row["block_params_after"] = s["block_params_after"]
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
print(f"{name}: perplexity {float(ppl):.4f}, kept {row.get('kept', 1.0):.4f}, {float(secs):.1f} s",
      flush=True)
PY
}
evaluate() { # dir -> prints perplexity
  "${MPI[@]}" "$BUILD/mpiprune" eval --model "$1" --data "$EVAL" --seqlen "$SEQLEN" \
    --max-windows "$MAX_WINDOWS" --json --quiet |
    python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["perplexity"]))'
}
prune() { # name args...
  local name=$1; shift
  local out=$WORK/$name
  rm -rf "$out"
  local cmd=("${MPI[@]}" "$BUILD/mpiprune" prune --model "$HF" --calib "$CALIB"
             --seqlen "$SEQLEN" --nsamples "$NSAMPLES" --out "$out" --quiet "$@")
  local t0 t1 ppl
  t0=$(date +%s.%N)
  "${cmd[@]}"
  t1=$(date +%s.%N)
  ppl=$(evaluate "$out")
  record "$name" "$(python3 -c "print($t1 - $t0)")" "$ppl" "$out/report.json" "${cmd[*]}"
}

record dense 0 "$(evaluate "$HF")" - eval "$HF"
for m in $METHODS; do
  [ "$m" = sparsegpt ] && prune sparsegpt-50 --method sparsegpt --sparsity 0.5 && continue
  for k in $BUDGETS; do
    case $m in
      uniform-obs) prune "uniform-obs-$k" --method structured --target "params=$k" \
                     --allocation uniform --rounds 1 ;;
      flap) prune "flap-$k" --method structured --target "params=$k" --score flap \
              --normalize zscore --rounds 1 --compensation none --bias-compensation ;;
      flap-nobias) prune "flap-nobias-$k" --method structured --target "params=$k" \
                     --score flap --normalize zscore --rounds 1 --compensation none ;;
      search-bias) prune "search-bias-$k" --method structured --target "params=$k" \
                     --bias-compensation ;;
      wanda-sp) prune "wanda-sp-$k" --method structured --target "params=$k" \
                  --score wanda-sp --allocation uniform --rounds 1 --compensation none ;;
      search) prune "search-$k" --method structured --target "params=$k" ;;
      search-fisher|search-nvit|search-taylor|search-taylor-element) prune "$m-$k" --method structured \
                         --target "params=$k" --score "${m#search-}" ;;
      search-ema-fisher|search-ema-nvit|search-ema-taylor) prune "$m-$k" --method structured \
                         --target "params=$k" --score "${m#search-ema-}" --score-ema 0.5 ;;
      kwon) prune "kwon-$k" --method kwon --target "params=$k" ;;
      kwon-ls|kwon-none) prune "$m-$k" --method kwon --target "params=$k" \
                           --compensation "${m#kwon-}" ;;
      search-rounds-*) prune "$m-$k" --method structured --target "params=$k" \
                         --rounds "${m#search-rounds-}" ;;
      search-*) prune "$m-$k" --method structured --target "params=$k" \
                  --normalize "${m#search-}" ;;
    esac
  done
done

# The table of this run's records, and the time of each structured run over SparseGPT's.
python3 - "$OUTJ" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
sg = [r["seconds"] for r in rows if r["run"].startswith("sparsegpt")]
print(f"{'run':28s} {'perplexity':>11s} {'kept':>7s} {'seconds':>8s} {'/ sparsegpt':>11s}")
for r in rows:
    ratio = f"{r['seconds'] / sg[-1]:.2f}" if sg and r["seconds"] > 0 else ""
    print(f"{r['run']:28s} {r['perplexity']:11.4f} {r.get('kept', 1.0):7.4f} "
          f"{r['seconds']:8.1f} {ratio:>11s}")
PY
