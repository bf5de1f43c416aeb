#!/usr/bin/env bash
# --compute bf16 against the float32 run: SparseGPT 50 % on the bundled stories260K and on
# SmolLM2-135M (scripts/fetch-smollm2.sh, converted to a Hugging Face f32 directory), each
# pruned twice on 2 ranks with the same calibration tokens, once per --compute, then evaluated
# the same way (float32 eval). Prints per run the wall time, the report's stage seconds and the
# perplexity, and the relative perplexity change of bf16; writes them to OUT (JSON lines).
# Not part of CI: the SmolLM2 runs take minutes on a small machine.
#
# usage: bench/bf16.sh [BUILD_DIR] [OUT]   (defaults: build, bf16-bench.jsonl)
# env:   NSAMPLES (default 32) calibration windows of 512 tokens for SmolLM2; MAX_WINDOWS
#        (default 32) evaluation windows of 512 tokens; SKIP_SMOLLM2=1 runs stories260K only;
#        OPENBLAS_NUM_THREADS (default 1 per rank).
set -euo pipefail
build=${1:-build}
out=${2:-bf16-bench.jsonl}
exe=$build/mpiprune
here=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/bf16-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
: >"$out"
mpi=(mpirun --bind-to none -n 2)

# compare NAME MODEL CALIB EVAL SEQLEN NSAMPLES MAXWIN
compare() {
  local name=$1 model=$2 calib=$3 eval=$4 seqlen=$5 ns=$6 mw=$7 c
  for c in f32 bf16; do
    local t0 t1 res
    echo "\$ ${mpi[*]} $exe prune --model $model --calib $calib --seqlen $seqlen --nsamples $ns --method sparsegpt --sparsity 0.5 --compute $c" >&2
    t0=$(date +%s.%N)
    "${mpi[@]}" "$exe" prune --model "$model" --calib "$calib" --seqlen "$seqlen" \
      --nsamples "$ns" --method sparsegpt --sparsity 0.5 --compute $c \
      --out "$work/$name-$c" --quiet
    t1=$(date +%s.%N)
    res=$("${mpi[@]}" "$exe" eval --model "$work/$name-$c" --data "$eval" --seqlen "$seqlen" \
          --max-windows "$mw" --json --quiet)
    python3 - "$name" "$c" "$t0" "$t1" "$res" "$work/$name-$c/report.json" >>"$out" <<'PY'
import json, sys
name, c, t0, t1, res, rep = sys.argv[1:7]
r = json.load(open(rep))
st = r["stage_seconds_max_over_ranks"]
print(json.dumps({"model": name, "compute": c, "prune_wall_seconds": round(float(t1) - float(t0), 2),
                  "compute_backend": r.get("compute_backend"), "stage_seconds": st,
                  "perplexity": json.loads(res)["perplexity"]}))
PY
    tail -1 "$out" >&2
  done
  python3 - "$name" "$out" <<'PY' >&2
import json, sys
rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
r = {x["compute"]: x for x in rows if x.get("model") == sys.argv[1]}
a, b = r["f32"]["perplexity"], r["bf16"]["perplexity"]
print(f"{sys.argv[1]}: perplexity f32 {a:.4f}, bf16 {b:.4f}: {100 * (b - a) / a:+.3f} % relative; "
      f"prune wall {r['f32']['prune_wall_seconds']} s vs {r['bf16']['prune_wall_seconds']} s")
PY
}

m=$here/models/stories260K
compare stories260K "$m" "$m/calib.bin" "$m/eval_dev.bin" 256 128 0
if [ "${SKIP_SMOLLM2:-0}" != 1 ]; then
  gguf=$(bash "$here/scripts/fetch-smollm2.sh")
  "$exe" convert "$gguf" "$work/smollm2-hf" --dtype f32 >/dev/null
  compare smollm2 "$work/smollm2-hf" /work/shared/fixtures/smollm2/calib_c4.bin \
    /work/shared/fixtures/smollm2/eval_c4.bin 512 "${NSAMPLES:-32}" "${MAX_WINDOWS:-32}"
fi
echo "results in $out" >&2
