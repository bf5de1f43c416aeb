#!/usr/bin/env bash
# run_fuzz.sh FUZZER TARGET SECONDS WORKDIR SEEDS_DIR [MORE_SEED_DIRS...]
# Runs one libFuzzer harness for SECONDS on a fresh corpus WORKDIR/TARGET/corpus (new inputs
# go there; the seed dirs are only read). Crash inputs land in WORKDIR/TARGET/artifacts/.
# Prints the number of inputs executed. Exit status: the fuzzer's (0 when nothing was found).
set -u
fuzzer=$1; target=$2; secs=$3; work=$4; shift 4
dir=$work/$target
rm -rf "$dir/corpus"
mkdir -p "$dir/corpus" "$dir/artifacts"
seeds=()
for d in "$@"; do [ -d "$d" ] && seeds+=("$d"); done
# -max_len: the bundled model (1 MB) is a seed; its header and first tensors fit in 64 KiB.
"$fuzzer" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" "${seeds[@]}" \
  >"$dir/log.txt" 2>&1
rc=$?
grep -E "^stat::number_of_executed_units|^#[0-9]+ +DONE|ERROR|SUMMARY|runtime error|fuzz:" \
  "$dir/log.txt" | head -40
execs=$(grep -oE "^stat::number_of_executed_units: [0-9]+" "$dir/log.txt" | grep -oE "[0-9]+$")
echo "fuzz_$target: ${execs:-?} inputs executed in $secs s, exit $rc"
[ "$rc" -eq 0 ] || tail -60 "$dir/log.txt"
exit $rc
