#!/usr/bin/env bash
# Installs the dependencies, builds mpiprune with -Wall -Wextra -Werror, runs the whole test
# suite, then builds again with AddressSanitizer + UndefinedBehaviorSanitizer and runs the suite
# once more, then builds the libFuzzer harnesses with clang (build-fuzz) and runs each parser's
# fuzzer briefly (45 s each, ctest -L fuzz). Usage: bash scripts/test.sh [--no-sanitize]
# [--no-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=1 fuzz=1
for a in "$@"; do
  case $a in
    --no-sanitize) sanitize=0 ;;
    --no-fuzz) fuzz=0 ;;
    *) echo "usage: bash scripts/test.sh [--no-sanitize] [--no-fuzz]" >&2; exit 2 ;;
  esac
done

bash scripts/install-deps.sh --test
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPIPRUNE_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

if [ "$sanitize" = 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPIPRUNE_WERROR=ON \
        -DMPIPRUNE_SANITIZE=ON -DMPIPRUNE_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  # LeakSanitizer's tracer crashes on some hosts whatever the program ("Tracer caught signal
  # 11"); a probe of ten short runs tells, and then the suite runs without leak detection
  # (ASan and UBSan still on) rather than failing every test on the sanitizer's own crash.
  if ! bash scripts/lsan-probe.sh build-asan/mpiprune; then
    echo "test.sh: LeakSanitizer's tracer crashes on this host: the sanitizer suite runs" \
         "without leak detection (MPIPRUNE_TEST_LEAKS=OFF)" >&2
    cmake -S . -B build-asan -DMPIPRUNE_TEST_LEAKS=OFF >/dev/null
  else
    cmake -S . -B build-asan -DMPIPRUNE_TEST_LEAKS=ON >/dev/null
  fi
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE nosanitize
fi

if [ "$fuzz" = 1 ]; then
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DMPIPRUNE_WERROR=ON \
        -DMPIPRUNE_FUZZ=ON -DMPIPRUNE_TESTS=OFF -DMPIPRUNE_BENCH=OFF >/dev/null
  cmake --build build-fuzz -j"$jobs"
  ctest --test-dir build-fuzz --output-on-failure -j"$jobs" -L fuzz
fi
