#!/usr/bin/env bash
# Installs the dependencies, builds mpiprune with -Wall -Wextra -Werror, runs the whole test
# suite, then builds again with AddressSanitizer + UndefinedBehaviorSanitizer and runs the suite
# once more. Usage: bash scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPIPRUNE_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

if [ "${1:-}" != "--no-sanitize" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPIPRUNE_WERROR=ON \
        -DMPIPRUNE_SANITIZE=ON -DMPIPRUNE_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE nosanitize
fi
