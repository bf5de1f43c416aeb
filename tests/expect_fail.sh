#!/usr/bin/env bash
# expect_fail.sh CODE REGEX CMD [ARGS...]
# Passes when CMD exits with CODE and writes exactly one line to stderr, matching REGEX
# (grep -E), with no sanitizer report. Used for every bad-input test.
set -u
code=$1; regex=$2; shift 2
err=$(mktemp); out=$(mktemp)
trap 'rm -f "$err" "$out"' EXIT
"$@" >"$out" 2>"$err"
rc=$?
fail=0
if [ "$rc" -ne "$code" ]; then
  echo "FAIL: exit code $rc, expected $code"; fail=1
fi
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|Segmentation' "$err"; then
  echo "FAIL: sanitizer or crash report"; fail=1
fi
# Open MPI's mpirun adds its own note when a rank exits non-zero; the program's line is ours.
lines=$(grep -vE '^-+$|^(Primary job|mpirun|Open MPI|process|Process|  |$)' "$err" \
        | grep -vE 'detected that one or more processes exited|terminated|exited on signal|non-zero status|rank [0-9]+ with PID|normally|non-zero exit code|Per user-direction' \
        | grep -vE '^MPI_ABORT was invoked|^with errorcode|^NOTE: invoking MPI_ABORT|^You may or may not see output|^exactly when Open MPI kills them|ORTE_ERROR_LOG' )
n=$(printf '%s' "$lines" | grep -c '^' || true)
if [ "$n" -ne 1 ]; then
  echo "FAIL: expected exactly one error line on stderr, got $n"; fail=1
fi
if ! printf '%s\n' "$lines" | grep -qE -- "$regex"; then
  echo "FAIL: stderr does not match /$regex/"; fail=1
fi
echo "--- stderr:"; cat "$err"
exit $fail
