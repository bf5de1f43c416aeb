#!/usr/bin/env bash
# Does llama.cpp load the GGUF files mpiprune writes, and compute the same logits?
#
# Builds llama-cpp-python from its PyPI source distribution (llama.cpp compiled here: needs
# build-essential and cmake, and takes a long time on a small machine) in a private venv,
# writes a uniform (llama) and a per-layer (deci: a dropped attention, a dropped FFN, fewer
# heads and neurons elsewhere) GGUF file of the bundled model with `mpiprune convert` (from the
# gguf-package files of tests/gen_gguf.py, which carry a tokenizer), and compares llama.cpp's
# logits on the first T tokens of eval_dev with mpiprune's (build/bench/bench_logits).
# Passes when every file loads and max |Δlogit| / max |logit| <= 1e-3 (llama.cpp and mpiprune
# round differently; a wrong Q/K layout or width shows as O(1) differences).
# Not run in CI.
#
# usage: bench/llamacpp_check.sh [BUILD_DIR] [WORK_DIR] [T]    (defaults: build, a temp dir, 128)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/llamacpp-check.XXXXXX")}
T=${3:-128}
fixture=$root/models/stories260K
mkdir -p "$work"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
fi
py=$work/venv/bin/python
if ! "$py" -c 'import llama_cpp' 2>/dev/null; then
  echo "llamacpp_check: building llama-cpp-python 0.3.36 from source (slow)" >&2
  t0=$(date +%s)
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2} \
    "$py" -m pip install --quiet --disable-pip-version-check --no-binary llama-cpp-python \
      llama-cpp-python==0.3.36
  echo "llamacpp_check: built in $(( $(date +%s) - t0 )) s" >&2
fi
"$py" -m pip install --quiet --disable-pip-version-check numpy safetensors gguf==0.19.0
"$py" "$root/tests/gen_gguf.py" "$work/gguf" "$fixture" >&2
for m in f32 deci_f32; do
  rm -f "$work/ours_$m.gguf"
  "$build/mpiprune" convert "$work/gguf/$m.gguf" "$work/ours_$m.gguf" --dtype f32
  "$build/bench/bench_logits" "$work/ours_$m.gguf" "$fixture/eval_dev.bin" "$T" "$work/ours_$m.logits"
done
"$py" - "$work" "$fixture/eval_dev.bin" "$T" <<'PY'
import sys
import numpy as np
from llama_cpp import Llama
work, data, T = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokens = np.fromfile(data, dtype="<u2")[:T].astype(int).tolist()
bad = 0
for m in ("f32", "deci_f32"):
    path = f"{work}/ours_{m}.gguf"
    llm = Llama(model_path=path, n_ctx=T, n_batch=T, logits_all=True, verbose=False,
                n_threads=1)
    llm.eval(tokens)
    theirs = np.array(llm.scores[:T], dtype=np.float32)
    ours = np.fromfile(f"{work}/ours_{m}.logits", dtype="<f4").reshape(T, -1)
    err = float(np.abs(theirs - ours).max() / np.abs(ours).max())
    print(f"{path}: llama.cpp loads it; max |dlogit| / max |logit| = {err:.2e}")
    bad += not err <= 1e-3
sys.exit(1 if bad else 0)
PY
