#!/usr/bin/env bash
# expect_no_output.sh [--existing] OUT -- CMD [ARGS...]
# Runs CMD (a prune writing --out OUT that is meant to fail) and passes its stdout, stderr and
# exit status through, after checking that the failure left no output behind: OUT does not
# exist and no OUT.tmp-* directory remains. With --existing, OUT is created beforehand with a
# marker file and must be left exactly as it was. Any leftover is reported as one extra line on
# stderr and exit status 99, so that expect_fail.sh, which wraps this, fails.
# Leftovers of an earlier run are removed before CMD starts.
set -u
existing=0
if [ "${1:-}" = "--existing" ]; then
  existing=1; shift
fi
out=$1; shift
if [ "${1:-}" != "--" ]; then
  echo "usage: expect_no_output.sh [--existing] OUT -- CMD [ARGS...]" >&2; exit 98
fi
shift
rm -rf -- "$out" "$out".tmp-*
mkdir -p -- "$(dirname -- "$out")"
marker="this directory existed before mpiprune ran"
if [ "$existing" -eq 1 ]; then
  mkdir -- "$out" && printf '%s\n' "$marker" >"$out/marker.txt" || exit 98
fi

"$@"
rc=$?

problems=()
if [ "$existing" -eq 1 ]; then
  if [ "$(ls -A -- "$out" 2>/dev/null)" != "marker.txt" ] ||
     [ "$(cat -- "$out/marker.txt" 2>/dev/null)" != "$marker" ]; then
    problems+=("the existing $out was changed")
  fi
elif [ -e "$out" ]; then
  problems+=("$out exists after a failed run")
fi
for t in "$out".tmp-*; do
  [ -e "$t" ] && problems+=("$t left behind")
done
if [ ${#problems[@]} -gt 0 ]; then
  echo "expect_no_output: ${problems[*]}" >&2
  rm -rf -- "$out" "$out".tmp-*
  exit 99
fi
rm -rf -- "$out"
exit "$rc"
