#!/usr/bin/env bash
# Installs what mpiprune needs to build and test, from Debian's packages; with --test also the
# Slurm daemons the Slurm tests start by hand, clang 14 with libFuzzer (the fuzz build), PyPI's
# safetensors, numpy and gguf (the reference readers and writers the tests check our input and
# output with), and Debian's python3-torch with PyPI's transformers (the loader tests).
# Idempotent: installed packages are not touched.
# Waits for the dpkg lock.
set -euo pipefail

# install_missing PKG...: apt-get installs those not yet installed (no recommends).
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "install-deps: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  local apt=($sudo apt-get -o DPkg::Lock::Timeout=600)
  "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" \
    || { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq --no-install-recommends \
           "${missing[@]}"; }
}

install_missing build-essential cmake pkg-config python3 \
  libopenmpi-dev openmpi-bin libscalapack-openmpi-dev libopenblas-dev \
  libhdf5-openmpi-dev hdf5-tools libcjson-dev libcmocka-dev python3-h5py
# oneDNN: --compute bf16's products (AVX512-BF16 / AMX kernels); without it they are emulated.
install_missing libdnnl-dev

if [ "${1:-}" = "--test" ]; then
  # A one-node Slurm (tests/slurm_local.sh starts it); without recommends: 6 packages, not 34.
  # strace: the checkpoint durability test (tests/check_ckpt_fsync.py).
  install_missing slurmctld slurmd slurm-client munge procps strace
  # The fuzz build (scripts/test.sh, scripts/fuzz.sh): clang with libFuzzer and its sanitizers.
  install_missing clang-14 libclang-rt-14-dev
  # gguf: pinned, the tests use its writer, gguf.quants and GGUFReader.
  if ! python3 -c 'import safetensors, numpy, gguf; assert gguf.GGUFWriter' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check safetensors numpy gguf==0.19.0 \
      || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
           safetensors numpy gguf==0.19.0
  fi
  # The loader tests (tests/check_hf_export.py) run Debian's python3 with its python3-torch
  # (1.13) and transformers from PyPI: 4.46 runs on torch 1.13 (tested) and its Llama honours
  # an explicit head_dim (4.45 and later), which pruned heads need.
  install_missing python3-torch python3-numpy python3-pip
  if ! /usr/bin/python3 -c 'import transformers, safetensors' 2>/dev/null; then
    /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      "transformers==4.46.3" safetensors
  fi
fi
