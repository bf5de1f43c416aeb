#!/usr/bin/env bash
# Fuzzes mpiprune's parsers by hand, longer than the test suite's short runs.
# Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   (default 600 s; targets: safetensors st_index hfconfig tokens_bin tokens_npy ckpt)
# Builds build-fuzz with clang (MPIPRUNE_FUZZ=ON: ASan + UBSan + libFuzzer), makes the seed
# corpora, and runs each target on a persistent corpus in build-fuzz/fuzz/long/<target>/corpus.
# A crash input is left in build-fuzz/fuzz/long/<target>/artifacts/: fix the bug, then copy the
# input to tests/fuzz/regress/<target>/ so that test_fuzz_regress replays it in every build.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors st_index hfconfig tokens_bin tokens_npy ckpt)
CC=${CC:-clang-14}
command -v "$CC" >/dev/null || CC=clang
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER="$CC" -DMPIPRUNE_FUZZ=ON -DMPIPRUNE_TESTS=OFF \
      -DMPIPRUNE_BENCH=OFF -DMPIPRUNE_WERROR=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)"
ctest --test-dir build-fuzz -R fuzz_seeds --output-on-failure >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in "${targets[@]}"; do
  dir=build-fuzz/fuzz/long/$t
  mkdir -p "$dir/corpus" "$dir/artifacts"
  ./build-fuzz/fuzz/fuzz_"$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" \
    build-fuzz/fuzz/seeds/"$t" $( [ -d tests/fuzz/regress/"$t" ] && echo tests/fuzz/regress/"$t" ) \
    >"$dir/log.txt" 2>&1 || status=1
  execs=$(grep -oE "^stat::number_of_executed_units: [0-9]+" "$dir/log.txt" | grep -oE "[0-9]+$")
  echo "fuzz_$t: ${execs:-?} inputs in $secs s; corpus $(ls "$dir/corpus" | wc -l) files;" \
       "artifacts: $(ls "$dir/artifacts" | wc -l)"
done
exit $status
