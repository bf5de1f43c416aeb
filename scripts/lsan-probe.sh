#!/usr/bin/env bash
# Whether LeakSanitizer works on this host: runs a sanitizer build of mpiprune ten times through
# MPI_Init and a usage error (the shortest path through every library it loads), with leak
# detection on, and fails if LSan's own tracer crashed in any run. A leak report is not a
# failure here (the test suite judges those, with its suppressions).
# Usage: bash scripts/lsan-probe.sh BUILD-ASAN/mpiprune
set -uo pipefail
exe=${1:?usage: lsan-probe.sh MPIPRUNE}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_pml=ob1
export OMPI_MCA_btl=self,vader OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:abort_on_error=0
export LSAN_OPTIONS=suppressions=$(cd "$(dirname "$0")/.." && pwd)/tests/lsan.supp:print_suppressions=0:use_tls=0
crashed=0
for i in $(seq 1 10); do
  err=$("$exe" eval --model /nonexistent --data /nonexistent --seqlen abc 2>&1 >/dev/null)
  if grep -q "Tracer caught signal\|LeakSanitizer has encountered a fatal error" <<<"$err"; then
    crashed=$((crashed + 1))
    [ "$crashed" = 1 ] && grep -m1 "Tracer caught signal" <<<"$err" >&2
  fi
done
echo "lsan-probe: the tracer crashed in $crashed of 10 runs" >&2
[ "$crashed" = 0 ]
