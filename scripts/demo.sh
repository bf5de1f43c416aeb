#!/usr/bin/env bash
# The demo: installs the dependencies, builds mpiprune, and evaluates the bundled tiny model
# (stories260K) on its evaluation tokens with 2 MPI ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mpiprune_cli
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OPENBLAS_NUM_THREADS=1
M=models/stories260K
echo "== dense model: perplexity on eval_dev (2 ranks)"
mpirun --bind-to none -n 2 build/mpiprune eval --model $M --data $M/eval_dev.bin --seqlen 256
