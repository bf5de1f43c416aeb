#!/usr/bin/env bash
# check_convert_hf.sh CLI GGUF_DIR DATA WORK: `mpiprune convert X.gguf DIR` writes a Hugging Face
# directory whose evaluation equals the GGUF's bit for bit (f32), for a quantised llama file and
# a deci file with per-block widths (which gets per_layer_widths and the modeling file), on 1 and
# 2 ranks; bf16 output loads too; an existing OUT is refused and left alone.
set -euo pipefail
cli=$1 gg=$2 data=$3 work=$4
rm -rf "$work"; mkdir -p "$work"
# nll MODEL [LAUNCHER...]: the mean NLL `eval` prints, exactly.
nll() { local m=$1; shift; "$@" "$cli" eval --model "$m" --data "$data" --seqlen 256 \
          --max-windows 8 --json --quiet |
        python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["mean_nll"]))'; }
for f in q4_1 deci_q8_0 f32; do
  "$cli" convert "$gg/$f.gguf" "$work/$f" --dtype f32
  a=$(nll "$gg/$f.gguf"); b=$(nll "$work/$f")
  c=$(nll "$work/$f" mpirun -n 2 --bind-to none)
  echo "$f: GGUF $a, HF $b, HF on 2 ranks $c"
  [ "$a" = "$b" ] && [ "$a" = "$c" ] || { echo "FAIL: $f: the converted directory evaluates differently"; exit 1; }
done
grep -q '"per_layer_widths"' "$work/deci_q8_0/config.json" || { echo "FAIL: no per_layer_widths"; exit 1; }
[ -f "$work/deci_q8_0/modeling_mpiprune.py" ] || { echo "FAIL: no modeling file"; exit 1; }
! grep -q per_layer_widths "$work/q4_1/config.json" || { echo "FAIL: uniform model got per_layer_widths"; exit 1; }
"$cli" convert "$gg/q8_0.gguf" "$work/bf16" --dtype bf16
python3 - "$work/bf16/model.safetensors" <<'PY'
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f: assert len(list(f.keys())) > 0
PY
nll "$work/bf16" >/dev/null
before=$(ls -l "$work/q4_1")
if "$cli" convert "$gg/q8_0.gguf" "$work/q4_1" 2>"$work/err"; then echo "FAIL: overwrote OUT"; exit 1; fi
grep -q "exists" "$work/err" && [ "$(ls -l "$work/q4_1")" = "$before" ] || { echo "FAIL: existing OUT"; cat "$work/err"; exit 1; }
ls "$work" | grep -q 'tmp-' && { echo "FAIL: a temporary output was left"; exit 1; }
echo ok
