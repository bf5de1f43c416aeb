#!/usr/bin/env bash
# Installs what mpiprune needs to build and test, from Debian's packages (and, for the tests
# that read our output with the reference implementation, PyPI's safetensors and numpy).
# Idempotent: packages already installed are not touched. Waits for the dpkg lock.
set -euo pipefail

pkgs=(build-essential cmake pkg-config python3
      libopenmpi-dev openmpi-bin libscalapack-openmpi-dev libopenblas-dev
      libhdf5-openmpi-dev hdf5-tools libcjson-dev libcmocka-dev python3-h5py)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--test" ]; then
  # The Python reader used by the tests to check our safetensors output.
  if ! python3 -c 'import safetensors, numpy' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check safetensors numpy \
      || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
           safetensors numpy
  fi
fi
